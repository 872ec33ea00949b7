/*
 * unit_smtp_limits.c - smtp_limits.c: live connections, the connection and
 * message rates over a sliding minute, IPv6 keys by /64 and IPv4-mapped
 * keys, exempt networks, and a bounded table that forgets an entry with
 * live connections only when nothing else can go.
 */
#include <stdint.h>
#include <stdio.h>

#include "smtp_limits.h"
#include "smtp_proxy.h"
#include "unit.h"

#define SEC 1000ULL

static void key(const char *ip, uint8_t k[16])
{
    CHECK_EQ_INT(limits_key(ip, k), 0);
}

static void test_off(void)
{
    struct limits_conf c = { 0, 0, 0 };
    CHECK_EQ_INT(limits_init(&c, 0), 0);
    CHECK_EQ_INT(limits_on(), 0);
    uint8_t k[16];
    key("10.0.0.1", k);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(limits_connect(k, 1000), LIMITS_GO);
    CHECK_EQ_INT(limits_message_check(k, 1000), LIMITS_GO);
    CHECK_EQ_INT(limits_count(), 0);
    limits_free();
}

static void test_connections(void)
{
    struct limits_conf c = { 2, 0, 0 };
    CHECK_EQ_INT(limits_init(&c, 0), 0);
    uint8_t a[16], b[16];
    key("10.0.0.1", a);
    key("10.0.0.2", b);
    CHECK_EQ_INT(limits_connect(a, 1000), LIMITS_GO);
    CHECK_EQ_INT(limits_connect(a, 1000), LIMITS_GO);
    CHECK_EQ_INT(limits_connect(a, 1000), LIMITS_CONNECTIONS);
    CHECK_EQ_INT(limits_live(a), 2);                /* a refusal counts nothing */
    CHECK_EQ_INT(limits_connect(b, 1000), LIMITS_GO);
    limits_disconnect(a);
    CHECK_EQ_INT(limits_connect(a, 1000), LIMITS_GO);
    limits_disconnect(a);
    limits_disconnect(a);
    limits_disconnect(a);                           /* one too many: harmless */
    CHECK_EQ_INT(limits_live(a), 0);
    limits_free();
}

static void test_connection_rate_slides(void)
{
    struct limits_conf c = { 0, 3, 0 };
    CHECK_EQ_INT(limits_init(&c, 0), 0);
    uint8_t a[16], b[16];
    key("10.0.0.1", a);
    key("10.0.0.2", b);
    uint64_t t0 = 5000 * SEC + 300;
    CHECK_EQ_INT(limits_connect(a, t0), LIMITS_GO);
    CHECK_EQ_INT(limits_connect(a, t0 + 20 * SEC), LIMITS_GO);
    CHECK_EQ_INT(limits_connect(a, t0 + 40 * SEC), LIMITS_GO);
    CHECK_EQ_INT(limits_connect(a, t0 + 59 * SEC), LIMITS_CONNECTION_RATE);
    CHECK_EQ_INT(limits_connect(b, t0 + 59 * SEC), LIMITS_GO);
    /* no 60 s ever hold four: the first leaves a minute and a second after */
    CHECK_EQ_INT(limits_connect(a, t0 + 60 * SEC), LIMITS_CONNECTION_RATE);
    CHECK_EQ_INT(limits_connect(a, t0 + 61 * SEC), LIMITS_GO);
    CHECK_EQ_INT(limits_connect(a, t0 + 62 * SEC), LIMITS_CONNECTION_RATE);
    /* a long pause forgets everything */
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(limits_connect(a, t0 + 1000 * SEC), LIMITS_GO);
    CHECK_EQ_INT(limits_connect(a, t0 + 1000 * SEC), LIMITS_CONNECTION_RATE);
    limits_free();
}

static void test_message_rate(void)
{
    struct limits_conf c = { 0, 0, 2 };
    CHECK_EQ_INT(limits_init(&c, 0), 0);
    uint8_t a[16];
    key("192.0.2.7", a);
    uint64_t t0 = 7000 * SEC;
    CHECK_EQ_INT(limits_message_check(a, t0), LIMITS_GO);
    CHECK_EQ_INT(limits_message_check(a, t0), LIMITS_GO);  /* checks count nothing */
    limits_message_sent(a, t0);
    CHECK_EQ_INT(limits_message_check(a, t0 + 30 * SEC), LIMITS_GO);
    limits_message_sent(a, t0 + 30 * SEC);
    CHECK_EQ_INT(limits_message_check(a, t0 + 31 * SEC), LIMITS_MESSAGE_RATE);
    CHECK_EQ_INT(limits_message_check(a, t0 + 61 * SEC), LIMITS_GO);
    limits_message_sent(a, t0 + 61 * SEC);
    CHECK_EQ_INT(limits_message_check(a, t0 + 62 * SEC), LIMITS_MESSAGE_RATE);
    limits_free();
}

static void test_ipv6_by_64(void)
{
    struct limits_conf c = { 1, 0, 0 };
    CHECK_EQ_INT(limits_init(&c, 0), 0);
    uint8_t a[16], b[16], other[16], m[16], v4[16];
    key("2001:db8:1:2::1", a);
    key("2001:db8:1:2:ffff:1:2:3", b);
    key("2001:db8:1:3::1", other);
    CHECK_MEM(a, b, 16);
    CHECK_EQ_INT(limits_connect(a, 1000), LIMITS_GO);
    CHECK_EQ_INT(limits_connect(b, 1000), LIMITS_CONNECTIONS);
    CHECK_EQ_INT(limits_connect(other, 1000), LIMITS_GO);
    key("::ffff:198.51.100.4", m);
    key("198.51.100.4", v4);
    CHECK_MEM(m, v4, 16);
    CHECK_EQ_INT(limits_connect(v4, 1000), LIMITS_GO);
    CHECK_EQ_INT(limits_connect(m, 1000), LIMITS_CONNECTIONS);
    uint8_t bad[16];
    CHECK_EQ_INT(limits_key("not-an-address", bad), -1);
    limits_free();
}

static void test_exempt(void)
{
    struct proxy_net nets[2];
    CHECK_EQ_INT(proxy_net_parse("127.0.0.0/8", &nets[0]), 0);
    CHECK_EQ_INT(proxy_net_parse("2001:db8::/32", &nets[1]), 0);
    CHECK_EQ_INT(limits_exempt(nets, 2, "127.1.2.3"), 1);
    CHECK_EQ_INT(limits_exempt(nets, 2, "::ffff:127.0.0.9"), 1);
    CHECK_EQ_INT(limits_exempt(nets, 2, "2001:db8:5::1"), 1);
    CHECK_EQ_INT(limits_exempt(nets, 2, "10.0.0.1"), 0);
    CHECK_EQ_INT(limits_exempt(nets, 2, "2001:db9::1"), 0);
    CHECK_EQ_INT(limits_exempt(nets, 2, "junk"), 0);
}

/* Four slots: the oldest entry without live connections goes first; with
 * every entry live, the oldest goes anyway; the table never grows. */
static void test_bounded(void)
{
    struct limits_conf c = { 1, 0, 0 };
    CHECK_EQ_INT(limits_init(&c, 4), 0);
    uint8_t k[6][16];
    char ip[32];
    for (int i = 0; i < 6; i++) {
        snprintf(ip, sizeof(ip), "10.9.0.%d", i + 1);
        key(ip, k[i]);
    }
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(limits_connect(k[i], 1000), LIMITS_GO);
    limits_disconnect(k[2]);                /* the only one not live */
    CHECK_EQ_INT(limits_connect(k[4], 1000), LIMITS_GO);
    CHECK_EQ_INT(limits_count(), 4);
    /* k[0], the oldest, is still held: its second connection is refused */
    CHECK_EQ_INT(limits_connect(k[0], 1000), LIMITS_CONNECTIONS);
    CHECK_EQ_INT(limits_live(k[2]), 0);
    /* all four live now: the one touched longest ago (k[1]) goes */
    CHECK_EQ_INT(limits_connect(k[5], 1000), LIMITS_GO);
    CHECK_EQ_INT(limits_count(), 4);
    CHECK_EQ_INT(limits_live(k[1]), 0);
    CHECK_EQ_INT(limits_live(k[0]), 1);
    CHECK_EQ_INT(limits_live(k[3]), 1);
    /* many addresses through a small table: still four */
    for (int i = 0; i < 1000; i++) {
        uint8_t x[16];
        snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
        key(ip, x);
        limits_connect(x, 1000);
        limits_disconnect(x);
    }
    CHECK_EQ_INT(limits_count(), 4);
    limits_free();
}

UNIT_MAIN("smtp_limits",
          { "off", test_off },
          { "connections", test_connections },
          { "connection_rate_slides", test_connection_rate_slides },
          { "message_rate", test_message_rate },
          { "ipv6_by_64", test_ipv6_by_64 },
          { "exempt", test_exempt },
          { "bounded", test_bounded })
