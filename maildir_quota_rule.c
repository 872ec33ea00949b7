/*
 * maildir_quota_rule.c - the words of a quota, pure: sizes with k, M, G,
 * --quota BYTES[:COUNT], Dovecot's userdb_quota_rule, and the limit line
 * that starts a maildirsize file. No I/O: the password-file parser and
 * its fuzz harness use it as they are.
 */
#include "maildir_quota_rule.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int quota_parse_size(const char *s, size_t len, uint64_t unit, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    if (len == 0)
        return -1;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0)
        return -1;
    if (i + 1 == len) {
        switch (s[i]) {
        case 'k': case 'K': unit = 1ULL << 10; break;
        case 'M':           unit = 1ULL << 20; break;
        case 'G':           unit = 1ULL << 30; break;
        default:            return -1;
        }
    } else if (i != len) {
        return -1;
    }
    if (v != 0 && unit > UINT64_MAX / 2 / v)
        return -1;
    *out = v * unit;
    return 0;
}

int quota_parse_limit(const char *arg, struct quota_limit *out)
{
    const char *colon = strchr(arg, ':');
    size_t blen = colon ? (size_t)(colon - arg) : strlen(arg);
    struct quota_limit l = { 0, 0 };
    if (quota_parse_size(arg, blen, 1, &l.bytes) < 0)
        return -1;
    if (colon) {
        const char *c = colon + 1;
        size_t clen = strlen(c);
        if (clen == 0 || strspn(c, "0123456789") != clen
            || quota_parse_size(c, clen, 1, &l.count) < 0)
            return -1;
    }
    if (l.bytes == 0 && l.count == 0)
        return -1;
    *out = l;
    return 0;
}

static int quota_key(const char *p, size_t len, const char *key)
{
    size_t k = strlen(key);
    return len > k && memcmp(p, key, k) == 0;
}

int quota_parse_rule(const char *v, size_t len, struct quota_limit *out,
                     const char **why)
{
    struct quota_limit l = { 0, 0 };
    if (len < 2 || v[0] != '*' || v[1] != ':') {
        *why = "userdb_quota_rule must start with '*:'";
        return -1;
    }
    size_t pos = 2;
    int any = 0;
    while (pos <= len) {
        const char *p = v + pos;
        const char *c = memchr(p, ':', len - pos);
        size_t plen = c ? (size_t)(c - p) : len - pos;
        int bad;
        if (quota_key(p, plen, "storage="))
            bad = quota_parse_size(p + 8, plen - 8, 1024, &l.bytes);
        else if (quota_key(p, plen, "bytes="))
            bad = quota_parse_size(p + 6, plen - 6, 1, &l.bytes);
        else if (quota_key(p, plen, "messages="))
            bad = strspn(p + 9, "0123456789") < plen - 9
                  || quota_parse_size(p + 9, plen - 9, 1, &l.count);
        else
            bad = 1;
        if (bad) {
            *why = "bad userdb_quota_rule (*:storage=N[:messages=M], "
                   "suffixes k M G)";
            return -1;
        }
        any = 1;
        pos += plen + 1;
    }
    if (!any) {
        *why = "empty userdb_quota_rule";
        return -1;
    }
    *out = l;
    return 0;
}

size_t quota_limit_line(const struct quota_limit *lim, char *dst, size_t size)
{
    int n;
    if (lim->bytes && lim->count)
        n = snprintf(dst, size, "%" PRIu64 "S,%" PRIu64 "C\n",
                     lim->bytes, lim->count);
    else if (lim->bytes)
        n = snprintf(dst, size, "%" PRIu64 "S\n", lim->bytes);
    else if (lim->count)
        n = snprintf(dst, size, "%" PRIu64 "C\n", lim->count);
    else
        n = 0;
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}
