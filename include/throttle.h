/*
 * throttle.h - failed logins per client address, in a table of fixed
 * size: an address with THROTTLE_MAX_FAILS failures within THROTTLE_WINDOW_MS
 * is refused until THROTTLE_WINDOW_MS after its last failure. When the
 * table is full the address whose last failure is oldest is forgotten.
 * Loop thread only; times are selector_now_ms() values.
 */
#ifndef THROTTLE_H
#define THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#define THROTTLE_MAX_FAILS  10
#define THROTTLE_WINDOW_MS  (10ULL * 60 * 1000)
#define THROTTLE_SLOTS      16384           /* addresses remembered */

/* Allocates the table once (about 2 MB); 0, or -1 when out of memory. */
int throttle_init(void);
void throttle_free(void);

/* 1 when the address (IPv4 or IPv6 text, as inet_ntop writes it) must
 * be refused now, else 0. An address that does not parse is never. */
int throttle_blocked(const char *ip, uint64_t now_ms);

/* Records one failed login from the address. */
void throttle_fail(const char *ip, uint64_t now_ms);

/* Addresses in the table (for tests). */
size_t throttle_count(void);

#endif
