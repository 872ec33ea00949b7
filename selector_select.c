/*
 * selector_select.c - the select() backend: two fd_sets and the highest fd.
 * It watches fds below FD_SETSIZE only and refuses the rest with EINVAL,
 * since FD_SET() beyond the set is undefined behaviour.
 */
#include "selector.h"
#include "selector_backend.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/select.h>

struct backend {
    fd_set rfds;        /* fds with OP_READ */
    fd_set wfds;        /* fds with OP_WRITE */
    int max_fd;         /* highest fd in either set, -1 when both are empty */
    size_t fd_limit;
};

const char *backend_name(void)
{
    return "select";
}

size_t backend_fd_limit(size_t max_fds)
{
    return max_fds < FD_SETSIZE ? max_fds : FD_SETSIZE;
}

struct backend *backend_new(size_t fd_limit, size_t batch)
{
    (void)batch;    /* the caller's event array covers every fd we watch */
    struct backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    FD_ZERO(&b->rfds);
    FD_ZERO(&b->wfds);
    b->max_fd = -1;
    b->fd_limit = backend_fd_limit(fd_limit);
    return b;
}

void backend_free(struct backend *b)
{
    free(b);
}

/* Puts fd in exactly the sets its interest names. */
static void backend_apply(struct backend *b, int fd, unsigned interest)
{
    if (interest & OP_READ)
        FD_SET(fd, &b->rfds);
    else
        FD_CLR(fd, &b->rfds);
    if (interest & OP_WRITE)
        FD_SET(fd, &b->wfds);
    else
        FD_CLR(fd, &b->wfds);
}

/* Lowers max_fd past fds that are in neither set any more. */
static void backend_shrink(struct backend *b)
{
    while (b->max_fd >= 0 && !FD_ISSET(b->max_fd, &b->rfds) &&
           !FD_ISSET(b->max_fd, &b->wfds))
        b->max_fd--;
}

static int backend_set(struct backend *b, int fd, unsigned interest)
{
    if (fd < 0 || (size_t)fd >= b->fd_limit) {
        errno = EINVAL;
        return -1;
    }
    backend_apply(b, fd, interest);
    if (interest != OP_NOOP && fd > b->max_fd)
        b->max_fd = fd;
    else if (fd == b->max_fd)
        backend_shrink(b);
    return 0;
}

int backend_add(struct backend *b, int fd, unsigned interest)
{
    return backend_set(b, fd, interest);
}

int backend_modify(struct backend *b, int fd, unsigned old, unsigned interest)
{
    (void)old;
    return backend_set(b, fd, interest);
}

void backend_remove(struct backend *b, int fd, unsigned interest)
{
    (void)interest;
    backend_set(b, fd, OP_NOOP);
}

int backend_poll(struct backend *b, struct backend_event *out, size_t cap,
                 int timeout_ms)
{
    fd_set r = b->rfds, w = b->wfds;
    struct timeval tv, *tvp = NULL;

    if (timeout_ms >= 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        tvp = &tv;
    }
    int n = select(b->max_fd + 1, &r, &w, NULL, tvp);
    if (n == -1)
        return errno == EINTR ? 0 : -1;
    size_t count = 0;
    for (int fd = 0; fd <= b->max_fd && count < cap && n > 0; fd++) {
        unsigned ready = (FD_ISSET(fd, &r) ? OP_READ : 0u) |
                         (FD_ISSET(fd, &w) ? OP_WRITE : 0u);
        if (ready == 0)
            continue;
        out[count].fd = fd;
        out[count].ready = ready;
        count++;
        n -= (ready & OP_READ ? 1 : 0) + (ready & OP_WRITE ? 1 : 0);
    }
    return (int)count;
}
