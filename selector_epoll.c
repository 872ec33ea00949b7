/*
 * selector_epoll.c - the epoll backend, level-triggered. An fd whose
 * interest is OP_NOOP is kept out of the epoll set: epoll reports errors
 * and hang-ups even for an empty mask, and level-triggered that would spin.
 */
#include "selector.h"
#include "selector_backend.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct backend {
    int epfd;
    struct epoll_event *events;     /* batch entries */
    size_t batch;
};

const char *backend_name(void)
{
    return "epoll";
}

size_t backend_fd_limit(size_t max_fds)
{
    return max_fds;
}

struct backend *backend_new(size_t fd_limit, size_t batch)
{
    (void)fd_limit;
    struct backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->batch = batch;
    b->events = calloc(batch, sizeof(*b->events));
    if (b->events == NULL)
        goto fail_free;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd == -1)
        goto fail_free;
    return b;

fail_free:
    free(b->events);
    free(b);
    return NULL;
}

void backend_free(struct backend *b)
{
    if (b == NULL)
        return;
    close(b->epfd);
    free(b->events);
    free(b);
}

/* RDHUP only with read interest: a half-closed peer is news to a reader,
 * and would otherwise wake a writer-only fd on every turn. */
static int backend_ctl(struct backend *b, int op, int fd, unsigned interest)
{
    struct epoll_event ev = { .events = 0, .data.fd = fd };
    if (interest & OP_READ)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (interest & OP_WRITE)
        ev.events |= EPOLLOUT;
    return epoll_ctl(b->epfd, op, fd, &ev);
}

int backend_add(struct backend *b, int fd, unsigned interest)
{
    if (interest == OP_NOOP)
        return 0;   /* selector.c already checked that fd is open */
    return backend_ctl(b, EPOLL_CTL_ADD, fd, interest);
}

int backend_modify(struct backend *b, int fd, unsigned old, unsigned interest)
{
    if (old == OP_NOOP)
        return backend_add(b, fd, interest);
    if (interest == OP_NOOP)
        return epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
    return backend_ctl(b, EPOLL_CTL_MOD, fd, interest);
}

void backend_remove(struct backend *b, int fd, unsigned interest)
{
    /* Fails harmlessly when the owner already closed fd: close() took it
     * out of the epoll set then. */
    if (interest != OP_NOOP)
        (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* Errors and hang-ups count as both: the owner's read then sees 0 or the
 * error, and a writer learns of it without waiting for read interest. */
static unsigned backend_ready(uint32_t events)
{
    unsigned ready = 0;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLPRI | EPOLLERR | EPOLLHUP))
        ready |= OP_READ;
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
        ready |= OP_WRITE;
    return ready;
}

int backend_poll(struct backend *b, struct backend_event *out, size_t cap,
                 int timeout_ms)
{
    int max = (int)(cap < b->batch ? cap : b->batch);
    int n = epoll_wait(b->epfd, b->events, max, timeout_ms);
    if (n == -1)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        out[i].fd = b->events[i].data.fd;
        out[i].ready = backend_ready(b->events[i].events);
    }
    return n;
}
