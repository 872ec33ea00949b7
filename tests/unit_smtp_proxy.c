/*
 * unit_smtp_proxy.c - smtp_proxy.c: PROXY headers of both versions fed whole, with
 * bytes after them, and cut at every length (each cut must say "need
 * more"); malformed, oversized and foreign headers; --proxy-from entries
 * and matching, IPv4-mapped peers included.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "smtp_proxy.h"
#include "unit.h"

#define S(x) (const uint8_t *)x, sizeof(x) - 1

#define V2_SIG "\r\n\r\n\0\r\nQUIT\n"

/* Every prefix of a valid header needs more; the whole header, alone or
 * followed by SMTP bytes, is DONE with its exact length. */
static void check_prefixes(const uint8_t *p, size_t n, struct proxy_header *h)
{
    uint8_t buf[PROXY_HEADER_MAX + 16];
    for (size_t i = 0; i < n; i++) {
        enum proxy_status st = proxy_parse(p, i, h);
        if (st != PROXY_NEED_MORE)
            fprintf(stderr, "prefix of %zu bytes: status %d\n", i, (int)st);
        CHECK_EQ_INT(st, PROXY_NEED_MORE);
    }
    memcpy(buf, p, n);
    memcpy(buf + n, "EHLO x\r\n", 8);
    CHECK_EQ_INT(proxy_parse(buf, n + 8, h), PROXY_DONE);
    CHECK_EQ_INT(h->len, n);
    CHECK_EQ_INT(proxy_parse(p, n, h), PROXY_DONE);
    CHECK_EQ_INT(h->len, n);
}

static void check_src4(const struct proxy_header *h, const char *ip, uint16_t port)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)&h->src;
    char got[INET_ADDRSTRLEN] = "";
    CHECK(h->has_addr);
    CHECK_EQ_INT(a->sin_family, AF_INET);
    inet_ntop(AF_INET, &a->sin_addr, got, sizeof(got));
    CHECK(strcmp(got, ip) == 0);
    CHECK_EQ_INT(ntohs(a->sin_port), port);
}

static void check_src6(const struct proxy_header *h, const char *ip, uint16_t port)
{
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&h->src;
    char got[INET6_ADDRSTRLEN] = "";
    CHECK(h->has_addr);
    CHECK_EQ_INT(a->sin6_family, AF_INET6);
    inet_ntop(AF_INET6, &a->sin6_addr, got, sizeof(got));
    CHECK(strcmp(got, ip) == 0);
    CHECK_EQ_INT(ntohs(a->sin6_port), port);
}

static void test_v1_valid(void)
{
    struct proxy_header h;
    check_prefixes(S("PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\r\n"), &h);
    CHECK_EQ_INT(h.version, 1);
    check_src4(&h, "127.0.0.2", 40000);
    check_prefixes(S("PROXY TCP6 2001:db8::7 ::1 65535 0\r\n"), &h);
    check_src6(&h, "2001:db8::7", 65535);
    check_prefixes(S("PROXY UNKNOWN\r\n"), &h);
    CHECK(!h.has_addr);
    check_prefixes(S("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"), &h);
    CHECK(!h.has_addr);
}

static void test_v1_longest(void)
{
    /* the longest TCP6 line, and the longest line of all (107 bytes) */
    static const char tcp6[] =
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    static const char unknown[] =
        "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    struct proxy_header h;
    check_prefixes(S(tcp6), &h);
    check_src6(&h, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    CHECK_EQ_INT(sizeof(unknown) - 1, PROXY_V1_MAX);
    check_prefixes(S(unknown), &h);
    CHECK(!h.has_addr);
}

static const char *const v1_bad[] = {
    "PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\n",        /* no CR */
    "PROXY TCP4 127.0.0.2 127.0.0.1 40000\r\n",         /* 4 fields */
    "PROXY TCP4 127.0.0.2 127.0.0.1 40000 25 1\r\n",    /* 6 fields */
    "PROXY TCP4  127.0.0.2 127.0.0.1 40000 25\r\n",     /* two spaces */
    "PROXY TCP4 127.0.0.2 127.0.0.1 40000 25 \r\n",     /* trailing space */
    "PROXY TCP4 127.0.0.256 127.0.0.1 40000 25\r\n",
    "PROXY TCP4 ::1 127.0.0.1 40000 25\r\n",            /* v6 in TCP4 */
    "PROXY TCP6 127.0.0.2 ::1 40000 25\r\n",            /* v4 in TCP6 */
    "PROXY TCP4 127.0.0.2 127.0.0.1 65536 25\r\n",
    "PROXY TCP4 127.0.0.2 127.0.0.1 040000 25\r\n",     /* leading zero */
    "PROXY TCP4 127.0.0.2 127.0.0.1 -1 25\r\n",
    "PROXY TCP4 127.0.0.2 127.0.0.1 4x 25\r\n",
    "PROXY UDP4 127.0.0.2 127.0.0.1 40000 25\r\n",
    "PROXY tcp4 127.0.0.2 127.0.0.1 40000 25\r\n",
    "PROXY UNKNOWNX\r\n",
    "PROXY \r\n",
    "PROXY\r\n",
    "proxy TCP4 127.0.0.2 127.0.0.1 40000 25\r\n",
    "EHLO client.example\r\n",
    "PROXZ",
    "X",
};

static void test_v1_invalid(void)
{
    struct proxy_header h;
    for (size_t i = 0; i < sizeof(v1_bad) / sizeof(v1_bad[0]); i++) {
        enum proxy_status st = proxy_parse((const uint8_t *)v1_bad[i],
                                           strlen(v1_bad[i]), &h);
        if (st != PROXY_ERROR)
            fprintf(stderr, "accepted: %s\n", v1_bad[i]);
        CHECK_EQ_INT(st, PROXY_ERROR);
        CHECK(h.reason != NULL);
    }
    /* a NUL inside the line */
    CHECK_EQ_INT(proxy_parse(S("PROXY UNKNOWN\0\r\n"), &h), PROXY_ERROR);
}

static void test_v1_too_long(void)
{
    uint8_t line[200];
    struct proxy_header h;
    memset(line, 'a', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    /* 106 bytes without LF: still waiting; 107: never a header */
    CHECK_EQ_INT(proxy_parse(line, PROXY_V1_MAX - 1, &h), PROXY_NEED_MORE);
    CHECK_EQ_INT(proxy_parse(line, PROXY_V1_MAX, &h), PROXY_ERROR);
    memcpy(line + PROXY_V1_MAX, "\r\n", 2);     /* 109 bytes with CR LF */
    CHECK_EQ_INT(proxy_parse(line, PROXY_V1_MAX + 2, &h), PROXY_ERROR);
    memcpy(line + PROXY_V1_MAX - 2, "\r\n", 2); /* exactly 107 */
    CHECK_EQ_INT(proxy_parse(line, PROXY_V1_MAX, &h), PROXY_DONE);
}

/* ---- version 2 ----------------------------------------------------------- */

static const uint8_t v2_inet[] = V2_SIG "\x21\x11\x00\x0c"
    "\x7f\x00\x00\x03" "\x7f\x00\x00\x01" "\x9c\x41" "\x00\x19";
static const uint8_t v2_inet6[] = V2_SIG "\x21\x21\x00\x24"
    "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07"
    "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01" "\x01\xbb" "\x00\x19";
static const uint8_t v2_local[] = V2_SIG "\x20\x00\x00\x00";
static const uint8_t v2_tlvs[] = V2_SIG "\x21\x11\x00\x1b"
    "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x00\x50" "\x00\x19"
    "\x04\x00\x00"                  /* NOOP, empty */
    "\x02\x00\x09" "mx.a.test";     /* AUTHORITY */

static void test_v2_valid(void)
{
    struct proxy_header h;
    check_prefixes(v2_inet, sizeof(v2_inet) - 1, &h);
    CHECK_EQ_INT(h.version, 2);
    check_src4(&h, "127.0.0.3", 40001);
    check_prefixes(v2_inet6, sizeof(v2_inet6) - 1, &h);
    check_src6(&h, "2001:db8::7", 443);
    check_prefixes(v2_local, sizeof(v2_local) - 1, &h);
    CHECK(!h.has_addr);
    check_prefixes(v2_tlvs, sizeof(v2_tlvs) - 1, &h);
    check_src4(&h, "127.0.0.2", 80);
    /* PROXY command for a UNIX or unspecified client: own address */
    check_prefixes(S(V2_SIG "\x21\x00\x00\x00"), &h);
    CHECK(!h.has_addr);
}

/* A v2 header with body bytes of length len (zeros), fam byte fam. */
static size_t v2_make(uint8_t *buf, uint8_t cmd, uint8_t fam, size_t len)
{
    memcpy(buf, V2_SIG, 12);
    buf[12] = cmd;
    buf[13] = fam;
    buf[14] = (uint8_t)(len >> 8);
    buf[15] = (uint8_t)len;
    memset(buf + 16, 0, len);
    return 16 + len;
}

static void test_v2_limits(void)
{
    static uint8_t buf[16 + 70000];
    struct proxy_header h;
    /* the largest accepted: 512 body bytes, of TLVs after the addresses */
    size_t n = v2_make(buf, 0x21, 0x11, PROXY_V2_BODY_MAX);
    buf[16 + 12 + 1] = (uint8_t)((PROXY_V2_BODY_MAX - 15) >> 8);
    buf[16 + 12 + 2] = (uint8_t)(PROXY_V2_BODY_MAX - 15);
    CHECK_EQ_INT(proxy_parse(buf, n, &h), PROXY_DONE);
    CHECK_EQ_INT(h.len, PROXY_HEADER_MAX);
    /* one more: refused as soon as the length is known */
    v2_make(buf, 0x21, 0x11, PROXY_V2_BODY_MAX + 1);
    CHECK_EQ_INT(proxy_parse(buf, 16, &h), PROXY_ERROR);
    v2_make(buf, 0x20, 0x00, 65535);
    CHECK_EQ_INT(proxy_parse(buf, 16, &h), PROXY_ERROR);
}

static void test_v2_invalid(void)
{
    uint8_t buf[64];
    struct proxy_header h;
    size_t n;
    n = v2_make(buf, 0x11, 0x11, 12);               /* version 1 nibble */
    CHECK_EQ_INT(proxy_parse(buf, 13, &h), PROXY_ERROR);
    n = v2_make(buf, 0x22, 0x11, 12);               /* command 2 */
    CHECK_EQ_INT(proxy_parse(buf, n, &h), PROXY_ERROR);
    n = v2_make(buf, 0x21, 0x12, 12);               /* datagram */
    CHECK_EQ_INT(proxy_parse(buf, n, &h), PROXY_ERROR);
    n = v2_make(buf, 0x21, 0x41, 12);               /* family 4 */
    CHECK_EQ_INT(proxy_parse(buf, n, &h), PROXY_ERROR);
    n = v2_make(buf, 0x21, 0x11, 11);               /* addresses cut */
    CHECK_EQ_INT(proxy_parse(buf, n, &h), PROXY_ERROR);
    n = v2_make(buf, 0x21, 0x21, 35);
    CHECK_EQ_INT(proxy_parse(buf, n, &h), PROXY_ERROR);
    n = v2_make(buf, 0x21, 0x11, 14);               /* 2 stray bytes */
    CHECK_EQ_INT(proxy_parse(buf, n, &h), PROXY_ERROR);
    n = v2_make(buf, 0x21, 0x11, 16);               /* TLV overruns */
    buf[16 + 12] = 0x04;
    buf[16 + 14] = 0x02;
    CHECK_EQ_INT(proxy_parse(buf, n, &h), PROXY_ERROR);
    memcpy(buf, V2_SIG, 12);
    buf[5] = 'X';                                   /* signature */
    CHECK_EQ_INT(proxy_parse(buf, 6, &h), PROXY_ERROR);
    CHECK_EQ_INT(proxy_parse(S("\r\nQUIT\r\n"), &h), PROXY_ERROR);
}

/* ---- --proxy-from -------------------------------------------------------- */

static struct sockaddr_storage peer(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &a6->sin6_addr);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &a4->sin_addr);
    }
    return ss;
}

static int matches(const struct proxy_net *nets, size_t n, const char *ip)
{
    struct sockaddr_storage ss = peer(ip);
    return proxy_net_match(nets, n, (const struct sockaddr *)&ss);
}

static void test_net(void)
{
    struct proxy_net nets[3];
    CHECK_EQ_INT(proxy_net_parse("10.1.0.0/16", &nets[0]), 0);
    CHECK_EQ_INT(proxy_net_parse("127.0.0.1", &nets[1]), 0);
    CHECK_EQ_INT(nets[1].prefix, 32);
    CHECK_EQ_INT(proxy_net_parse("2001:db8::/33", &nets[2]), 0);
    CHECK(matches(nets, 3, "10.1.255.9"));
    CHECK(!matches(nets, 3, "10.2.0.1"));
    CHECK(matches(nets, 3, "127.0.0.1"));
    CHECK(!matches(nets, 3, "127.0.0.2"));
    CHECK(matches(nets, 3, "::ffff:127.0.0.1"));    /* v4-mapped */
    CHECK(matches(nets, 3, "::ffff:10.1.0.1"));
    CHECK(!matches(nets, 3, "::1"));
    CHECK(matches(nets, 3, "2001:db8:7fff::1"));
    CHECK(!matches(nets, 3, "2001:db8:8000::1"));
    CHECK(!matches(nets, 0, "127.0.0.1"));
    CHECK_EQ_INT(proxy_net_parse("0.0.0.0/0", &nets[0]), 0);
    CHECK(matches(nets, 1, "192.0.2.1"));
    CHECK(!matches(nets, 1, "::1"));
}

static void test_net_invalid(void)
{
    static const char *const bad[] = {
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/8x",
        "10.0.0.0/-1", "10.0.0/8", "localhost", "[::1]", "::1/0128",
        "10.0.0.1 ", "1.2.3.4/8/8",
    };
    struct proxy_net net;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (proxy_net_parse(bad[i], &net) == 0)
            fprintf(stderr, "accepted --proxy-from '%s'\n", bad[i]);
        CHECK_EQ_INT(proxy_net_parse(bad[i], &net), -1);
    }
}

UNIT_MAIN("proxy",
          { "v1_valid", test_v1_valid },
          { "v1_longest", test_v1_longest },
          { "v1_invalid", test_v1_invalid },
          { "v1_too_long", test_v1_too_long },
          { "v2_valid", test_v2_valid },
          { "v2_limits", test_v2_limits },
          { "v2_invalid", test_v2_invalid },
          { "net", test_net },
          { "net_invalid", test_net_invalid })
