/*
 * worker.c - threads for slow work: password hashes (a pool, one job at a
 * time each) and group commit (one thread, every queued job as a batch).
 * One queue in, one list out, and an eventfd that tells the loop results
 * wait. Owns its threads, lock and eventfd; never frees or reads a job's
 * data. Fails only at start (NULL with errno). The glue to the loop is
 * here too, written once for every user: worker_attach() watches the
 * eventfd in the selector, and a job handed back later (worker_later)
 * waits on one selector timer per worker.
 */
#include "worker.h"

#include "selector.h"

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
    /* loop thread only */
    struct selector *sel;           /* the loop watching event_fd, or NULL */
    struct selector_timer later_timer;  /* the soonest delayed job's due */
    TAILQ_HEAD(worker_later_list, worker_job) later;  /* soonest first */
};

static void worker_notify(const struct worker *w)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so the loop is notified anyway. */
    while (write(w->event_fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void worker_collect(struct worker *w);

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
    TAILQ_INIT(&w->later);
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

static void worker_detach(struct worker *w)
{
    if (w->sel == NULL)
        return;
    selector_timer_cancel(w->sel, &w->later_timer);
    selector_unregister(w->sel, w->event_fd);
    w->sel = NULL;
}

static void worker_later_take(struct worker *w, struct worker_job *job)
{
    TAILQ_REMOVE(&w->later, job, later_link);
    job->waiting = false;
}

/* Delayed jobs are handed back at once: their wait is over too. */
static void worker_run_later(struct worker *w)
{
    struct worker_job *job;
    while ((job = TAILQ_FIRST(&w->later)) != NULL) {
        worker_later_take(w, job);
        job->done(job);
    }
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    worker_detach(w);
    worker_stop_threads(w);
    worker_collect(w);
    worker_run_later(w);
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

static void worker_collect(struct worker *w)
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

/* ---- the glue to the loop --------------------------------------------- */

static void worker_on_event(struct selector_key *key)
{
    worker_collect(key->data);
}

static const struct fd_handler worker_handler = {
    .on_read = worker_on_event,
};

static void worker_on_later(struct selector *sel, void *data);

int worker_attach(struct worker *w, struct selector *sel)
{
    if (selector_register(sel, w->event_fd, &worker_handler, OP_READ, w) < 0)
        return -1;
    w->sel = sel;
    w->later_timer.on_expire = worker_on_later;
    w->later_timer.data = w;
    return 0;
}

static void worker_later_arm(struct worker *w)
{
    struct worker_job *first = TAILQ_FIRST(&w->later);
    if (first == NULL) {
        selector_timer_cancel(w->sel, &w->later_timer);
        return;
    }
    uint64_t now = selector_now_ms();
    selector_timer_set(w->sel, &w->later_timer,
                       first->due_ms > now ? first->due_ms - now : 0);
}

/* Every job whose time has come, soonest first; a done() may delay or
 * cancel others meanwhile. */
static void worker_on_later(struct selector *sel, void *data)
{
    struct worker *w = data;
    uint64_t now = selector_now_ms();
    struct worker_job *job;
    (void)sel;
    while ((job = TAILQ_FIRST(&w->later)) != NULL && job->due_ms <= now) {
        worker_later_take(w, job);
        job->done(job);             /* may free job */
    }
    worker_later_arm(w);
}

/* Found from the end: delays are mostly alike, so a new job goes last. */
void worker_later(struct worker *w, struct worker_job *job, uint64_t ms)
{
    job->due_ms = selector_now_ms() + ms;
    job->waiting = true;
    struct worker_job *before = TAILQ_LAST(&w->later, worker_later_list);
    while (before && before->due_ms > job->due_ms)
        before = TAILQ_PREV(before, worker_later_list, later_link);
    if (before)
        TAILQ_INSERT_AFTER(&w->later, before, job, later_link);
    else
        TAILQ_INSERT_HEAD(&w->later, job, later_link);
    if (TAILQ_FIRST(&w->later) == job)
        worker_later_arm(w);
}

void worker_later_cancel(struct worker *w, struct worker_job *job)
{
    if (!job->waiting)
        return;
    bool first = TAILQ_FIRST(&w->later) == job;
    worker_later_take(w, job);
    if (first)
        worker_later_arm(w);
}

uint64_t worker_now_ms(void)
{
    return selector_now_ms();
}
