/*
 * passwd.h - the users who may log in: every -u user and every line of
 * the --passwd-file files, as one table that SIGHUP rebuilds. Loop thread
 * only.
 */
#ifndef PASSWD_H
#define PASSWD_H

#include <stddef.h>

#include "args.h"
#include "users.h"

/* Loads the files and -u users, warning in the log where warranted. On
 * any error prints "smtpd: FILE:LINE: reason" (or the file and why it
 * cannot be read) and exits 2; touches nothing else. */
void passwd_start(const struct config *cfg);

/* Creates every user's mailbox (the root must exist); exits 2 on error. */
void passwd_start_mailboxes(void);

/* SIGHUP: reads the files again. A bad file keeps the users as they were
 * and logs why; new users get their mailbox. 0, or -1 when kept. */
int passwd_reload(void);

/* The entry of user name (any case), or NULL. */
const struct users_entry *passwd_find(const char *name);

/* The hash of the entry dearest to check, or NULL (no crypt entries). */
const char *passwd_costliest_hash(void);

/* How many users may log in (0: AUTH is not offered). */
size_t passwd_count(void);

void passwd_free(void);

#endif
