/*
 * session_tls.c - where TLS enters the life of a session: STARTTLS (the
 * 220 is out, the handshake begins), the implicit-TLS port (handshake
 * first, greeting after), and each step of the handshake. The bytes
 * themselves go through the session's transport (transport.h); this file
 * knows no OpenSSL type either.
 */
#include <string.h>

#include "log.h"
#include "session.h"
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
