/*
 * selector_backend.h - the private seam between selector.c and the one
 * kernel backend the Makefile links (selector_epoll.c or selector_select.c).
 * Only those three files include it; everyone else uses selector.h.
 */
#ifndef SELECTOR_BACKEND_H
#define SELECTOR_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* One fd the kernel reported ready in backend_poll(). */
struct backend_event {
    int fd;
    unsigned ready;     /* OP_READ | OP_WRITE; errors and hang-ups set both */
    uint32_t gen;       /* not the backend's: selector.c stamps the slot's
                           generation here to spot stale events */
};

struct backend;

/* fd_limit: every fd handed in is below it. batch: the most events one
 * backend_poll() may return. NULL with errno set on failure. */
struct backend *backend_new(size_t fd_limit, size_t batch);
void backend_free(struct backend *b);

/* interest may be OP_NOOP everywhere; old is the interest before the
 * call, so a backend can keep fds without interest out of the kernel. */
int backend_add(struct backend *b, int fd, unsigned interest);
int backend_modify(struct backend *b, int fd, unsigned old, unsigned interest);
/* Never fails: the fd may already be closed, and then it is gone anyway. */
void backend_remove(struct backend *b, int fd, unsigned interest);

/* Waits up to timeout_ms (-1: no limit) and fills at most cap events.
 * Returns their number, 0 when a signal interrupted the wait, or -1 with
 * errno set. */
int backend_poll(struct backend *b, struct backend_event *out, size_t cap,
                 int timeout_ms);

const char *backend_name(void);
/* One more than the highest fd this backend can watch, given the
 * caller's own limit max_fds. */
size_t backend_fd_limit(size_t max_fds);

#endif
