/*
 * smtp_utf8.h - UTF-8 as SMTPUTF8 (RFC 6531) needs it: one character
 * decoded and checked, a string checked. Pure: no I/O, no allocation,
 * no locale.
 */
#ifndef SMTP_UTF8_H
#define SMTP_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The character at s[0..len): its length (1-4) and code point, or 0 when
 * the bytes there are not one: a stray continuation byte, a sequence cut
 * short, an overlong form, a surrogate, or past U+10FFFF (RFC 3629). */
size_t utf8_char(const unsigned char *s, size_t len, uint32_t *cp);

/* 1 when s[0..len) is valid UTF-8 from end to end, else 0. */
int utf8_valid(const char *s, size_t len);

/* 1 when s[0..len) holds a byte outside ASCII. */
int utf8_has_8bit(const char *s, size_t len);

#endif
