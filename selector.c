/*
 * selector.c - the backend-independent half of the event loop: the fd
 * table, the timer min-heap, the turn hook and the dispatch rules. The
 * kernel interface (epoll or select) sits behind selector_backend.h.
 * Functions return 0, or -1 with errno set; nothing here exits.
 */
#include "selector.h"
#include "selector_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SELECTOR_BATCH      1024   /* most ready fds dispatched per turn */
#define SELECTOR_HEAP_FIRST 64     /* first size of the timer heap */
#define SELECTOR_OPS        (OP_READ | OP_WRITE)

/* One entry of the fd table; the table is indexed by fd. */
struct selector_slot {
    struct fd_handler h;    /* a copy: the caller's struct may be temporary */
    void *data;
    unsigned interest;
    bool used;
    uint32_t gen;           /* bumped on every register and unregister, so
                               an event captured before either is stale */
};

struct selector {
    struct backend *be;
    struct selector_slot *slots;     /* fd_limit entries */
    size_t fd_limit;
    size_t fd_high;                  /* above every fd ever registered */
    struct backend_event *events;    /* batch entries, reused each turn */
    size_t batch;
    struct selector_timer **heap;    /* min-heap on deadline_ms */
    size_t heap_len;
    size_t heap_cap;
    uint64_t timers_now;             /* clock of the running timer phase */
    bool in_timers;                  /* that phase is running */
    bool in_turn;                    /* selector_select() is running */
    void (*hook)(void *data);
    void *hook_data;
};

uint64_t selector_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *selector_backend_name(void)
{
    return backend_name();
}

struct selector *selector_new(size_t max_fds)
{
    if (max_fds == 0 || max_fds > INT_MAX) {
        errno = EINVAL;
        return NULL;
    }
    struct selector *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->fd_limit = backend_fd_limit(max_fds);
    s->batch = s->fd_limit < SELECTOR_BATCH ? s->fd_limit : SELECTOR_BATCH;
    s->slots = calloc(s->fd_limit, sizeof(*s->slots));
    s->events = calloc(s->batch, sizeof(*s->events));
    if (s->slots == NULL || s->events == NULL)
        goto fail_free;
    s->be = backend_new(s->fd_limit, s->batch);
    if (s->be == NULL)
        goto fail_free;
    return s;

fail_free:
    free(s->events);
    free(s->slots);
    free(s);
    return NULL;
}

void selector_destroy(struct selector *s)
{
    if (s == NULL)
        return;
    for (size_t fd = 0; fd < s->fd_high; fd++)
        if (s->slots[fd].used)
            selector_unregister(s, (int)fd);
    /* The timers belong to the caller: leave them looking disarmed. */
    for (size_t i = 0; i < s->heap_len; i++)
        s->heap[i]->slot = 0;
    backend_free(s->be);
    free(s->heap);
    free(s->events);
    free(s->slots);
    free(s);
}

int selector_fd_limit(const struct selector *s)
{
    return (int)s->fd_limit;
}

/* ---- the fd table ------------------------------------------------------ */

static struct selector_slot *selector_slot_of(const struct selector *s, int fd)
{
    if (fd < 0 || (size_t)fd >= s->fd_limit || !s->slots[fd].used)
        return NULL;
    return &s->slots[fd];
}

int selector_register(struct selector *s, int fd, const struct fd_handler *h,
                      unsigned interest, void *data)
{
    if (fd < 0 || (size_t)fd >= s->fd_limit || s->slots[fd].used ||
        h == NULL || (interest & ~SELECTOR_OPS) != 0) {
        errno = EINVAL;
        return -1;
    }
    /* A closed fd would only fail later, inside select(): refuse it now. */
    if (fcntl(fd, F_GETFD) == -1)
        return -1;
    if (backend_add(s->be, fd, interest) == -1)
        return -1;
    struct selector_slot *slot = &s->slots[fd];
    slot->h = *h;
    slot->data = data;
    slot->interest = interest;
    slot->used = true;
    slot->gen++;
    if ((size_t)fd >= s->fd_high)
        s->fd_high = (size_t)fd + 1;
    return 0;
}

int selector_unregister(struct selector *s, int fd)
{
    struct selector_slot *slot = selector_slot_of(s, fd);
    if (slot == NULL) {
        errno = EINVAL;
        return -1;
    }
    backend_remove(s->be, fd, slot->interest);
    /* Free the slot before on_close, so that on_close may close the fd,
     * register the number again, or see a second unregister fail. */
    slot->used = false;
    slot->gen++;
    slot->interest = OP_NOOP;
    struct selector_key key = { .s = s, .fd = fd, .data = slot->data };
    void (*on_close)(struct selector_key *) = slot->h.on_close;
    slot->data = NULL;
    if (on_close != NULL)
        on_close(&key);
    return 0;
}

int selector_set_interest(struct selector *s, int fd, unsigned interest)
{
    struct selector_slot *slot = selector_slot_of(s, fd);
    if (slot == NULL || (interest & ~SELECTOR_OPS) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (interest == slot->interest)
        return 0;
    if (backend_modify(s->be, fd, slot->interest, interest) == -1)
        return -1;
    slot->interest = interest;
    return 0;
}

void selector_set_turn_hook(struct selector *s, void (*hook)(void *data),
                            void *data)
{
    s->hook = hook;
    s->hook_data = hook != NULL ? data : NULL;
}

/* ---- the timer heap (slot = index + 1; 0 means not armed) -------------- */

static void selector_heap_place(struct selector *s, size_t i,
                                struct selector_timer *t)
{
    s->heap[i] = t;
    t->slot = i + 1;
}

static void selector_heap_up(struct selector *s, size_t i)
{
    struct selector_timer *t = s->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->heap[parent]->deadline_ms <= t->deadline_ms)
            break;
        selector_heap_place(s, i, s->heap[parent]);
        i = parent;
    }
    selector_heap_place(s, i, t);
}

static void selector_heap_down(struct selector *s, size_t i)
{
    struct selector_timer *t = s->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= s->heap_len)
            break;
        if (child + 1 < s->heap_len &&
            s->heap[child + 1]->deadline_ms < s->heap[child]->deadline_ms)
            child++;
        if (t->deadline_ms <= s->heap[child]->deadline_ms)
            break;
        selector_heap_place(s, i, s->heap[child]);
        i = child;
    }
    selector_heap_place(s, i, t);
}

/* Puts the timer at index i back in order after its deadline changed. */
static void selector_heap_fix(struct selector *s, size_t i)
{
    if (i > 0 && s->heap[(i - 1) / 2]->deadline_ms > s->heap[i]->deadline_ms)
        selector_heap_up(s, i);
    else
        selector_heap_down(s, i);
}

static void selector_heap_grow(struct selector *s)
{
    size_t cap = s->heap_cap ? s->heap_cap * 2 : SELECTOR_HEAP_FIRST;
    struct selector_timer **heap = realloc(s->heap, cap * sizeof(*heap));
    if (heap == NULL) {
        /* selector_timer_set() cannot report failure, and a timer silently
         * not armed would leave its owner waiting forever: the one broken
         * invariant we stop for. It takes a few bytes per live timer. */
        fprintf(stderr, "selector: out of memory for timers\n");
        abort();
    }
    s->heap = heap;
    s->heap_cap = cap;
}

void selector_timer_set(struct selector *s, struct selector_timer *t,
                        uint64_t ms)
{
    uint64_t deadline = selector_now_ms() + ms;
    /* A timer re-armed from a timer callback waits for the next turn, so a
     * callback that keeps re-arming itself with 0 cannot hold the loop. */
    if (s->in_timers && deadline <= s->timers_now)
        deadline = s->timers_now + 1;
    t->deadline_ms = deadline;
    if (t->slot != 0 && t->slot <= s->heap_len && s->heap[t->slot - 1] == t) {
        selector_heap_fix(s, t->slot - 1);
        return;
    }
    if (s->heap_len == s->heap_cap)
        selector_heap_grow(s);
    s->heap_len++;
    selector_heap_place(s, s->heap_len - 1, t);
    selector_heap_up(s, s->heap_len - 1);
}

void selector_timer_cancel(struct selector *s, struct selector_timer *t)
{
    if (t->slot == 0 || t->slot > s->heap_len || s->heap[t->slot - 1] != t)
        return;
    size_t i = t->slot - 1;
    t->slot = 0;
    s->heap_len--;
    if (i == s->heap_len)
        return;
    selector_heap_place(s, i, s->heap[s->heap_len]);
    selector_heap_fix(s, i);
}

/* Fires every timer due at the start of the phase, earliest first. */
static void selector_run_timers(struct selector *s)
{
    s->timers_now = selector_now_ms();
    s->in_timers = true;
    while (s->heap_len > 0 && s->heap[0]->deadline_ms <= s->timers_now) {
        struct selector_timer *t = s->heap[0];
        selector_timer_cancel(s, t);
        t->on_expire(s, t->data);
    }
    s->in_timers = false;
}

/* The poll timeout: the caller's, shortened to the nearest deadline. */
static int selector_wait_ms(const struct selector *s, int timeout_ms)
{
    if (s->heap_len == 0)
        return timeout_ms < 0 ? -1 : timeout_ms;
    uint64_t now = selector_now_ms();
    uint64_t due = s->heap[0]->deadline_ms;
    uint64_t left = due > now ? due - now : 0;
    if (left > INT_MAX)
        left = INT_MAX;
    if (timeout_ms >= 0 && (uint64_t)timeout_ms < left)
        return timeout_ms;
    return (int)left;
}

/* ---- dispatch ---------------------------------------------------------- */

/* True while the event still speaks of the registration it was seen for. */
static bool selector_event_current(const struct selector *s,
                                   const struct backend_event *ev)
{
    const struct selector_slot *slot = &s->slots[ev->fd];
    return slot->used && slot->gen == ev->gen;
}

static void selector_dispatch_one(struct selector *s,
                                  const struct backend_event *ev)
{
    struct selector_slot *slot = &s->slots[ev->fd];
    struct selector_key key = { .s = s, .fd = ev->fd };

    if (!selector_event_current(s, ev))
        return;
    if ((ev->ready & OP_READ) && (slot->interest & OP_READ) &&
        slot->h.on_read != NULL) {
        key.data = slot->data;
        slot->h.on_read(&key);
        if (!selector_event_current(s, ev))
            return;
    }
    if ((ev->ready & OP_WRITE) && (slot->interest & OP_WRITE) &&
        slot->h.on_write != NULL) {
        key.data = slot->data;
        slot->h.on_write(&key);
    }
}

static int selector_poll(struct selector *s, int timeout_ms)
{
    int n = backend_poll(s->be, s->events, s->batch,
                         selector_wait_ms(s, timeout_ms));
    for (int i = 0; i < n; i++)
        s->events[i].gen = s->slots[s->events[i].fd].gen;
    return n;
}

int selector_select(struct selector *s, int timeout_ms)
{
    if (s->in_turn) {
        errno = EDEADLK;    /* a handler may not run a nested turn */
        return -1;
    }
    int n = selector_poll(s, timeout_ms);
    if (n == -1)
        return -1;
    s->in_turn = true;
    for (int i = 0; i < n; i++)
        selector_dispatch_one(s, &s->events[i]);
    selector_run_timers(s);
    if (s->hook != NULL)
        s->hook(s->hook_data);
    s->in_turn = false;
    return 0;
}
