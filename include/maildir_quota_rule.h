/*
 * maildir_quota_rule.h - how a quota is written (maildir_quota_rule.c):
 * pure parsers and the maildirsize limit line, shared by the quota code
 * and the password-file parser.
 */
#ifndef MAILDIR_QUOTA_RULE_H
#define MAILDIR_QUOTA_RULE_H

#include <stddef.h>
#include <stdint.h>

/* A limit; 0 in a part means that part is not limited. */
struct quota_limit {
    uint64_t bytes;
    uint64_t count;
};

/*
 * s[0..len) as a size: digits, then at most one of k, M, G (powers of
 * 1024); a bare number is multiplied by unit. 0, or -1 when it does not
 * parse or overflows.
 */
int quota_parse_size(const char *s, size_t len, uint64_t unit, uint64_t *out);

/* --quota BYTES[:COUNT] (BYTES may be 0: no byte limit). 0, or -1. */
int quota_parse_limit(const char *arg, struct quota_limit *out);

/*
 * The value of Dovecot's userdb_quota_rule field, "*:storage=N" (a bare
 * N in KiB), "*:bytes=N" (bytes) and/or ":messages=M", any order after
 * "*". 0, or -1 with *why (a static string).
 */
int quota_parse_rule(const char *v, size_t len, struct quota_limit *out,
                     const char **why);

/* The first line of maildirsize for lim: "NS,MC", only the parts set,
 * with its newline; how many bytes (< size), 0 for no limit at all. */
size_t quota_limit_line(const struct quota_limit *lim, char *dst, size_t size);

#endif
