/*
 * addr_aliases.c - the aliases file as text to a table (addr_aliases.h):
 * one pass over the lines, then the names sorted, then every alias
 * followed to the mailboxes it reaches, refusing loops and chains deeper
 * than ALIASES_MAX_DEPTH. Pure: no I/O, the caller says which names are
 * mailboxes.
 */
#include "addr_aliases.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { A_NEW, A_BUSY, A_DONE };

struct aliases_parse {
    struct aliases *a;
    aliases_mailbox_fn *is_mailbox;
    void *arg;
    size_t *line;
    char *why;
    size_t why_len;
};

__attribute__((format(printf, 3, 4)))
static int aliases_fail(struct aliases_parse *p, size_t line,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, p->why_len, fmt, ap);
    va_end(ap);
    *p->line = line;
    return -1;
}

static int aliases_nomem(struct aliases_parse *p)
{
    return aliases_fail(p, 0, "out of memory");
}

/* The length of the one UTF-8 character at s that a local-part may hold
 * (as in addresses under SMTPUTF8: not ASCII, not a C1 control
 * U+0080-U+009F), or 0 for a broken
 * or overlong sequence, a surrogate or one past U+10FFFF. Written here, not
 * taken from smtp_utf8.c, because the addr_ family uses no other module. */
static size_t aliases_utf8_char(const unsigned char *s, size_t len)
{
    static const unsigned long min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t n = s[0] >= 0xC2 && s[0] <= 0xDF ? 2
             : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
             : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (n == 0 || len < n)
        return 0;
    unsigned long v = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)
        || v <= 0x9F)
        return 0;
    return n;
}

/* Whether s holds a byte past ASCII that does not start a character
 * aliases_utf8_char takes: reported apart from other bad names. */
static bool aliases_utf8_bad(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len; ) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = aliases_utf8_char(u + i, len - i);
        if (n == 0)
            return true;
        i += n;
    }
    return false;
}

/* A local-part as mail addresses use it: 1-64 octets of [A-Za-z0-9._+-]
 * or UTF-8 characters past U+009F, no leading, trailing or doubled dot. */
static bool aliases_local_ok(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (len == 0 || len > 64 || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; ) {
        if (u[i] >= 0x80) {
            size_t n = aliases_utf8_char(u + i, len - i);
            if (n == 0)
                return false;
            i += n;
            continue;
        }
        if (!isalnum(u[i]) && !strchr("._+-", u[i]))
            return false;
        if (u[i] == '.' && i + 1 < len && u[i + 1] == '.')
            return false;
        i++;
    }
    return true;
}

/* ASCII letters fold; every other byte stays as it is (no locale). */
static char aliases_fold(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static char *aliases_lower_dup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        d[i] = aliases_fold(s[i]);
    d[len] = '\0';
    return d;
}

static void aliases_trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

/* ---- the lines -------------------------------------------------------- */

static int aliases_add_target(struct aliases_parse *p, struct alias *al,
                              const char *t, size_t len, size_t line)
{
    if (t[0] == '|')
        return aliases_fail(p, line, "a command target is not allowed: only local mailboxes and aliases");
    if (memchr(t, '/', len))
        return aliases_fail(p, line, "a file target is not allowed: only local mailboxes and aliases");
    if (memchr(t, '@', len))
        return aliases_fail(p, line, "a target with a domain is not allowed: mail is not relayed");
    if (aliases_utf8_bad(t, len))
        return aliases_fail(p, line, "bad target: invalid UTF-8 (a broken or overlong sequence)");
    if (!aliases_local_ok(t, len))
        return aliases_fail(p, line, "bad target '%.*s'", (int)(len > 64 ? 64 : len), t);
    if (al->ntargets == al->cap) {
        size_t cap = al->cap ? al->cap * 2 : 4;
        char **tv = realloc(al->targets, cap * sizeof *tv);
        if (tv)
            al->targets = tv;
        size_t *lv = realloc(al->target_lines, cap * sizeof *lv);
        if (lv)
            al->target_lines = lv;
        if (tv == NULL || lv == NULL)
            return aliases_nomem(p);
        al->cap = cap;
    }
    if ((al->targets[al->ntargets] = aliases_lower_dup(t, len)) == NULL)
        return aliases_nomem(p);
    al->target_lines[al->ntargets++] = line;
    return 0;
}

/* "target, target, ..." (empty items, as after a final comma, skipped). */
static int aliases_targets(struct aliases_parse *p, struct alias *al,
                           const char *s, size_t len, size_t line)
{
    while (len) {
        const char *comma = memchr(s, ',', len);
        size_t n = comma ? (size_t)(comma - s) : len;
        const char *t = s;
        size_t tlen = n;
        aliases_trim(&t, &tlen);
        if (tlen && aliases_add_target(p, al, t, tlen, line) < 0)
            return -1;
        s += comma ? n + 1 : n;
        len -= comma ? n + 1 : n;
    }
    return 0;
}

static struct alias *aliases_new_entry(struct aliases_parse *p)
{
    struct aliases *a = p->a;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        struct alias *v = realloc(a->v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        a->v = v;
        a->cap = cap;
    }
    struct alias *al = &a->v[a->n++];
    memset(al, 0, sizeof *al);
    return al;
}

/* One line without its newline; *cur is the entry a continuation adds to. */
static int aliases_line(struct aliases_parse *p, const char *s, size_t len,
                        size_t line, struct alias **cur)
{
    if (len && s[len - 1] == '\r')
        len--;
    if (memchr(s, '\0', len))
        return aliases_fail(p, line, "malformed line: a NUL byte");
    const char *t = s;
    size_t tlen = len;
    aliases_trim(&t, &tlen);
    if (tlen == 0 || s[0] == '#')
        return 0;
    if (s[0] == ' ' || s[0] == '\t') {
        if (*cur == NULL)
            return aliases_fail(p, line, "malformed line: a continuation with no alias before it");
        return aliases_targets(p, *cur, t, tlen, line);
    }
    const char *colon = memchr(s, ':', len);
    if (colon == NULL)
        return aliases_fail(p, line, "malformed line: no ':' after the name");
    const char *name = s;
    size_t nlen = (size_t)(colon - s);
    aliases_trim(&name, &nlen);
    if (aliases_utf8_bad(name, nlen))
        return aliases_fail(p, line, "malformed line: invalid UTF-8 (a broken or overlong sequence) in the alias name");
    if (!(nlen == 1 && name[0] == '*') && !aliases_local_ok(name, nlen))
        return aliases_fail(p, line, "malformed line: bad alias name '%.*s'",
                            (int)(nlen > 64 ? 64 : nlen), name);
    struct alias *al = aliases_new_entry(p);
    if (al == NULL || (al->name = aliases_lower_dup(name, nlen)) == NULL)
        return aliases_nomem(p);
    al->line = line;
    *cur = al;
    return aliases_targets(p, al, colon + 1, len - (size_t)(colon + 1 - s), line);
}

/* ---- names and targets ------------------------------------------------ */

static int aliases_cmp(const void *x, const void *y)
{
    const struct alias *const *a = x, *const *b = y;
    return strcmp((*a)->name, (*b)->name);
}

/* Sorted by name; a name twice is reported at its second definition. */
static int aliases_sort(struct aliases_parse *p)
{
    struct aliases *a = p->a;
    a->sorted = malloc((a->n ? a->n : 1) * sizeof *a->sorted);
    if (a->sorted == NULL)
        return aliases_nomem(p);
    for (size_t i = 0; i < a->n; i++)
        a->sorted[i] = &a->v[i];
    qsort(a->sorted, a->n, sizeof *a->sorted, aliases_cmp);
    size_t bad = 0;
    for (size_t i = 1; i < a->n; i++) {
        if (strcmp(a->sorted[i - 1]->name, a->sorted[i]->name) != 0)
            continue;
        size_t l = a->sorted[i - 1]->line > a->sorted[i]->line
                   ? a->sorted[i - 1]->line : a->sorted[i]->line;
        if (bad == 0 || l < bad)
            bad = l;
    }
    if (bad)
        return aliases_fail(p, bad, "alias defined twice");
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].ntargets == 0)
            return aliases_fail(p, a->v[i].line, "alias '%s' has no target", a->v[i].name);
    return 0;
}

static struct alias *aliases_lookup(const struct aliases *a, const char *name)
{
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, a->sorted[mid]->name);
        if (c == 0)
            return a->sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int aliases_add_box(struct aliases_parse *p, struct alias *al,
                           const char *box)
{
    for (size_t i = 0; i < al->nboxes; i++)
        if (strcmp(al->boxes[i], box) == 0)
            return 0;
    char **v = realloc(al->boxes, (al->nboxes + 1) * sizeof *v);
    if (v == NULL)
        return aliases_nomem(p);
    al->boxes = v;
    if ((v[al->nboxes] = strdup(box)) == NULL)
        return aliases_nomem(p);
    al->nboxes++;
    return 0;
}

/* Follows al's targets to mailboxes (memoised); a target is a mailbox
 * first, an alias next, except "postmaster", which is its alias first. */
static int aliases_expand(struct aliases_parse *p, struct alias *al)
{
    if (al->state == A_DONE)
        return 0;
    al->state = A_BUSY;
    al->depth = 1;
    for (size_t i = 0; i < al->ntargets; i++) {
        const char *t = al->targets[i];
        struct alias *next = aliases_lookup(p->a, t);
        bool pm = strcmp(t, "postmaster") == 0;
        if (!(pm && next) && p->is_mailbox && p->is_mailbox(t, p->arg)) {
            if (aliases_add_box(p, al, t) < 0)
                return -1;
            continue;
        }
        if (next == NULL)
            return aliases_fail(p, al->target_lines[i],
                                "unknown target '%s': neither a mailbox nor an alias", t);
        if (next->state == A_BUSY)
            return aliases_fail(p, al->target_lines[i], "alias loop through '%s'", t);
        if (aliases_expand(p, next) < 0)
            return -1;
        if (next->depth + 1 > al->depth)
            al->depth = next->depth + 1;
        if (al->depth > ALIASES_MAX_DEPTH)
            return aliases_fail(p, al->target_lines[i],
                                "alias chain deeper than %d through '%s'",
                                ALIASES_MAX_DEPTH, t);
        for (size_t k = 0; k < next->nboxes; k++)
            if (aliases_add_box(p, al, next->boxes[k]) < 0)
                return -1;
    }
    al->state = A_DONE;
    return 0;
}

/* ---- the table -------------------------------------------------------- */

static int aliases_run(struct aliases_parse *p, const char *text, size_t len)
{
    struct alias *cur = NULL;
    size_t pos = 0, line = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - text - pos) : len - pos;
        if (aliases_line(p, text + pos, n, ++line, &cur) < 0)
            return -1;
        pos += n + 1;
    }
    if (aliases_sort(p) < 0)
        return -1;
    for (size_t i = 0; i < p->a->n; i++)
        if (aliases_expand(p, &p->a->v[i]) < 0)
            return -1;
    return 0;
}

struct aliases *aliases_parse(const char *text, size_t len,
                              aliases_mailbox_fn *is_mailbox, void *arg,
                              size_t *line, char *why, size_t why_len)
{
    struct aliases_parse p = { calloc(1, sizeof(struct aliases)), is_mailbox,
                               arg, line, why, why_len };
    *line = 0;
    if (p.a == NULL) {
        aliases_nomem(&p);
        return NULL;
    }
    if (aliases_run(&p, text, len) < 0) {
        aliases_free(p.a);
        return NULL;
    }
    for (size_t i = 0; i < p.a->n; i++) {   /* only the result is kept */
        struct alias *al = &p.a->v[i];
        for (size_t k = 0; k < al->ntargets; k++)
            free(al->targets[k]);
        free(al->targets);
        free(al->target_lines);
        al->targets = NULL;
        al->target_lines = NULL;
        al->ntargets = al->cap = 0;
    }
    return p.a;
}

const struct alias *aliases_find(const struct aliases *a, const char *name)
{
    char low[65];
    size_t len = strlen(name);
    if (a == NULL || len >= sizeof low)
        return NULL;
    for (size_t i = 0; i <= len; i++)
        low[i] = aliases_fold(name[i]);
    return aliases_lookup(a, low);
}

void aliases_free(struct aliases *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++) {
        struct alias *al = &a->v[i];
        free(al->name);
        for (size_t k = 0; k < al->ntargets; k++)
            free(al->targets[k]);
        for (size_t k = 0; k < al->nboxes; k++)
            free(al->boxes[k]);
        free(al->targets);
        free(al->target_lines);
        free(al->boxes);
    }
    free(a->v);
    free(a->sorted);
    free(a);
}
