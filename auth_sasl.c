/*
 * auth_sasl.c - SASL helpers for AUTH PLAIN/LOGIN (RFC 4954, 4616): strict
 * base64, splitting the PLAIN message, constant-time password checks.
 * No I/O, no allocation; only reads cfg->users. Malformed input is -1.
 */
#include "auth_sasl.h"

#include <string.h>

static const char auth_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63, or -1 for anything outside the RFC 4648 alphabet (even '='). */
static int auth_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Decodes one 4-character group; last says padding may appear. Returns
 * how many bytes it yields (1-3), or -1. Non-zero bits under the padding
 * are refused too: only the canonical encoding is accepted (RFC 4648 3.5).
 */
static int auth_b64_group(const char *g, int last, uint8_t bytes[3])
{
    int v[4], pad = 0;

    if (last && g[3] == '=')
        pad = g[2] == '=' ? 2 : 1;
    for (int i = 0; i < 4 - pad; i++)
        if ((v[i] = auth_b64_value((unsigned char)g[i])) < 0)
            return -1;
    for (int i = 4 - pad; i < 4; i++)
        v[i] = 0;
    if ((pad == 2 && (v[1] & 0x0f)) || (pad == 1 && (v[2] & 0x03)))
        return -1;
    bytes[0] = (uint8_t)(v[0] << 2 | v[1] >> 4);
    bytes[1] = (uint8_t)((v[1] & 0x0f) << 4 | v[2] >> 2);
    bytes[2] = (uint8_t)((v[2] & 0x03) << 6 | v[3]);
    return 3 - pad;
}

int auth_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                       size_t *outlen)
{
    size_t o = 0;

    *outlen = 0;
    if (len == 1 && in[0] == '=')       /* RFC 4954: empty response */
        return 0;
    if (len % 4 != 0)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        uint8_t bytes[3];
        int k = auth_b64_group(in + i, i + 4 == len, bytes);
        if (k < 0 || cap - o < (size_t)k)
            return -1;
        memcpy(out + o, bytes, (size_t)k);
        o += (size_t)k;
    }
    *outlen = o;
    return 0;
}

size_t auth_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;

    if (cap == 0)
        return 0;
    if (cap < 4 * ((len + 2) / 3) + 1) {   /* refuse rather than truncate */
        out[0] = '\0';
        return 0;
    }
    for (size_t i = 0; i < len; i += 3) {
        size_t left = len - i;
        uint32_t w = (uint32_t)in[i] << 16;
        if (left > 1)
            w |= (uint32_t)in[i + 1] << 8;
        if (left > 2)
            w |= in[i + 2];
        out[o++] = auth_b64_alphabet[w >> 18 & 0x3f];
        out[o++] = auth_b64_alphabet[w >> 12 & 0x3f];
        out[o++] = left > 1 ? auth_b64_alphabet[w >> 6 & 0x3f] : '=';
        out[o++] = left > 2 ? auth_b64_alphabet[w & 0x3f] : '=';
    }
    out[o] = '\0';
    return o;
}

/* Copies s[0..len) as a C string if it fits in cap. */
static int auth_copy(const uint8_t *s, size_t len, char *dst, size_t cap)
{
    if (len >= cap)
        return -1;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

int auth_plain_split(const uint8_t *msg, size_t len, char *user, size_t ucap,
                     char *pass, size_t pcap)
{
    const uint8_t *nul1 = len ? memchr(msg, '\0', len) : NULL, *nul2;
    size_t zlen, ulen, plen;

    if (!nul1)
        return -1;
    zlen = (size_t)(nul1 - msg);
    nul2 = memchr(nul1 + 1, '\0', len - zlen - 1);
    if (!nul2)
        return -1;
    ulen = (size_t)(nul2 - nul1 - 1);
    plen = len - zlen - ulen - 2;
    /* RFC 4616: authcid and passwd are 1*SAFE, and SAFE excludes NUL. */
    if (ulen == 0 || plen == 0 || memchr(nul2 + 1, '\0', plen))
        return -1;
    /* We act only as ourselves: an authzid must name the same user. */
    if (zlen != 0 && (zlen != ulen ||
                      strncasecmp((const char *)msg, (const char *)nul1 + 1,
                                  ulen) != 0))
        return -1;
    if (auth_copy(nul1 + 1, ulen, user, ucap) < 0 ||
        auth_copy(nul2 + 1, plen, pass, pcap) < 0)
        return -1;
    return 0;
}

/*
 * Compares over the longer of the two strings whatever the contents, so
 * the time taken says nothing about how many leading bytes were right.
 */
static int auth_equal_ct(const char *a, size_t alen, const char *b,
                         size_t blen)
{
    size_t n = alen > blen ? alen : blen;
    volatile unsigned diff = alen != blen;

    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < alen ? (unsigned char)a[i] : 0;
        unsigned char y = i < blen ? (unsigned char)b[i] : 0;
        diff |= (unsigned)(x ^ y);
    }
    return diff == 0;
}

int auth_password_equal(const char *want, const char *got)
{
    return auth_equal_ct(want, strlen(want), got, strlen(got));
}
