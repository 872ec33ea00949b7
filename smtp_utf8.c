/*
 * smtp_utf8.c - UTF-8 decoding for SMTPUTF8: addresses are checked on
 * their characters, never on bytes alone, so an overlong '/' or '.'
 * cannot pass for something else. Used by parser.c; no I/O.
 */
#include "smtp_utf8.h"

static int utf8_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

size_t utf8_char(const unsigned char *s, size_t len, uint32_t *cp)
{
    static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (len == 0)
        return 0;
    unsigned char c = s[0];
    size_t n;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;       /* a continuation byte, 0xC0/0xC1, or 0xF5.. */
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (!utf8_cont(s[i]))
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

int utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_char(p + i, len - i, &cp);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

int utf8_has_8bit(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 1;
    return 0;
}
