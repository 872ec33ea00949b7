/*
 * maildir_commit_steps.h - inside the committer (maildir.h): its state,
 * shared by maildir_commit.c (the thread, the jobs, the public calls) and
 * maildir_commit_steps.c (what one batch goes through). Nothing else
 * includes this.
 */
#ifndef MAILDIR_COMMIT_STEPS_H
#define MAILDIR_COMMIT_STEPS_H

#include <sys/types.h>

#include "maildir.h"

struct committer {
    char *root;
    int root_fd;                    /* the filesystem syncfs() flushes */
    dev_t root_dev;
    struct worker *thread;          /* one thread, whole batches */
    double busy_at;                 /* the thread's: when it last saw much
                                       unwritten data (CLOCK_MONOTONIC s) */
    struct journal *journal;        /* NULL: every batch synced per file */
};

/* A whole batch file by file: each file synced (or the filesystem, see
 * commit_flush_choose), linked, counted, each new/ synced, the tmp/
 * names removed. Sets each job's error. */
void commit_steps_files(struct committer *c, struct commit_job *batch);

/* A batch with the journal: each job linked, counted and recorded, one
 * sync of the journal; a job it has no room for synced file by file.
 * Returns the jobs it cannot take (a file on another filesystem than
 * root's, or bigger than a quarter of the journal), for
 * commit_steps_files. */
struct commit_job *commit_steps_journal(struct committer *c,
                                        struct commit_job *batch);

#endif
