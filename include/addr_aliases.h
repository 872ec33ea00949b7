/*
 * addr_aliases.h - an aliases file (the style of aliases(5)) as text: the
 * bytes of the file in, a table of aliases out, each with the mailboxes
 * it reaches worked out at once. No I/O: addr_load.c reads the file, and
 * whether a name is a mailbox is asked of the caller.
 */
#ifndef ADDR_ALIASES_H
#define ADDR_ALIASES_H

#include <stddef.h>

#define ALIASES_MAX_DEPTH 8         /* alias -> alias -> ... at most this deep */
#define ALIASES_ERR_MAX   256

struct alias {
    char *name;             /* lowercase local-part, or "*" (the catch-all) */
    size_t line;            /* where it is defined */
    char **boxes;           /* the mailboxes it reaches, each once, in order */
    size_t nboxes;
    /* while parsing: the targets as written (lowercase) and their lines */
    char **targets;
    size_t *target_lines;
    size_t ntargets, cap;
    int state, depth;
};

struct aliases {
    struct alias *v;        /* in file order */
    size_t n, cap;
    struct alias **sorted;  /* by name, for aliases_find */
};

/* Whether name (a lowercase local-part) is a local mailbox. */
typedef int aliases_mailbox_fn(const char *name, void *arg);

/*
 * Parses text[0..len): "name: target[, target...]" lines, '#' comments,
 * blank lines skipped, a line starting with a space or tab continuing the
 * one before. A name is a local-part or "*"; a target a bare local-part:
 * a mailbox (is_mailbox says; "postmaster" is an alias first if it is
 * one) or another alias. The table, or NULL with *line (0 when out of
 * memory) and why (a sentence) saying what is wrong: a malformed line, a
 * name defined twice, an unknown target, a loop, a chain deeper than
 * ALIASES_MAX_DEPTH.
 */
struct aliases *aliases_parse(const char *text, size_t len,
                              aliases_mailbox_fn *is_mailbox, void *arg,
                              size_t *line, char *why, size_t why_len);

/* The alias called name (any case; "*" for the catch-all), or NULL. */
const struct alias *aliases_find(const struct aliases *a, const char *name);

void aliases_free(struct aliases *a);

#endif
