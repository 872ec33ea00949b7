/*
 * fuzz_bdat.c - libFuzzer harness for smtp_bdat.c with parser.c's line
 * framing, as the session uses them: the input is a stream of command
 * lines and BDAT chunks. It is read whole, then cut in two at every byte
 * (the header split anywhere, the chunk's bytes too): every way must see
 * the same lines, chunks and sizes. A size that parses is at most
 * 2^63-1 and prints back to the same number; a chunk never takes more
 * bytes than it announced.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"
#include "smtp_bdat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

#define FUZZ_BUF 1024    /* the session's small input buffer */

struct stream {
    struct line_reader lr;
    uint8_t buf[FUZZ_BUF + 1];
    size_t have;                /* buffered bytes not yet handled */
    uint64_t left;              /* of the chunk being read */
    uint64_t digest;            /* what was seen, in order */
    int closed;                 /* a size that did not parse */
};

static void fuzz_mix(struct stream *st, uint64_t v)
{
    st->digest = (st->digest ^ v) * 1099511628211ULL;
}

static void fuzz_check_header(const char *arg, size_t len, struct stream *st)
{
    struct bdat_header h;
    enum bdat_status s = bdat_parse(arg, len, &h);
    fuzz_mix(st, (uint64_t)s + 1);
    if (s == BDAT_BAD) {
        st->closed = 1;
        return;
    }
    FUZZ_ASSERT(h.size <= BDAT_SIZE_MAX);
    FUZZ_ASSERT(s != BDAT_EMPTY_CHUNK || (h.size == 0 && !h.last));
    char again[32];
    snprintf(again, sizeof(again), "%" PRIu64 "%s", h.size, h.last ? " LAST" : "");
    struct bdat_header h2;
    FUZZ_ASSERT(bdat_parse(again, strlen(again), &h2) == s);
    FUZZ_ASSERT(h2.size == h.size && h2.last == h.last);
    fuzz_mix(st, h.size);
    if (s == BDAT_OK)
        st->left = h.size;
}

/* One command line is whole in line[0..len). */
static void fuzz_line(struct stream *st, uint8_t *line, size_t len)
{
    struct smtp_command cmd;
    line[len] = '\0';
    parser_command((const char *)line, len, &cmd);
    fuzz_mix(st, (uint64_t)cmd.verb + 100);
    fuzz_mix(st, len);
    if (cmd.verb == VERB_BDAT)
        fuzz_check_header(cmd.arg, cmd.arg_len, st);
}

/* Handles what is buffered, as the session does; false when it needs
 * more bytes. */
static int fuzz_step(struct stream *st)
{
    if (st->have == 0 || st->closed)
        return 0;
    size_t used;
    if (st->left > 0) {
        uint64_t before = st->left;
        used = bdat_take(&st->left, st->have);
        FUZZ_ASSERT(used > 0 && used <= st->have && before - st->left == used);
        if (st->left == 0)
            fuzz_mix(st, 0xC0DE);   /* per chunk, however it was cut */
    } else {
        size_t len = 0;
        enum line_status ls = parser_next_line(&st->lr, st->buf, st->have,
                                               SMTP_LINE_MAX, &used, &len);
        FUZZ_ASSERT(used <= st->have);
        if (ls == LINE_READY)
            fuzz_line(st, st->buf, len);
        else if (ls == LINE_TOO_LONG)
            fuzz_mix(st, 0x7007);
        else if (used == 0)
            return 0;
    }
    memmove(st->buf, st->buf + used, st->have - used);
    st->have -= used;
    return 1;
}

static void fuzz_feed(struct stream *st, const uint8_t *p, size_t n)
{
    for (;;) {
        size_t take = FUZZ_BUF - st->have < n ? FUZZ_BUF - st->have : n;
        memcpy(st->buf + st->have, p, take);
        st->have += take;
        p += take;
        n -= take;
        while (fuzz_step(st))
            ;
        if (n == 0 || st->closed)
            return;
        FUZZ_ASSERT(st->have < FUZZ_BUF);   /* the reader always moves on */
    }
}

static uint64_t fuzz_run(const uint8_t *data, size_t size, size_t cut)
{
    struct stream st;
    memset(&st, 0, sizeof(st));
    st.digest = 14695981039346656037ULL;
    fuzz_feed(&st, data, cut);
    fuzz_feed(&st, data + cut, size - cut);
    fuzz_mix(&st, st.left);
    fuzz_mix(&st, (uint64_t)st.closed);
    return st.digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t whole = fuzz_run(data, size, size);
    size_t step = size > 2048 ? size / 512 : 1;
    for (size_t cut = 0; cut < size; cut += step)
        FUZZ_ASSERT(fuzz_run(data, size, cut) == whole);
    return 0;
}
