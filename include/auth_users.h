/*
 * auth_users.h - the password file (Dovecot's passwd-file format) as text:
 * parsing one line, parsing a whole file held in memory, and the sorted
 * table of users that results. No I/O: auth_passwd.c reads the files.
 */
#ifndef AUTH_USERS_H
#define AUTH_USERS_H

#include <stddef.h>

#include "maildir_quota_rule.h"

enum users_scheme {
    USERS_CRYPT,        /* a crypt(3) string, checked with crypt_r */
    USERS_PLAIN,        /* the password itself, compared in constant time */
};

/* One parsed line; the pointers point into the line given. */
struct users_line {
    const char *name;
    size_t name_len;
    const char *hash;       /* without its {SCHEME} prefix */
    size_t hash_len;
    enum users_scheme scheme;
    int has_quota;          /* the extra field userdb_quota_rule was given */
    struct quota_limit quota;
};

enum users_result {
    USERS_LINE_SKIP,        /* blank or a # comment */
    USERS_LINE_USER,        /* *out is filled in */
    USERS_LINE_BAD,         /* *why says what is wrong (a static string) */
};

/*
 * Parses "user:{SCHEME}hash[:uid:gid:gecos:home:shell:extra fields]"
 * (line[0..len), no newline). Of the extra fields (after the seventh
 * colon, separated by spaces) userdb_quota_rule=*:storage=N[:messages=M]
 * is read (maildir_quota.h), the others ignored, as are uid to shell.
 * The user must be a valid local-part; the scheme one of SHA512-CRYPT,
 * SHA256-CRYPT, BLF-CRYPT, CRYPT, PLAIN (any case), or absent with a bare
 * crypt(3) string; the hash must have its scheme's form.
 */
enum users_result users_parse_line(const char *line, size_t len,
                                   struct users_line *out, const char **why);

struct users_entry {
    char *name;                 /* lowercase */
    char *hash;
    enum users_scheme scheme;
    int has_quota;              /* its own limit, from userdb_quota_rule */
    struct quota_limit quota;
    const char *file;           /* where it was read (the caller's), or NULL */
    size_t line;                /* its line there, 1-based; 0: not from a file */
};

struct userdb {
    struct users_entry *v;      /* sorted by name once finished */
    size_t n, cap;
    size_t n_plain;             /* entries with a PLAIN password */
    /* the crypt(3) entry dearest to check, NULL if none (userdb_finish):
     * an unknown user is checked against it, so costs the same */
    const struct users_entry *costliest;
};

/* An empty table (calloc'd); NULL when out of memory. */
struct userdb *userdb_new(void);
void userdb_free(struct userdb *db);

/* Copies one user in. 0, or -1 when out of memory. */
int userdb_add(struct userdb *db, const char *name, size_t name_len,
               const char *hash, size_t hash_len, enum users_scheme scheme);

/*
 * Parses a whole file's text into db, line by line. 0, or -1 with *line_no
 * (1-based) and *why set at the first bad line. A NUL byte anywhere in a
 * line is an error; the last line may lack its newline.
 */
int userdb_parse_text(struct userdb *db, const char *text, size_t len,
                      size_t *line_no, const char **why);

/* What checking a crypt(3) string costs, in nanoseconds of one core
 * (a rough model from its scheme and parameters: the order is what
 * counts); 0 for anything not a crypt(3) string. */
unsigned long long users_hash_cost(const char *hash);

/* Sorts the table and finds its costliest entry; -1 with *dup naming a
 * user listed twice, else 0. */
int userdb_finish(struct userdb *db, const char **dup);

/* The entry for name (any case), or NULL. Only after userdb_finish. */
const struct users_entry *userdb_find(const struct userdb *db, const char *name);

#endif
