/*
 * fuzz_proxy.c - libFuzzer harness for smtp_proxy.c. The whole input is parsed
 * as a PROXY header, then every shorter prefix of it: a prefix of a
 * complete header must say "need more", a header never claims more bytes
 * than it was given or than the limits allow, and a refusal always has a
 * reason. The first line is also tried as a --proxy-from entry.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static void fuzz_header(const uint8_t *data, size_t size)
{
    struct proxy_header h, hp;
    enum proxy_status st = proxy_parse(data, size, &h);

    if (st == PROXY_ERROR)
        FUZZ_ASSERT(h.reason != NULL);
    if (st != PROXY_DONE)
        return;
    FUZZ_ASSERT(h.len > 0 && h.len <= size);
    FUZZ_ASSERT(h.version == 1 || h.version == 2);
    FUZZ_ASSERT(h.len <= (h.version == 1 ? PROXY_V1_MAX : PROXY_HEADER_MAX));
    for (size_t i = 0; i < h.len; i++)
        FUZZ_ASSERT(proxy_parse(data, i, &hp) == PROXY_NEED_MORE);
    /* the same header with nothing after it */
    FUZZ_ASSERT(proxy_parse(data, h.len, &hp) == PROXY_DONE);
    FUZZ_ASSERT(hp.len == h.len && hp.has_addr == h.has_addr);
}

static void fuzz_net(const uint8_t *data, size_t size)
{
    char line[128];
    size_t n = 0;
    struct proxy_net net;

    while (n < size && n < sizeof(line) - 1 && data[n] != '\n' && data[n] != '\0') {
        line[n] = (char)data[n];
        n++;
    }
    line[n] = '\0';
    if (proxy_net_parse(line, &net) == 0)
        FUZZ_ASSERT(net.prefix <= (net.family == AF_INET ? 32u : 128u));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_header(data, size);
    fuzz_net(data, size);
    return 0;
}
