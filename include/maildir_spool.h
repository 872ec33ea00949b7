/*
 * maildir_spool.h - spool files created off the loop thread. Creating a file is a
 * disk operation like any other: on a busy disk, or on ext4 without a
 * journal next to many recently deleted files, one open(O_CREAT) can take
 * milliseconds, and on the loop thread every client would wait for it. A
 * worker thread (worker.c) creates the file; the caller's done() runs on
 * the loop thread with the result.
 */
#ifndef MAILDIR_SPOOL_H
#define MAILDIR_SPOOL_H

#include "maildir.h"

struct selector;
struct spool_open;

/* done(data, msg, error): error 0 and msg open (the callee now owns it:
 * move it out), or an errno and msg closed. Runs on the loop thread. */
typedef void (*spool_done_fn)(void *data, struct maildir_msg *msg, int error);

/* Starts the worker and attaches it to sel. -1 with errno. */
int spool_init(struct selector *sel);

/* Finishes what is in flight (files of cancelled opens are removed) and
 * stops the worker. */
void spool_shutdown(void);

/* Creates a spool file in root/box/tmp/ on the worker: a new message's
 * (maildir_msg_open) when like is NULL, else a copy sharing like's queue
 * ID (maildir_msg_open_copy; like is read now, not later). root must
 * outlive the call. NULL with errno if it cannot be queued. */
struct spool_open *spool_open_start(const char *root, const char *box,
                                    const struct maildir_msg *like,
                                    spool_done_fn done, void *data);

/* The caller goes away: done() will not run, and the file, once created,
 * is closed and removed. */
void spool_open_cancel(struct spool_open *op);

#endif
