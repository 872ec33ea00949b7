/*
 * smtp_limits.h - what one client address may do: how many connections
 * it holds, how many it opened and how many messages it sent within a
 * minute. One table of fixed size, keyed like the login throttle's (an
 * IPv6 client by its /64, an IPv4-mapped address as its IPv4 address;
 * auth_throttle.h), hashed under the same secret. Pure: no I/O, no
 * session; the session asks and reports. Loop thread only; times are
 * selector_now_ms() values.
 *
 * A minute is counted in whole seconds: an event counts from its second
 * for the next 60 seconds, so a limit of N never lets N + 1 events into
 * any 60 s. A full table forgets the entry touched longest ago that has
 * no live connection, or, when every entry has one, the oldest of all
 * (whose count then starts over).
 */
#ifndef SMTP_LIMITS_H
#define SMTP_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#define LIMITS_SLOTS    16384       /* client addresses held */
#define LIMITS_SECONDS  61          /* the current second and the 60 before */
#define LIMITS_RATE_MAX 65535       /* the largest rate that may be set */

struct limits_conf {
    unsigned connections;           /* --client-limit, 0 = none */
    unsigned connection_rate;       /* --client-rate, 0 = none */
    unsigned message_rate;          /* --message-rate, 0 = none */
};

enum limits_verdict {
    LIMITS_GO,              /* let in, and counted */
    LIMITS_CONNECTIONS,     /* as many connections as allowed are open */
    LIMITS_CONNECTION_RATE, /* as many opened within the minute */
    LIMITS_MESSAGE_RATE,    /* as many messages sent within the minute */
};

/* The table of slots entries (0: LIMITS_SLOTS; about 300 bytes each),
 * for the limits in conf. 0, or -1 when out of memory. */
int limits_init(const struct limits_conf *conf, size_t slots);
void limits_free(void);

/* 1 when any limit is set (limits_init ran with one). */
int limits_on(void);

/* The client's key (auth_throttle.h's throttle_address). 0, or -1 when ip
 * is not an address. */
int limits_key(const char *ip, uint8_t key[16]);

/* 1 when ip (text) is inside one of nets[0..n) (--limit-exempt). */
struct proxy_net;
int limits_exempt(const struct proxy_net *nets, size_t n, const char *ip);

/* A new connection from key: on LIMITS_GO it is counted (live until
 * limits_disconnect, and in the minute's rate); a refusal counts nothing. */
enum limits_verdict limits_connect(const uint8_t key[16], uint64_t now_ms);
void limits_disconnect(const uint8_t key[16]);

/* May key start a message now (LIMITS_GO or LIMITS_MESSAGE_RATE)? And a
 * message of key's was acknowledged: it counts in the minute's rate. */
enum limits_verdict limits_message_check(const uint8_t key[16], uint64_t now_ms);
void limits_message_sent(const uint8_t key[16], uint64_t now_ms);

/* Entries in the table, and key's live connections (for tests). */
size_t limits_count(void);
unsigned limits_live(const uint8_t key[16]);

#endif
