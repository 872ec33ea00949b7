/*
 * auth_throttle.h - how many password checks an address and an account may
 * have: two tables of fixed size, one of client addresses (an IPv6 client
 * by its /64), one of user names, each remembering the last
 * THROTTLE_MAX_FAILS failures and the checks let in and not finished.
 * A check counts from the moment it is let in (throttle_begin), so many
 * parallel attempts get no more checks than sequential ones.
 *
 * An address is refused while its failures within THROTTLE_WINDOW_MS plus
 * its checks in flight reach THROTTLE_MAX_FAILS, and until THROTTLE_WINDOW_MS
 * after its last failure once THROTTLE_MAX_FAILS failures fell within one
 * window. An account past the same count gets one check started per
 * THROTTLE_ACCOUNT_GAP_MS, except from an address that has logged in as it
 * before (a bounded memory of such pairs). A full table forgets the entry
 * touched longest ago that is not locked (checks in flight, or past the
 * count); when every entry is locked the newcomer is refused. The tables
 * are hashed with a key drawn at start, so addresses cannot be chosen to
 * collide. Loop thread only; times are selector_now_ms() values.
 */
#ifndef AUTH_THROTTLE_H
#define AUTH_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#define THROTTLE_MAX_FAILS       10
#define THROTTLE_WINDOW_MS       (10ULL * 60 * 1000)
#define THROTTLE_ACCOUNT_GAP_MS  1000
#define THROTTLE_SLOTS           16384      /* addresses, and user names */
#define THROTTLE_KNOWN_PAIRS     4096       /* (user, address) logins kept */

enum throttle_verdict {
    THROTTLE_GO,            /* let in: counted until throttle_end */
    THROTTLE_ADDRESS,       /* the address failed too often */
    THROTTLE_ACCOUNT,       /* the account: one check a second, now used */
    THROTTLE_FULL,          /* a table is full of locked entries */
};

/* Draws the hash key and allocates both tables of slots entries each
 * (0: THROTTLE_SLOTS; about 2 MB each). 0, or -1 when out of memory. */
int throttle_init(size_t slots);
void throttle_free(void);

/* The address's key in the table: IPv4 in the first 4 bytes, IPv6 cut to
 * its /64. 0, or -1 when ip is not an address. */
int throttle_address(const char *ip, uint8_t key[16]);

/* A key's keyed hash (SipHash-2-4 under the secret throttle_init drew),
 * for other tables of addresses (smtp_limits.c). */
uint64_t throttle_key_hash(const uint8_t key[16]);

/* 1 when the address must be refused now, before any credentials. An
 * address that does not parse is never refused. */
int throttle_blocked(const char *ip, uint64_t now_ms);

/* May a check of user's password from ip start now? On THROTTLE_GO the
 * check is counted for both until throttle_end. */
enum throttle_verdict throttle_begin(const char *ip, const char *user,
                                     uint64_t now_ms);

/* The check let in by throttle_begin is over: ok 1 (right password: not
 * counted any more, and the pair is remembered), 0 (a failure), or -1
 * (it never ran: not counted, not remembered). */
void throttle_end(const char *ip, const char *user, int ok, uint64_t now_ms);

/* Failures within the window plus checks in flight, of the address and
 * of the account together: the check queue serves the least busy first. */
unsigned throttle_load(const char *ip, const char *user, uint64_t now_ms);

/* 1 when ip has logged in as user since the start. */
int throttle_known(const char *ip, const char *user);

/* Entries in the address table, and in the account table (for tests). */
size_t throttle_count(void);
size_t throttle_account_count(void);

#endif
