/*
 * unit_auth_throttle.c - auth_throttle.c: the window and the refusal period, checks
 * counted from their start (in flight), IPv6 by /64, the per-account rule
 * and the exemption of an address that logged in as the user, a full
 * table that forgets only unlocked entries and refuses when all are.
 */
#include <stdint.h>
#include <stdio.h>

#include "auth_throttle.h"
#include "unit.h"

#define MIN (60ULL * 1000)

/* One failed check of user from ip at now. */
static void fail(const char *ip, const char *user, uint64_t now)
{
    CHECK_EQ_INT(throttle_begin(ip, user, now), THROTTLE_GO);
    throttle_end(ip, user, 0, now);
}

static void test_window(void)
{
    CHECK_EQ_INT(throttle_init(0), 0);
    for (int i = 0; i < 9; i++)
        fail("10.0.0.1", "u", 1000 + (uint64_t)i * MIN);
    CHECK_EQ_INT(throttle_blocked("10.0.0.1", 9 * MIN), 0);
    fail("10.0.0.1", "v", 1000 + 9 * MIN);              /* 10 in 9 minutes */
    CHECK_EQ_INT(throttle_blocked("10.0.0.1", 1000 + 9 * MIN), 1);
    CHECK_EQ_INT(throttle_begin("10.0.0.1", "w", 1000 + 9 * MIN), THROTTLE_ADDRESS);
    CHECK_EQ_INT(throttle_blocked("10.0.0.2", 1000 + 9 * MIN), 0);
    CHECK_EQ_INT(throttle_blocked("10.0.0.1", 1000 + 18 * MIN), 1);
    CHECK_EQ_INT(throttle_blocked("10.0.0.1", 1000 + 19 * MIN), 0);
    /* one more failure much later: the last ten span more than the window */
    fail("10.0.0.1", "u", 1000 + 30 * MIN);
    CHECK_EQ_INT(throttle_blocked("10.0.0.1", 1000 + 30 * MIN), 0);

    /* ten spread over 20 minutes never block */
    for (int i = 0; i < 10; i++)
        fail("192.0.2.9", "x", 100 * MIN + (uint64_t)i * 2 * MIN);
    CHECK_EQ_INT(throttle_blocked("192.0.2.9", 118 * MIN), 0);
    CHECK_EQ_INT(throttle_blocked("not an address", 0), 0);
    CHECK_EQ_INT(throttle_begin("not an address", "u", 0), THROTTLE_GO);
    throttle_free();
}

static void test_in_flight(void)
{
    char user[16];
    CHECK_EQ_INT(throttle_init(0), 0);
    /* ten checks started at once, none ended: the eleventh is refused */
    for (int i = 0; i < 10; i++) {
        snprintf(user, sizeof(user), "n%d", i);
        CHECK_EQ_INT(throttle_begin("10.1.0.1", user, 5000), THROTTLE_GO);
    }
    CHECK_EQ_INT(throttle_load("10.1.0.1", "z", 5000), 10);
    CHECK_EQ_INT(throttle_blocked("10.1.0.1", 5000), 1);
    CHECK_EQ_INT(throttle_begin("10.1.0.1", "z", 5000), THROTTLE_ADDRESS);
    /* two succeed: they no longer count, so two more may start */
    throttle_end("10.1.0.1", "n0", 1, 6000);
    throttle_end("10.1.0.1", "n1", 1, 6000);
    CHECK_EQ_INT(throttle_blocked("10.1.0.1", 6000), 0);
    CHECK_EQ_INT(throttle_begin("10.1.0.1", "z", 6000), THROTTLE_GO);
    throttle_end("10.1.0.1", "z", -1, 6000);        /* never ran: no count */
    CHECK_EQ_INT(throttle_load("10.1.0.1", "z", 6000), 8);
    /* the other eight fail: eight failures, and two more may start */
    for (int i = 2; i < 10; i++) {
        snprintf(user, sizeof(user), "n%d", i);
        throttle_end("10.1.0.1", user, 0, 7000);
    }
    CHECK_EQ_INT(throttle_load("10.1.0.1", "z", 7000), 8);
    fail("10.1.0.1", "a", 7000);
    fail("10.1.0.1", "b", 7000);
    CHECK_EQ_INT(throttle_begin("10.1.0.1", "c", 7000), THROTTLE_ADDRESS);
    throttle_free();
}

static void test_ipv6_by_64(void)
{
    CHECK_EQ_INT(throttle_init(0), 0);
    for (int i = 0; i < 10; i++) {
        char ip[64];
        snprintf(ip, sizeof(ip), "2001:db8:1:2:%x::%x", i * 7, i + 1);
        fail(ip, "u", 1000);
    }
    CHECK_EQ_INT(throttle_blocked("2001:db8:1:2::ffff", 1000), 1);
    CHECK_EQ_INT(throttle_blocked("2001:db8:1:3::1", 1000), 0);
    CHECK_EQ_INT(throttle_count(), 1);
    /* an IPv4-mapped address is its IPv4 address, not a /64 */
    for (int i = 0; i < 10; i++) {
        char user[16];
        snprintf(user, sizeof(user), "m%d", i);
        fail("::ffff:10.2.0.1", user, 2000);
    }
    CHECK_EQ_INT(throttle_blocked("10.2.0.1", 2000), 1);
    CHECK_EQ_INT(throttle_blocked("10.2.0.2", 2000), 0);
    uint8_t a[16], b[16];
    CHECK_EQ_INT(throttle_address("fe80::1", a), 0);
    CHECK_EQ_INT(throttle_address("fe80::2:0:0:1", b), 0);
    CHECK_MEM(a, b, 16);
    CHECK_EQ_INT(throttle_address("fe80::g", a), -1);
    throttle_free();
}

static void test_account(void)
{
    char ip[32];
    CHECK_EQ_INT(throttle_init(0), 0);
    /* the owner logs in once from 10.9.9.9 */
    CHECK_EQ_INT(throttle_begin("10.9.9.9", "Alice", 1000), THROTTLE_GO);
    throttle_end("10.9.9.9", "Alice", 1, 1000);
    CHECK_EQ_INT(throttle_known("10.9.9.9", "alice"), 1);
    CHECK_EQ_INT(throttle_known("10.9.9.8", "alice"), 0);
    /* ten addresses guess once each: now one check a second */
    for (int i = 0; i < 10; i++) {
        snprintf(ip, sizeof(ip), "10.3.0.%d", i + 1);
        fail(ip, "alice", 2000);
    }
    CHECK_EQ_INT(throttle_begin("10.3.1.1", "ALICE", 2500), THROTTLE_ACCOUNT);
    CHECK_EQ_INT(throttle_begin("10.3.1.1", "bob", 2500), THROTTLE_GO);
    CHECK_EQ_INT(throttle_begin("10.3.1.2", "alice", 3000), THROTTLE_GO);
    CHECK_EQ_INT(throttle_begin("10.3.1.3", "alice", 3500), THROTTLE_ACCOUNT);
    /* a correct password checked in its second logs in (not a failure) */
    throttle_end("10.3.1.2", "alice", 1, 3600);
    CHECK_EQ_INT(throttle_begin("10.3.1.3", "alice", 4000), THROTTLE_GO);
    throttle_end("10.3.1.3", "alice", 0, 4000);
    CHECK_EQ_INT(throttle_begin("10.3.1.4", "alice", 4100), THROTTLE_ACCOUNT);
    /* the owner's address is not held to it, nor the one that just logged in */
    CHECK_EQ_INT(throttle_begin("10.9.9.9", "alice", 4100), THROTTLE_GO);
    throttle_end("10.9.9.9", "alice", 1, 4100);
    CHECK_EQ_INT(throttle_begin("10.3.1.2", "alice", 4100), THROTTLE_GO);
    throttle_end("10.3.1.2", "alice", 1, 4100);
    /* unknown names count the same; ten minutes after the last failure the
     * account is free again */
    for (int i = 0; i < 10; i++) {
        snprintf(ip, sizeof(ip), "10.4.0.%d", i + 1);
        fail(ip, "nosuchuser", 5000);
    }
    CHECK_EQ_INT(throttle_begin("10.4.1.1", "nosuchuser", 5500), THROTTLE_ACCOUNT);
    CHECK_EQ_INT(throttle_begin("10.3.1.4", "alice", 4000 + 10 * MIN), THROTTLE_GO);
    throttle_free();
}

/* A table of 8: locked entries stay, unlocked ones go oldest first. */
static void test_full_table(void)
{
    char ip[32], user[32];
    CHECK_EQ_INT(throttle_init(8), 0);
    for (int i = 0; i < 10; i++)
        fail("10.5.0.1", "a", 1000);                /* locked by failures */
    CHECK_EQ_INT(throttle_begin("10.5.0.2", "b", 1000), THROTTLE_GO);  /* in flight */
    for (int i = 3; i <= 8; i++) {
        snprintf(ip, sizeof(ip), "10.5.0.%d", i);
        fail(ip, "c", 2000 + (uint64_t)i);
    }
    CHECK_EQ_INT(throttle_count(), 8);
    /* twenty newcomers: each takes an unlocked slot, never the locked two */
    for (int i = 0; i < 20; i++) {
        snprintf(ip, sizeof(ip), "10.6.0.%d", i + 1);
        snprintf(user, sizeof(user), "n%d", i + 1);
        fail(ip, user, 3000 + (uint64_t)i);
    }
    CHECK_EQ_INT(throttle_count(), 8);
    CHECK_EQ_INT(throttle_blocked("10.5.0.1", 4000), 1);
    CHECK_EQ_INT(throttle_load("10.5.0.2", "q", 4000), 1);
    CHECK_EQ_INT(throttle_load("10.5.0.3", "q", 4000), 0);   /* forgotten */
    CHECK_EQ_INT(throttle_load("10.6.0.20", "q", 4000), 1);  /* the newest stay */
    /* lock the other six (checks in flight): a newcomer is refused */
    for (int i = 15; i <= 20; i++) {
        snprintf(ip, sizeof(ip), "10.6.0.%d", i);
        snprintf(user, sizeof(user), "p%d", i);
        CHECK_EQ_INT(throttle_begin(ip, user, 5000), THROTTLE_GO);
    }
    CHECK_EQ_INT(throttle_begin("10.7.0.1", "d", 5000), THROTTLE_FULL);
    CHECK_EQ_INT(throttle_blocked("10.7.0.1", 5000), 0);
    CHECK_EQ_INT(throttle_blocked("10.5.0.1", 5000), 1);
    /* the account table is full of locked names too: a new name is
     * refused; a name in the table goes on */
    CHECK_EQ_INT(throttle_begin("10.6.0.16", "fresh", 5000), THROTTLE_FULL);
    throttle_end("10.6.0.16", "p16", 1, 5000);
    CHECK_EQ_INT(throttle_begin("10.6.0.16", "p16", 5000), THROTTLE_GO);
    throttle_end("10.6.0.16", "p16", 1, 5000);
    /* one check ends as a success: its slot is free to take again */
    throttle_end("10.6.0.15", "p15", 1, 5000);
    CHECK_EQ_INT(throttle_begin("10.7.0.1", "d", 5000), THROTTLE_GO);
    /* ten minutes on, the failures no longer lock 10.5.0.1 */
    CHECK_EQ_INT(throttle_blocked("10.5.0.1", 1000 + 10 * MIN), 0);
    throttle_free();
}

/* The account table is bounded the same way. */
static void test_account_table_bounded(void)
{
    char user[32], ip[32];
    CHECK_EQ_INT(throttle_init(8), 0);
    for (int i = 0; i < 100; i++) {
        snprintf(user, sizeof(user), "guess%d", i);
        snprintf(ip, sizeof(ip), "10.8.0.%d", i % 4 + 1);
        CHECK_EQ_INT(throttle_begin(ip, user, 1000 * (uint64_t)i), THROTTLE_GO);
        throttle_end(ip, user, 1, 1000 * (uint64_t)i);
    }
    CHECK_EQ_INT(throttle_account_count(), 8);
    throttle_free();
}

UNIT_MAIN("throttle",
          { "window", test_window },
          { "in_flight", test_in_flight },
          { "ipv6_by_64", test_ipv6_by_64 },
          { "account", test_account },
          { "full_table", test_full_table },
          { "account_table_bounded", test_account_table_bounded })
