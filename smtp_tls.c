/*
 * smtp_tls.c - where TLS enters the life of a session: STARTTLS (the
 * 220 is out, the handshake begins), the implicit-TLS port (handshake
 * first, greeting after), and each step of the handshake. The bytes
 * themselves go through the session's transport (transport.h); this file
 * knows no OpenSSL type either. On the implicit-TLS port, a client from
 * a --proxy-from address sends its PROXY header before the ClientHello:
 * it is read here, byte-exact, before OpenSSL sees the socket.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "smtp_proxy.h"
#include "smtp_session.h"
#include "stats.h"

/* Called right after the 220 to STARTTLS is queued. Whatever the client
 * sent after the STARTTLS line is dropped, never read as commands (the
 * command injection of CVE-2011-0411); input stops until the handshake. */
void session_start_tls(struct session *s)
{
    buffer_reset(&s->in);
    memset(&s->lines, 0, sizeof(s->lines));
    s->tls_starting = true;
    session_timer_rearm(s);     /* the handshake's shorter limit */
}

/* One step of the handshake; once it is done the session goes on (and,
 * on the implicit-TLS port, is greeted). The -T clock is not reset by
 * handshake traffic: a trickled ClientHello is closed like an idle client. */
void session_tls_step(struct session *s)
{
    char why[160], desc[96];
    switch (transport_handshake(&s->t, why, sizeof(why))) {
    case TRANSPORT_AGAIN:
        session_update_interest(s);
        return;
    case TRANSPORT_FAILED:
        log_info("%s:%u TLS handshake failed: %s", s->ip, s->port, why);
        session_close(s);
        return;
    case TRANSPORT_DONE:
        break;
    }
    stats.tls_sessions++;
    log_info("%s:%u TLS on: %s", s->ip, s->port,
             transport_describe(&s->t, desc, sizeof(desc)));
    s->last_activity = selector_now_ms();
    if (s->greeting_owed) {
        s->greeting_owed = false;
        if (session_limits_admit(s))
            session_reply(s, R_GREETING, session_env.cfg->domain);
    }
    session_process(s);
}

/* STARTTLS: the 220 is out, the handshake begins. */
void session_tls_begin(struct session *s)
{
    s->tls_starting = false;
    if (transport_start_tls(&s->t) < 0) {
        log_error("%s:%u cannot start TLS", s->ip, s->port);
        session_close(s);
        return;
    }
    session_tls_step(s);
}

/* Implicit TLS: the handshake comes first, the greeting after it. */
int session_tls_implicit(struct session *s)
{
    if (transport_start_tls(&s->t) < 0) {
        log_error("%s:%u cannot start TLS", s->ip, s->port);
        return -1;
    }
    s->greeting_owed = true;
    return 0;
}

/* recv of exactly n bytes that a peek has shown are there. 0, or -1. */
static int session_tls_take(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        stats.bytes_transferred += (uint64_t)r;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The header is whole: the session starts TLS, its -T clock now running. */
static void session_tls_after_proxy(struct session *s,
                                    const struct proxy_header *h)
{
    buffer_reset(&s->in);
    s->tls_after_proxy = false;
    session_proxy_accepted(s, h);
    session_set_state(s, ST_CONNECTED);
    if (session_tls_implicit(s) < 0) {
        session_close(s);
        return;
    }
    s->last_activity = selector_now_ms();
    session_timer_rearm(s); /* the handshake's limit, from now */
    session_tls_step(s);    /* the ClientHello may be waiting already */
}

/*
 * Implicit TLS from a balancer (ST_PROXY, tls_after_proxy): the header is
 * taken off the socket up to its last byte and not one byte further, so
 * the ClientHello behind it (often in the same segment) stays for
 * OpenSSL. A peek shows what has come; bytes of a header not yet whole
 * are taken into the input buffer, so the socket is not left readable
 * for nothing. The 3 s deadline and the silent close on a bad header
 * are the plain port's (smtp_session.c).
 */
void session_tls_proxy_read(struct session *s)
{
    size_t have, room;
    struct proxy_header h;
    buffer_compact(&s->in);
    uint8_t *p = buffer_read_ptr(&s->in, &have);
    buffer_write_ptr(&s->in, &room);
    size_t want = have < PROXY_HEADER_MAX ? PROXY_HEADER_MAX - have : 0;
    ssize_t n = recv(s->fd, p + have, want < room ? want : room, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        session_close(s);   /* gone, or an error: nothing to say */
        return;
    }
    enum proxy_status st = proxy_parse(p, have + (size_t)n, &h);
    if (st == PROXY_NEED_MORE && have + (size_t)n >= PROXY_HEADER_MAX) {
        st = PROXY_ERROR;   /* the parser's limits make this unreachable */
        h.reason = "header too long";
    }
    if (st == PROXY_ERROR) {
        log_warn("%s:%u bad PROXY header (%s), closing", s->ip, s->port, h.reason);
        session_close(s);
        return;
    }
    size_t take = st == PROXY_DONE ? h.len - have : (size_t)n;
    if (session_tls_take(s->fd, p + have, take) < 0) {
        session_close(s);
        return;
    }
    if (st == PROXY_NEED_MORE) {
        buffer_write_adv(&s->in, take);
        return;
    }
    session_tls_after_proxy(s, &h);
}
