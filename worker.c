/*
 * worker.c - threads for slow work: password hashes (a pool, one job at a
 * time each) and group commit (one thread, every queued job as a batch).
 * One queue in, one list out, and an eventfd that tells the loop results
 * wait. Owns its threads, lock and eventfd; never frees or reads a job's
 * data. Fails only at start (NULL with errno).
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define WORKER_MAX_THREADS 16

struct worker {
    int event_fd;                   /* readable while finished jobs wait */
    pthread_mutex_t lock;           /* guards the lists and stopping */
    pthread_cond_t wake;            /* a job was queued, or stop */
    struct worker_job *queued, **queued_tail;
    struct worker_job *finished, **finished_tail;
    int stopping;
    size_t pending;                 /* loop thread only */
    /* batch mode: the thread takes the whole queue at once */
    void (*run_batch)(struct worker_job *list, void *arg);
    void *batch_arg;
    size_t nthreads;
    pthread_t threads[WORKER_MAX_THREADS];
};

static void worker_notify(const struct worker *w)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so the loop is notified anyway. */
    while (write(w->event_fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

/* Unlinks what the thread works on next: one job, or in batch mode the
 * whole queue. Called with the lock held and the queue not empty. */
static struct worker_job *worker_take(struct worker *w)
{
    struct worker_job *job = w->queued;
    w->queued = w->run_batch ? NULL : job->next;
    if (w->queued == NULL)
        w->queued_tail = &w->queued;
    if (!w->run_batch)
        job->next = NULL;
    return job;
}

/* Waits for jobs, runs them outside the lock, hands them back; jobs
 * queued meanwhile are taken at once. Finishes the queue before it stops. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->queued && !w->stopping)
            pthread_cond_wait(&w->wake, &w->lock);
        if (w->queued == NULL)
            break;                  /* stopping, and nothing left */
        struct worker_job *list = worker_take(w);
        pthread_mutex_unlock(&w->lock);

        if (w->run_batch)
            w->run_batch(list, w->batch_arg);
        else
            list->run(list);

        pthread_mutex_lock(&w->lock);
        *w->finished_tail = list;
        while (*w->finished_tail)
            w->finished_tail = &(*w->finished_tail)->next;
        worker_notify(w);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Signals belong to the loop thread: the workers start with all blocked. */
static int worker_start_threads(struct worker *w, size_t n)
{
    sigset_t all, old;
    int rc = 0;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (w->nthreads = 0; w->nthreads < n; w->nthreads++) {
        rc = pthread_create(&w->threads[w->nthreads], NULL, worker_main, w);
        if (rc != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = rc;
    return rc == 0 ? 0 : -1;
}

static void worker_stop_threads(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
}

static struct worker *worker_create(size_t nthreads,
                                    void (*run_batch)(struct worker_job *, void *),
                                    void *arg)
{
    if (nthreads == 0 || nthreads > WORKER_MAX_THREADS) {
        errno = EINVAL;
        return NULL;
    }
    struct worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->run_batch = run_batch;
    w->batch_arg = arg;
    w->queued_tail = &w->queued;
    w->finished_tail = &w->finished;
    w->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->event_fd < 0)
        goto undo_alloc;
    if ((errno = pthread_mutex_init(&w->lock, NULL)) != 0)
        goto undo_fd;
    if ((errno = pthread_cond_init(&w->wake, NULL)) != 0)
        goto undo_mutex;
    if (worker_start_threads(w, nthreads) < 0) {
        int saved = errno;
        worker_stop_threads(w);     /* those that did start */
        errno = saved;
        goto undo_cond;
    }
    return w;

undo_cond:
    pthread_cond_destroy(&w->wake);
undo_mutex:
    pthread_mutex_destroy(&w->lock);
undo_fd:
    close(w->event_fd);
undo_alloc:
    free(w);
    return NULL;
}

struct worker *worker_new(size_t nthreads)
{
    return worker_create(nthreads, NULL, NULL);
}

struct worker *worker_new_batch(void (*run_batch)(struct worker_job *list,
                                                  void *arg), void *arg)
{
    return worker_create(1, run_batch, arg);
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    worker_stop_threads(w);
    worker_collect(w);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    close(w->event_fd);
    free(w);
}

/* A batch worker is not woken here but by worker_kick, once per loop
 * turn, so that everything one turn produced goes into one batch. */
void worker_submit(struct worker *w, struct worker_job *job)
{
    job->next = NULL;
    w->pending++;
    pthread_mutex_lock(&w->lock);
    *w->queued_tail = job;
    w->queued_tail = &job->next;
    if (!w->run_batch)
        pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

/* A busy thread needs no signal: it takes the queue when its batch ends. */
void worker_kick(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    if (w->queued)
        pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

int worker_fd(const struct worker *w)
{
    return w->event_fd;
}

void worker_collect(struct worker *w)
{
    uint64_t count;
    while (read(w->event_fd, &count, sizeof count) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&w->lock);
    struct worker_job *list = w->finished;
    w->finished = NULL;
    w->finished_tail = &w->finished;
    pthread_mutex_unlock(&w->lock);

    while (list) {
        struct worker_job *next = list->next;
        list->next = NULL;
        w->pending--;
        list->done(list);           /* may free list */
        list = next;
    }
}

size_t worker_pending(const struct worker *w)
{
    return w->pending;
}
