/*
 * selector.h - the event loop: the whole public surface.
 * One API, two backends (selector_select.c, selector_epoll.c), the Makefile
 * picks exactly one. Knows file descriptors, interests and timers; knows
 * nothing of SMTP. Single-threaded: call it only from the loop's thread.
 *
 * The rule for every handler: bounded work per wake-up. A handler reads a
 * bounded amount (one read(), or at most a fixed number of datagrams or
 * accept()s) and returns; it never loops "until EAGAIN" on anything a
 * stranger can fill, since a peer that sends faster than we drain would
 * then keep the loop in one handler forever: no other client served, no
 * timer fired, no signal seen. Interest is level-triggered in both
 * backends, so whatever is left makes the fd ready again in the next
 * turn, after everyone else has had theirs. Today: sessions read once,
 * the listener accepts 64, the monitor reads 32 datagrams, the signal
 * pipe and the committer's eventfd are read once.
 */
#ifndef SELECTOR_H
#define SELECTOR_H

#include <stddef.h>
#include <stdint.h>

enum selector_interest {
    OP_NOOP  = 0,
    OP_READ  = 1 << 0,
    OP_WRITE = 1 << 1,
};

struct selector;

/* What a handler is given: the selector, the ready fd and its data. */
struct selector_key {
    struct selector *s;
    int fd;
    void *data;
};

struct fd_handler {
    void (*on_read)(struct selector_key *key);
    void (*on_write)(struct selector_key *key);
    /* Called once by selector_unregister() or selector_destroy(). The
     * selector never closes the fd: the owner does, here or after. */
    void (*on_close)(struct selector_key *key);
};

/*
 * A one-shot timer owned (embedded) by the caller; the selector keeps a
 * min-heap of pointers to armed timers. Zero-initialise before first use.
 */
struct selector_timer {
    uint64_t deadline_ms;          /* selector_now_ms() clock */
    size_t slot;                   /* heap index + 1; 0 while not armed */
    void (*on_expire)(struct selector *s, void *data);
    void *data;
};

/* max_fds: the largest fd number + 1 the caller may register (the
 * open-files limit). Returns NULL with errno set on failure. */
struct selector *selector_new(size_t max_fds);

/* Unregisters every fd (calling on_close), then frees the selector. */
void selector_destroy(struct selector *s);

/* "epoll" or "select". */
const char *selector_backend_name(void);

/* One more than the highest fd this backend can watch (FD_SETSIZE for
 * select(), max_fds for epoll). Callers refuse clients above it. */
int selector_fd_limit(const struct selector *s);

/* Returns 0, or -1 with errno set (EINVAL: fd out of range or already
 * registered; EMFILE/ENOMEM from the backend). */
int selector_register(struct selector *s, int fd, const struct fd_handler *h,
                      unsigned interest, void *data);

/* Removes fd and calls its on_close. Safe from inside any handler, for
 * any fd: an fd removed during a turn gets no further callback in it. */
int selector_unregister(struct selector *s, int fd);

/* Replaces the interest set (OP_READ | OP_WRITE | OP_NOOP). 0 or -1. */
int selector_set_interest(struct selector *s, int fd, unsigned interest);

/*
 * One turn: wait until some fd is ready or the nearest timer is due (or
 * timeout_ms passes, -1 = no limit besides timers), dispatch every ready
 * handler and every due timer, then run the turn hook. Returns 0 (also
 * when interrupted by a signal), or -1 with errno set on a real failure.
 */
int selector_select(struct selector *s, int timeout_ms);

/* Arms (or re-arms) t to fire ms from now; t->on_expire/t->data must be
 * set. A fired timer is disarmed before its callback runs. */
void selector_timer_set(struct selector *s, struct selector_timer *t,
                        uint64_t ms);
/* Disarms t if armed; harmless otherwise. */
void selector_timer_cancel(struct selector *s, struct selector_timer *t);

/* Milliseconds from CLOCK_MONOTONIC. */
uint64_t selector_now_ms(void);

/* A function run at the end of every turn, after all handlers and timers
 * (group commit hands its batch to the disk there). NULL to remove. */
void selector_set_turn_hook(struct selector *s, void (*hook)(void *data),
                            void *data);

#endif
