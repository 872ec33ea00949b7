/*
 * worker.h - slow work off the loop thread: threads take jobs from one
 * queue, run them, and hand them back through an eventfd that the loop
 * watches; each job's done() then runs on the loop thread. The threads
 * never touch the loop's data: a job carries its own copies. Two modes:
 * a pool running one job per thread (password checks), or one thread
 * running every queued job as a batch (group commit).
 */
#ifndef WORKER_H
#define WORKER_H

#include <stddef.h>

struct worker;

struct worker_job {
    void (*run)(struct worker_job *job);    /* on a worker thread (pool) */
    void (*done)(struct worker_job *job);   /* on the loop thread; owns job */
    struct worker_job *next;                /* the worker's list link */
};

/* Starts nthreads threads (all signals blocked in them). NULL with errno
 * on failure. */
struct worker *worker_new(size_t nthreads);

/* Starts one thread that runs every job queued so far as one list (linked
 * by next, in submission order) with run_batch(list, arg). An idle thread
 * is woken by worker_kick, not by worker_submit; one that just finished a
 * batch takes what was queued meanwhile at once. NULL with errno. */
struct worker *worker_new_batch(void (*run_batch)(struct worker_job *list,
                                                  void *arg), void *arg);

/* Batch mode: hands the queued jobs to the thread if it is idle; call once
 * per loop turn. */
void worker_kick(struct worker *w);

/* Lets the threads finish every job submitted, joins them, runs the
 * remaining done() callbacks, frees the worker. */
void worker_free(struct worker *w);

/* Queues a job and (pool mode) wakes one idle thread. */
void worker_submit(struct worker *w, struct worker_job *job);

/* Readable while finished jobs wait: register it for OP_READ and call
 * worker_collect() from on_read. */
int worker_fd(const struct worker *w);

/* Runs done() for every finished job, in the order they finished. */
void worker_collect(struct worker *w);

/* Jobs submitted and not yet collected (loop thread only). */
size_t worker_pending(const struct worker *w);

#endif
