/*
 * smtp_session.c - one SMTP client from session_start() to close(): its
 * socket's events, reading and splitting input, writing replies,
 * backpressure, idle timeouts, shutdown. smtp_accept.c accepts it; its
 * data and queued replies are smtp_state.c's; what each command does is
 * in smtp_commands.c; the DATA body goes to smtp_data.c.
 * A session is freed only from its on_close handler.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "log.h"
#include "auth_login.h"
#include "smtp_limits.h"
#include "smtp_proxy.h"
#include "smtp_session.h"
#include "stats.h"
#include "transform.h"

static LIST_HEAD(, session) sessions = LIST_HEAD_INITIALIZER(sessions);
static size_t nsessions;

static void session_on_read(struct selector_key *key);
static void session_on_write(struct selector_key *key);
static void session_on_close(struct selector_key *key);

static const struct fd_handler session_handler = {
    .on_read = session_on_read,
    .on_write = session_on_write,
    .on_close = session_on_close,
};

size_t session_count(void)
{
    return nsessions;
}

/* ---- I/O -------------------------------------------------------------- */

void session_close(struct session *s)
{
    selector_unregister(session_env.sel, s->fd);   /* -> session_on_close */
}

/* Writes what the kernel takes now. -1 when the client is gone. */
static int session_write_out(struct session *s)
{
    while (buffer_readable(&s->out) > 0) {
        size_t n = 0;
        enum io_result r = transport_flush(&s->t, &s->out, &n);
        if (r == IO_AGAIN)
            return 0;
        if (r != IO_OK)
            return -1;
    }
    return 0;
}

/* Writes what is queued; closes when asked to and everything is out.
 * The session may be freed on return: callers touch it no more. */
static void session_flush(struct session *s)
{
    if (session_write_out(s) < 0
        || (s->closing && buffer_readable(&s->out) == 0)) {
        session_close(s);
        return;
    }
    if (s->tls_starting && buffer_readable(&s->out) == 0) {
        session_tls_begin(s);
        return;
    }
    session_update_interest(s);
}

static bool session_wants_input(const struct session *s)
{
    return !s->closing && s->state != ST_WAIT && !s->tls_starting
           && !s->t.handshaking && s->login == NULL && s->quota_wait == NULL
           && buffer_space(&s->out) >= SESSION_REPLY_MAX;
}

/* The transport's own needs (TLS) come on top of the session's. */
void session_update_interest(struct session *s)
{
    unsigned interest = s->t.want;
    if (session_wants_input(s))
        interest |= OP_READ;
    if (buffer_readable(&s->out) > 0 && !s->t.handshaking)
        interest |= OP_WRITE;
    selector_set_interest(session_env.sel, s->fd, interest);
}

/* One read into the input buffer: 1 when bytes came, 0 when none did,
 * -1 when the client is gone (the session is closed). */
static int session_read(struct session *s)
{
    size_t n = 0;
    enum io_result r = transport_fill(&s->t, &s->in, &n);
    if (r == IO_CLOSED || r == IO_ERROR) {
        if (s->state & (ST_DATA | ST_CHUNK))
            log_info("%s:%u left in the middle of %s", s->ip, s->port,
                     s->state == ST_DATA ? "DATA" : "a BDAT chunk");
        session_close(s);
        return -1;
    }
    if (r != IO_OK)
        return 0;
    /* -T bounds each DATA read, but a whole command line otherwise:
     * a byte now and then does not keep a session alive forever. */
    if (s->state & (ST_DATA | ST_CHUNK))
        s->last_activity = selector_now_ms();
    return 1;
}

static void session_on_read(struct selector_key *key)
{
    struct session *s = key->data;
    if (s->t.handshaking) {
        session_tls_step(s);
        return;
    }
    if (s->tls_after_proxy) {
        session_tls_proxy_read(s);
        return;
    }
    if ((s->t.want & OP_READ) && session_write_out(s) < 0) {  /* TLS write */
        session_close(s);
        return;
    }
    if (!session_wants_input(s)) {
        session_flush(s);
        return;
    }
    int r = session_read(s);
    if (r > 0)
        session_process(s);
    else if (r == 0)
        session_update_interest(s);
}

static void session_on_write(struct selector_key *key)
{
    struct session *s = key->data;
    if (s->t.handshaking) {
        session_tls_step(s);
        return;
    }
    if (session_write_out(s) < 0) {
        session_close(s);
        return;
    }
    /* A TLS read that waited for the socket to take output. */
    if ((s->t.want & OP_WRITE) && session_wants_input(s) && session_read(s) < 0)
        return;
    /* Room again: pipelined commands left in the buffer may go on. */
    if (session_wants_input(s)
        && (buffer_readable(&s->in) > 0 || transport_pending(&s->t)))
        session_process(s);
    else
        session_flush(s);
}

/* ---- timers ----------------------------------------------------------- */

static uint64_t session_timeout_ms(void)
{
    return (uint64_t)session_env.cfg->timeout_s * 1000;
}

/* The idle limit now: -T, or for a TLS handshake at most 10 s (a silent
 * TLS client would otherwise hold its memory for the whole -T). */
static uint64_t session_idle_limit_ms(const struct session *s)
{
    uint64_t t = session_timeout_ms();
    if ((s->t.handshaking || s->tls_starting) && t > SESSION_TLS_HANDSHAKE_MS)
        return SESSION_TLS_HANDSHAKE_MS;
    return t;
}

/* When a message in DATA, or in BDAT chunks from the first one on, runs
 * out of time (0: no message on its way). */
static uint64_t session_message_deadline(const struct session *s)
{
    bool chunks = s->chunking && (s->state & (ST_CHUNK | ST_RCPT));
    if ((s->state != ST_DATA && !chunks) || s->message_start == 0 || s->closing)
        return 0;
    return s->message_start + SESSION_MESSAGE_TIMEOUTS * session_timeout_ms();
}

/* Arms the timer for whichever comes first: the idle limit or the end
 * of the message's time. */
void session_timer_rearm(struct session *s)
{
    uint64_t now = selector_now_ms(), idle = now - s->last_activity;
    uint64_t limit = session_idle_limit_ms(s);
    uint64_t ms = idle < limit ? limit - idle : 0;
    uint64_t end = session_message_deadline(s);
    if (end && (end <= now || end - now < ms))
        ms = end > now ? end - now : 0;
    selector_timer_set(session_env.sel, &s->timer, ms);
}

/* The timer is armed once per timeout period, not per read: activity only
 * moves last_activity, and an early expiry re-arms for the rest. */
static void session_on_timer(struct selector *sel, void *data)
{
    struct session *s = data;
    if (s->state == ST_PROXY) {
        log_warn("%s:%u no PROXY header within %d ms, closing", s->ip, s->port,
                 PROXY_TIMEOUT_MS);
        session_close(s);
        return;
    }
    uint64_t end = session_message_deadline(s);
    if (end && selector_now_ms() >= end) {
        delivery_timeout(s);
        session_flush(s);
        return;
    }
    uint64_t limit = session_idle_limit_ms(s);
    if (selector_now_ms() - s->last_activity < limit) {
        session_timer_rearm(s);
        return;
    }
    if (s->t.handshaking || s->tls_starting) {  /* no plaintext 421 now */
        log_info("%s:%u TLS handshake not done within %llu s, closing", s->ip,
                 s->port, (unsigned long long)(limit / 1000));
        session_close(s);
        return;
    }
    if (s->closing) {           /* a client that does not read its 421 */
        session_close(s);
        return;
    }
    if (s->state == ST_WAIT || s->login) {  /* they have their own limits */
        selector_timer_set(sel, &s->timer, 1000);
        return;
    }
    log_info("%s:%u idle for %u s, closing", s->ip, s->port,
             session_env.cfg->timeout_s);
    session_reply(s, R_IDLE_TIMEOUT);
    session_flush(s);
}

/* ---- input processing ------------------------------------------------- */

/* Feeds buffered bytes to the DATA machine; returns true when it ended. */
static bool session_process_data(struct session *s)
{
    size_t n;
    uint8_t *p = buffer_read_ptr(&s->in, &n);
    static uint8_t body[SESSION_IN_BIG + 2];
    size_t body_len = 0;
    int done = 0;
    size_t used = data_parser_feed(&s->data, p, n, body, &body_len, &done);
    buffer_read_adv(&s->in, used);
    delivery_body(s, body, body_len);
    if (done)
        delivery_end(s);
    return done;
}

/* Feeds buffered bytes to the BDAT chunk being read (smtp_data.c). */
static void session_process_chunk(struct session *s)
{
    size_t n;
    uint8_t *p = buffer_read_ptr(&s->in, &n);
    buffer_read_adv(&s->in, delivery_chunk(s, p, n));
}

/* Handles one line if a whole one is buffered; false when it needs more. */
static bool session_process_line(struct session *s)
{
    size_t n, consumed = 0, len = 0;
    uint8_t *p = buffer_read_ptr(&s->in, &n);
    bool auth = s->state == ST_AUTH || parser_is_auth_line(p, n);
    size_t limit = auth ? SMTP_AUTH_LINE_MAX : SMTP_LINE_MAX;
    if (auth && n >= SESSION_IN_SMALL && session_use_big_input(s) == 0)
        p = buffer_read_ptr(&s->in, &n);
    enum line_status st = parser_next_line(&s->lines, p, n, limit, &consumed, &len);
    if (st == LINE_READY)
        p[len] = '\0';      /* the CR or LF: the line becomes a C string */
    buffer_read_adv(&s->in, consumed);
    if (st == LINE_NEED_MORE)
        return false;
    s->last_activity = selector_now_ms();
    if (st == LINE_TOO_LONG) {
        s->auth_step = AUTH_NONE;
        if (s->state == ST_AUTH)
            session_set_state(s, s->helo ? ST_READY : ST_CONNECTED);
        session_reply(s, R_LINE_TOO_LONG);
    } else if (s->state == ST_AUTH) {
        commands_auth_line(s, (char *)p, len);
    } else {
        commands_dispatch(s, (char *)p, len);
    }
    return true;
}

/* The limits per client address (smtp_limits.h), once the client is known
 * (after the PROXY header, before the greeting): false when the client is
 * refused, its 421 queued and the session closing. Exempt networks and
 * health checks are neither held nor counted. */
bool session_limits_admit(struct session *s)
{
    const struct config *cfg = session_env.cfg;
    if (!limits_on() || s->never_limited
        || limits_exempt(cfg->limit_exempt, cfg->n_limit_exempt, s->ip)
        || limits_key(s->ip, s->limit_key) < 0)
        return true;
    enum limits_verdict v = limits_connect(s->limit_key, selector_now_ms());
    if (v == LIMITS_GO) {
        s->limited = true;
        return true;
    }
    stats.connections_total--;          /* refused at once: not a session */
    if (v == LIMITS_CONNECTIONS) {
        stats.refused_client_limit++;
        log_warn("%s:%u refused: over --client-limit %u connections from the "
                 "address", s->ip, s->port, cfg->client_limit);
        session_reply(s, R_CLIENT_LIMIT);
    } else {
        stats.refused_client_rate++;
        log_warn("%s:%u refused: over --client-rate %u connections per minute "
                 "from the address", s->ip, s->port, cfg->client_rate);
        session_reply(s, R_CLIENT_RATE);
    }
    return false;
}

static void session_greet(struct session *s)
{
    selector_timer_set(session_env.sel, &s->timer, session_timeout_ms());
    if (session_limits_admit(s))
        session_reply(s, R_GREETING, session_env.cfg->domain);
}

/* ST_PROXY: the buffered bytes must begin with a PROXY header. Once it is
 * whole, its source becomes the client (UNKNOWN / LOCAL keep the
 * balancer's address) and the session starts as any other. A bad header
 * closes without a word. False while more bytes are needed or on error. */
static bool session_process_proxy(struct session *s)
{
    size_t n;
    uint8_t *p = buffer_read_ptr(&s->in, &n);
    struct proxy_header h;
    enum proxy_status st = proxy_parse(p, n, &h);
    if (st == PROXY_NEED_MORE)
        return false;
    if (st == PROXY_ERROR) {
        log_warn("%s:%u bad PROXY header (%s), closing", s->ip, s->port, h.reason);
        session_close_after_flush(s);
        return false;
    }
    buffer_read_adv(&s->in, h.len);
    session_proxy_accepted(s, &h);
    session_set_state(s, ST_CONNECTED);
    session_greet(s);
    return true;
}

/* A whole header was read (here or, before TLS, in smtp_tls.c): its
 * source is the client from now on. */
void session_proxy_accepted(struct session *s, const struct proxy_header *h)
{
    char via[sizeof(s->ip) + 8];
    snprintf(via, sizeof(via), "%s:%u", s->ip, (unsigned)s->port);
    if (h->has_addr)
        session_format_peer(s, &h->src);
    else
        s->never_limited = true;
    log_info("%s:%u via %s, PROXY version %d%s", s->ip, s->port, via, h->version,
             h->has_addr ? "" : " without a client address (health check)");
    s->last_activity = selector_now_ms();
}

/* Handles what is buffered until it runs out, the output fills, or the
 * session waits for its message to be stored. Output is written as it
 * accumulates so a long pipelined batch keeps moving. */
void session_process(struct session *s)
{
    bool partial = false;
    for (;;) {
        while (!partial && session_wants_input(s) && buffer_readable(&s->in) > 0) {
            if (s->state == ST_DATA)
                session_process_data(s);
            else if (s->state == ST_CHUNK)
                session_process_chunk(s);
            else if (s->state == ST_PROXY)
                partial = !session_process_proxy(s);
            else if (!session_process_line(s))
                partial = true;
        }
        if (session_write_out(s) < 0) {
            session_close(s);
            return;
        }
        if (!session_wants_input(s))
            break;
        /* TLS may hold decrypted input the selector will never report. */
        if (transport_pending(&s->t)) {
            int r = session_read(s);
            if (r < 0)
                return;
            if (r > 0) {
                partial = false;
                continue;
            }
        }
        if (partial || buffer_readable(&s->in) == 0)
            break;
    }
    session_use_small_input(s);
    session_flush(s);
}

/* The message is stored (or refused): read what the client sent since. */
void session_resume(struct session *s)
{
    s->last_activity = selector_now_ms();
    session_process(s);
}

/* ---- accept and close ------------------------------------------------- */

static struct session *session_new(int fd, const struct sockaddr_storage *ss)
{
    struct session *s = calloc(1, sizeof(*s) + SESSION_IN_SMALL + SESSION_OUT_SIZE);
    if (s == NULL)
        return NULL;
    uint8_t *small = (uint8_t *)(s + 1);
    s->fd = fd;
    transport_init(&s->t, fd);
    s->state = ST_CONNECTED;
    s->msg.fd = -1;
    s->filtered.fd = -1;
    buffer_init(&s->in, small, SESSION_IN_SMALL);
    buffer_init(&s->out, small + SESSION_IN_SMALL, SESSION_OUT_SIZE);
    session_format_peer(s, ss);
    s->timer.on_expire = session_on_timer;
    s->timer.data = s;
    s->last_activity = selector_now_ms();
    return s;
}

int session_start(int fd, const struct sockaddr_storage *ss, bool tls)
{
    struct session *s = session_new(fd, ss);
    /* A balancer's client: the PROXY header comes first, before any TLS. */
    bool proxied = proxy_net_match(session_env.cfg->proxy_from,
                                   session_env.cfg->n_proxy_from,
                                   (const struct sockaddr *)ss);
    if (s == NULL || (tls && !proxied && session_tls_implicit(s) < 0)) {
        if (s)
            transport_close(&s->t);
        free(s);
        errno = ENOMEM;
        return -1;
    }
    if (selector_register(session_env.sel, fd, &session_handler, OP_READ, s) < 0) {
        log_error("cannot watch client fd %d: %s", fd, strerror(errno));
        transport_close(&s->t);
        free(s);
        errno = EAGAIN;
        return -1;
    }
    LIST_INSERT_HEAD(&sessions, s, link);
    nsessions++;
    stats.connections_total++;
    stats.connections_current++;
    log_info("%s:%u connect%s (fd %d, %zu clients)", s->ip, s->port,
             tls ? " on the TLS port" : "", fd, nsessions);
    if (proxied) {
        s->state = ST_PROXY;    /* silent until the header (smtp_proxy.h) */
        s->tls_after_proxy = tls;
        selector_timer_set(session_env.sel, &s->timer, PROXY_TIMEOUT_MS);
        return 0;
    }
    if (tls) {      /* the greeting comes after the handshake */
        session_timer_rearm(s);
        return 0;
    }
    session_greet(s);
    session_flush(s);
    return 0;
}

static void session_on_close(struct selector_key *key)
{
    struct session *s = key->data;
    delivery_abandon(s);
    login_cancel(s->login);
    selector_timer_cancel(session_env.sel, &s->timer);
    LIST_REMOVE(s, link);
    nsessions--;
    if (s->limited)
        limits_disconnect(s->limit_key);
    stats.connections_current--;
    if (s->state == ST_PROXY && !session_env.shutting_down)
        stats.refused_proxy++;      /* no, a bad or a late PROXY header */
    log_info("%s:%u disconnect (%zu clients)", s->ip, s->port, nsessions);
    session_reset_transaction(s);
    free(s->rcpts);
    free(s->boxes);
    free(s->helo);
    free(s->auth_user);
    free(s->auth_login_user);
    free(s->in_big);
    transport_close(&s->t);
    close(s->fd);
    free(s);
}

/* ---- shutdown --------------------------------------------------------- */

/* SIGTERM: sessions between transactions get 421 now; those inside DATA
 * (or waiting for their message to be stored) get theirs after it. */
void session_shutdown_all(void)
{
    session_env.shutting_down = true;
    struct session *next;
    for (struct session *s = LIST_FIRST(&sessions); s; s = next) {
        next = LIST_NEXT(s, link);
        if (s->t.handshaking || s->tls_starting) {
            session_close(s);
        } else if (s->state & (ST_DATA | ST_WAIT | ST_CHUNK)) {
            s->after_reply_close = true;
        } else if (s->state == ST_PROXY) {
            session_close(s);       /* never greeted: nothing to say */
        } else if (!s->closing) {
            session_reply(s, R_SHUTDOWN);
            session_flush(s);
        }
    }
}

void session_close_all(void)
{
    while (!LIST_EMPTY(&sessions))
        session_close(LIST_FIRST(&sessions));
}
