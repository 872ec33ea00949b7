/*
 * addr.h - who a local address reaches: the aliases in use (--aliases,
 * loaded at start, reread on SIGHUP on a thread of their own) and the
 * resolution of a local-part to the Maildir folders that receive its
 * mail, in memory but for a look at the mailbox root. Loop thread only.
 */
#ifndef ADDR_H
#define ADDR_H

#include <stddef.h>

#include "addr_aliases.h"
#include "smtpd_args.h"

struct selector;

/* ---- addr_load.c: the aliases in use ---------------------------------- */

/* Loads --aliases (after the mailboxes are made: targets are checked
 * against them). On an error prints "smtpd: FILE:LINE: reason" (or the
 * file and why it cannot be read) and exits 2. Nothing without it. */
void addr_start(const struct config *cfg);

/* The reload thread, attached to sel. 0, or -1 with errno. */
int addr_init(struct selector *sel);

/* SIGHUP: rereads the file on the reload thread; the loop swaps the new
 * table in, or keeps the old one and logs why. */
void addr_reload(void);

void addr_shutdown(void);                   /* waits for a reload under way */
const struct aliases *addr_aliases(void);   /* NULL without --aliases */
void addr_free(void);

/* ---- addr_resolve.c: an address to its folders ----------------------- */

/* Destinations: "box" (a mailbox) or "box/.tag" (a Maildir++ folder in
 * it), each once, malloc'd. */
struct addr_dests {
    char **v;
    size_t n;
};

enum addr_status { ADDR_FOUND, ADDR_UNKNOWN, ADDR_NO_MEMORY };

/*
 * The folders local (a valid local-part, any case) reaches, appended to
 * out: (0) postmaster, its alias if any, else its mailbox; (1) the
 * mailbox named local; (2) the alias; (3) with a character of delims in
 * it, the part before the first one as (1), then (2); a tag of
 * [A-Za-z0-9_-] after it picks the mailbox's folder ".tag" when that
 * exists (case kept); (4) the catch-all "*". aliases may be NULL.
 */
enum addr_status addr_resolve(const char *root, const char *delims,
                              const struct aliases *aliases,
                              const char *local, struct addr_dests *out);

void addr_dests_free(struct addr_dests *d);

#endif
