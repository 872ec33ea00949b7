/*
 * auth_sasl.h - SASL PLAIN (RFC 4616) and LOGIN for AUTH (RFC 4954): base64,
 * splitting the PLAIN message, checking a password in constant time.
 * No I/O; the session drives the exchange.
 */
#ifndef AUTH_SASL_H
#define AUTH_SASL_H

#include <stddef.h>
#include <stdint.h>

/* Decodes base64 (RFC 4648, padding required, no whitespace) from
 * in[0..len) into out (cap bytes). 0 and *outlen set, or -1 if malformed
 * or too long. "=" alone decodes to zero bytes (RFC 4954 empty response). */
int auth_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                       size_t *outlen);

/* Encodes in[0..len) into out (cap >= 4*((len+2)/3)+1), NUL-terminated;
 * returns the length. */
size_t auth_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* Splits "authzid NUL authcid NUL passwd". Copies authcid and passwd
 * (NUL-terminated) into user/pass. 0, or -1 when malformed, too long, or
 * authzid is neither empty nor equal to authcid. */
int auth_plain_split(const uint8_t *msg, size_t len, char *user, size_t ucap,
                     char *pass, size_t pcap);

/* 1 when the two strings are equal, compared in time that depends on
 * their lengths only; else 0. */
int auth_password_equal(const char *want, const char *got);

#endif
