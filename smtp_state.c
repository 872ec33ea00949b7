/*
 * smtp_state.c - what a session is between two events: its state and
 * transaction, its input buffers, and the replies queued in its output
 * (session_reply: a row of smtp_reply.c's table, formatted, appended, the
 * tenth error in a row turned into 421). Works on one struct session and
 * never touches its socket, the loop or the other parts: smtp_session.c
 * does the I/O, smtp_commands.c and smtp_data.c decide what to say.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp_session.h"

struct session_env session_env;

void session_init(const struct config *cfg, struct selector *sel,
                  struct committer *c)
{
    session_env.cfg = cfg;
    session_env.sel = sel;
    session_env.committer = c;
    session_env.shutting_down = false;
}

/* ---- state ------------------------------------------------------------ */

static const char *session_state_name(enum session_state st)
{
    switch (st) {
    case ST_CONNECTED: return "connected";
    case ST_READY:     return "ready";
    case ST_MAIL:      return "mail";
    case ST_RCPT:      return "rcpt";
    case ST_DATA:      return "data";
    case ST_AUTH:      return "auth";
    case ST_WAIT:      return "wait";
    case ST_PROXY:     return "proxy";
    case ST_CHUNK:     return "chunk";
    }
    return "?";
}

void session_set_state(struct session *s, enum session_state st)
{
    if (s->state != st)
        log_debug("%s:%u state %s -> %s", s->ip, s->port,
                  session_state_name(s->state), session_state_name(st));
    s->state = st;
}

static void session_free_rcpts(struct session *s)
{
    quota_wait_cancel(s->quota_wait);   /* an RCPT waiting: the client left */
    s->quota_wait = NULL;
    free(s->rcpt_waiting);
    s->rcpt_waiting = NULL;
    quota_release(s->boxes, s->nboxes, s->mail_has_size, s->mail_size);
    for (size_t i = 0; i < s->nrcpts; i++)
        free(s->rcpts[i]);
    for (size_t i = 0; i < s->nboxes; i++)
        free(s->boxes[i]);
    s->nrcpts = 0;
    s->nboxes = 0;
}

void session_reset_transaction(struct session *s)
{
    free(s->sender);
    s->sender = NULL;
    s->smtputf8 = false;
    session_free_rcpts(s);
    s->mail_has_size = false;
    s->mail_size = 0;
    s->body_size = 0;
    s->message_start = 0;
    s->too_big = false;
    s->write_errno = 0;
    if (s->chunking)            /* RSET, EHLO...: what the chunks held goes */
        maildir_msg_abort(&s->msg);
    s->chunking = false;
    s->chunk_left = 0;
    if (s->state & (ST_MAIL | ST_RCPT | ST_DATA | ST_WAIT | ST_CHUNK))
        session_set_state(s, s->helo ? ST_READY : ST_CONNECTED);
}

void session_close_after_flush(struct session *s)
{
    s->closing = true;
}

/* ---- input buffer: small for commands, big for DATA ------------------- */

int session_use_big_input(struct session *s)
{
    if (s->in_big)
        return 0;
    s->in_big = malloc(SESSION_IN_BIG);
    if (s->in_big == NULL)
        return -1;
    size_t n;
    uint8_t *p = buffer_read_ptr(&s->in, &n);
    memcpy(s->in_big, p, n);
    buffer_init(&s->in, s->in_big, SESSION_IN_BIG);
    buffer_write_adv(&s->in, n);
    return 0;
}

/* Back to the session's own small buffer once the big one is not needed:
 * idle clients then cost only the session struct. */
void session_use_small_input(struct session *s)
{
    size_t n;
    uint8_t *p = buffer_read_ptr(&s->in, &n);
    /* A partial line over SMTP_LINE_MAX can only be a long AUTH line. */
    if (s->in_big == NULL || n > SMTP_LINE_MAX || (s->state & (ST_DATA | ST_AUTH | ST_CHUNK)))
        return;
    uint8_t *small = (uint8_t *)(s + 1);
    memmove(small, p, n);
    buffer_init(&s->in, small, SESSION_IN_SMALL);
    buffer_write_adv(&s->in, n);
    free(s->in_big);
    s->in_big = NULL;
}

/* ---- the peer ---------------------------------------------------------- */

/* The client's address as logs ("1.2.3.4") and Received ("[1.2.3.4]",
 * "[IPv6:::1]") write it. */
void session_format_peer(struct session *s, const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a6->sin6_addr, s->ip, sizeof(s->ip));
        s->port = ntohs(a6->sin6_port);
        snprintf(s->addr, sizeof(s->addr), "[IPv6:%s]", s->ip);
    } else {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a4->sin_addr, s->ip, sizeof(s->ip));
        s->port = ntohs(a4->sin_port);
        snprintf(s->addr, sizeof(s->addr), "[%s]", s->ip);
    }
}

/* ---- replies ---------------------------------------------------------- */

static void session_out(struct session *s, const char *p, size_t n)
{
    /* The input side stops while less than SESSION_REPLY_MAX is free, so
     * a reply always fits; if one does not, the invariant is broken. */
    if (buffer_append(&s->out, p, n) < 0) {
        log_error("%s:%u reply buffer overflow, closing", s->ip, s->port);
        s->closing = true;
    }
}

void session_reply_raw(struct session *s, const char *text, size_t len)
{
    session_out(s, text, len);
}

/* Counts erroneous replies in a row; the 10th becomes 421 4.7.0. */
static enum reply_id session_count_error(struct session *s, enum reply_id id)
{
    int code = replies[id].code;
    if (code < 400 || code == 421) {
        if (code < 300)
            s->errors = 0;
        return id;
    }
    if (++s->errors >= SESSION_MAX_ERRORS)
        return R_TOO_MANY_ERRORS;
    return id;
}

void session_reply(struct session *s, enum reply_id id, ...)
{
    id = session_count_error(s, id);
    char line[REPLY_LINE_MAX];
    va_list ap;
    va_start(ap, id);
    size_t n = reply_vformat(line, sizeof(line), id, 0, session_env.cfg->domain, ap);
    va_end(ap);
    session_out(s, line, n);
    if (replies[id].code == 421 || replies[id].code == 221)
        session_close_after_flush(s);
}

/* One line of a multi-line reply ("NNN-"): no error count, no close. */
void session_reply_more(struct session *s, enum reply_id id, ...)
{
    char line[REPLY_LINE_MAX];
    va_list ap;
    va_start(ap, id);
    size_t n = reply_vformat(line, sizeof(line), id, REPLY_MORE,
                             session_env.cfg->domain, ap);
    va_end(ap);
    session_out(s, line, n);
}
