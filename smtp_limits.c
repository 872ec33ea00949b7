/*
 * smtp_limits.c - one fixed table of client addresses, each with its live
 * connections and two rings of per-second counts (connections opened,
 * messages sent) covering the last minute. Hash chains under the login
 * throttle's keyed hash find an entry; a list ordered by last use finds
 * the one to forget. Memory is allocated once.
 */
#include "smtp_limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "auth_throttle.h"
#include "smtp_proxy.h"

#define LIMITS_NONE UINT32_MAX

struct limits_rate {
    uint64_t second;                        /* the newest second counted */
    uint16_t n[LIMITS_SECONDS];             /* events of second % LIMITS_SECONDS */
};

struct limits_entry {
    uint8_t key[16];
    uint32_t live;                          /* connections open now */
    uint32_t chain;                         /* next in the hash bucket */
    uint32_t older, newer;                  /* the order of last use */
    struct limits_rate conns, msgs;
};

static struct {
    struct limits_entry *v;
    uint32_t *buckets;
    uint32_t slots, nbuckets, used;
    uint32_t oldest, newest;
    struct limits_conf conf;
} tab;

/* ---- a minute in seconds ---------------------------------------------- */

/* Forgets the seconds that left the window before second. */
static void rate_advance(struct limits_rate *r, uint64_t second)
{
    if (second <= r->second)
        return;
    if (second - r->second >= LIMITS_SECONDS)
        memset(r->n, 0, sizeof(r->n));
    else
        for (uint64_t s = r->second + 1; s <= second; s++)
            r->n[s % LIMITS_SECONDS] = 0;
    r->second = second;
}

static unsigned rate_count(struct limits_rate *r, uint64_t now_ms)
{
    rate_advance(r, now_ms / 1000);
    unsigned sum = 0;
    for (size_t i = 0; i < LIMITS_SECONDS; i++)
        sum += r->n[i];
    return sum;
}

static void rate_add(struct limits_rate *r, uint64_t now_ms)
{
    rate_advance(r, now_ms / 1000);
    uint16_t *n = &r->n[r->second % LIMITS_SECONDS];
    if (*n < UINT16_MAX)
        (*n)++;
}

/* ---- the table -------------------------------------------------------- */

static uint32_t limits_bucket(const uint8_t key[16])
{
    return (uint32_t)(throttle_key_hash(key) % tab.nbuckets);
}

static uint32_t limits_find(const uint8_t key[16])
{
    if (tab.v == NULL)
        return LIMITS_NONE;
    uint32_t i = tab.buckets[limits_bucket(key)];
    while (i != LIMITS_NONE && memcmp(tab.v[i].key, key, 16) != 0)
        i = tab.v[i].chain;
    return i;
}

static void limits_unlist(uint32_t i)
{
    struct limits_entry *e = &tab.v[i];
    if (e->older != LIMITS_NONE)
        tab.v[e->older].newer = e->newer;
    else
        tab.oldest = e->newer;
    if (e->newer != LIMITS_NONE)
        tab.v[e->newer].older = e->older;
    else
        tab.newest = e->older;
}

static void limits_list_newest(uint32_t i)
{
    tab.v[i].older = tab.newest;
    tab.v[i].newer = LIMITS_NONE;
    if (tab.newest != LIMITS_NONE)
        tab.v[tab.newest].newer = i;
    else
        tab.oldest = i;
    tab.newest = i;
}

static void limits_touch(uint32_t i)
{
    limits_unlist(i);
    limits_list_newest(i);
}

static void limits_unchain(uint32_t i)
{
    uint32_t *p = &tab.buckets[limits_bucket(tab.v[i].key)];
    while (*p != i)
        p = &tab.v[*p].chain;
    *p = tab.v[i].chain;
}

/* The slot to reuse when full: the oldest without a live connection, or
 * else the oldest of all. */
static uint32_t limits_victim(void)
{
    uint32_t i = tab.oldest;
    while (i != LIMITS_NONE && tab.v[i].live > 0)
        i = tab.v[i].newer;
    return i != LIMITS_NONE ? i : tab.oldest;
}

/* key's entry, made (and something forgotten) if needed. */
static uint32_t limits_get(const uint8_t key[16])
{
    uint32_t i = limits_find(key);
    if (i != LIMITS_NONE) {
        limits_touch(i);
        return i;
    }
    if (tab.used < tab.slots) {
        i = tab.used++;
    } else {
        i = limits_victim();
        limits_unlist(i);
        limits_unchain(i);
    }
    struct limits_entry *e = &tab.v[i];
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, 16);
    uint32_t b = limits_bucket(key);
    e->chain = tab.buckets[b];
    tab.buckets[b] = i;
    limits_list_newest(i);
    return i;
}

/* ---- public ----------------------------------------------------------- */

int limits_init(const struct limits_conf *conf, size_t slots)
{
    limits_free();
    tab.conf = *conf;
    if (conf->connections == 0 && conf->connection_rate == 0
        && conf->message_rate == 0)
        return 0;
    if (throttle_init(0) < 0)               /* draws the hash's secret */
        return -1;
    if (slots == 0 || slots > UINT32_MAX / 4)
        slots = LIMITS_SLOTS;
    tab.slots = (uint32_t)slots;
    tab.nbuckets = tab.slots * 2;
    tab.v = calloc(tab.slots, sizeof(*tab.v));
    tab.buckets = malloc(tab.nbuckets * sizeof(*tab.buckets));
    if (tab.v == NULL || tab.buckets == NULL) {
        limits_free();
        return -1;
    }
    memset(tab.buckets, 0xff, tab.nbuckets * sizeof(*tab.buckets));
    tab.oldest = tab.newest = LIMITS_NONE;
    return 0;
}

void limits_free(void)
{
    free(tab.v);
    free(tab.buckets);
    memset(&tab, 0, sizeof(tab));
}

int limits_on(void)
{
    return tab.v != NULL;
}

int limits_key(const char *ip, uint8_t key[16])
{
    return throttle_address(ip, key);
}

int limits_exempt(const struct proxy_net *nets, size_t n, const char *ip)
{
    struct sockaddr_in6 sa6;
    struct sockaddr_in sa4;
    memset(&sa6, 0, sizeof(sa6));
    memset(&sa4, 0, sizeof(sa4));
    if (inet_pton(AF_INET, ip, &sa4.sin_addr) == 1) {
        sa4.sin_family = AF_INET;
        return proxy_net_match(nets, n, (const struct sockaddr *)&sa4);
    }
    if (inet_pton(AF_INET6, ip, &sa6.sin6_addr) == 1) {
        sa6.sin6_family = AF_INET6;
        return proxy_net_match(nets, n, (const struct sockaddr *)&sa6);
    }
    return 0;
}

enum limits_verdict limits_connect(const uint8_t key[16], uint64_t now_ms)
{
    if (tab.v == NULL)
        return LIMITS_GO;
    struct limits_entry *e = &tab.v[limits_get(key)];
    if (tab.conf.connections && e->live >= tab.conf.connections)
        return LIMITS_CONNECTIONS;
    if (tab.conf.connection_rate
        && rate_count(&e->conns, now_ms) >= tab.conf.connection_rate)
        return LIMITS_CONNECTION_RATE;
    e->live++;
    rate_add(&e->conns, now_ms);
    return LIMITS_GO;
}

void limits_disconnect(const uint8_t key[16])
{
    uint32_t i = limits_find(key);
    if (i != LIMITS_NONE && tab.v[i].live > 0)
        tab.v[i].live--;
}

enum limits_verdict limits_message_check(const uint8_t key[16], uint64_t now_ms)
{
    if (tab.v == NULL || tab.conf.message_rate == 0)
        return LIMITS_GO;
    struct limits_entry *e = &tab.v[limits_get(key)];
    if (rate_count(&e->msgs, now_ms) >= tab.conf.message_rate)
        return LIMITS_MESSAGE_RATE;
    return LIMITS_GO;
}

void limits_message_sent(const uint8_t key[16], uint64_t now_ms)
{
    if (tab.v == NULL || tab.conf.message_rate == 0)
        return;
    rate_add(&tab.v[limits_get(key)].msgs, now_ms);
}

size_t limits_count(void)
{
    return tab.used;
}

unsigned limits_live(const uint8_t key[16])
{
    uint32_t i = limits_find(key);
    return i == LIMITS_NONE ? 0 : tab.v[i].live;
}
