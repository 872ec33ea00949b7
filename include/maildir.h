/*
 * maildir.h - mailboxes and durable delivery into Maildir. Knows nothing
 * of SMTP: it stores bytes under names it is given.
 *
 * A message is written once, into a spool file in the tmp/ of its first
 * mailbox, then handed to the committer, which makes it durable and links
 * it into every mailbox's new/. The committer works in batches on a thread
 * of its own (group commit): one flush covers every message handed over
 * while the previous flush ran, and the event loop never waits on the disk.
 */
#ifndef MAILDIR_H
#define MAILDIR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include "maildir_quota.h"
#include "worker.h"

#define MAILDIR_ID_MAX   32     /* queue ID: 1-32 of [A-Za-z0-9] */
#define MAILDIR_NAME_MAX 64     /* a mailbox name is a lowercase local-part */

/* ---- mailboxes -------------------------------------------------------- */

/* Creates root (0700) if missing; 0, or -1 with errno. */
int maildir_root_init(const char *root);

/* Creates root/name/{tmp,new,cur} (0700) if missing. name must already
 * be a valid lowercase local-part. A link in their place is refused
 * (ELOOP), never followed. 0, or -1 with errno. */
int maildir_create(const char *root, const char *name);

/* The same without the directory fsyncs, for making many mailboxes at
 * once: *created becomes 1 if anything was made, and the caller then
 * makes it durable (syncfs of root's filesystem). 0, or -1 with errno. */
int maildir_create_unsynced(const char *root, const char *name, int *created);

/* 1 when root/name is a Maildir (tmp, new and cur directories, none of
 * them nor root/name a symbolic link), else 0. */
int maildir_exists(const char *root, const char *name);

/* 1 when root/name/folder is a Maildir++ folder (folder is "." and 1-64
 * of [A-Za-z0-9_-]; it and its tmp, new and cur real directories), else
 * 0. Such a folder is given to the committer as the box "name/folder". */
int maildir_folder_exists(const char *root, const char *name,
                          const char *folder);

/*
 * Mailbox names under root that start with prefix (case-insensitive), in
 * strcmp order, at most max, copied into names[i]. Returns how many were
 * found in all (may exceed max), or -1 with errno.
 */
int maildir_find_prefix(const char *root, const char *prefix,
                        char names[][MAILDIR_NAME_MAX + 1], size_t max);

/* This host's name as file names carry it ('/' and ':' written as \057
 * and \072). */
const char *maildir_hostname(void);

/* Removes files older than max_age seconds from every root/<box>/tmp/.
 * Returns how many were removed, or -1 with errno. */
int maildir_clean_tmp(const char *root, time_t max_age);

/* ---- one message ------------------------------------------------------ */

struct maildir_msg {
    int fd;                         /* open O_RDWR (a filter reads it), -1 when closed */
    char id[MAILDIR_ID_MAX + 1];    /* queue ID, part of the file name */
    char *tmp_path;                 /* root/box/tmp/<unique> (malloc'd) */
    uint64_t size;                  /* bytes written */
    time_t sec;                     /* time the name was made */
};

/*
 * Starts a message: makes a new queue ID and creates its spool file
 * root/box/tmp/<sec>.<ID>.<host> with O_CREAT|O_EXCL, mode 0600.
 * 0, or -1 with errno (ENOSPC, EDQUOT, ...).
 */
int maildir_msg_open(struct maildir_msg *m, const char *root, const char *box);

/* Like maildir_msg_open but keeps the ID of 'like' (a transformed copy of
 * the same message); the tmp name gets a suffix so both can exist. */
int maildir_msg_open_copy(struct maildir_msg *m, const struct maildir_msg *like,
                          const char *root, const char *box);

/* Writes all n bytes (retrying short writes). 0, or -1 with errno. */
int maildir_msg_write(struct maildir_msg *m, const void *p, size_t n);

/* The message's name in new/: "<sec>.<ID>.<host>,S=<size>". 0, or -1
 * with errno (ENAMETOOLONG). */
int maildir_msg_final_name(const struct maildir_msg *m, char *dst, size_t len);

/* A descriptor of root/box (sub NULL) or root/box/sub, opened
 * O_DIRECTORY (box may be "name/.folder", a Maildir++ folder): box and sub
 * must be real directories, never links (ELOOP,
 * or ENOTDIR), so nothing is created or linked through a link below
 * root. root should be the resolved path (realpath at start).
 * fd, or -1 with errno. */
int maildir_open_dir(const char *root, const char *box, const char *sub);

/* Closes and unlinks the spool file; always safe, also after failures. */
void maildir_msg_abort(struct maildir_msg *m);

/* ---- the committer (group commit) ------------------------------------ */

struct committer;

struct commit_job {
    struct worker_job work;         /* first: the committer's thread link */
    /* filled by the caller */
    struct maildir_msg msg;         /* moved in: the job owns the file now */
    char **boxes;                   /* mailbox names (malloc'd array of malloc'd strings, owned by the job) */
    size_t nboxes;
    void (*done)(struct commit_job *job);   /* run on the loop's thread */
    void *data;                     /* the caller's; may be set to NULL to detach */
    /* set by committer_submit: per box, its mailbox's limit (NULL when no
     * box has one); the committer's thread counts each delivery there */
    struct commit_quota {
        struct quota_limit limit;
        struct quota_usage usage;   /* maildirsize's total after it */
        int counted;
    } *quota;
    int refresh;                    /* committer_refresh's: no message, only
                                       the first box's maildirsize read */
    /* set by the committer before done() */
    int error;                      /* 0, or the errno of the step that failed */
    struct commit_job *next;        /* the batch, on the committer's thread */
};

/* Starts the committer thread for root. NULL with errno on failure. */
struct committer *committer_new(const char *root);

/* From now on batches are made durable by a write-ahead journal of at
 * most size bytes, checkpointed every interval seconds (maildir_journal.h),
 * instead of file by file. Call before the first submit. 0, or -1. */
int committer_use_journal(struct committer *c, uint64_t size,
                          unsigned interval);

/* The journal in use, NULL without one (its figures: journal_stats_get). */
struct journal;
const struct journal *committer_journal(const struct committer *c);

/* Stops the thread after finishing every job already submitted, runs the
 * remaining done() callbacks, frees everything. */
void committer_free(struct committer *c);

/* Queues a job; it is flushed with the next batch. The job's file must be
 * complete (no more writes). Each box whose mailbox has a quota gets a
 * line in its maildirsize before the job is reported done (and before
 * the batch's final flush, which makes it durable with the links); the
 * cached usage (maildir_quota.h) is updated before done() runs. */
void committer_submit(struct committer *c, struct commit_job *job);

/* Hands the queued jobs to the thread if it is idle; call once per loop
 * turn (selector turn hook). Jobs wait only while a flush is in progress. */
void committer_flush(struct committer *c);

/* Results come back through sel: for each finished job the loop thread
 * runs done(), then frees the job (and its boxes). On success each box's
 * new/<sec>.<ID>.<host>,S=<size> exists and is durable; on failure
 * nothing of the message is left in any new/ or tmp/. 0, or -1 with errno. */
int committer_attach(struct committer *c, struct selector *sel);

/* Queues a read of the maildirsize of mailbox top (made or recounted if
 * it must be, as after a delivery) on the committer's thread, in order
 * with the deliveries; quota_read_back hands the usage to the loop. For
 * a mailbox not counted yet, or found full: another program (an IMAP
 * client's expunge) may have made room since. 0, or -1 with errno. */
int committer_refresh(struct committer *c, const char *top,
                      const struct quota_limit *lim);

/* Jobs submitted and not yet collected. */
size_t committer_pending(const struct committer *c);

/* Frees a job that was never submitted (closing and unlinking its file). */
void commit_job_free(struct commit_job *job);

/* How a batch is made durable: each file and each new/ by fsync, or the
 * whole filesystem by syncfs before and after the links. */
enum commit_flush { COMMIT_FLUSH_FILES, COMMIT_FLUSH_FILESYSTEM };

/* The choice for a batch of jobs naming boxes recipients in all;
 * outside_root is set when a file lies on another filesystem than root,
 * since_busy is how long ago (s) the machine last held much unwritten
 * data (another program writing). Pure: unit-tested. */
enum commit_flush commit_flush_choose(size_t jobs, size_t boxes,
                                      int outside_root, double since_busy);

#endif
