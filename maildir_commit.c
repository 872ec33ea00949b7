/*
 * maildir_commit.c - group commit: a thread (worker.c, batch mode) that makes
 * finished spool files durable and links them into every recipient's
 * new/, many messages per disk flush; worker.c hands the results back to
 * the event loop through its eventfd. The steps of a batch, with the
 * journal or file by file, are in maildir_commit_steps.c.
 */
#include "maildir.h"
#include "maildir_commit_steps.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "maildir_journal.h"
#include "maildir_quota.h"
#include "worker.h"

/* ---- the thread ------------------------------------------------------- */

/* The worker's batch, in submission order, as a list of our jobs; the
 * reads of maildirsize (committer_refresh) after the deliveries. */
static void committer_batch(struct worker_job *list, void *arg)
{
    struct committer *c = arg;
    struct commit_job *batch = NULL, **tail = &batch;
    struct commit_job *reads = NULL, **rtail = &reads;
    for (struct worker_job *w = list; w; w = w->next) {
        struct commit_job *j = (struct commit_job *)w;
        j->next = NULL;
        if (j->refresh) {
            *rtail = j;
            rtail = &j->next;
        } else {
            *tail = j;
            tail = &j->next;
        }
    }
    if (batch && c->journal)
        batch = commit_steps_journal(c, batch);
    if (batch)
        commit_steps_files(c, batch);
    for (struct commit_job *j = reads; j; j = j->next) {
        if (quota_file_update(c->root, j->boxes[0], &j->quota[0].limit, 0,
                              false, &j->quota[0].usage) == 0)
            j->quota[0].counted = 1;
        else
            j->error = errno;
    }
}

/* ---- public ----------------------------------------------------------- */

/* Undoes the allocations of committer_new; keeps errno. */
static void committer_release(struct committer *c)
{
    int saved = errno;
    if (c->root_fd >= 0)
        close(c->root_fd);
    free(c->root);
    free(c);
    errno = saved;
}

struct committer *committer_new(const char *root)
{
    struct committer *c = calloc(1, sizeof *c);
    struct stat st;
    if (!c)
        return NULL;
    c->root_fd = -1;
    c->root = strdup(root);
    if (!c->root)
        goto undo;
    c->root_fd = open(c->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->root_fd < 0 || fstat(c->root_fd, &st) < 0)
        goto undo;
    c->root_dev = st.st_dev;
    c->busy_at = -1e9;              /* never seen busy */
    c->thread = worker_new_batch(committer_batch, c);
    if (c->thread == NULL)
        goto undo;
    return c;

undo:
    committer_release(c);
    return NULL;
}

/* worker_free finishes every job submitted and runs their done(). */
void committer_free(struct committer *c)
{
    if (!c)
        return;
    worker_free(c->thread);
    journal_free(c->journal);
    close(c->root_fd);
    free(c->root);
    free(c);
}

/* Frees what the job owns and the job itself (it must come from malloc). */
static void committer_job_release(struct commit_job *job)
{
    for (size_t i = 0; i < job->nboxes; i++)
        free(job->boxes[i]);
    free(job->boxes);
    free(job->quota);
    free(job->msg.tmp_path);
    free(job);
}

/* Back on the loop thread: the caller's done(), then the job goes. */
static void committer_job_done(struct worker_job *w)
{
    struct commit_job *job = (struct commit_job *)w;
    char top[MAILDIR_NAME_MAX + 1];
    if (job->refresh && job->error)
        log_warn("quota: %s/maildirsize cannot be read: %s", job->boxes[0],
                 strerror(job->error));
    if (job->refresh)
        quota_read_back(job->boxes[0],
                        job->quota[0].counted ? &job->quota[0].usage : NULL);
    for (size_t i = 0; job->quota && !job->error && !job->refresh
                       && i < job->nboxes; i++)
        if (job->quota[i].counted) {
            quota_top(job->boxes[i], top, sizeof top);
            quota_delivered(top, &job->quota[i].usage);
        }
    if (job->done)
        job->done(job);
    committer_job_release(job);
}

/* Submitting does not wake the thread: committer_flush does, once per
 * loop turn, so everything one turn produced goes into one batch. */
void committer_submit(struct committer *c, struct commit_job *job)
{
    char top[MAILDIR_NAME_MAX + 1];
    job->next = NULL;
    job->error = 0;
    job->quota = NULL;
    for (size_t i = 0; i < job->nboxes; i++) {
        quota_top(job->boxes[i], top, sizeof top);
        struct quota_limit lim = quota_limit_of(top);
        if (lim.bytes == 0 && lim.count == 0)
            continue;
        if (job->quota == NULL
            && (job->quota = calloc(job->nboxes, sizeof *job->quota)) == NULL)
            break;      /* uncounted: recalculated at the next start */
        job->quota[i].limit = lim;
    }
    job->work.run = NULL;
    job->work.done = committer_job_done;
    worker_submit(c->thread, &job->work);
}

int committer_refresh(struct committer *c, const char *top,
                      const struct quota_limit *lim)
{
    struct commit_job *job = calloc(1, sizeof *job);
    if (job == NULL)
        return -1;
    job->msg.fd = -1;
    job->refresh = 1;
    job->boxes = calloc(1, sizeof *job->boxes);
    job->quota = calloc(1, sizeof *job->quota);
    if (job->boxes == NULL || job->quota == NULL
        || (job->boxes[0] = strdup(top)) == NULL) {
        committer_job_release(job);
        errno = ENOMEM;
        return -1;
    }
    job->nboxes = 1;
    job->quota[0].limit = *lim;
    job->work.done = committer_job_done;
    worker_submit(c->thread, &job->work);
    return 0;
}

int committer_use_journal(struct committer *c, uint64_t size,
                          unsigned interval)
{
    c->journal = journal_new(c->root, c->root_fd, size, interval);
    return c->journal ? 0 : -1;
}

const struct journal *committer_journal(const struct committer *c)
{
    return c->journal;
}

void committer_flush(struct committer *c)
{
    worker_kick(c->thread);
}

int committer_attach(struct committer *c, struct selector *sel)
{
    return worker_attach(c->thread, sel);
}

size_t committer_pending(const struct committer *c)
{
    return worker_pending(c->thread);
}

void commit_job_free(struct commit_job *job)
{
    if (!job)
        return;
    maildir_msg_abort(&job->msg);
    committer_job_release(job);
}
