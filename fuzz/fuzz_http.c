/*
 * fuzz_http.c - libFuzzer harness for metrics_http.c. The whole input is
 * parsed as a metrics request at once, then again fed in growing pieces
 * to one state, as the endpoint does: both ways must agree; a request
 * never claims more bytes than it was given or than the limit; every
 * shorter prefix of a complete request says "need more".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static enum metrics_http_status fuzz_whole(const char *p, size_t n,
                                           struct metrics_http_req *r)
{
    memset(r, 0, sizeof(*r));
    return metrics_http_parse(r, p, n);
}

/* Pieces of 1, 2, 3, ... bytes; stops where the parser stops. */
static enum metrics_http_status fuzz_pieces(const char *p, size_t n,
                                            struct metrics_http_req *r)
{
    enum metrics_http_status st = METRICS_HTTP_NEED_MORE;
    size_t have = 0, step = 1;

    memset(r, 0, sizeof(*r));
    while (st == METRICS_HTTP_NEED_MORE && have < n) {
        have = have + step < n ? have + step : n;
        step++;
        st = metrics_http_parse(r, p, have);
    }
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct metrics_http_req r, rp;
    enum metrics_http_status st = fuzz_whole(p, size, &r);

    FUZZ_ASSERT(fuzz_pieces(p, size, &rp) == st);
    if (st != METRICS_HTTP_DONE)
        return 0;
    FUZZ_ASSERT(r.len > 0 && r.len <= size && r.len <= METRICS_HTTP_MAX);
    FUZZ_ASSERT(rp.len == r.len && rp.method == r.method);
    FUZZ_ASSERT(rp.path_off == r.path_off && rp.path_len == r.path_len);
    FUZZ_ASSERT(r.path_off + r.path_len <= r.len && p[r.path_off] == '/');
    for (size_t i = 0; i < r.len; i++)
        FUZZ_ASSERT(fuzz_whole(p, i, &rp) == METRICS_HTTP_NEED_MORE);
    FUZZ_ASSERT(fuzz_whole(p, r.len, &rp) == METRICS_HTTP_DONE);
    return 0;
}
