/*
 * transport.h - how a session's bytes reach its socket: plain or TLS,
 * behind one small table of functions. Every read and write of a client
 * goes through here, and here alone counts stats.bytes_transferred (the
 * bytes on the socket: under TLS, records and handshake included). The
 * TLS implementation (transport_tls.c) is the only file that knows OpenSSL.
 */
#ifndef TRANSPORT_H
#define TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "buffer.h"

enum transport_step {
    TRANSPORT_DONE,     /* the handshake is over: the session is encrypted */
    TRANSPORT_AGAIN,    /* wait for the interest in transport.want */
    TRANSPORT_FAILED,   /* give up on the connection; why says what went wrong */
};

struct transport;

struct transport_ops {
    /* As buffer_fill / buffer_flush, plaintext in and out of b. */
    enum io_result (*fill)(struct transport *t, struct buffer *b, size_t *n);
    enum io_result (*flush)(struct transport *t, struct buffer *b, size_t *n);
    /* One step of the handshake; never blocks. */
    enum transport_step (*handshake)(struct transport *t, char *why, size_t len);
    /* Input already taken off the socket and not yet returned by fill:
     * the selector will not report it, so the caller must ask. */
    bool (*pending)(const struct transport *t);
    /* "TLSv1.3:TLS_AES_256_GCM_SHA384"; "" when plain. */
    const char *(*describe)(const struct transport *t, char *buf, size_t len);
    /* Frees what the transport holds; the caller closes the descriptor. */
    void (*close)(struct transport *t);
};

struct transport {
    const struct transport_ops *ops;
    int fd;
    void *conn;             /* the TLS connection; NULL when plain */
    /* OP_READ / OP_WRITE the transport itself waits for: during the
     * handshake, what it needs next; after it, OP_READ when a write waits
     * for input and OP_WRITE when a read waits for output. 0 when plain. */
    unsigned want;
    bool handshaking;       /* TLS started, not yet done */
    bool secure;            /* the handshake succeeded */
};

/* A plain transport on fd. */
void transport_init(struct transport *t, int fd);
/* Switches t to TLS (server side); the handshake starts with the next
 * transport_handshake(). 0, or -1 when TLS is not available. */
int transport_start_tls(struct transport *t);

static inline enum io_result transport_fill(struct transport *t, struct buffer *b,
                                            size_t *n)
{
    return t->ops->fill(t, b, n);
}

static inline enum io_result transport_flush(struct transport *t, struct buffer *b,
                                             size_t *n)
{
    return t->ops->flush(t, b, n);
}

static inline enum transport_step transport_handshake(struct transport *t,
                                                      char *why, size_t len)
{
    return t->ops->handshake(t, why, len);
}

static inline bool transport_pending(const struct transport *t)
{
    return t->ops->pending(t);
}

static inline const char *transport_describe(const struct transport *t,
                                              char *buf, size_t len)
{
    return t->ops->describe(t, buf, len);
}

static inline void transport_close(struct transport *t)
{
    t->ops->close(t);
}

#endif
