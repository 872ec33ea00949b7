/*
 * buffer.h - a fixed-capacity byte buffer with read and write positions.
 * The caller owns the storage; the buffer never grows. Also the three-way
 * result of one non-blocking read or write on a socket.
 */
#ifndef BUFFER_H
#define BUFFER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct buffer {
    uint8_t *data;
    size_t cap;
    size_t rpos;    /* next byte to read */
    size_t wpos;    /* next byte to write; rpos <= wpos <= cap */
};

void buffer_init(struct buffer *b, uint8_t *storage, size_t cap);
void buffer_reset(struct buffer *b);

/* Where the next bytes may be written, and how many fit. Moves unread
 * bytes to the front first when that makes room. */
uint8_t *buffer_write_ptr(struct buffer *b, size_t *avail);
void buffer_write_adv(struct buffer *b, size_t n);

/* The unread bytes. */
uint8_t *buffer_read_ptr(struct buffer *b, size_t *avail);
void buffer_read_adv(struct buffer *b, size_t n);

size_t buffer_readable(const struct buffer *b);
/* Room left, counting the space compaction would recover. */
size_t buffer_space(const struct buffer *b);

/* All n bytes or nothing: 0, or -1 when they do not fit. */
int buffer_append(struct buffer *b, const void *p, size_t n);

/* Moves unread bytes to offset 0. */
void buffer_compact(struct buffer *b);

enum io_result {
    IO_OK,      /* some bytes moved (*n > 0) */
    IO_AGAIN,   /* nothing now: EAGAIN/EWOULDBLOCK/EINTR; try after the next event */
    IO_CLOSED,  /* read: the peer closed (read returned 0) */
    IO_ERROR,   /* errno is set */
};

/* One read() into the free space. *n: bytes read. A full buffer gives
 * IO_AGAIN with *n == 0 (the caller must drain it first). */
enum io_result buffer_fill(struct buffer *b, int fd, size_t *n);
/* One write() of the unread bytes. *n: bytes written. */
enum io_result buffer_flush(struct buffer *b, int fd, size_t *n);

#endif
