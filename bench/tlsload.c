/*
 * tlsload.c - TLS load for an SMTP server: T threads, each opening one
 * connection per session, TLS by STARTTLS or on connect (implicit TLS), a
 * full handshake every time (no resumption), then a whole transaction or,
 * with -H, nothing more than the handshake and the greeting. Blocking
 * sockets, one per thread; loopback; bounded by -s seconds.
 *
 *   cc -std=c11 -O2 -D_GNU_SOURCE bench/tlsload.c -o build/bench/tlsload \
 *      $(pkg-config --cflags --libs openssl) -lpthread
 *   tlsload -p PORT [-a ADDR] [-i] [-H] [-c THREADS] [-s SECONDS]
 *           [-r RCPT] [-l BYTES]
 *
 * Prints one line: "sessions=N failed=F seconds=S rate=R" (sessions per
 * second). Exit 0 when no session failed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct tl_opts {
    struct sockaddr_in addr;
    int implicit;               /* -i: TLS from the first byte */
    int handshake_only;         /* -H */
    int threads;
    double seconds;
    const char *rcpt;
    size_t body;                /* message bytes */
    SSL_CTX *ctx;
};

struct tl_conn {
    int fd;
    SSL *ssl;                   /* NULL before TLS */
    char buf[4096];
    size_t len;
};

struct tl_thread {
    pthread_t id;
    const struct tl_opts *o;
    double deadline;
    long done, failed;
};

static double tl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int tl_read(struct tl_conn *c, char *p, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, p, (int)n);
        return r > 0 ? r : -1;
    }
    ssize_t r = read(c->fd, p, n);
    return r > 0 ? (int)r : -1;
}

static int tl_write(struct tl_conn *c, const char *p, size_t n)
{
    while (n > 0) {
        int r = c->ssl ? SSL_write(c->ssl, p, (int)n) : (int)write(c->fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The code of the next whole reply (the last line of a multi-line one). */
static int tl_reply(struct tl_conn *c)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl == NULL) {
            if (c->len == sizeof(c->buf))
                return -1;
            int r = tl_read(c, c->buf + c->len, sizeof(c->buf) - c->len);
            if (r < 0)
                return -1;
            c->len += (size_t)r;
            continue;
        }
        size_t line = (size_t)(nl - c->buf) + 1;
        int last = line >= 5 && c->buf[3] == ' ';
        int code = atoi(c->buf);
        memmove(c->buf, c->buf + line, c->len - line);
        c->len -= line;
        if (last)
            return code;
    }
}

static int tl_cmd(struct tl_conn *c, const char *line, int want)
{
    if (tl_write(c, line, strlen(line)) < 0)
        return -1;
    return tl_reply(c) == want ? 0 : -1;
}

static int tl_handshake(struct tl_conn *c, SSL_CTX *ctx)
{
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return -1;
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    return SSL_connect(c->ssl) == 1 ? 0 : -1;
}

static int tl_message(struct tl_conn *c, const struct tl_opts *o)
{
    char line[600];
    snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n", o->rcpt);
    if (tl_cmd(c, "MAIL FROM:<tlsload@bench.test>\r\n", 250) < 0
        || tl_cmd(c, line, 250) < 0 || tl_cmd(c, "DATA\r\n", 354) < 0)
        return -1;
    static const char head[] = "Subject: tlsload\r\n\r\n";
    if (tl_write(c, head, sizeof(head) - 1) < 0)
        return -1;
    char row[80];
    memset(row, 'x', sizeof(row) - 2);
    memcpy(row + sizeof(row) - 2, "\r\n", 2);
    for (size_t sent = 0; sent < o->body; sent += sizeof(row))
        if (tl_write(c, row, sizeof(row)) < 0)
            return -1;
    return tl_cmd(c, ".\r\n", 250);
}

static int tl_session(const struct tl_opts *o)
{
    struct tl_conn c = { .fd = socket(AF_INET, SOCK_STREAM, 0) };
    struct timeval tv = { .tv_sec = 10 };
    int rc = -1;
    if (c.fd < 0)
        return -1;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int on = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (connect(c.fd, (const struct sockaddr *)&o->addr, sizeof(o->addr)) < 0)
        goto out;
    if (o->implicit && tl_handshake(&c, o->ctx) < 0)
        goto out;
    if (tl_reply(&c) != 220 || tl_cmd(&c, "EHLO tlsload.test\r\n", 250) < 0)
        goto out;
    if (!o->implicit && (tl_cmd(&c, "STARTTLS\r\n", 220) < 0
                         || tl_handshake(&c, o->ctx) < 0
                         || tl_cmd(&c, "EHLO tlsload.test\r\n", 250) < 0))
        goto out;
    if (!o->handshake_only && tl_message(&c, o) < 0)
        goto out;
    rc = tl_cmd(&c, "QUIT\r\n", 221);
out:
    if (c.ssl) {
        SSL_shutdown(c.ssl);
        SSL_free(c.ssl);
    }
    ERR_clear_error();
    close(c.fd);
    return rc;
}

static void *tl_run(void *arg)
{
    struct tl_thread *t = arg;
    while (tl_now() < t->deadline) {
        if (tl_session(t->o) == 0)
            t->done++;
        else
            t->failed++;
    }
    return NULL;
}

static int tl_args(struct tl_opts *o, int argc, char **argv)
{
    int opt;
    o->addr.sin_family = AF_INET;
    o->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    o->threads = 1;
    o->seconds = 10;
    o->rcpt = "postmaster@localhost";
    o->body = 1024;
    while ((opt = getopt(argc, argv, "p:a:iHc:s:r:l:")) != -1) {
        switch (opt) {
        case 'p': o->addr.sin_port = htons((uint16_t)atoi(optarg)); break;
        case 'a': if (inet_pton(AF_INET, optarg, &o->addr.sin_addr) != 1) return -1; break;
        case 'i': o->implicit = 1; break;
        case 'H': o->handshake_only = 1; break;
        case 'c': o->threads = atoi(optarg); break;
        case 's': o->seconds = atof(optarg); break;
        case 'r': o->rcpt = optarg; break;
        case 'l': o->body = (size_t)atol(optarg); break;
        default: return -1;
        }
    }
    return o->addr.sin_port && o->threads > 0 && o->threads <= 1024
           && o->seconds > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct tl_opts o = { 0 };
    if (tl_args(&o, argc, argv) < 0) {
        fputs("usage: tlsload -p PORT [-a ADDR] [-i] [-H] [-c THREADS] "
              "[-s SECONDS] [-r RCPT] [-l BYTES]\n", stderr);
        return 2;
    }
    o.ctx = SSL_CTX_new(TLS_client_method());
    if (o.ctx == NULL)
        return 1;
    SSL_CTX_set_verify(o.ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(o.ctx, SSL_SESS_CACHE_OFF);
    struct tl_thread *t = calloc((size_t)o.threads, sizeof(*t));
    double start = tl_now();
    for (int i = 0; i < o.threads; i++) {
        t[i].o = &o;
        t[i].deadline = start + o.seconds;
        pthread_create(&t[i].id, NULL, tl_run, &t[i]);
    }
    long done = 0, failed = 0;
    for (int i = 0; i < o.threads; i++) {
        pthread_join(t[i].id, NULL);
        done += t[i].done;
        failed += t[i].failed;
    }
    double secs = tl_now() - start;
    printf("sessions=%ld failed=%ld seconds=%.2f rate=%.1f\n", done, failed,
           secs, (double)done / secs);
    free(t);
    SSL_CTX_free(o.ctx);
    return failed == 0 ? 0 : 1;
}
