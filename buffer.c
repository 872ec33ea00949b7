/*
 * buffer.c - a fixed-capacity byte buffer over caller-owned storage, and
 * one non-blocking read or write at a time on it. Never allocates, never
 * grows; "try later", "closed" and "error" stay three different results.
 */
#include "buffer.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

void buffer_init(struct buffer *b, uint8_t *storage, size_t cap)
{
    b->data = storage;
    b->cap = cap;
    b->rpos = 0;
    b->wpos = 0;
}

void buffer_reset(struct buffer *b)
{
    b->rpos = 0;
    b->wpos = 0;
}

void buffer_compact(struct buffer *b)
{
    if (b->rpos == 0)
        return;
    size_t unread = b->wpos - b->rpos;
    if (unread > 0)
        memmove(b->data, b->data + b->rpos, unread);
    b->rpos = 0;
    b->wpos = unread;
}

/* Compacts only when that at least doubles the room at the tail: moving
 * a long unread tail for a few bytes on every call would cost more than
 * the shorter read it saves. */
uint8_t *buffer_write_ptr(struct buffer *b, size_t *avail)
{
    if (b->rpos > 0 && b->cap - b->wpos < b->rpos)
        buffer_compact(b);
    *avail = b->cap - b->wpos;
    return b->data + b->wpos;
}

void buffer_write_adv(struct buffer *b, size_t n)
{
    size_t room = b->cap - b->wpos;
    b->wpos += n < room ? n : room;
}

uint8_t *buffer_read_ptr(struct buffer *b, size_t *avail)
{
    *avail = b->wpos - b->rpos;
    return b->data + b->rpos;
}

/* Draining the last byte rewinds both positions: no copy needed later. */
void buffer_read_adv(struct buffer *b, size_t n)
{
    size_t unread = b->wpos - b->rpos;
    b->rpos += n < unread ? n : unread;
    if (b->rpos == b->wpos)
        buffer_reset(b);
}

size_t buffer_readable(const struct buffer *b)
{
    return b->wpos - b->rpos;
}

size_t buffer_space(const struct buffer *b)
{
    return b->cap - (b->wpos - b->rpos);
}

int buffer_append(struct buffer *b, const void *p, size_t n)
{
    if (n > buffer_space(b)) {
        errno = ENOBUFS;
        return -1;
    }
    if (n == 0)
        return 0;
    if (b->cap - b->wpos < n)
        buffer_compact(b);
    memcpy(b->data + b->wpos, p, n);
    b->wpos += n;
    return 0;
}

/* The three outcomes of a failed read()/write(), told apart by errno. */
static enum io_result buffer_io_failure(void)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return IO_AGAIN;
    return IO_ERROR;
}

enum io_result buffer_fill(struct buffer *b, int fd, size_t *n)
{
    size_t avail;
    uint8_t *p = buffer_write_ptr(b, &avail);

    *n = 0;
    if (avail == 0)
        return IO_AGAIN;
    ssize_t r = read(fd, p, avail);
    if (r > 0) {
        buffer_write_adv(b, (size_t)r);
        *n = (size_t)r;
        return IO_OK;
    }
    return r == 0 ? IO_CLOSED : buffer_io_failure();
}

/* An empty buffer is IO_OK with *n == 0 and no write(): nothing is owed.
 * write() never answers 0 for a non-empty request on a socket or pipe;
 * should it, "try later" is the safe reading. */
enum io_result buffer_flush(struct buffer *b, int fd, size_t *n)
{
    size_t avail;
    uint8_t *p = buffer_read_ptr(b, &avail);

    *n = 0;
    if (avail == 0)
        return IO_OK;
    ssize_t r = write(fd, p, avail);
    if (r > 0) {
        buffer_read_adv(b, (size_t)r);
        *n = (size_t)r;
        return IO_OK;
    }
    return r == 0 ? IO_AGAIN : buffer_io_failure();
}
