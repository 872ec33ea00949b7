/*
 * unit_smtp_reply.c - reply_format(): every row, with the longest -d and
 * arguments far longer than a line, is one line of at most 512 bytes that
 * starts with its code and ends in its only CRLF; small buffers too.
 */
#include <stdio.h>
#include <string.h>

#include "smtp_reply.h"
#include "unit.h"

static char domain[256];        /* 255 bytes, the longest -d allowed */
static char longarg[2000];

static void setup(void)
{
    memset(domain, 'd', 255);
    for (size_t i = 63; i < 255; i += 64)
        domain[i] = '.';
    domain[255] = '\0';
    memset(longarg, 'x', sizeof(longarg) - 1);
    longarg[sizeof(longarg) - 1] = '\0';
}

/* One line: "NNN" code, then ' ' or '-', CRLF at the end and nowhere else. */
static void check_line(const char *buf, size_t n, size_t cap, enum reply_id id,
                       char sep)
{
    char code[8];
    snprintf(code, sizeof(code), "%03d%c", replies[id].code, sep);
    CHECK(n >= 6);
    CHECK(n <= REPLY_LINE_MAX);
    CHECK(n <= cap);
    CHECK(memcmp(buf, code, 4) == 0);
    CHECK(buf[n - 2] == '\r' && buf[n - 1] == '\n');
    for (size_t i = 0; i + 2 < n; i++)
        CHECK(buf[i] != '\r' && buf[i] != '\n' && buf[i] != '\0');
    if (replies[id].esc && n >= 4 + strlen(replies[id].esc) + 2)   /* not cut */
        CHECK(memcmp(buf + 4, replies[id].esc, strlen(replies[id].esc)) == 0);
}

static void test_every_row_with_long_domain_and_arguments(void)
{
    setup();
    for (int id = 0; id < R_COUNT; id++) {
        char buf[4096];
        memset(buf, 'Z', sizeof(buf));
        size_t n = reply_format(buf, sizeof(buf), (enum reply_id)id, 0, domain,
                                longarg, longarg, longarg);
        check_line(buf, n, sizeof(buf), (enum reply_id)id, ' ');
        CHECK(buf[n] == 'Z');           /* nothing written past the line */
        n = reply_format(buf, sizeof(buf), (enum reply_id)id, REPLY_MORE,
                         domain, longarg, longarg, longarg);
        check_line(buf, n, sizeof(buf), (enum reply_id)id, '-');
    }
}

static void test_421_names_the_whole_long_domain(void)
{
    setup();
    char buf[REPLY_LINE_MAX];
    size_t n = reply_format(buf, sizeof(buf), R_TOO_MANY_CLIENTS, 0, domain);
    const char *want = " Too many connections, try later\r\n";
    CHECK_EQ_INT(n, 10 + 255 + strlen(want));
    CHECK(memcmp(buf, "421 4.3.2 ", 10) == 0);
    CHECK(memcmp(buf + 10, domain, 255) == 0);
    CHECK(memcmp(buf + 265, want, strlen(want)) == 0);
}

static void test_small_buffers_are_never_overrun(void)
{
    setup();
    for (size_t cap = 0; cap < 80; cap++) {
        char buf[96];
        memset(buf, 'Z', sizeof(buf));
        size_t n = reply_format(buf, cap, R_IDLE_TIMEOUT, 0, domain);
        if (cap < 6) {
            CHECK_EQ_INT(n, 0);
        } else {
            check_line(buf, n, cap, R_IDLE_TIMEOUT, ' ');
            CHECK_EQ_INT(n, cap);
        }
        for (size_t i = n; i < sizeof(buf); i++)
            CHECK(buf[i] == 'Z');
    }
}

static void test_short_lines_are_exact(void)
{
    char buf[REPLY_LINE_MAX];
    size_t n = reply_format(buf, sizeof(buf), R_QUEUED, 0, "example.org", "ABC123");
    CHECK_EQ_INT(n, strlen("250 2.0.0 Ok: queued as ABC123\r\n"));
    CHECK(memcmp(buf, "250 2.0.0 Ok: queued as ABC123\r\n", n) == 0);
    n = reply_format(buf, sizeof(buf), R_GREETING, 0, "example.org", "example.org");
    CHECK(memcmp(buf, "220 example.org ESMTP\r\n", n) == 0);
    n = reply_format(buf, sizeof(buf), R_VRFY_DISABLED, 0, "example.org");
    CHECK(memcmp(buf, "502 5.5.1 VRFY command is disabled\r\n", n) == 0);
    n = reply_format(buf, sizeof(buf), R_EHLO_KEYWORD, REPLY_MORE, "x", "PIPELINING");
    CHECK(memcmp(buf, "250-PIPELINING\r\n", n) == 0);
}

static void test_line_breaks_in_arguments_become_spaces(void)
{
    char buf[REPLY_LINE_MAX];
    size_t n = reply_format(buf, sizeof(buf), R_AUTH_CHALLENGE, 0, "x",
                            "a\r\n250 forged");
    CHECK_EQ_INT(n, strlen("334 a  250 forged\r\n"));
    CHECK(memcmp(buf, "334 a  250 forged\r\n", n) == 0);
}

UNIT_MAIN("reply",
          { "every_row_with_long_domain_and_arguments",
            test_every_row_with_long_domain_and_arguments },
          { "421_names_the_whole_long_domain", test_421_names_the_whole_long_domain },
          { "small_buffers_are_never_overrun", test_small_buffers_are_never_overrun },
          { "short_lines_are_exact", test_short_lines_are_exact },
          { "line_breaks_in_arguments_become_spaces",
            test_line_breaks_in_arguments_become_spaces })
