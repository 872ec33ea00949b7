/*
 * unit_parser.c - parser.c: line framing and limits, verbs, MAIL/RCPT
 * paths and parameters, and the DATA machine checked against a small
 * reference implementation under every way of splitting the input.
 */
#include <stdint.h>
#include <stdlib.h>

#include "parser.h"
#include "unit.h"

#define S(x) x, sizeof(x) - 1   /* string literal with its real length */

/* ---- parser_next_line ------------------------------------------------- */

struct line_case {
    const char *in;
    size_t in_len;
    size_t limit;
    enum line_status want;
    size_t consumed;
    const char *line;     /* expected line for LINE_READY */
    size_t line_len;
};

static const struct line_case line_cases[] = {
    { S("NOOP\r\n"), 512, LINE_READY, 6, S("NOOP") },
    { S("NOOP\n"), 512, LINE_READY, 5, S("NOOP") },
    { S("\r\n"), 512, LINE_READY, 2, S("") },
    { S("\n"), 512, LINE_READY, 1, S("") },
    { S("A\r\r\n"), 512, LINE_READY, 4, S("A\r") },      /* one CR stripped */
    { S("A\rB\r\n"), 512, LINE_READY, 5, S("A\rB") },
    { S("NOOP\r"), 512, LINE_NEED_MORE, 0, S("") },
    { S(""), 512, LINE_NEED_MORE, 0, S("") },
    { S("MA\0L x\r\n"), 512, LINE_READY, 8, S("MA\0L x") },
    { S("HELO a\r\nQUIT\r\n"), 512, LINE_READY, 8, S("HELO a") },
    { S("abcd\r\n"), 6, LINE_READY, 6, S("abcd") },
    { S("abcde\r\n"), 6, LINE_TOO_LONG, 7, S("") },
    { S("abcde\n"), 6, LINE_READY, 6, S("abcde") },
    { S("abcdef"), 6, LINE_NEED_MORE, 6, S("") },         /* starts skipping */
    { S("abcde"), 6, LINE_NEED_MORE, 0, S("") },
    { S("abcdefgh\r\nNOOP\r\n"), 6, LINE_TOO_LONG, 10, S("") },
};

static void test_line_table(void)
{
    for (size_t i = 0; i < sizeof(line_cases) / sizeof(line_cases[0]); i++) {
        const struct line_case *c = &line_cases[i];
        struct line_reader lr = { 0 };
        size_t consumed = 99, len = 99;
        enum line_status st = parser_next_line(&lr, (const uint8_t *)c->in,
                                               c->in_len, c->limit,
                                               &consumed, &len);
        CHECK_EQ_INT(st, c->want);
        CHECK_EQ_INT(consumed, c->consumed);
        if (st == LINE_READY) {
            CHECK_EQ_INT(len, c->line_len);
            CHECK_MEM(c->in, c->line, len);
        }
    }
}

/* 510 characters + CR LF is exactly 512 and fine; 511 + CR LF is not. */
static void test_line_limit_boundary(void)
{
    static uint8_t buf[600];
    struct line_reader lr = { 0 };
    size_t consumed, len;

    memset(buf, 'x', sizeof(buf));
    memcpy(buf + 510, "\r\n", 2);
    CHECK_EQ_INT(parser_next_line(&lr, buf, 512, SMTP_LINE_MAX, &consumed, &len),
                 LINE_READY);
    CHECK_EQ_INT(consumed, 512);
    CHECK_EQ_INT(len, 510);

    memset(buf, 'x', sizeof(buf));
    memcpy(buf + 511, "\r\n", 2);
    CHECK_EQ_INT(parser_next_line(&lr, buf, 513, SMTP_LINE_MAX, &consumed, &len),
                 LINE_TOO_LONG);
    CHECK_EQ_INT(consumed, 513);
    CHECK_EQ_INT(lr.skipping, 0);

    /* The same 511 characters arriving in a full 512-byte buffer. */
    CHECK_EQ_INT(parser_next_line(&lr, buf, 512, SMTP_LINE_MAX, &consumed, &len),
                 LINE_NEED_MORE);
    CHECK_EQ_INT(consumed, 512);
    CHECK_EQ_INT(lr.skipping, 1);
    CHECK_EQ_INT(parser_next_line(&lr, buf + 512, 1, SMTP_LINE_MAX, &consumed,
                                  &len), LINE_TOO_LONG);
    CHECK_EQ_INT(consumed, 1);
    CHECK_EQ_INT(lr.skipping, 0);
}

/* An endless line over many reads costs nothing and the session goes on. */
static void test_line_skipping(void)
{
    uint8_t chunk[100];
    struct line_reader lr = { 0 };
    size_t consumed, len;
    const char *tail = "xx\r\nNOOP\r\n";

    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 1000; i++) {
        enum line_status st = parser_next_line(&lr, chunk, sizeof(chunk), 50,
                                               &consumed, &len);
        CHECK_EQ_INT(st, LINE_NEED_MORE);
        CHECK_EQ_INT(consumed, sizeof(chunk));
    }
    CHECK_EQ_INT(parser_next_line(&lr, (const uint8_t *)tail, strlen(tail), 50,
                                  &consumed, &len), LINE_TOO_LONG);
    CHECK_EQ_INT(consumed, 4);
    CHECK_EQ_INT(parser_next_line(&lr, (const uint8_t *)tail + 4, 6, 50,
                                  &consumed, &len), LINE_READY);
    CHECK_EQ_INT(len, 4);
}

/*
 * Emulates a session: a fixed 512-byte buffer filled with `step` bytes per
 * read, every complete line taken out at once. Returns lines joined by '|'
 * ("!" for a too-long line).
 */
static void line_drive(const char *in, size_t n, size_t step, char *res)
{
    uint8_t buf[SMTP_LINE_MAX];
    size_t have = 0, pos = 0, r = 0;
    struct line_reader lr = { 0 };

    while (pos < n || have > 0) {
        size_t take = n - pos < step ? n - pos : step;
        if (take > sizeof(buf) - have)
            take = sizeof(buf) - have;
        memcpy(buf + have, in + pos, take);
        have += take;
        pos += take;
        for (;;) {
            size_t consumed, len;
            enum line_status st = parser_next_line(&lr, buf, have,
                                                   SMTP_LINE_MAX,
                                                   &consumed, &len);
            if (st == LINE_READY) {
                memcpy(res + r, buf, len);
                r += len;
                res[r++] = '|';
            } else if (st == LINE_TOO_LONG) {
                res[r++] = '!';
                res[r++] = '|';
            }
            memmove(buf, buf + consumed, have - consumed);
            have -= consumed;
            if (st == LINE_NEED_MORE)
                break;
        }
        if (pos == n)
            break;
    }
    res[r] = '\0';
}

static void test_line_pipelined(void)
{
    static char in[2000], res[2000];
    size_t n = 0;
    const char *want = "EHLO a|MAIL FROM:<a@b>|!|RCPT TO:<c@d>|DATA|";

    n += (size_t)sprintf(in + n, "EHLO a\r\nMAIL FROM:<a@b>\n");
    memset(in + n, 'z', 1200);
    n += 1200;
    n += (size_t)sprintf(in + n, "\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    for (size_t step = 1; step <= 600; step += (step < 20 ? 1 : 97)) {
        line_drive(in, n, step, res);
        CHECK(strcmp(res, want) == 0);
    }
}

static void test_is_auth_line(void)
{
    CHECK(parser_is_auth_line((const uint8_t *)"AUTH PLAIN", 10));
    CHECK(parser_is_auth_line((const uint8_t *)"auth ", 5));
    CHECK(!parser_is_auth_line((const uint8_t *)"AUTH", 4));
    CHECK(!parser_is_auth_line((const uint8_t *)"AUT", 3));
    CHECK(!parser_is_auth_line((const uint8_t *)"AUTHX", 5));
    CHECK(!parser_is_auth_line((const uint8_t *)"MAIL FROM", 9));
    CHECK(!parser_is_auth_line((const uint8_t *)"", 0));
}

/* ---- parser_command --------------------------------------------------- */

struct cmd_case {
    const char *line;
    size_t len;
    enum smtp_verb verb;
    const char *arg;
    int has_nul;
};

static const struct cmd_case cmd_cases[] = {
    { S("HELO x"), VERB_HELO, "x", 0 },
    { S("helo x"), VERB_HELO, "x", 0 },
    { S("HeLo   x.test  "), VERB_HELO, "x.test", 0 },
    { S("HELO"), VERB_HELO, "", 0 },
    { S("HELO   "), VERB_HELO, "", 0 },
    { S("HELOX"), VERB_UNKNOWN, "", 0 },
    { S("HELOX y"), VERB_UNKNOWN, "", 0 },
    { S("HEL"), VERB_UNKNOWN, "", 0 },
    { S(""), VERB_UNKNOWN, "", 0 },
    { S(" HELO x"), VERB_UNKNOWN, "", 0 },
    { S("HELO\tx"), VERB_UNKNOWN, "", 0 },
    { S("EHLO client.test"), VERB_EHLO, "client.test", 0 },
    { S("MAIL FROM:<a@b>"), VERB_MAIL, "FROM:<a@b>", 0 },
    { S("rcpt TO:<a@b>"), VERB_RCPT, "TO:<a@b>", 0 },
    { S("DATA"), VERB_DATA, "", 0 },
    { S("RSET"), VERB_RSET, "", 0 },
    { S("NOOP hello there"), VERB_NOOP, "hello there", 0 },
    { S("quit"), VERB_QUIT, "", 0 },
    { S("STARTTLS"), VERB_STARTTLS, "", 0 },
    { S("starttls  now "), VERB_STARTTLS, "now", 0 },
    { S("STARTTLSX"), VERB_UNKNOWN, "", 0 },
    { S("STARTTL"), VERB_UNKNOWN, "", 0 },
    { S("STAR"), VERB_UNKNOWN, "", 0 },
    { S("VRFY user"), VERB_VRFY, "user", 0 },
    { S("HELP"), VERB_HELP, "", 0 },
    { S("EXPN list"), VERB_EXPN, "list", 0 },
    { S("AUTH PLAIN AHRpbQ=="), VERB_AUTH, "PLAIN AHRpbQ==", 0 },
    { S("XYZW foo"), VERB_UNKNOWN, "", 0 },
    { S("NOOP a\0b"), VERB_NOOP, "a\0b", 1 },
    { S("\0OOP"), VERB_UNKNOWN, "", 1 },
};

static void test_command_table(void)
{
    for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
        const struct cmd_case *c = &cmd_cases[i];
        struct smtp_command cmd;
        char line[64];
        size_t want_len = c->has_nul ? c->len - 5 : strlen(c->arg);

        memcpy(line, c->line, c->len);
        line[c->len] = '\0';
        parser_command(line, c->len, &cmd);
        CHECK_EQ_INT(cmd.verb, c->verb);
        CHECK_EQ_INT(cmd.has_nul, c->has_nul);
        if (c->verb != VERB_UNKNOWN) {
            CHECK_EQ_INT(cmd.arg_len, want_len);
            CHECK_MEM(cmd.arg, c->arg, want_len);
        }
    }
}

/* ---- MAIL FROM / RCPT TO ------------------------------------------------ */

/* Accepted paths: what must come out in local and domain. */
struct path_case {
    int rcpt;
    const char *arg, *local, *domain;
};

#define M 0
#define R 1
static const struct path_case path_cases[] = {
    { M, "FROM:<a@b>", "a", "b" },
    { M, "from:<a@b>", "a", "b" },
    { M, "FROM: <a@b>", "a", "b" },
    { M, "FROM:   <a@b>   ", "a", "b" },
    { M, "FROM:<a@b> AUTH=a+20b@x", "a", "b" },
    { M, "FROM:<@evil.test:user@example.test>", "user", "example.test" },
    { M, "FROM:<@a,@b.c:user@example.test>", "user", "example.test" },
    { M, "FROM:<user@[127.0.0.1]>", "user", "[127.0.0.1]" },
    { M, "FROM:<user@[IPv6:::1]>", "user", "[IPv6:::1]" },
    { M, "FROM:<u@[ipv6:2001:db8::1]>", "u", "[ipv6:2001:db8::1]" },
    { M, "FROM:<User@LOCALHOST.>", "User", "LOCALHOST" },
    { M, "FROM:<first.last+tag_x-y@Mail-1.Example.TEST>",
      "first.last+tag_x-y", "Mail-1.Example.TEST" },
    { R, "TO:<a@b>", "a", "b" },
    { R, "to: <A@B.test.>", "A", "B.test" },
    { R, "TO:<a@b>   ", "a", "b" },
    { R, "TO:<postmaster>", "postmaster", "" },
    { R, "TO:<PostMaster>", "PostMaster", "" },
    { R, "TO:<postmaster@x.test>", "postmaster", "x.test" },
    { R, "TO:<@evil.test:user@example.test>", "user", "example.test" },
    { R, "TO:<user@[127.0.0.1]>", "user", "[127.0.0.1]" },
};

/* Refused paths, grouped by the status they must get. */
struct bad_path_group {
    int rcpt;
    enum path_status want;
    const char *args[24];
};

static const struct bad_path_group bad_paths[] = {
    { M, PATH_BAD_PARAM, {
        "FROM:<a@b> SIZE=",
        "FROM:<a@b> SIZE=12a", "FROM:<a@b> SIZE=-1", "FROM:<a@b> SIZE",
        "FROM:<a@b> BODY=BINARYMIME", "FROM:<a@b> BODY=8BIT",
        "FROM:<a@b> FOO=bar", "FROM:<a@b> SIZE=1 RET=FULL",
    } },
    { M, PATH_SYNTAX, {
        "FROM:<a@b>SIZE=1", "FROM:<a@b>x", "FROM:a@b", "FROM:<a@b",
        "FROM <a@b>", "FROM", "FROM:", "", "TO:<a@b>", "FROM:<@a>", "FROM:<@>",
        "FROM:<@a,b:u@x>",
    } },
    { M, PATH_BAD_DOMAIN, {
        "FROM:<postmaster>", "FROM:<user@example.test@evil.test>",
        "FROM:<@bad_dom:u@x>", "FROM:<user@[999.0.0.1]>", "FROM:<user@[::1]>",
        "FROM:<user@[]>", "FROM:<user@[IPv6:]>", "FROM:<user@[127.0.0.1>",
        "FROM:<a@b..>", "FROM:<a@.>", "FROM:<a@.b>", "FROM:<a@b..c>",
        "FROM:<a@>", "FROM:<a@-x.test>", "FROM:<a@x-.test>",
        "FROM:<a@x_y.test>", "FROM:<a@x y>",
    } },
    { M, PATH_BAD_LOCAL, {
        "FROM:<@a:>", "FROM:<user%evil.test@example.test>",
        "FROM:<\"quoted\"@x>", "FROM:<\"a>b\"@x>", "FROM:<../etc@x>",
        "FROM:<a..b@x>", "FROM:<.a@x>", "FROM:<a.@x>", "FROM:<a/b@x>",
        "FROM:<a!b@x>", "FROM:<a\x01" "b@x>", "FROM:<a\xc2\x85@x>",
        "FROM:<a b@x>",
    } },
    { R, PATH_SYNTAX, {
        "TO:<>", "TO:<a@b>x", "FROM:<a@b>",
    } },
    { R, PATH_BAD_DOMAIN, {
        "TO:<postmasterx>", "TO:<user>", "TO:<user@example.test@evil.test>",
    } },
    { R, PATH_BAD_LOCAL, {
        "TO:<../x>", "TO:<user%evil.test@example.test>", "TO:<\"quoted\"@x>",
    } },
    { R, PATH_BAD_PARAM, {
        "TO:<a@b> SIZE=10", "TO:<a@b> NOTIFY=NEVER",
    } },
    /* broken or overlong UTF-8: an overlong '/' and '.', a lone
     * continuation byte, a cut sequence, a surrogate, past U+10FFFF */
    { R, PATH_BAD_UTF8, {
        "TO:<a\xc0\xaf" "b@x>", "TO:<\xc0\xae\xc0\xae@x>", "TO:<a\x80@x>",
        "TO:<a\xc3@x>", "TO:<\xed\xa0\x80@x>", "TO:<\xf4\x90\x80\x80@x>",
        "TO:<\xe0\x80\xaf@x>", "TO:<\xff@x>", "TO:<\xc3\xa9\xc3@x>",
    } },
    { M, PATH_BAD_UTF8, {
        "FROM:<\xc1\x81@x> SMTPUTF8", "FROM:<a\xf8\x88\x80\x80\x80@x>",
    } },
    { R, PATH_BAD_LOCAL, {   /* valid UTF-8, but a C1 control or too long */
        "TO:<a\xc2\x80@x>", "TO:<\xc2\x9f@x>",
        "TO:<\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9" "a@x>",
        "TO:<\xc3\xa9..b@x>",
    } },
};

/* SMTPUTF8: UTF-8 local-parts and domains parse and are marked; ASCII
 * ones are not; the parameters are seen. */
static void test_utf8_paths(void)
{
    struct smtp_path p;
    struct mail_params mp;
    CHECK_EQ_INT(parser_rcpt_to("TO:<j\xc3\xb6rg@localhost>", &p), PATH_OK);
    CHECK(strcmp(p.local, "j\xc3\xb6rg") == 0 && p.utf8);
    CHECK_EQ_INT(parser_rcpt_to("TO:<\xe7\x94\xa8\xe6\x88\xb7@x>", &p), PATH_OK);
    CHECK(p.utf8);
    CHECK_EQ_INT(parser_rcpt_to("TO:<\xf0\x9f\x98\x80.a@x>", &p), PATH_OK);
    CHECK_EQ_INT(parser_rcpt_to("TO:<u@localhost>", &p), PATH_OK);
    CHECK(!p.utf8);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b\xc3\xbcro.test> SMTPUTF8", &p, &mp),
                 PATH_OK);
    CHECK(p.utf8 && mp.smtputf8 && !mp.requiretls);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b> smtputf8 REQUIRETLS", &p, &mp),
                 PATH_OK);
    CHECK(!p.utf8 && mp.smtputf8 && mp.requiretls);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b> SMTPUTF8=1", &p, &mp), PATH_BAD_PARAM);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b\xc3.test>", &p, &mp), PATH_BAD_DOMAIN);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b\xc2\x85.test> SMTPUTF8", &p, &mp),
                 PATH_BAD_DOMAIN);
    CHECK(parser_local_part_ok("\xc3\xa9", 2));
    CHECK(!parser_local_part_ok("\xc3", 1));
}

static void test_path_ok(void)
{
    for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        const struct path_case *c = &path_cases[i];
        struct smtp_path p;
        struct mail_params mp;
        enum path_status st = c->rcpt ? parser_rcpt_to(c->arg, &p)
                                      : parser_mail_from(c->arg, &p, &mp);
        CHECK_EQ_INT(st, PATH_OK);
        CHECK(strcmp(p.local, c->local) == 0);
        CHECK(strcmp(p.domain, c->domain) == 0);
        CHECK_EQ_INT(p.null_path, 0);
    }
}

static void test_path_refused(void)
{
    for (size_t g = 0; g < sizeof(bad_paths) / sizeof(bad_paths[0]); g++) {
        const struct bad_path_group *b = &bad_paths[g];
        for (const char *const *a = b->args; *a; a++) {
            struct smtp_path p;
            struct mail_params mp;
            enum path_status st = b->rcpt ? parser_rcpt_to(*a, &p)
                                          : parser_mail_from(*a, &p, &mp);
            if (st != b->want)
                fprintf(stderr, "\"%s\": got %d want %d\n", *a, st, b->want);
            CHECK_EQ_INT(st, b->want);
        }
    }
}

/* SIZE (RFC 1870), BODY (RFC 6152) and the null path. */
static void test_mail_params(void)
{
    struct smtp_path p;
    struct mail_params mp;

    CHECK_EQ_INT(parser_mail_from("FROM:<>", &p, &mp), PATH_OK);
    CHECK(p.null_path && !p.local[0] && !p.domain[0] && !mp.has_size);
    CHECK_EQ_INT(parser_mail_from("FROM:<> SIZE=100", &p, &mp), PATH_OK);
    CHECK(p.null_path && mp.has_size && mp.size == 100 && !mp.body_8bit);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b> SIZE=12345 BODY=8BITMIME", &p,
                                  &mp), PATH_OK);
    CHECK(!p.null_path && mp.size == 12345 && mp.body_8bit);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b> size=0 body=7bit", &p, &mp),
                 PATH_OK);
    CHECK(mp.has_size && mp.size == 0 && !mp.body_8bit);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b>  body=8bitmime   AUTH=<>  ", &p,
                                  &mp), PATH_OK);
    CHECK(!mp.has_size && mp.body_8bit);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b> SIZE=18446744073709551615", &p,
                                  &mp), PATH_OK);
    CHECK(mp.size == UINT64_MAX);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b> SIZE=00000000000000000001", &p,
                                  &mp), PATH_OK);
    CHECK(mp.size == 1);
    /* too large for 64 bits: saturates, so it is "too big", not malformed */
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b> SIZE=99999999999999999999", &p,
                                  &mp), PATH_OK);
    CHECK(mp.has_size && mp.size == UINT64_MAX);
    CHECK_EQ_INT(parser_mail_from("FROM:<a@b> SIZE=000000000000000000001", &p,
                                  &mp), PATH_OK);
    CHECK(mp.size == 1);
}

/* 64-character local-parts pass, 65 do not; 63-octet labels and 255-octet
 * domains pass, one more does not. */
static void test_path_lengths(void)
{
    char arg[600], local[70], dom[300];
    struct smtp_path p;
    struct mail_params mp;

    memset(local, 'l', 65);
    local[64] = '\0';
    snprintf(arg, sizeof(arg), "FROM:<%s@x.test>", local);
    CHECK_EQ_INT(parser_mail_from(arg, &p, &mp), PATH_OK);
    CHECK_EQ_INT(strlen(p.local), 64);
    local[64] = 'l';
    local[65] = '\0';
    snprintf(arg, sizeof(arg), "TO:<%s@x.test>", local);
    CHECK_EQ_INT(parser_rcpt_to(arg, &p), PATH_BAD_LOCAL);

    memset(dom, 'd', sizeof(dom));
    dom[63] = dom[127] = dom[191] = '.';
    dom[255] = '\0';                       /* 64+64+64+63 = 255 octets */
    snprintf(arg, sizeof(arg), "TO:<u@%s>", dom);
    CHECK_EQ_INT(parser_rcpt_to(arg, &p), PATH_OK);
    CHECK_EQ_INT(strlen(p.domain), 255);
    snprintf(arg, sizeof(arg), "TO:<u@%s.>", dom);   /* trailing dot */
    CHECK_EQ_INT(parser_rcpt_to(arg, &p), PATH_OK);
    for (int i = 0; i < 127; i++)
        memcpy(dom + 2 * i, "a.", 2);
    strcpy(dom + 254, "b");                 /* 255 octets, short labels */
    snprintf(arg, sizeof(arg), "TO:<u@%s>", dom);
    CHECK_EQ_INT(parser_rcpt_to(arg, &p), PATH_OK);
    strcpy(dom + 254, "bc");                /* 256 octets */
    snprintf(arg, sizeof(arg), "TO:<u@%s>", dom);
    CHECK_EQ_INT(parser_rcpt_to(arg, &p), PATH_BAD_DOMAIN);
    memset(dom, 'd', 64);
    strcpy(dom + 64, ".test");              /* a 64-octet label */
    snprintf(arg, sizeof(arg), "TO:<u@%s>", dom);
    CHECK_EQ_INT(parser_rcpt_to(arg, &p), PATH_BAD_DOMAIN);
}

static void test_local_part(void)
{
    CHECK(parser_local_part_ok("a", 1));
    CHECK(parser_local_part_ok("a.b-c_d+e", 9));
    CHECK(!parser_local_part_ok("", 0));
    CHECK(!parser_local_part_ok("a\0b", 3));
    CHECK(!parser_local_part_ok("a\nb", 3));
    CHECK(!parser_local_part_ok("..", 2));
    CHECK(!parser_local_part_ok(".", 1));
    CHECK(!parser_local_part_ok("a/b", 3));
    CHECK(!parser_local_part_ok("a\x7f", 2));
    CHECK(parser_local_part_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                               64));
    CHECK(!parser_local_part_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                65));
}

/* ---- DATA ------------------------------------------------------------- */

/*
 * Reference, written the slow obvious way over the whole input: split at
 * CR LF only; a line "." CR LF ends; a leading dot is dropped; an input
 * ending in "." CR holds the CR back. Returns bytes consumed.
 */
static size_t ref_data(const uint8_t *in, size_t n, uint8_t *out,
                       size_t *out_len, int *done)
{
    size_t i = 0, o = 0;

    *done = 0;
    while (i < n) {
        size_t e = i, start = in[i] == '.' ? i + 1 : i;
        while (e + 1 < n && !(in[e] == '\r' && in[e + 1] == '\n'))
            e++;
        int has_crlf = e + 1 < n;
        if (in[i] == '.' && has_crlf && e == i + 1) {
            *done = 1;
            i = e + 2;
            break;
        }
        size_t end = has_crlf ? e + 2 : n;
        if (!has_crlf && in[i] == '.' && n - i == 2 && in[i + 1] == '\r')
            end = start;                /* ".\r": the CR is held back */
        memcpy(out + o, in + start, end - start);
        o += end - start;
        i = has_crlf ? e + 2 : n;
    }
    *out_len = o;
    return i;
}

struct feed_result {
    uint8_t out[512];
    size_t out_len, consumed;
    int done;
};

/* Feeds in[0..n) in pieces ending at the offsets in cuts[]. */
static void feed_pieces(const uint8_t *in, size_t n, const size_t *cuts,
                        size_t ncuts, struct feed_result *r)
{
    struct data_parser dp;
    size_t from = 0;

    data_parser_init(&dp);
    r->out_len = r->consumed = 0;
    r->done = 0;
    for (size_t k = 0; k <= ncuts && !r->done; k++) {
        size_t to = k < ncuts ? cuts[k] : n, olen = 0;
        uint8_t out[sizeof(r->out) + 2];
        size_t used = data_parser_feed(&dp, in + from, to - from, out, &olen,
                                       &r->done);
        CHECK(olen <= to - from + 2);
        CHECK(r->done || used == to - from);
        memcpy(r->out + r->out_len, out, olen);
        r->out_len += olen;
        r->consumed += used;
        from = to;
    }
}

static int same_result(const struct feed_result *a, const struct feed_result *b)
{
    return a->out_len == b->out_len && a->consumed == b->consumed &&
           a->done == b->done && memcmp(a->out, b->out, a->out_len) == 0;
}

/* Whole, one byte per call, and split at every position: all agree with
 * the reference. Returns 1 if everything matched. */
static int data_all_ways(const uint8_t *in, size_t n, struct feed_result *ref)
{
    struct feed_result r;
    size_t cuts[256];
    int ok = 1;

    ref->consumed = ref_data(in, n, ref->out, &ref->out_len, &ref->done);
    feed_pieces(in, n, NULL, 0, &r);
    ok &= same_result(&r, ref);
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    feed_pieces(in, n, cuts, n, &r);
    ok &= same_result(&r, ref);
    for (size_t i = 0; i <= n; i++) {
        feed_pieces(in, n, &i, 1, &r);
        ok &= same_result(&r, ref);
    }
    return ok;
}

struct data_case {
    const char *in;
    size_t in_len;
    const char *out;
    size_t out_len;
    size_t consumed;
    int done;
};

static const struct data_case data_cases[] = {
    { S(".\r\n"), S(""), 3, 1 },                          /* empty message */
    { S(".\r\nQUIT\r\n"), S(""), 3, 1 },
    { S("\r\n.\r\n"), S("\r\n"), 5, 1 },
    { S("abc\r\n.\r\nQUIT\r\n"), S("abc\r\n"), 8, 1 },
    { S("abc\r\n.\r\n"), S("abc\r\n"), 8, 1 },  /* no blank line before "." */
    { S("abc.\r\n"), S("abc.\r\n"), 6, 0 },
    { S("a\n.\nb\r\n.\r\n"), S("a\n.\nb\r\n"), 10, 1 },    /* smuggling */
    { S("a\r.\rb\r\n.\r\n"), S("a\r.\rb\r\n"), 10, 1 },
    { S("a\n.\r\nb\r\n.\r\n"), S("a\n.\r\nb\r\n"), 11, 1 },
    { S("a\r\n.\nb\r\n.\r\n"), S("a\r\n\nb\r\n"), 11, 1 },
    { S("\n.\n"), S("\n.\n"), 3, 0 },
    { S("\r.\r"), S("\r.\r"), 3, 0 },
    { S("\n.\r\n"), S("\n.\r\n"), 4, 0 },
    { S("\r\n.\n"), S("\r\n\n"), 4, 0 },
    { S("..x\r\n.\r\n"), S(".x\r\n"), 8, 1 },
    { S(".x\r\n.\r\n"), S("x\r\n"), 7, 1 },
    { S("a\r\n..\r\n.\r\n"), S("a\r\n.\r\n"), 10, 1 },
    { S(".\r\r\n.\r\n"), S("\r\r\n"), 7, 1 },
    { S(".\rx\r\n.\r\n"), S("\rx\r\n"), 8, 1 },
    { S("\r\n.\r"), S("\r\n"), 4, 0 },                 /* CR held back */
    { S("\x00\xff\x80\r\n\x00.\r\n.\r\n"), S("\x00\xff\x80\r\n\x00.\r\n"), 12, 1 },
    { S("a\r\r\n.\r\n"), S("a\r\r\n"), 7, 1 },
};

static void test_data_table(void)
{
    for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
        const struct data_case *c = &data_cases[i];
        struct feed_result ref;

        CHECK(data_all_ways((const uint8_t *)c->in, c->in_len, &ref));
        CHECK_EQ_INT(ref.out_len, c->out_len);
        CHECK_MEM(ref.out, c->out, c->out_len);
        CHECK_EQ_INT(ref.consumed, c->consumed);
        CHECK_EQ_INT(ref.done, c->done);
    }
}

/* Every string of up to 7 bytes over { CR, LF, '.', 'x' }. */
static void test_data_exhaustive(void)
{
    static const uint8_t alpha[4] = { '\r', '\n', '.', 'x' };
    uint8_t in[8];
    struct feed_result ref;
    int bad = 0;

    for (size_t n = 0; n <= 7; n++) {
        size_t total = (size_t)1 << (2 * n);
        for (size_t code = 0; code < total; code++) {
            for (size_t k = 0; k < n; k++)
                in[k] = alpha[(code >> (2 * k)) & 3];
            bad += !data_all_ways(in, n, &ref);
        }
    }
    CHECK_EQ_INT(bad, 0);
}

/* Longer random inputs that include NUL and 8-bit bytes. */
static void test_data_random(void)
{
    static const uint8_t alpha[6] = { '\r', '\n', '.', 'x', 0, 0xff };
    uint8_t in[64];
    struct feed_result ref;
    uint32_t seed = 12345;
    int bad = 0;

    for (int t = 0; t < 3000; t++) {
        size_t n = (size_t)t % sizeof(in);
        for (size_t k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            in[k] = alpha[(seed >> 16) % 6];
        }
        bad += !data_all_ways(in, n, &ref);
    }
    CHECK_EQ_INT(bad, 0);
}

/* After the end, the machine stays done and takes nothing more. */
static void test_data_after_done(void)
{
    struct data_parser dp;
    uint8_t out[16];
    size_t olen;
    int done;

    data_parser_init(&dp);
    CHECK_EQ_INT(data_parser_feed(&dp, (const uint8_t *)".\r\nAB", 5, out,
                                  &olen, &done), 3);
    CHECK_EQ_INT(done, 1);
    CHECK_EQ_INT(data_parser_feed(&dp, (const uint8_t *)"AB", 2, out, &olen,
                                  &done), 0);
    CHECK_EQ_INT(done, 1);
    CHECK_EQ_INT(olen, 0);
    data_parser_init(&dp);
    CHECK_EQ_INT(data_parser_feed(&dp, (const uint8_t *)"AB", 2, out, &olen,
                                  &done), 2);
    CHECK_EQ_INT(done, 0);
}

UNIT_MAIN("parser",
          { "line_table", test_line_table },
          { "line_limit_boundary", test_line_limit_boundary },
          { "line_skipping", test_line_skipping },
          { "line_pipelined", test_line_pipelined },
          { "is_auth_line", test_is_auth_line },
          { "command_table", test_command_table },
          { "path_ok", test_path_ok },
          { "path_refused", test_path_refused },
          { "utf8_paths", test_utf8_paths },
          { "mail_params", test_mail_params },
          { "path_lengths", test_path_lengths },
          { "local_part", test_local_part },
          { "data_table", test_data_table },
          { "data_exhaustive", test_data_exhaustive },
          { "data_random", test_data_random },
          { "data_after_done", test_data_after_done })
