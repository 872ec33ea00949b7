/*
 * maildir_spool.c - spool files created on a worker thread (include/maildir_spool.h).
 * One thread is enough: a create is short next to a message's transfer,
 * and one thread keeps the order of the opens in a mailbox's tmp/.
 */
#include "maildir_spool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

struct spool_open {
    struct worker_job job;          /* first: the worker's link */
    const char *root;
    char *box;
    int copy;                       /* a copy sharing like's queue ID */
    struct maildir_msg like;        /* its sec and id only */
    struct maildir_msg msg;
    int error;
    spool_done_fn done;             /* NULL once cancelled */
    void *data;
};

static struct worker *spool_worker;

/* On the worker thread. */
static void spool_run(struct worker_job *job)
{
    struct spool_open *op = (struct spool_open *)job;
    int rc = op->copy ? maildir_msg_open_copy(&op->msg, &op->like, op->root,
                                              op->box)
                      : maildir_msg_open(&op->msg, op->root, op->box);
    op->error = rc < 0 ? errno : 0;
}

/* Back on the loop thread. */
static void spool_opened(struct worker_job *job)
{
    struct spool_open *op = (struct spool_open *)job;
    if (op->done)
        op->done(op->data, &op->msg, op->error);
    maildir_msg_abort(&op->msg);    /* cancelled, failed, or not moved out */
    free(op->box);
    free(op);
}

int spool_init(struct selector *sel)
{
    spool_worker = worker_new(1);
    if (spool_worker == NULL)
        return -1;
    return worker_attach(spool_worker, sel);
}

void spool_shutdown(void)
{
    if (spool_worker == NULL)
        return;
    worker_free(spool_worker);
    spool_worker = NULL;
}

struct spool_open *spool_open_start(const char *root, const char *box,
                                    const struct maildir_msg *like,
                                    spool_done_fn done, void *data)
{
    struct spool_open *op = calloc(1, sizeof(*op));
    if (op == NULL || (op->box = strdup(box)) == NULL) {
        free(op);
        errno = ENOMEM;
        return NULL;
    }
    op->root = root;
    if (like) {
        op->copy = 1;
        op->like.sec = like->sec;
        memcpy(op->like.id, like->id, sizeof op->like.id);
    }
    op->like.fd = -1;
    op->msg.fd = -1;
    op->done = done;
    op->data = data;
    op->job.run = spool_run;
    op->job.done = spool_opened;
    worker_submit(spool_worker, &op->job);
    return op;
}

void spool_open_cancel(struct spool_open *op)
{
    if (op)
        op->done = NULL;
}
