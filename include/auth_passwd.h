/*
 * auth_passwd.h - the users who may log in: every -u user and every line of
 * the --passwd-file files, as one table that SIGHUP rebuilds. Called on
 * the loop thread only; a reload reads the files on a thread of its own.
 */
#ifndef AUTH_PASSWD_H
#define AUTH_PASSWD_H

#include <stddef.h>

#include "smtpd_args.h"
#include "auth_users.h"

struct selector;

/* Loads the files and -u users, warning in the log where warranted. On
 * any error prints "smtpd: FILE:LINE: reason" (or the file and why it
 * cannot be read) and exits 2; touches nothing else. */
void passwd_start(const struct config *cfg);

/* Creates every user's mailbox (the root must exist); exits 2 on error. */
void passwd_start_mailboxes(void);

/* The reload thread, attached to sel (worker_attach). 0, or -1 with errno. */
int passwd_init(struct selector *sel);

/* Waits for a reload under way (its result is dropped), stops the thread. */
void passwd_shutdown(void);

/*
 * SIGHUP: rereads the files on the reload thread (each must be a regular
 * file, not empty, with users, unchanged while read); new users get their
 * mailbox there too, then the loop swaps the table in. A failed reload
 * keeps the users as they were, logs why, and is tried again once a
 * second for 10 s. A SIGHUP during a reload runs another one after it.
 */
void passwd_reload(void);

/* The entry of user name (any case), or NULL. */
const struct users_entry *passwd_find(const char *name);

/* The limit a user's userdb_quota_rule sets: 1 with *out, else 0
 * (a quota_user_fn of maildir_quota.h). */
int passwd_quota(const char *name, struct quota_limit *out);

/* The hash of the entry dearest to check, or NULL (no crypt entries). */
const char *passwd_costliest_hash(void);

/* How many users may log in (0: AUTH is not offered). */
size_t passwd_count(void);

void passwd_free(void);

#endif
