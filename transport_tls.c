/*
 * transport_tls.c - TLS for client sessions with OpenSSL: the server's certificate
 * and key (loaded at start, again on SIGHUP), and the TLS transport, whose
 * handshake, reads and writes never block: OpenSSL's "want read" and
 * "want write" become selector interest (transport.want). The only file
 * that includes OpenSSL headers. Errors come back as results, never exits.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "selector.h"
#include "stats.h"
#include "transport_tls.h"
#include "transport.h"

struct tls_conn {
    SSL *ssl;
    uint64_t seen_in, seen_out;     /* socket bytes already counted */
    bool fatal;                     /* no close_notify after an error */
};

static SSL_CTX *tls_ctx;            /* NULL: no certificate configured */

/* ---- settings ------------------------------------------------------- */

/* The reason of the last OpenSSL error, short ("no start line"). */
static const char *tls_error_reason(void)
{
    unsigned long e = ERR_peek_error();     /* the first: the root cause */
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

static bool tls_file_readable(const char *path, const char *what, char *err,
                              size_t len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, len, "%s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* A TLS 1.2 client that starts a second handshake is refused by OpenSSL
 * (SSL_OP_NO_RENEGOTIATION) with a no_renegotiation alert; said here, so
 * the log tells why the session ends. */
static void tls_on_info(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_WRITE_ALERT) && (ret & 0xff) == SSL_AD_NO_RENEGOTIATION)
        log_info("TLS on fd %d: the client asked to renegotiate, refused",
                 SSL_get_fd(ssl));
}

/* TLS 1.2 suites: AEAD with forward secrecy only (ECDHE with AES-GCM or
 * ChaCha20-Poly1305, as Mozilla's "intermediate" profile): no CBC (the
 * LUCKY13 family), no static RSA key exchange. TLS 1.3 keeps OpenSSL's
 * own list, which is all AEAD with forward secrecy. */
#define TLS12_CIPHERS \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Protocol floor, AEAD suites, no client renegotiation, small idle
 * sessions. NULL when OpenSSL refuses a setting. */
static SSL_CTX *tls_ctx_new(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1
        || SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION
                        | SSL_OP_CIPHER_SERVER_PREFERENCE
                        | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE
                     | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_info_callback(ctx, tls_on_info);
    return ctx;
}

/* The key would not load. Without --tls-key it was looked for in the
 * certificate file: say so, rather than name a flag the user never gave. */
static void tls_key_error(const char *cert, const char *key, char *err,
                          size_t len)
{
    if (key == NULL)
        snprintf(err, len, "--tls-cert %s: no private key in it (give the "
                 "key file with --tls-key): %s", cert, tls_error_reason());
    else
        snprintf(err, len, "--tls-key %s: cannot use it with the certificate "
                 "%s: %s", key, cert, tls_error_reason());
}

/* key NULL: the key is in the certificate file. */
static SSL_CTX *tls_load(const char *cert, const char *key_arg, char *err,
                         size_t len)
{
    const char *key = key_arg ? key_arg : cert;
    if (!tls_file_readable(cert, "--tls-cert", err, len)
        || !tls_file_readable(key, "--tls-key", err, len))
        return NULL;
    SSL_CTX *ctx = tls_ctx_new();
    if (ctx == NULL)
        snprintf(err, len, "cannot set up TLS: %s", tls_error_reason());
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        snprintf(err, len, "--tls-cert %s: cannot load the certificate: %s",
                 cert, tls_error_reason());
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        tls_key_error(cert, key_arg, err, len);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        snprintf(err, len, "--tls-key %s does not match the certificate %s",
                 key, cert);
    else
        return ctx;
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

int tls_configure(const char *cert, const char *key, char *err, size_t len)
{
    SSL_CTX *ctx = tls_load(cert, key, err, len);
    if (ctx == NULL)
        return -1;
    /* Sessions already running keep a reference to the old settings. */
    SSL_CTX_free(tls_ctx);
    tls_ctx = ctx;
    return 0;
}

bool tls_enabled(void)
{
    return tls_ctx != NULL;
}

const char *tls_library(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

void tls_cleanup(void)
{
    SSL_CTX_free(tls_ctx);
    tls_ctx = NULL;
}

/* ---- the transport -------------------------------------------------- */

/* Adds the socket bytes OpenSSL moved since the last call to the stats. */
static void tls_count(struct tls_conn *c)
{
    BIO *rb = SSL_get_rbio(c->ssl), *wb = SSL_get_wbio(c->ssl);
    uint64_t in = rb ? BIO_number_read(rb) : c->seen_in;
    uint64_t out = wb ? BIO_number_written(wb) : c->seen_out;
    stats.bytes_transferred += (in - c->seen_in) + (out - c->seen_out);
    c->seen_in = in;
    c->seen_out = out;
}

/* Why a call failed, for the log; clears OpenSSL's error queue so that
 * the next session does not inherit it. */
static void tls_failure(struct tls_conn *c, int err, int saved_errno, char *why,
                        size_t len)
{
    c->fatal = true;
    if (err == SSL_ERROR_SSL)
        snprintf(why, len, "%s", tls_error_reason());
    else if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && saved_errno == 0))
        snprintf(why, len, "the client closed the connection");
    else if (err == SSL_ERROR_SYSCALL)
        snprintf(why, len, "%s", strerror(saved_errno));
    else
        snprintf(why, len, "TLS error %d", err);
    ERR_clear_error();
}

static enum transport_step tls_handshake(struct transport *t, char *why, size_t len)
{
    struct tls_conn *c = t->conn;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c->ssl);
    int saved = errno;
    tls_count(c);
    if (r == 1) {
        t->handshaking = false;
        t->secure = true;
        t->want = 0;
        return TRANSPORT_DONE;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        t->want = err == SSL_ERROR_WANT_READ ? OP_READ : OP_WRITE;
        return TRANSPORT_AGAIN;
    }
    tls_failure(c, err, saved, why, len);
    return TRANSPORT_FAILED;
}

/* The result of a failed SSL_read/SSL_write; other_way is the interest
 * to add when OpenSSL needs the other direction first. */
static enum io_result tls_io_result(struct transport *t, int r, unsigned other_way)
{
    struct tls_conn *c = t->conn;
    int saved = errno;
    int err = SSL_get_error(c->ssl, r);
    char why[128];
    switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        if ((err == SSL_ERROR_WANT_READ ? OP_READ : OP_WRITE) == other_way)
            t->want |= other_way;
        return IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        c->fatal = true;        /* the client's close_notify: nothing more */
        return IO_CLOSED;
    default:
        tls_failure(c, err, saved, why, sizeof(why));
        log_info("TLS error on fd %d: %s", t->fd, why);
        errno = saved ? saved : EPROTO;
        return err == SSL_ERROR_SYSCALL && saved == 0 ? IO_CLOSED : IO_ERROR;
    }
}

static enum io_result tls_fill(struct transport *t, struct buffer *b, size_t *n)
{
    struct tls_conn *c = t->conn;
    size_t avail, got = 0;
    uint8_t *p = buffer_write_ptr(b, &avail);
    *n = 0;
    if (avail == 0)
        return IO_AGAIN;
    t->want &= ~(unsigned)OP_WRITE;
    ERR_clear_error();
    errno = 0;
    int r = SSL_read_ex(c->ssl, p, avail, &got);
    tls_count(c);
    if (r == 1) {
        buffer_write_adv(b, got);
        *n = got;
        return IO_OK;
    }
    return tls_io_result(t, r, OP_WRITE);
}

static enum io_result tls_flush(struct transport *t, struct buffer *b, size_t *n)
{
    struct tls_conn *c = t->conn;
    size_t avail, put = 0;
    uint8_t *p = buffer_read_ptr(b, &avail);
    *n = 0;
    if (avail == 0)
        return IO_OK;
    t->want &= ~(unsigned)OP_READ;
    ERR_clear_error();
    errno = 0;
    int r = SSL_write_ex(c->ssl, p, avail, &put);
    tls_count(c);
    if (r == 1) {
        buffer_read_adv(b, put);
        *n = put;
        return IO_OK;
    }
    return tls_io_result(t, r, OP_READ);
}

static bool tls_pending(const struct transport *t)
{
    const struct tls_conn *c = t->conn;
    return SSL_pending(c->ssl) > 0 || SSL_has_pending(c->ssl);
}

static const char *tls_describe(const struct transport *t, char *buf, size_t len)
{
    const struct tls_conn *c = t->conn;
    snprintf(buf, len, "%s:%s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
    return buf;
}

/* A best-effort close_notify: the socket is closed right after. */
static void tls_close(struct transport *t)
{
    struct tls_conn *c = t->conn;
    if (c == NULL)
        return;
    if (t->secure && !c->fatal) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        tls_count(c);
    }
    SSL_free(c->ssl);
    ERR_clear_error();
    free(c);
    t->conn = NULL;
}

static const struct transport_ops tls_ops = {
    .fill = tls_fill,
    .flush = tls_flush,
    .handshake = tls_handshake,
    .pending = tls_pending,
    .describe = tls_describe,
    .close = tls_close,
};

int tls_attach(struct transport *t)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    if (c == NULL || tls_ctx == NULL)
        goto fail;
    c->ssl = SSL_new(tls_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, t->fd) != 1)
        goto fail;
    SSL_set_accept_state(c->ssl);
    /* A TLS exchange is several small writes in a row (the handshake's
     * flights, session tickets, then the reply): with Nagle each later
     * one would wait for the client's delayed ACK, some 40 ms a time. */
    int on = 1;
    setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    t->ops = &tls_ops;
    t->conn = c;
    t->handshaking = true;
    t->want = OP_READ;
    return 0;
fail:
    if (c)
        SSL_free(c->ssl);
    free(c);
    ERR_clear_error();
    return -1;
}
