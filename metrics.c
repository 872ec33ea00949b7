/*
 * metrics.c - the Prometheus endpoint: the stats counters as exposition
 * text (format 0.0.4), and the small HTTP/1.1 server that hands it out
 * on the event loop. Bounded: METRICS_MAX_CONNS connections, a request
 * of METRICS_HTTP_MAX bytes whole within METRICS_REQUEST_MS, one reply,
 * then close. Requests are parsed by metrics_http.c.
 */
#include "metrics.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "maildir_journal.h"
#include "stats.h"
#include "transport_tls.h"
#include "transform.h"

#define METRICS_OUT_MAX      16384  /* a whole reply; the body is ~4 KiB */
#define METRICS_WRITE_MS     5000   /* to hand the reply to the kernel */
#define METRICS_LINGER_MS    1000   /* to read what the client still sends */
#define METRICS_ACCEPT_BURST 16     /* accept()s per wake-up */
#define METRICS_BACKLOG      64
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---- the exposition text, no I/O ------------------------------------- */

/* The counters at one moment, with what is computed rather than kept. */
struct metrics_snapshot {
    struct stats st;
    uint64_t uptime;
    uint64_t started;
    uint64_t transform_on;
};

#define SNAP(field) offsetof(struct metrics_snapshot, field)

struct metrics_sample {
    const char *labels;             /* "" or `{name="value"}` */
    size_t offset;                  /* of a uint64_t in the snapshot */
};

struct metrics_family {
    const char *name, *type, *help;
    struct metrics_sample samples[5];   /* up to the first NULL labels */
};

static const struct metrics_family metrics_families[] = {
    { "smtpd_connections_total", "counter", "SMTP clients accepted since start.",
      { { "", SNAP(st.connections_total) } } },
    { "smtpd_connections_current", "gauge", "SMTP clients connected now.",
      { { "", SNAP(st.connections_current) } } },
    { "smtpd_bytes_total", "counter",
      "Bytes read from and written to SMTP client sockets.",
      { { "", SNAP(st.bytes_transferred) } } },
    { "smtpd_messages_total", "counter",
      "Transactions ended after DATA: stored (250), rejected (5xx), "
      "failed (4xx).",
      { { "{result=\"stored\"}", SNAP(st.messages_delivered) },
        { "{result=\"rejected\"}", SNAP(st.messages_rejected) },
        { "{result=\"failed\"}", SNAP(st.messages_failed) } } },
    { "smtpd_recipients_total", "counter",
      "Mailbox copies made by stored messages.",
      { { "", SNAP(st.recipients_delivered) } } },
    { "smtpd_recipients_rejected_total", "counter",
      "RCPT commands answered 4xx or 5xx.",
      { { "", SNAP(st.rcpt_rejected) } } },
    { "smtpd_auth_total", "counter",
      "AUTH attempts: ok (235), failed (535 or cancelled), throttled (454).",
      { { "{result=\"ok\"}", SNAP(st.auth_ok) },
        { "{result=\"failed\"}", SNAP(st.auth_failures) },
        { "{result=\"throttled\"}", SNAP(st.auth_refused) } } },
    { "smtpd_auth_delayed_total", "counter",
      "Failed logins answered after the failure delay.",
      { { "", SNAP(st.auth_delayed) } } },
    { "smtpd_tls_sessions_total", "counter", "TLS handshakes completed.",
      { { "", SNAP(st.tls_sessions) } } },
    { "smtpd_refused_total", "counter",
      "Connections or messages refused, by reason.",
      { { "{reason=\"max_clients\"}", SNAP(st.refused_max_clients) },
        { "{reason=\"client_limit\"}", SNAP(st.refused_client_limit) },
        { "{reason=\"client_rate\"}", SNAP(st.refused_client_rate) },
        { "{reason=\"message_rate\"}", SNAP(st.refused_message_rate) },
        { "{reason=\"proxy\"}", SNAP(st.refused_proxy) } } },
    { "smtpd_transform_failures_total", "counter",
      "Transformations that failed.",
      { { "", SNAP(st.transform_failures) } } },
    { "smtpd_transformations_enabled", "gauge",
      "1 while transformations are on.",
      { { "", SNAP(transform_on) } } },
    { "smtpd_monitor_dropped_total", "counter",
      "Monitor datagrams left unanswered.",
      { { "", SNAP(st.monitor_dropped) } } },
    { "smtpd_metrics_refused_total", "counter",
      "Metrics connections closed at once: too many open.",
      { { "", SNAP(st.metrics_refused) } } },
    { "smtpd_uptime_seconds", "gauge", "Seconds since start.",
      { { "", SNAP(uptime) } } },
    { "smtpd_start_time_seconds", "gauge",
      "Start time, seconds since the Unix epoch.",
      { { "", SNAP(started) } } },
};

/* Appends to a fixed buffer; remembers an overflow instead of failing. */
struct metrics_out {
    char *buf;
    size_t cap, len;
    bool full;
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void metrics_printf(struct metrics_out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->full)
        return;
    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        o->full = true;
    else
        o->len += (size_t)n;
}

static void metrics_family_render(struct metrics_out *o,
                                  const struct metrics_family *f,
                                  const struct metrics_snapshot *snap)
{
    metrics_printf(o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
                   f->name, f->type);
    for (size_t i = 0; i < 5 && f->samples[i].labels; i++) {
        uint64_t v;
        memcpy(&v, (const char *)snap + f->samples[i].offset, sizeof v);
        metrics_printf(o, "%s%s %llu\n", f->name, f->samples[i].labels,
                       (unsigned long long)v);
    }
}

/* ---- the journal's figures ------------------------------------------ */

static const struct journal *metrics_journal;

void metrics_watch_journal(const struct journal *j)
{
    metrics_journal = j;
}

static void metrics_counter(struct metrics_out *o, const char *name,
                            const char *type, const char *help, double v)
{
    metrics_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %.9g\n", name, help,
                   name, type, name, v);
}

/* Syncs of the journal (one per batch) as a histogram of seconds. */
static void metrics_journal_syncs(struct metrics_out *o,
                                  const struct journal_stats *js)
{
    const char *h = "smtpd_journal_sync_seconds";
    uint64_t cum = 0;
    metrics_printf(o, "# HELP %s How long each batch's fdatasync of the "
                   "journal took.\n# TYPE %s histogram\n", h, h);
    for (size_t i = 0; i < 7; i++) {
        cum += js->sync_buckets[i];
        metrics_printf(o, "%s_bucket{le=\"%g\"} %llu\n", h,
                       (double)journal_sync_bounds_us[i] / 1e6,
                       (unsigned long long)cum);
    }
    metrics_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n"
                   "%s_count %llu\n", h, (unsigned long long)js->syncs, h,
                   (double)js->sync_us / 1e6, h,
                   (unsigned long long)js->syncs);
}

static void metrics_journal_render(struct metrics_out *o)
{
    struct journal_stats js;
    if (metrics_journal == NULL)
        return;
    journal_stats_get(metrics_journal, &js);
    metrics_counter(o, "smtpd_journal_records_total", "counter",
                    "Messages written to the journal.", (double)js.records);
    metrics_journal_syncs(o, &js);
    metrics_counter(o, "smtpd_journal_checkpoints_total", "counter",
                    "Checkpoints: the journal's files synced, its space "
                    "freed.", (double)js.checkpoints);
    metrics_counter(o, "smtpd_journal_checkpoints_by_file_total", "counter",
                    "Checkpoints that synced file by file, not the whole "
                    "filesystem: other programs kept the disk busy.",
                    (double)js.checkpoints_files);
    metrics_counter(o, "smtpd_journal_checkpoint_seconds_total", "counter",
                    "Time spent in checkpoints.",
                    (double)js.checkpoint_us / 1e6);
    metrics_counter(o, "smtpd_journal_full_total", "counter",
                    "Messages synced file by file because the journal had "
                    "no room.", (double)js.full);
    metrics_counter(o, "smtpd_journal_bytes", "gauge",
                    "Journal bytes holding records not yet checkpointed.",
                    (double)js.bytes_used);
}

size_t metrics_render(char *buf, size_t cap)
{
    struct metrics_out o = { buf, cap, 0, cap == 0 };
    struct metrics_snapshot snap = {
        .st = stats,
        .uptime = stats_uptime(),
        .started = stats.started > 0 ? (uint64_t)stats.started : 0,
        .transform_on = transform_enabled() ? 1 : 0,
    };

    for (size_t i = 0; i < sizeof metrics_families / sizeof metrics_families[0]; i++)
        metrics_family_render(&o, &metrics_families[i], &snap);
    metrics_journal_render(&o);
    metrics_printf(&o, "# HELP smtpd_build_info The version and whether TLS "
                   "is built in; always 1.\n# TYPE smtpd_build_info gauge\n"
                   "smtpd_build_info{version=\"%s\",tls=\"%s\"} 1\n",
                   SMTPD_VERSION, TLS_BUILT ? "yes" : "no");
    return o.full ? 0 : o.len;
}

/* ---- the HTTP reply, no I/O ------------------------------------------ */

static char metrics_body[METRICS_OUT_MAX];  /* the loop thread's scratch */

/* Status line, headers and (unless head) body. */
static size_t metrics_reply(char *out, size_t cap, const char *status,
                            const char *extra, const char *type,
                            const char *body, size_t body_len, bool head)
{
    struct metrics_out o = { out, cap, 0, cap == 0 };

    metrics_printf(&o, "HTTP/1.1 %s\r\n%sContent-Type: %s\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   status, extra, type, body_len);
    if (!head && !o.full) {
        if (body_len > o.cap - o.len)
            return 0;
        memcpy(o.buf + o.len, body, body_len);
        o.len += body_len;
    }
    return o.full ? 0 : o.len;
}

static size_t metrics_plain(char *out, size_t cap, const char *status,
                            const char *extra, const char *text, bool head)
{
    return metrics_reply(out, cap, status, extra, "text/plain; charset=utf-8",
                         text, strlen(text), head);
}

size_t metrics_answer(const char *in, const struct metrics_http_req *r,
                      enum metrics_http_status st, char *out, size_t cap)
{
    if (st != METRICS_HTTP_DONE)
        return metrics_plain(out, cap, "400 Bad Request", "", "Bad request\n",
                             false);
    bool head = r->method == METRICS_HTTP_HEAD;
    if (r->method == METRICS_HTTP_OTHER)
        return metrics_plain(out, cap, "405 Method Not Allowed",
                             "Allow: GET, HEAD\r\n", "Method not allowed\n",
                             false);
    if (r->path_len != 8 || memcmp(in + r->path_off, "/metrics", 8) != 0)
        return metrics_plain(out, cap, "404 Not Found", "", "Not found\n",
                             head);
    size_t n = metrics_render(metrics_body, sizeof metrics_body);
    if (n == 0)
        return 0;
    return metrics_reply(out, cap, "200 OK", "", METRICS_CONTENT_TYPE,
                         metrics_body, n, head);
}

/* ---- connections ------------------------------------------------------ */

enum metrics_phase {
    PHASE_READ,         /* the request is coming */
    PHASE_WRITE,        /* the reply is going out */
    PHASE_LINGER,       /* reply sent, write side shut: read until EOF, so
                           that unread bytes do not turn close into a RST
                           that could destroy the reply on its way */
};

struct metrics_conn {
    int fd;
    size_t slot;                    /* index in metrics_conns */
    enum metrics_phase phase;
    struct selector_timer timer;    /* the deadline of the phase */
    struct metrics_http_req req;
    size_t in_len;
    size_t out_len, out_off;
    char in[METRICS_HTTP_MAX];
    char out[METRICS_OUT_MAX];
};

static struct selector *metrics_sel;
static int metrics_listen_fd = -1;
static struct metrics_conn *metrics_conns[METRICS_MAX_CONNS];
static size_t metrics_nconns;

static void metrics_conn_read(struct selector_key *key);
static void metrics_conn_write(struct selector_key *key);
static void metrics_conn_closed(struct selector_key *key);

static const struct fd_handler metrics_conn_handler = {
    .on_read = metrics_conn_read,
    .on_write = metrics_conn_write,
    .on_close = metrics_conn_closed,
};

static void metrics_conn_end(struct metrics_conn *c)
{
    selector_unregister(metrics_sel, c->fd);    /* frees c */
}

static void metrics_phase(struct metrics_conn *c, enum metrics_phase p,
                          unsigned interest, uint64_t ms)
{
    c->phase = p;
    selector_set_interest(metrics_sel, c->fd, interest);
    selector_timer_set(metrics_sel, &c->timer, ms);
}

/* The request is whole, bad or late: the reply is made now, from the
 * counters of this moment, and written as the socket takes it. */
static void metrics_conn_reply(struct metrics_conn *c,
                               enum metrics_http_status st)
{
    c->out_len = metrics_answer(c->in, &c->req, st, c->out, sizeof c->out);
    c->out_off = 0;
    if (c->out_len == 0) {
        log_error("metrics: reply larger than %d bytes", METRICS_OUT_MAX);
        metrics_conn_end(c);
        return;
    }
    log_debug("metrics: fd %d answered %.3s", c->fd, c->out + 9);
    metrics_phase(c, PHASE_WRITE, OP_WRITE, METRICS_WRITE_MS);
}

static void metrics_conn_write(struct selector_key *key)
{
    struct metrics_conn *c = key->data;
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            metrics_conn_end(c);
        return;
    }
    c->out_off += (size_t)n;
    if (c->out_off < c->out_len)
        return;
    shutdown(c->fd, SHUT_WR);
    metrics_phase(c, PHASE_LINGER, OP_READ, METRICS_LINGER_MS);
}

/* One read per wake-up (the selector's rule). */
static void metrics_conn_read(struct selector_key *key)
{
    struct metrics_conn *c = key->data;
    bool lingering = c->phase == PHASE_LINGER;
    size_t at = lingering ? 0 : c->in_len;

    if (c->phase == PHASE_WRITE)    /* a hang-up reported with the write */
        return;
    ssize_t n = read(c->fd, c->in + at, sizeof c->in - at);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {                   /* gone, or gave up before asking */
        metrics_conn_end(c);
        return;
    }
    if (lingering)
        return;
    c->in_len += (size_t)n;
    enum metrics_http_status st = metrics_http_parse(&c->req, c->in, c->in_len);
    if (st != METRICS_HTTP_NEED_MORE)
        metrics_conn_reply(c, st);
}

/* A request not whole in time gets 400; a reply not taken or a client
 * that does not hang up in time is closed. */
static void metrics_conn_expired(struct selector *s, void *data)
{
    struct metrics_conn *c = data;

    (void)s;
    if (c->phase == PHASE_READ)
        metrics_conn_reply(c, METRICS_HTTP_ERROR);
    else
        metrics_conn_end(c);
}

static void metrics_conn_closed(struct selector_key *key)
{
    struct metrics_conn *c = key->data;

    selector_timer_cancel(metrics_sel, &c->timer);
    metrics_nconns--;
    metrics_conns[c->slot] = metrics_conns[metrics_nconns];
    metrics_conns[c->slot]->slot = c->slot;
    metrics_conns[metrics_nconns] = NULL;
    close(c->fd);
    free(c);
}

static void metrics_conn_start(int fd)
{
    struct metrics_conn *c = calloc(1, sizeof *c);

    if (c == NULL || selector_register(metrics_sel, fd, &metrics_conn_handler,
                                       OP_READ, c) < 0) {
        log_warn("metrics: cannot serve fd %d: %s", fd, strerror(errno));
        free(c);
        close(fd);
        return;
    }
    c->fd = fd;
    c->slot = metrics_nconns;
    metrics_conns[metrics_nconns++] = c;
    c->timer.on_expire = metrics_conn_expired;
    c->timer.data = c;
    metrics_phase(c, PHASE_READ, OP_READ, METRICS_REQUEST_MS);
}

/* At most METRICS_ACCEPT_BURST per wake-up; over the cap, closed at once. */
static void metrics_on_accept(struct selector_key *key)
{
    for (int i = 0; i < METRICS_ACCEPT_BURST; i++) {
        int fd = accept4(key->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
                && errno != ECONNABORTED)
                log_warn("metrics: accept: %s", strerror(errno));
            return;
        }
        if (metrics_nconns == METRICS_MAX_CONNS) {
            stats.metrics_refused++;
            close(fd);
            continue;
        }
        metrics_conn_start(fd);
    }
}

/* ---- the listening socket --------------------------------------------- */

static void metrics_listener_closed(struct selector_key *key)
{
    close(key->fd);
    metrics_listen_fd = -1;
}

static const struct fd_handler metrics_listen_handler = {
    .on_read = metrics_on_accept,
    .on_close = metrics_listener_closed,
};

/* A non-blocking listening socket on ai; IPv6 ones are IPv6 only. The
 * fd, or -1 with errno set. */
static int metrics_listen(const struct addrinfo *ai)
{
    int on = 1, err;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0
        || listen(fd, METRICS_BACKLOG) < 0)
        goto close_fd;
    return fd;

close_fd:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

int metrics_open(struct selector *s, const struct config *cfg)
{
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_PASSIVE,
                              .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai;
    char port[8];
    int rc;

    if (cfg->metrics_port == 0)
        return 0;
    metrics_sel = s;
    snprintf(port, sizeof port, "%u", (unsigned)cfg->metrics_port);
    rc = getaddrinfo(cfg->metrics_addr, port, &hints, &ai);
    if (rc != 0) {
        log_error("metrics: bad address %s: %s", cfg->metrics_addr,
                  gai_strerror(rc));
        return -1;
    }
    int fd = metrics_listen(ai);
    freeaddrinfo(ai);
    if (fd < 0 || selector_register(s, fd, &metrics_listen_handler, OP_READ,
                                    NULL) < 0) {
        log_error("metrics: cannot listen on %s port %s: %s",
                  cfg->metrics_addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    metrics_listen_fd = fd;
    log_info("metrics: listening on %s port %s (HTTP)", cfg->metrics_addr, port);
    return 0;
}

void metrics_close(struct selector *s)
{
    if (metrics_sel == NULL)
        return;
    while (metrics_nconns > 0)
        selector_unregister(s, metrics_conns[0]->fd);
    if (metrics_listen_fd >= 0)
        selector_unregister(s, metrics_listen_fd);
    metrics_sel = NULL;
}
