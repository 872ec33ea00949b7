/*
 * auth_users.c - Dovecot passwd-file lines into a sorted table of users.
 * Pure: no I/O, no logging; every error is a static string for the caller
 * to print with the file name and line. Allocation failure is -1.
 */
#include "auth_users.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parser.h"

/* ---- the forms of crypt(3) strings ------------------------------------ */

/* The alphabet of crypt(3) salts and hashes. */
static int users_c64(unsigned char c)
{
    return isalnum(c) || c == '.' || c == '/';
}

/* How many crypt-alphabet characters s[0..len) starts with. */
static size_t users_c64_span(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && users_c64((unsigned char)s[i]))
        i++;
    return i;
}

/* SHA-crypt (5 or 6): [rounds=N$]salt(0-16)$hash(width). */
static int users_sha_form(const char *s, size_t len, size_t width)
{
    if (len > 7 && memcmp(s, "rounds=", 7) == 0) {
        size_t d = 7;
        while (d < len && isdigit((unsigned char)s[d]))
            d++;
        if (d == 7 || d >= len || s[d] != '$')
            return 0;
        s += d + 1;
        len -= d + 1;
    }
    size_t salt = users_c64_span(s, len);
    if (salt > 16 || salt >= len || s[salt] != '$')
        return 0;
    return len - salt - 1 == width && users_c64_span(s + salt + 1, width) == width;
}

/* bcrypt: $2a$, $2b$ or $2y$, cost 04-31, then 22 + 31 characters. */
static int users_bcrypt_form(const char *s, size_t len)
{
    if (len != 60 || s[0] != '$' || s[1] != '2' || !strchr("aby", s[2])
        || s[2] == '\0' || s[3] != '$' || s[6] != '$')
        return 0;
    if (!isdigit((unsigned char)s[4]) || !isdigit((unsigned char)s[5]))
        return 0;
    int cost = (s[4] - '0') * 10 + (s[5] - '0');
    return cost >= 4 && cost <= 31 && users_c64_span(s + 7, 53) == 53;
}

/* yescrypt: $y$params$salt$hash(43). */
static int users_yescrypt_form(const char *s, size_t len)
{
    size_t p = users_c64_span(s, len);
    if (p == 0 || p >= len || s[p] != '$')
        return 0;
    s += p + 1;
    len -= p + 1;
    size_t salt = users_c64_span(s, len);
    if (salt == 0 || salt >= len || s[salt] != '$')
        return 0;
    return len - salt - 1 == 43 && users_c64_span(s + salt + 1, 43) == 43;
}

/* Another $id$ scheme crypt(3) may know: $id$ then crypt characters,
 * '$', ',' or '=' (parameters), ending in a non-empty hash. */
static int users_other_form(const char *s, size_t len)
{
    size_t id = 1;
    while (id < len && isalnum((unsigned char)s[id]))
        id++;
    if (id == 1 || id >= len || s[id] != '$' || s[len - 1] == '$')
        return 0;
    for (size_t i = id + 1; i < len; i++)
        if (!users_c64((unsigned char)s[i]) && !strchr("$,=", s[i]))
            return 0;
    return 1;
}

/* Any crypt(3) string: the well-known forms are checked exactly, so a
 * truncated one is refused; traditional DES is 13 characters. */
static int users_crypt_form(const char *s, size_t len)
{
    if (len >= 3 && memcmp(s, "$6$", 3) == 0)
        return users_sha_form(s + 3, len - 3, 86);
    if (len >= 3 && memcmp(s, "$5$", 3) == 0)
        return users_sha_form(s + 3, len - 3, 43);
    if (len >= 3 && memcmp(s, "$y$", 3) == 0)
        return users_yescrypt_form(s + 3, len - 3);
    if (len >= 2 && memcmp(s, "$2", 2) == 0)
        return users_bcrypt_form(s, len);
    if (len >= 3 && memcmp(s, "$1$", 3) == 0)
        return users_sha_form(s + 3, len - 3, 22);  /* MD5: same shape */
    if (len >= 1 && s[0] == '$')
        return users_other_form(s, len);
    return len == 13 && users_c64_span(s, len) == 13;
}

/* ---- one line --------------------------------------------------------- */

struct users_scheme_row {
    const char *name;
    enum users_scheme scheme;
    const char *prefix;         /* the hash must start so; NULL = any */
};

static const struct users_scheme_row users_schemes[] = {
    { "SHA512-CRYPT", USERS_CRYPT, "$6$" },
    { "SHA256-CRYPT", USERS_CRYPT, "$5$" },
    { "BLF-CRYPT",    USERS_CRYPT, "$2" },
    { "CRYPT",        USERS_CRYPT, NULL },
    { "PLAIN",        USERS_PLAIN, NULL },
};

/* Splits "{SCHEME}rest" off; -1 and *why when the scheme is unknown. */
static int users_scheme(struct users_line *out, const char **why)
{
    const char *h = out->hash, *end;
    size_t len = out->hash_len;
    out->scheme = USERS_CRYPT;
    if (len == 0 || h[0] == '$')
        return 0;               /* users_hash_ok says what is wrong */
    if (h[0] != '{') {
        if (!users_crypt_form(h, len)) {
            *why = "password field is neither {SCHEME}hash nor a crypt(3) string";
            return -1;
        }
        return 0;
    }
    end = memchr(h, '}', len);
    if (end == NULL) {
        *why = "no '}' after the scheme name";
        return -1;
    }
    size_t nlen = (size_t)(end - h - 1);
    const struct users_scheme_row *row = NULL;
    for (size_t i = 0; i < sizeof(users_schemes) / sizeof(users_schemes[0]); i++)
        if (strlen(users_schemes[i].name) == nlen
            && strncasecmp(users_schemes[i].name, h + 1, nlen) == 0)
            row = &users_schemes[i];
    if (row == NULL) {
        *why = "unknown password scheme (SHA512-CRYPT, SHA256-CRYPT, "
               "BLF-CRYPT, CRYPT or PLAIN)";
        return -1;
    }
    out->scheme = row->scheme;
    out->hash = end + 1;
    out->hash_len = len - nlen - 2;
    if (row->prefix && (out->hash_len < strlen(row->prefix)
                        || memcmp(out->hash, row->prefix, strlen(row->prefix)))) {
        *why = "the hash is not of the scheme named before it";
        return -1;
    }
    return 0;
}

static int users_hash_ok(const struct users_line *l, const char **why)
{
    if (l->hash_len == 0) {
        *why = "empty password";
        return 0;
    }
    if (l->scheme == USERS_PLAIN)
        return 1;
    if (!users_crypt_form(l->hash, l->hash_len)) {
        *why = "the hash does not have its scheme's form (truncated?)";
        return 0;
    }
    return 1;
}

static int users_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t')
            return 0;
    return 1;
}

/* The extra fields: what follows the seventh colon, space-separated. */
static int users_extra_fields(const char *line, size_t len,
                              struct users_line *out, const char **why)
{
    static const char key[] = "userdb_quota_rule=";
    size_t pos = 0;
    out->has_quota = 0;
    for (int colons = 0; colons < 7; colons++) {
        const char *c = memchr(line + pos, ':', len - pos);
        if (c == NULL)
            return 0;
        pos = (size_t)(c - line) + 1;
    }
    while (pos < len) {
        const char *sp = memchr(line + pos, ' ', len - pos);
        size_t flen = sp ? (size_t)(sp - line) - pos : len - pos;
        const char *f = line + pos;
        if (flen > sizeof key - 1 && memcmp(f, key, sizeof key - 1) == 0) {
            if (quota_parse_rule(f + sizeof key - 1, flen - (sizeof key - 1),
                                 &out->quota, why) < 0)
                return -1;
            out->has_quota = 1;
        }
        pos += flen + 1;
    }
    return 0;
}

enum users_result users_parse_line(const char *line, size_t len,
                                   struct users_line *out, const char **why)
{
    if (users_blank(line, len) || line[0] == '#')
        return USERS_LINE_SKIP;
    if (memchr(line, '\0', len)) {
        *why = "NUL byte in the line";
        return USERS_LINE_BAD;
    }
    const char *colon = memchr(line, ':', len);
    if (colon == NULL) {
        *why = "no ':' after the user name";
        return USERS_LINE_BAD;
    }
    out->name = line;
    out->name_len = (size_t)(colon - line);
    if (!parser_local_part_ok(out->name, out->name_len)) {
        *why = "the user name is not a valid local-part "
               "(1-64 of A-Z a-z 0-9 . _ + -, no leading, trailing or double dot)";
        return USERS_LINE_BAD;
    }
    out->hash = colon + 1;
    const char *end = memchr(out->hash, ':', len - out->name_len - 1);
    out->hash_len = end ? (size_t)(end - out->hash) : len - out->name_len - 1;
    if (users_scheme(out, why) < 0 || !users_hash_ok(out, why))
        return USERS_LINE_BAD;
    if (users_extra_fields(line, len, out, why) < 0)
        return USERS_LINE_BAD;
    return USERS_LINE_USER;
}

/* ---- the table -------------------------------------------------------- */

struct userdb *userdb_new(void)
{
    return calloc(1, sizeof(struct userdb));
}

void userdb_free(struct userdb *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < db->n; i++) {
        free(db->v[i].name);
        if (db->v[i].hash)
            explicit_bzero(db->v[i].hash, strlen(db->v[i].hash));
        free(db->v[i].hash);
    }
    free(db->v);
    free(db);
}

int userdb_add(struct userdb *db, const char *name, size_t name_len,
               const char *hash, size_t hash_len, enum users_scheme scheme)
{
    if (db->n == db->cap) {
        size_t cap = db->cap ? db->cap * 2 : 16;
        struct users_entry *v = realloc(db->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        db->v = v;
        db->cap = cap;
    }
    struct users_entry *e = &db->v[db->n];
    e->name = strndup(name, name_len);
    e->hash = strndup(hash, hash_len);
    e->scheme = scheme;
    e->has_quota = 0;
    e->quota = (struct quota_limit){ 0, 0 };
    e->file = NULL;
    e->line = 0;
    if (e->name == NULL || e->hash == NULL) {
        free(e->name);
        free(e->hash);
        return -1;
    }
    for (char *p = e->name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    db->n_plain += scheme == USERS_PLAIN;
    db->n++;
    return 0;
}

int userdb_parse_text(struct userdb *db, const char *text, size_t len,
                      size_t *line_no, const char **why)
{
    size_t pos = 0;
    *line_no = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - text - pos) : len - pos;
        /* a file written on Windows: CRLF ends its lines too */
        size_t plen = llen > 0 && text[pos + llen - 1] == '\r' ? llen - 1 : llen;
        struct users_line l;
        ++*line_no;
        switch (users_parse_line(text + pos, plen, &l, why)) {
        case USERS_LINE_SKIP:
            break;
        case USERS_LINE_BAD:
            return -1;
        case USERS_LINE_USER:
            if (userdb_add(db, l.name, l.name_len, l.hash, l.hash_len,
                           l.scheme) < 0) {
                *why = "out of memory";
                return -1;
            }
            db->v[db->n - 1].line = *line_no;
            db->v[db->n - 1].has_quota = l.has_quota;
            db->v[db->n - 1].quota = l.quota;
            break;
        }
        pos += llen + 1;
    }
    return 0;
}

/* ---- what a check costs ---------------------------------------------- */

/* The value of one crypt(3) alphabet character, ./0-9A-Za-z: 0-63. */
static unsigned users_c64_value(char c)
{
    static const char set[] =
        "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const char *p = c ? strchr(set, c) : NULL;
    return p ? (unsigned)(p - set) : 0;
}

/* SHA-crypt: its rounds (5,000 unless "rounds=N$"), ~220 ns each. */
static unsigned long long users_sha_cost(const char *s)
{
    unsigned long long rounds = 5000;
    if (strncmp(s, "rounds=", 7) == 0)
        rounds = strtoull(s + 7, NULL, 10);
    if (rounds < 1000)
        rounds = 1000;
    if (rounds > 999999999)
        rounds = 999999999;
    return rounds * 220;
}

/* yescrypt "$y$FNr...": N = 2^(value of N + 1), r = value of r + 1;
 * N * r blocks at ~490 ns each (N 4096, r 32: ~64 ms). */
static unsigned long long users_yescrypt_cost(const char *params)
{
    if (params[0] == '\0' || params[1] == '\0')
        return 0;
    unsigned nlog = users_c64_value(params[1]) + 1;
    unsigned r = params[2] && params[2] != '$' ? users_c64_value(params[2]) + 1 : 1;
    if (nlog > 30)
        nlog = 30;
    return (1ULL << nlog) * r * 490;
}

unsigned long long users_hash_cost(const char *h)
{
    if (strncmp(h, "$6$", 3) == 0 || strncmp(h, "$5$", 3) == 0)
        return users_sha_cost(h + 3);
    if (strncmp(h, "$y$", 3) == 0)
        return users_yescrypt_cost(h + 3);
    if (strncmp(h, "$gy$", 4) == 0)
        return users_yescrypt_cost(h + 4);
    if (strncmp(h, "$2", 2) == 0 && strlen(h) > 6      /* 2^cost, ~71 us */
        && isdigit((unsigned char)h[4]) && isdigit((unsigned char)h[5]))
        return (1ULL << ((h[4] - '0') * 10 + (h[5] - '0')) % 32) * 71000;
    if (strncmp(h, "$1$", 3) == 0)
        return 300000;
    if (h[0] == '$')
        return 1000000;         /* a scheme we cannot weigh: 1 ms */
    return 10000;               /* traditional DES */
}

static void users_find_costliest(struct userdb *db)
{
    unsigned long long most = 0;
    db->costliest = NULL;
    for (size_t i = 0; i < db->n; i++) {
        if (db->v[i].scheme != USERS_CRYPT)
            continue;
        unsigned long long c = users_hash_cost(db->v[i].hash);
        if (db->costliest == NULL || c > most) {
            db->costliest = &db->v[i];
            most = c;
        }
    }
}

static int users_cmp(const void *a, const void *b)
{
    return strcmp(((const struct users_entry *)a)->name,
                  ((const struct users_entry *)b)->name);
}

int userdb_finish(struct userdb *db, const char **dup)
{
    if (db->n > 1)
        qsort(db->v, db->n, sizeof(db->v[0]), users_cmp);
    for (size_t i = 1; i < db->n; i++) {
        if (strcmp(db->v[i - 1].name, db->v[i].name) == 0) {
            *dup = db->v[i].name;
            return -1;
        }
    }
    users_find_costliest(db);
    return 0;
}

const struct users_entry *userdb_find(const struct userdb *db, const char *name)
{
    char low[SMTP_LOCAL_MAX + 1];
    size_t len = strlen(name);
    if (db == NULL || db->n == 0 || len == 0 || len >= sizeof(low))
        return NULL;
    for (size_t i = 0; i <= len; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    struct users_entry key = { .name = low };
    return bsearch(&key, db->v, db->n, sizeof(db->v[0]), users_cmp);
}
