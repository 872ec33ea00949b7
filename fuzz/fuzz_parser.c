/*
 * fuzz_parser.c - libFuzzer harness for parser.c and auth_sasl.c. Frames the
 * input into lines the way a session does (read sizes taken from the
 * first byte), parses every line as a command, path and SASL response,
 * and checks the DATA machine gives the same result however it is fed.
 * Any broken invariant traps; see fuzz/README.md.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth_sasl.h"
#include "parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static void fuzz_path_result(enum path_status st, const struct smtp_path *p)
{
    size_t ll = strnlen(p->local, sizeof(p->local));

    FUZZ_ASSERT(ll < sizeof(p->local));
    FUZZ_ASSERT(strnlen(p->domain, sizeof(p->domain)) < sizeof(p->domain));
    if (st == PATH_OK && !p->null_path)
        FUZZ_ASSERT(parser_local_part_ok(p->local, ll));
}

/* A successful decode must be canonical: encoding it gives the input. */
static void fuzz_sasl(const char *line, size_t len)
{
    static uint8_t dec[SMTP_AUTH_LINE_MAX];
    static char enc[SMTP_AUTH_LINE_MAX + 8], user[256], pass[256];
    size_t dlen;

    if (auth_base64_decode(line, len, dec, sizeof(dec), &dlen) < 0)
        return;
    FUZZ_ASSERT(dlen <= len);
    if (!(len == 1 && line[0] == '=')) {
        size_t elen = auth_base64_encode(dec, dlen, enc, sizeof(enc));
        FUZZ_ASSERT(elen == len && memcmp(enc, line, len) == 0);
    }
    if (auth_plain_split(dec, dlen, user, sizeof(user), pass,
                         sizeof(pass)) == 0)
        FUZZ_ASSERT(strlen(user) > 0 && strlen(pass) > 0);
}

static void fuzz_line(const uint8_t *p, size_t len)
{
    static char line[SMTP_AUTH_LINE_MAX + 1];
    struct smtp_command cmd;
    struct smtp_path path;
    struct mail_params params;

    memcpy(line, p, len);
    line[len] = '\0';
    parser_command(line, len, &cmd);
    FUZZ_ASSERT(cmd.arg_len <= len);
    FUZZ_ASSERT(cmd.has_nul == (memchr(line, 0, len) != NULL));
    fuzz_path_result(parser_mail_from(cmd.arg, &path, &params), &path);
    fuzz_path_result(parser_rcpt_to(cmd.arg, &path), &path);
    /* Lines are also tried with no verb, as a pipelined client's SASL
     * response or a bare argument would arrive. */
    fuzz_path_result(parser_rcpt_to(line, &path), &path);
    fuzz_sasl(line, len);
}

/* Takes every complete line out of buf[0..*have); returns nothing. */
static void fuzz_drain(struct line_reader *lr, uint8_t *buf, size_t *have)
{
    for (;;) {
        size_t limit = parser_is_auth_line(buf, *have) ? SMTP_AUTH_LINE_MAX
                                                        : SMTP_LINE_MAX;
        size_t consumed, len;
        enum line_status st = parser_next_line(lr, buf, *have, limit,
                                               &consumed, &len);
        FUZZ_ASSERT(consumed <= *have);
        if (st == LINE_READY) {
            FUZZ_ASSERT(len < consumed && len + 1 <= limit);
            FUZZ_ASSERT(memchr(buf, '\n', len) == NULL);
            fuzz_line(buf, len);
        }
        memmove(buf, buf + consumed, *have - consumed);
        *have -= consumed;
        if (st == LINE_NEED_MORE)
            return;
    }
}

/* A session-like loop: a fixed buffer, filled `step` bytes per "read". */
static void fuzz_lines(const uint8_t *in, size_t n, size_t step)
{
    static uint8_t buf[SMTP_AUTH_LINE_MAX];
    struct line_reader lr = { 0 };
    size_t have = 0, pos = 0;

    while (pos < n) {
        size_t take = n - pos < step ? n - pos : step;
        if (take > sizeof(buf) - have)
            take = sizeof(buf) - have;
        memcpy(buf + have, in + pos, take);
        have += take;
        pos += take;
        fuzz_drain(&lr, buf, &have);
        FUZZ_ASSERT(have < sizeof(buf));
    }
}

/* Feeds in[0..n) in pieces of `step` bytes; output goes to out. */
static size_t fuzz_data(const uint8_t *in, size_t n, size_t step,
                        uint8_t *out, size_t *out_len, int *done)
{
    struct data_parser dp;
    size_t pos = 0, o = 0;

    data_parser_init(&dp);
    *done = 0;
    while (pos < n && !*done) {
        size_t take = n - pos < step ? n - pos : step, olen;
        size_t used = data_parser_feed(&dp, in + pos, take, out + o, &olen,
                                       done);
        FUZZ_ASSERT(used <= take && olen <= take + 2);
        FUZZ_ASSERT(*done || used == take);
        o += olen;
        pos += used;
    }
    *out_len = o;
    return pos;
}

static void fuzz_data_compare(const uint8_t *in, size_t n, size_t step)
{
    uint8_t *a = malloc(n + 2), *b = malloc(n + 2);
    size_t alen, blen, ca, cb;
    int da, db;

    if (!a || !b)
        goto out_free;
    ca = fuzz_data(in, n, n ? n : 1, a, &alen, &da);
    cb = fuzz_data(in, n, 1, b, &blen, &db);
    FUZZ_ASSERT(ca == cb && da == db && alen == blen);
    FUZZ_ASSERT(memcmp(a, b, alen) == 0);
    cb = fuzz_data(in, n, step, b, &blen, &db);
    FUZZ_ASSERT(ca == cb && da == db && alen == blen);
    FUZZ_ASSERT(memcmp(a, b, alen) == 0);
out_free:
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t step;

    if (size < 1)
        return 0;
    /* Read sizes 1..64, or 600 to cross the 512 limit in one read. */
    step = data[0] == 0xff ? 600 : (size_t)(data[0] & 0x3f) + 1;
    fuzz_lines(data + 1, size - 1, step);
    fuzz_data_compare(data + 1, size - 1, step);
    return 0;
}
