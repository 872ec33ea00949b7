/*
 * throttle.c - a fixed table of client addresses and the times of their
 * last failed logins: hash chains to find an address, a list ordered by
 * last failure to forget the oldest when the table is full. Memory is
 * allocated once; nothing here grows with the number of clients.
 */
#include "throttle.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define THROTTLE_BUCKETS (THROTTLE_SLOTS * 2)
#define THROTTLE_NONE    UINT32_MAX

struct throttle_entry {
    uint8_t key[16];                        /* IPv4 in the first 4 bytes */
    uint64_t fails[THROTTLE_MAX_FAILS];     /* ring: the last failures */
    uint32_t nfails;                        /* failures recorded, ever */
    uint32_t chain;                         /* next in the hash bucket */
    uint32_t older, newer;                  /* the order of last failures */
};

static struct throttle_entry *entries;
static uint32_t *buckets;
static uint32_t used;                       /* entries handed out */
static uint32_t oldest = THROTTLE_NONE, newest = THROTTLE_NONE;

int throttle_init(void)
{
    if (entries)
        return 0;
    entries = calloc(THROTTLE_SLOTS, sizeof(*entries));
    buckets = malloc(THROTTLE_BUCKETS * sizeof(*buckets));
    if (entries == NULL || buckets == NULL) {
        throttle_free();
        return -1;
    }
    memset(buckets, 0xff, THROTTLE_BUCKETS * sizeof(*buckets));
    used = 0;
    oldest = newest = THROTTLE_NONE;
    return 0;
}

void throttle_free(void)
{
    free(entries);
    free(buckets);
    entries = NULL;
    buckets = NULL;
    used = 0;
}

size_t throttle_count(void)
{
    return used;
}

/* 0 and key filled, or -1 when ip is not an address. */
static int throttle_key(const char *ip, uint8_t key[16])
{
    memset(key, 0, 16);
    if (strchr(ip, ':'))
        return inet_pton(AF_INET6, ip, key) == 1 ? 0 : -1;
    return inet_pton(AF_INET, ip, key) == 1 ? 0 : -1;
}

/* FNV-1a: addresses are not secret, but chains must stay short even
 * for a sequential sweep of addresses. */
static uint32_t throttle_hash(const uint8_t key[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % THROTTLE_BUCKETS;
}

static uint32_t throttle_find(const uint8_t key[16])
{
    uint32_t i = buckets[throttle_hash(key)];
    while (i != THROTTLE_NONE && memcmp(entries[i].key, key, 16) != 0)
        i = entries[i].chain;
    return i;
}

/* ---- the order of last failures --------------------------------------- */

static void throttle_unlist(uint32_t i)
{
    struct throttle_entry *e = &entries[i];
    if (e->older != THROTTLE_NONE)
        entries[e->older].newer = e->newer;
    else
        oldest = e->newer;
    if (e->newer != THROTTLE_NONE)
        entries[e->newer].older = e->older;
    else
        newest = e->older;
}

static void throttle_list_newest(uint32_t i)
{
    entries[i].older = newest;
    entries[i].newer = THROTTLE_NONE;
    if (newest != THROTTLE_NONE)
        entries[newest].newer = i;
    else
        oldest = i;
    newest = i;
}

static void throttle_unchain(uint32_t i)
{
    uint32_t *p = &buckets[throttle_hash(entries[i].key)];
    while (*p != i)
        p = &entries[*p].chain;
    *p = entries[i].chain;
}

/* A fresh entry for key: a never-used slot, or the oldest one. */
static uint32_t throttle_take(const uint8_t key[16])
{
    uint32_t i;
    if (used < THROTTLE_SLOTS) {
        i = used++;
    } else {
        i = oldest;
        throttle_unlist(i);
        throttle_unchain(i);
    }
    struct throttle_entry *e = &entries[i];
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, 16);
    uint32_t b = throttle_hash(key);
    e->chain = buckets[b];
    buckets[b] = i;
    throttle_list_newest(i);
    return i;
}

/* ---- public ----------------------------------------------------------- */

int throttle_blocked(const char *ip, uint64_t now_ms)
{
    uint8_t key[16];
    if (entries == NULL || throttle_key(ip, key) < 0)
        return 0;
    uint32_t i = throttle_find(key);
    if (i == THROTTLE_NONE || entries[i].nfails < THROTTLE_MAX_FAILS)
        return 0;
    const struct throttle_entry *e = &entries[i];
    /* The ring's next slot holds the oldest of the last MAX_FAILS. */
    uint64_t last = e->fails[(e->nfails - 1) % THROTTLE_MAX_FAILS];
    uint64_t first = e->fails[e->nfails % THROTTLE_MAX_FAILS];
    return last - first <= THROTTLE_WINDOW_MS && now_ms - last < THROTTLE_WINDOW_MS;
}

void throttle_fail(const char *ip, uint64_t now_ms)
{
    uint8_t key[16];
    if (entries == NULL || throttle_key(ip, key) < 0)
        return;
    uint32_t i = throttle_find(key);
    if (i == THROTTLE_NONE) {
        i = throttle_take(key);
    } else {
        throttle_unlist(i);
        throttle_list_newest(i);
    }
    struct throttle_entry *e = &entries[i];
    e->fails[e->nfails % THROTTLE_MAX_FAILS] = now_ms;
    if (++e->nfails == 2 * THROTTLE_MAX_FAILS)
        e->nfails = THROTTLE_MAX_FAILS;     /* same slots, no overflow */
}
