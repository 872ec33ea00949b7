/*
 * auth_throttle.c - two fixed tables (client addresses, user names) of recent
 * failed logins and checks in flight, plus a ring of (user, address)
 * pairs that logged in. Each table: hash chains under a keyed SipHash to
 * find an entry, a list ordered by last use to forget the oldest unlocked
 * one when full. Memory is allocated once; nothing grows with the number
 * of clients or names.
 */
#include "auth_throttle.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define THROTTLE_NONE    UINT32_MAX
#define THROTTLE_NAME_MAX 255               /* longer names are cut */

struct throttle_entry {
    uint8_t key[16];
    uint64_t fails[THROTTLE_MAX_FAILS];     /* ring: the last failures */
    uint64_t last_start;                    /* the last check let in */
    uint32_t nfails;                        /* failures recorded (wraps) */
    uint32_t pending;                       /* checks let in, not ended */
    uint32_t chain;                         /* next in the hash bucket */
    uint32_t older, newer;                  /* the order of last use */
};

struct throttle_table {
    struct throttle_entry *v;
    uint32_t *buckets;
    uint32_t slots, nbuckets, used;         /* used: slots handed out */
    uint32_t oldest, newest;
};

static struct throttle_table addrs, accounts;
static uint64_t known[THROTTLE_KNOWN_PAIRS];    /* pair tags; 0 = none */
static size_t known_next;
static uint64_t secret[2];

/* ---- a keyed hash (SipHash-2-4) --------------------------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void throttle_sipround(uint64_t v[4])
{
    v[0] += v[1]; v[1] = ROTL(v[1], 13); v[1] ^= v[0]; v[0] = ROTL(v[0], 32);
    v[2] += v[3]; v[3] = ROTL(v[3], 16); v[3] ^= v[2];
    v[0] += v[3]; v[3] = ROTL(v[3], 21); v[3] ^= v[0];
    v[2] += v[1]; v[1] = ROTL(v[1], 17); v[1] ^= v[2]; v[2] = ROTL(v[2], 32);
}

static void throttle_sipword(uint64_t v[4], uint64_t m)
{
    v[3] ^= m;
    throttle_sipround(v);
    throttle_sipround(v);
    v[0] ^= m;
}

static uint64_t throttle_siphash(const uint8_t *p, size_t len)
{
    uint64_t v[4] = { secret[0] ^ 0x736f6d6570736575ULL,
                      secret[1] ^ 0x646f72616e646f6dULL,
                      secret[0] ^ 0x6c7967656e657261ULL,
                      secret[1] ^ 0x7465646279746573ULL };
    uint64_t m;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        m = 0;
        for (int b = 0; b < 8; b++)
            m |= (uint64_t)p[i + b] << (8 * b);
        throttle_sipword(v, m);
    }
    m = (uint64_t)len << 56;
    for (int b = 0; i + b < len; b++)
        m |= (uint64_t)p[i + b] << (8 * b);
    throttle_sipword(v, m);
    v[2] ^= 0xff;
    for (int r = 0; r < 4; r++)
        throttle_sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* From the kernel; should that fail, from the clock and the process, which
 * is still unknown to a client. */
static void throttle_draw_secret(void)
{
    if (getrandom(secret, sizeof(secret), 0) == (ssize_t)sizeof(secret))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    secret[0] ^= (uint64_t)ts.tv_nsec << 32 ^ (uint64_t)ts.tv_sec;
    secret[1] ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&ts;
}

/* ---- one table -------------------------------------------------------- */

static int table_init(struct throttle_table *t, uint32_t slots)
{
    t->slots = slots;
    t->nbuckets = slots * 2;
    t->v = calloc(slots, sizeof(*t->v));
    t->buckets = malloc(t->nbuckets * sizeof(*t->buckets));
    if (t->v == NULL || t->buckets == NULL)
        return -1;
    memset(t->buckets, 0xff, t->nbuckets * sizeof(*t->buckets));
    t->used = 0;
    t->oldest = t->newest = THROTTLE_NONE;
    return 0;
}

static void table_free(struct throttle_table *t)
{
    free(t->v);
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

uint64_t throttle_key_hash(const uint8_t key[16])
{
    return throttle_siphash(key, 16);
}

static uint32_t table_bucket(const struct throttle_table *t,
                             const uint8_t key[16])
{
    return (uint32_t)(throttle_key_hash(key) % t->nbuckets);
}

static uint32_t table_find(const struct throttle_table *t,
                           const uint8_t key[16])
{
    if (t->v == NULL)
        return THROTTLE_NONE;
    uint32_t i = t->buckets[table_bucket(t, key)];
    while (i != THROTTLE_NONE && memcmp(t->v[i].key, key, 16) != 0)
        i = t->v[i].chain;
    return i;
}

static void table_unlist(struct throttle_table *t, uint32_t i)
{
    struct throttle_entry *e = &t->v[i];
    if (e->older != THROTTLE_NONE)
        t->v[e->older].newer = e->newer;
    else
        t->oldest = e->newer;
    if (e->newer != THROTTLE_NONE)
        t->v[e->newer].older = e->older;
    else
        t->newest = e->older;
}

static void table_list_newest(struct throttle_table *t, uint32_t i)
{
    t->v[i].older = t->newest;
    t->v[i].newer = THROTTLE_NONE;
    if (t->newest != THROTTLE_NONE)
        t->v[t->newest].newer = i;
    else
        t->oldest = i;
    t->newest = i;
}

static void table_touch(struct throttle_table *t, uint32_t i)
{
    table_unlist(t, i);
    table_list_newest(t, i);
}

static void table_unchain(struct throttle_table *t, uint32_t i)
{
    uint32_t *p = &t->buckets[table_bucket(t, t->v[i].key)];
    while (*p != i)
        p = &t->v[*p].chain;
    *p = t->v[i].chain;
}

/* ---- what an entry says ----------------------------------------------- */

static uint64_t throttle_last_fail(const struct throttle_entry *e)
{
    return e->fails[(e->nfails + THROTTLE_MAX_FAILS - 1) % THROTTLE_MAX_FAILS];
}

/* THROTTLE_MAX_FAILS failures within one window, the last one less than a
 * window ago. */
static int throttle_locked_out(const struct throttle_entry *e, uint64_t now)
{
    if (e->nfails < THROTTLE_MAX_FAILS)
        return 0;
    uint64_t last = throttle_last_fail(e);
    uint64_t first = e->fails[e->nfails % THROTTLE_MAX_FAILS];
    return last - first <= THROTTLE_WINDOW_MS
           && (now < last || now - last < THROTTLE_WINDOW_MS);
}

/* Failures within the window plus checks in flight. */
static unsigned throttle_busy(const struct throttle_entry *e, uint64_t now)
{
    unsigned n = e->pending;
    uint32_t kept = e->nfails < THROTTLE_MAX_FAILS ? e->nfails
                                                   : THROTTLE_MAX_FAILS;
    for (uint32_t k = 0; k < kept; k++)
        if (now < e->fails[k] || now - e->fails[k] < THROTTLE_WINDOW_MS)
            n++;
    return n;
}

static int throttle_over(const struct throttle_entry *e, uint64_t now)
{
    return throttle_locked_out(e, now) || throttle_busy(e, now) >= THROTTLE_MAX_FAILS;
}

/* Never forgotten: a check is in flight, or it is past the count. */
static int throttle_is_locked(const struct throttle_entry *e, uint64_t now)
{
    return e->pending > 0 || throttle_over(e, now);
}

/* A fresh entry for key: a never-used slot, or the oldest unlocked one;
 * THROTTLE_NONE when every slot is locked. */
static uint32_t table_take(struct throttle_table *t, const uint8_t key[16],
                           uint64_t now)
{
    uint32_t i;
    if (t->used < t->slots) {
        i = t->used++;
    } else {
        i = t->oldest;
        while (i != THROTTLE_NONE && throttle_is_locked(&t->v[i], now))
            i = t->v[i].newer;
        if (i == THROTTLE_NONE)
            return THROTTLE_NONE;
        table_unlist(t, i);
        table_unchain(t, i);
    }
    struct throttle_entry *e = &t->v[i];
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, 16);
    uint32_t b = table_bucket(t, key);
    e->chain = t->buckets[b];
    t->buckets[b] = i;
    table_list_newest(t, i);
    return i;
}

static void throttle_add_fail(struct throttle_entry *e, uint64_t now)
{
    e->fails[e->nfails % THROTTLE_MAX_FAILS] = now;
    if (++e->nfails == 2 * THROTTLE_MAX_FAILS)
        e->nfails = THROTTLE_MAX_FAILS;     /* same slots, no overflow */
}

/* ---- keys ------------------------------------------------------------- */

int throttle_address(const char *ip, uint8_t key[16])
{
    memset(key, 0, 16);
    if (strchr(ip, ':') == NULL)
        return inet_pton(AF_INET, ip, key) == 1 ? 0 : -1;
    if (inet_pton(AF_INET6, ip, key) != 1)
        return -1;
    /* An IPv4-mapped address is that IPv4 address; other IPv6 clients are
     * one per /64, the smallest block a site is given. */
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (memcmp(key, mapped, 12) == 0) {
        memmove(key, key + 12, 4);
        memset(key + 4, 0, 12);
    } else {
        memset(key + 8, 0, 8);
        key[15] = 6;                        /* apart from every IPv4 key */
    }
    return 0;
}

/* The user name, lowercased and cut, as a key no client can aim at. */
static void throttle_account_key(const char *user, uint8_t key[16])
{
    uint8_t low[THROTTLE_NAME_MAX];
    size_t n = 0;
    for (; user[n] && n < sizeof(low); n++)
        low[n] = (uint8_t)tolower((unsigned char)user[n]);
    uint64_t h = throttle_siphash(low, n);
    memset(key, 0, 16);
    memcpy(key, &h, sizeof(h));
}

static uint64_t throttle_pair_tag(const uint8_t addr[16],
                                  const uint8_t account[16])
{
    uint8_t both[32];
    memcpy(both, addr, 16);
    memcpy(both + 16, account, 16);
    uint64_t tag = throttle_siphash(both, sizeof(both));
    return tag ? tag : 1;
}

static int throttle_pair_known(uint64_t tag)
{
    for (size_t i = 0; i < THROTTLE_KNOWN_PAIRS; i++)
        if (known[i] == tag)
            return 1;
    return 0;
}

static void throttle_pair_remember(uint64_t tag)
{
    if (throttle_pair_known(tag))
        return;
    known[known_next] = tag;
    known_next = (known_next + 1) % THROTTLE_KNOWN_PAIRS;
}

/* ---- public ----------------------------------------------------------- */

int throttle_init(size_t slots)
{
    if (addrs.v)
        return 0;
    if (slots == 0 || slots > UINT32_MAX / 4)
        slots = THROTTLE_SLOTS;
    throttle_draw_secret();
    memset(known, 0, sizeof(known));
    known_next = 0;
    if (table_init(&addrs, (uint32_t)slots) < 0
        || table_init(&accounts, (uint32_t)slots) < 0) {
        throttle_free();
        return -1;
    }
    return 0;
}

void throttle_free(void)
{
    table_free(&addrs);
    table_free(&accounts);
}

size_t throttle_count(void)
{
    return addrs.used;
}

size_t throttle_account_count(void)
{
    return accounts.used;
}

int throttle_blocked(const char *ip, uint64_t now_ms)
{
    uint8_t key[16];
    if (throttle_address(ip, key) < 0)
        return 0;
    uint32_t i = table_find(&addrs, key);
    return i != THROTTLE_NONE && throttle_over(&addrs.v[i], now_ms);
}

unsigned throttle_load(const char *ip, const char *user, uint64_t now_ms)
{
    uint8_t addr[16], account[16];
    if (throttle_address(ip, addr) < 0)
        return 0;
    throttle_account_key(user, account);
    uint32_t a = table_find(&addrs, addr), u = table_find(&accounts, account);
    return (a == THROTTLE_NONE ? 0 : throttle_busy(&addrs.v[a], now_ms))
           + (u == THROTTLE_NONE ? 0 : throttle_busy(&accounts.v[u], now_ms));
}

int throttle_known(const char *ip, const char *user)
{
    uint8_t addr[16], account[16];
    if (throttle_address(ip, addr) < 0)
        return 0;
    throttle_account_key(user, account);
    return throttle_pair_known(throttle_pair_tag(addr, account));
}

/* The account's verdict; *slot is its entry, or THROTTLE_NONE if new. */
static enum throttle_verdict throttle_account_verdict(const uint8_t key[16],
                                                      int exempt, uint64_t now,
                                                      uint32_t *slot)
{
    *slot = table_find(&accounts, key);
    if (exempt || *slot == THROTTLE_NONE)
        return THROTTLE_GO;
    const struct throttle_entry *e = &accounts.v[*slot];
    if (throttle_over(e, now) && now < e->last_start + THROTTLE_ACCOUNT_GAP_MS)
        return THROTTLE_ACCOUNT;
    return THROTTLE_GO;
}

enum throttle_verdict throttle_begin(const char *ip, const char *user,
                                     uint64_t now_ms)
{
    uint8_t addr[16], account[16];
    if (addrs.v == NULL || throttle_address(ip, addr) < 0)
        return THROTTLE_GO;             /* not an address: nothing to count */
    throttle_account_key(user, account);
    int exempt = throttle_pair_known(throttle_pair_tag(addr, account));

    uint32_t a = table_find(&addrs, addr), u;
    if (a != THROTTLE_NONE && throttle_over(&addrs.v[a], now_ms))
        return THROTTLE_ADDRESS;
    enum throttle_verdict v = throttle_account_verdict(account, exempt,
                                                       now_ms, &u);
    if (v != THROTTLE_GO)
        return v;
    if (a == THROTTLE_NONE && (a = table_take(&addrs, addr, now_ms)) == THROTTLE_NONE)
        return THROTTLE_FULL;
    if (u == THROTTLE_NONE)
        u = table_take(&accounts, account, now_ms);
    if (u == THROTTLE_NONE && !exempt)
        return THROTTLE_FULL;
    /* (an exempt pair goes on uncounted for its account rather than be
     * shut out by names it never used) */
    table_touch(&addrs, a);
    addrs.v[a].pending++;
    addrs.v[a].last_start = now_ms;
    if (u != THROTTLE_NONE) {
        table_touch(&accounts, u);
        accounts.v[u].pending++;
        accounts.v[u].last_start = now_ms;
    }
    return THROTTLE_GO;
}

/* Ends one check of an entry, if the entry is there (it always is: an
 * entry with checks in flight is never forgotten). */
static void table_end(struct throttle_table *t, const uint8_t key[16], int ok,
                      uint64_t now)
{
    uint32_t i = table_find(t, key);
    if (i == THROTTLE_NONE || t->v[i].pending == 0)
        return;
    t->v[i].pending--;
    if (ok == 0) {
        throttle_add_fail(&t->v[i], now);
        table_touch(t, i);
    }
}

void throttle_end(const char *ip, const char *user, int ok, uint64_t now_ms)
{
    uint8_t addr[16], account[16];
    if (addrs.v == NULL || throttle_address(ip, addr) < 0)
        return;
    throttle_account_key(user, account);
    table_end(&addrs, addr, ok, now_ms);
    table_end(&accounts, account, ok, now_ms);
    if (ok == 1)
        throttle_pair_remember(throttle_pair_tag(addr, account));
}
