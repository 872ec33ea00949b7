/*
 * maildir_quota.h - mailbox quotas as Maildir++ keeps them: the limits
 * (--quota, a user's own rule), the maildirsize file at a mailbox's top
 * (read, appended to and recalculated on the committer's thread, or at
 * start), and the usage cached in memory that RCPT asks on the loop
 * thread without touching the disk. Knows nothing of SMTP.
 */
#ifndef MAILDIR_QUOTA_H
#define MAILDIR_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "maildir_quota_rule.h"

/* What maildirsize adds up to (its lines may be negative: other
 * programs record expunges so). */
struct quota_usage {
    int64_t bytes;
    int64_t count;
};

/* ---- maildirsize, on the committer's thread (or at start) ------------ */

/*
 * Brings root/top/maildirsize up to date for lim and, with add, appends
 * the line "add 1" (O_APPEND); then *out is its total. The file is
 * created, or rewritten from the sizes of the files in new/ and cur/ of
 * the mailbox and its folders, when it is missing, unreadable, over
 * 5120 bytes, or its limit line differs from lim's. With sync the file
 * (and after a rewrite the mailbox directory) is fsync'd. 0, or -1
 * with errno.
 */
int quota_file_update(const char *root, const char *top,
                      const struct quota_limit *lim, uint64_t add, bool sync,
                      struct quota_usage *out);

/* ---- the limits and the cache, on the loop thread -------------------- */

/* A user's own limit: 1 with *out filled in, 0 when the user has none. */
typedef int (*quota_user_fn)(const char *box, struct quota_limit *out);

/* Asks for top's maildirsize to be read off the loop thread, the result
 * coming back through quota_read_back (committer_refresh). 0, or -1. */
typedef int (*quota_refresh_fn)(const char *top, const struct quota_limit *lim);

/* The default limit (NULL or all 0: none), where users' own come from,
 * and how a mailbox is read off the loop thread (NULL: never; then only
 * deliveries update the usage). A limited mailbox is read when RCPT
 * first meets one not counted yet (made after start, or unreadable
 * then), and when RCPT finds it full, since an IMAP client may have
 * removed messages: at most once a second per mailbox. */
void quota_setup(const struct quota_limit *dflt, quota_user_fn user,
                 quota_refresh_fn refresh);

/* The limit of mailbox top ("name", never a folder). */
struct quota_limit quota_limit_of(const char *top);

/* The mailbox of a box "name" or "name/.folder", into dst (65 bytes). */
void quota_top(const char *box, char *dst, size_t size);

/*
 * At start, before clients are served: reads (or recalculates) the
 * maildirsize of every mailbox under root that has a limit, and caches
 * its usage. 0, or -1 with errno (a mailbox that fails is logged and
 * left uncached: it is not checked until its next delivery).
 */
int quota_load(const char *root);

/* The committer's totals for top after a delivery. */
void quota_delivered(const char *top, const struct quota_usage *u);

/* A read that quota_refresh_fn asked for is back: u is top's usage, or
 * NULL when maildirsize could not be read (then top stays unchecked
 * until a delivery counts it, and is tried again a second later). Runs
 * the ready() of every quota_wait on top. */
void quota_read_back(const char *top, const struct quota_usage *u);

enum quota_verdict {
    QUOTA_OK,       /* the new mailboxes are held for this transaction */
    QUOTA_FULL,     /* one is at or over its limit, or SIZE would take it over */
    QUOTA_BUSY,     /* one is within max_size of its limit (counting the
                       SIZE= of the transactions open to it) and already
                       has an open transaction (no SIZE given) */
    QUOTA_READ,     /* one must be read first (not counted yet, or found
                       full): its read is under way; quota_wait, then ask
                       again. Nothing is held. */
};

/*
 * RCPT: the mailboxes of dests[0..n) that held[0..nheld) (the
 * transaction's folders so far) does not reach yet are checked; when all
 * pass they are held for the transaction (its declared size, if any,
 * counted as on its way). In memory only. With QUOTA_READ the mailbox
 * to wait for is put in wait (wait_size bytes).
 */
enum quota_verdict quota_hold(char *const *held, size_t nheld,
                              char *const *dests, size_t n,
                              bool has_size, uint64_t size, uint64_t max_size,
                              char *wait, size_t wait_size);

/* ready(data) runs on the loop thread once top's read (QUOTA_READ) is
 * back; the wait is gone by then. NULL with errno ENOMEM. */
struct quota_wait;
struct quota_wait *quota_wait(const char *top, void (*ready)(void *data),
                              void *data);

/* The waiter goes away first: ready() will not run. NULL is fine. */
void quota_wait_cancel(struct quota_wait *w);

/* The transaction that held the mailboxes of boxes[0..n) is over. */
void quota_release(char *const *boxes, size_t n, bool has_size,
                   uint64_t size);

void quota_free(void);

#endif
