/*
 * unit_worker.c - worker.c: jobs run off the calling thread and come back
 * through the loop they are attached to, one by one in a pool or as one
 * batch; delayed jobs come back in time order, cancelled ones never.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "selector.h"
#include "unit.h"
#include "worker.h"

struct sum_job {
    struct worker_job job;
    int in, out, *done_count;
};

static void sum_run(struct worker_job *j)
{
    struct sum_job *s = (struct sum_job *)j;
    s->out = s->in * 2;
}

static void sum_done(struct worker_job *j)
{
    struct sum_job *s = (struct sum_job *)j;
    CHECK_EQ_INT(s->out, s->in * 2);
    ++*s->done_count;
    free(s);
}

static void test_worker(void)
{
    int done = 0;
    struct selector *sel = selector_new(64);
    struct worker *w = worker_new(3);
    CHECK(w != NULL);
    CHECK_EQ_INT(worker_attach(w, sel), 0);
    for (int i = 0; i < 100; i++) {
        struct sum_job *s = calloc(1, sizeof(*s));
        s->in = i;
        s->done_count = &done;
        s->job.run = sum_run;
        s->job.done = sum_done;
        worker_submit(w, &s->job);
    }
    for (int turns = 0; done < 100 && turns < 1000; turns++)
        CHECK_EQ_INT(selector_select(sel, 5000), 0);
    CHECK_EQ_INT(done, 100);
    CHECK_EQ_INT(worker_pending(w), 0);
    /* jobs still queued at the end are run and handed back by worker_free */
    for (int i = 0; i < 10; i++) {
        struct sum_job *s = calloc(1, sizeof(*s));
        s->in = i;
        s->done_count = &done;
        s->job.run = sum_run;
        s->job.done = sum_done;
        worker_submit(w, &s->job);
    }
    worker_free(w);
    CHECK_EQ_INT(done, 110);
    CHECK(worker_new(0) == NULL);
    selector_destroy(sel);
}

/* Batch mode: nothing runs before the kick; then the whole queue as one
 * list, in submission order. */
static int batches, batch_sizes[8];

static void sum_batch(struct worker_job *list, void *arg)
{
    int n = 0, last = -2;
    (void)arg;
    for (struct worker_job *j = list; j; j = j->next) {
        struct sum_job *s = (struct sum_job *)j;
        CHECK(s->in > last);
        last = s->in;
        s->out = s->in * 2;
        n++;
    }
    if (batches < 8)
        batch_sizes[batches] = n;
    batches++;
}

static void test_worker_batch(void)
{
    int done = 0;
    struct selector *sel = selector_new(64);
    struct worker *w = worker_new_batch(sum_batch, NULL);
    CHECK(w != NULL);
    CHECK_EQ_INT(worker_attach(w, sel), 0);
    /* one job first: once it is back, the thread waits for a kick */
    struct sum_job *warm = calloc(1, sizeof(*warm));
    warm->in = -1;
    warm->done_count = &done;
    warm->job.done = sum_done;
    worker_submit(w, &warm->job);
    worker_kick(w);
    for (int turns = 0; done < 1 && turns < 100; turns++)
        CHECK_EQ_INT(selector_select(sel, 5000), 0);
    CHECK_EQ_INT(done, 1);
    done = batches = 0;
    for (int i = 0; i < 20; i++) {
        struct sum_job *s = calloc(1, sizeof(*s));
        s->in = i;
        s->done_count = &done;
        s->job.done = sum_done;
        worker_submit(w, &s->job);
    }
    CHECK_EQ_INT(selector_select(sel, 100), 0);
    CHECK_EQ_INT(done, 0);                      /* not kicked yet */
    worker_kick(w);
    for (int turns = 0; done < 20 && turns < 100; turns++)
        CHECK_EQ_INT(selector_select(sel, 5000), 0);
    CHECK_EQ_INT(done, 20);
    CHECK_EQ_INT(batches, 1);
    CHECK_EQ_INT(batch_sizes[0], 20);
    worker_free(w);
    selector_destroy(sel);
}

/* Delayed jobs come back in the order of their time, never before it; a
 * cancelled one never; worker_free hands back those still waiting. */
static int later_order[4], later_n;

static void later_done(struct worker_job *j)
{
    struct sum_job *s = (struct sum_job *)j;
    if (later_n < 4)
        later_order[later_n] = s->in;
    later_n++;
}

static void test_worker_later(void)
{
    struct selector *sel = selector_new(64);
    struct worker *w = worker_new(1);
    CHECK_EQ_INT(worker_attach(w, sel), 0);
    struct sum_job j[4] = { { .in = 0 }, { .in = 1 }, { .in = 2 }, { .in = 3 } };
    for (int i = 0; i < 4; i++)
        j[i].job.done = later_done;
    uint64_t start = worker_now_ms();
    worker_later(w, &j[0].job, 60);
    worker_later(w, &j[1].job, 20);
    worker_later(w, &j[2].job, 40);
    worker_later(w, &j[3].job, 100000);
    worker_later_cancel(w, &j[2].job);
    worker_later_cancel(w, &j[2].job);      /* harmless twice */
    for (int turns = 0; later_n < 2 && turns < 1000; turns++)
        CHECK_EQ_INT(selector_select(sel, 5000), 0);
    CHECK(worker_now_ms() - start >= 60);
    CHECK_EQ_INT(later_n, 2);
    CHECK_EQ_INT(later_order[0], 1);
    CHECK_EQ_INT(later_order[1], 0);
    worker_free(w);                         /* j[3]'s wait ends here */
    CHECK_EQ_INT(later_n, 3);
    CHECK_EQ_INT(later_order[2], 3);
    selector_destroy(sel);
}

UNIT_MAIN("worker",
          { "worker", test_worker },
          { "worker_batch", test_worker_batch },
          { "worker_later", test_worker_later })
