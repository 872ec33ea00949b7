/*
 * worker.h - slow work off the loop thread: threads take jobs from one
 * queue, run them, and hand them back through an eventfd that the loop
 * watches; each job's done() then runs on the loop thread. The threads
 * never touch the loop's data: a job carries its own copies. Two modes:
 * a pool running one job per thread (password checks), or one thread
 * running every queued job as a batch (group commit). worker_attach()
 * is the one glue to the event loop: the users of a worker never touch
 * the selector themselves.
 */
#ifndef WORKER_H
#define WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct selector;

struct worker;

struct worker_job {
    void (*run)(struct worker_job *job);    /* on a worker thread (pool) */
    void (*done)(struct worker_job *job);   /* on the loop thread; owns job */
    struct worker_job *next;                /* the worker's list link */
    /* worker_later only */
    uint64_t due_ms;                        /* when done() runs */
    bool waiting;                           /* in the delayed list */
    TAILQ_ENTRY(worker_job) later_link;
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

/* Watches the worker's results in sel: from then on each finished job's
 * done() runs on the loop thread. 0, or -1 with errno. */
int worker_attach(struct worker *w, struct selector *sel);

/* Hands job back to its done() in ms milliseconds, on the loop thread,
 * without running it on a thread: a wait that belongs to a job (the
 * delay of a failed login, the retry of a reload). Attached workers only;
 * job must not be queued meanwhile. */
void worker_later(struct worker *w, struct worker_job *job, uint64_t ms);

/* Takes a delayed job back: its done() will not run. Harmless for a job
 * that is not waiting. */
void worker_later_cancel(struct worker *w, struct worker_job *job);

/* The clock worker_later counts in: CLOCK_MONOTONIC milliseconds. */
uint64_t worker_now_ms(void);

/* Leaves the loop, lets the threads finish every job submitted, joins
 * them, runs the remaining done() callbacks (delayed jobs' too), frees
 * the worker. */
void worker_free(struct worker *w);

/* Queues a job and (pool mode) wakes one idle thread. */
void worker_submit(struct worker *w, struct worker_job *job);

/* Jobs submitted and not yet collected (loop thread only). */
size_t worker_pending(const struct worker *w);

#endif
