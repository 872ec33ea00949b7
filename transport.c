/*
 * transport.c - the plain transport: one read() or write() at a time on
 * the client's socket, counted in stats.bytes_transferred. The TLS one is
 * in transport_tls.c; a session switches from this to that at STARTTLS.
 */
#include "transport.h"
#include "stats.h"
#include "transport_tls.h"

static enum io_result plain_fill(struct transport *t, struct buffer *b, size_t *n)
{
    enum io_result r = buffer_fill(b, t->fd, n);
    stats.bytes_transferred += *n;
    return r;
}

static enum io_result plain_flush(struct transport *t, struct buffer *b, size_t *n)
{
    enum io_result r = buffer_flush(b, t->fd, n);
    stats.bytes_transferred += *n;
    return r;
}

static enum transport_step plain_handshake(struct transport *t, char *why, size_t len)
{
    (void)t;
    (void)why;
    (void)len;
    return TRANSPORT_DONE;
}

static bool plain_pending(const struct transport *t)
{
    (void)t;
    return false;
}

static const char *plain_describe(const struct transport *t, char *buf, size_t len)
{
    (void)t;
    if (len > 0)
        buf[0] = '\0';
    return buf;
}

static void plain_close(struct transport *t)
{
    (void)t;
}

static const struct transport_ops plain_ops = {
    .fill = plain_fill,
    .flush = plain_flush,
    .handshake = plain_handshake,
    .pending = plain_pending,
    .describe = plain_describe,
    .close = plain_close,
};

void transport_init(struct transport *t, int fd)
{
    t->ops = &plain_ops;
    t->fd = fd;
    t->conn = NULL;
    t->want = 0;
    t->handshaking = false;
    t->secure = false;
}

int transport_start_tls(struct transport *t)
{
    if (t->conn != NULL || !tls_enabled())
        return -1;
    return tls_attach(t);
}
