/*
 * smtp_reply.c - the reply table: what the server says, and with which
 * codes; and reply_format(), the one formatter of a reply line (pure,
 * clamped), used by session_reply (smtp_state.c) and by the refusals at
 * accept (smtp_accept.c). Handlers name a row (session_reply(s,
 * R_NEED_MAIL)); nothing else in the program writes a reply code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "smtp_reply.h"

const struct reply replies[R_COUNT] = {
    [R_GREETING]         = { 220, NULL,    "%s ESMTP" },
    [R_TLS_GO]           = { 220, "2.0.0", "Ready to start TLS" },
    [R_BYE]              = { 221, "2.0.0", "Bye" },
    [R_HELO]             = { 250, NULL,    "%s" },
    [R_EHLO_KEYWORD]     = { 250, NULL,    "%s" },
    [R_OKAY]               = { 250, "2.0.0", "Ok" },
    [R_SENDER_OK]        = { 250, "2.1.0", "Sender ok" },
    [R_RCPT_OK]          = { 250, "2.1.5", "Recipient ok" },
    [R_QUEUED]           = { 250, "2.0.0", "Ok: queued as %s" },
    [R_RESET]            = { 250, "2.0.0", "Reset" },
    [R_CHUNK_OK]         = { 250, "2.0.0", "%llu octets received" },
    [R_VRFY_OK]          = { 250, "2.1.5", "<%s@%s>" },
    [R_HELP]             = { 214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP AUTH" },
    [R_AUTH_OK]          = { 235, "2.7.0", "Authentication successful" },
    [R_AUTH_CHALLENGE]   = { 334, NULL,    "%s" },
    [R_DATA_GO]          = { 354, NULL,    "End data with <CR><LF>.<CR><LF>" },
    [R_SHUTDOWN]         = { 421, "4.3.0", "%s Service shutting down" },
    [R_TOO_MANY_CLIENTS] = { 421, "4.3.2", "%s Too many connections, try later" },
    [R_IDLE_TIMEOUT]     = { 421, "4.4.2", "%s Idle timeout, closing connection" },
    [R_MESSAGE_TIMEOUT]  = { 421, "4.4.2", "%s Message took too long, closing connection" },
    [R_TOO_MANY_ERRORS]  = { 421, "4.7.0", "%s Too many errors, closing connection" },
    [R_CLIENT_LIMIT]     = { 421, "4.7.0", "Too many connections from your address" },
    [R_CLIENT_RATE]      = { 421, "4.7.0", "Too many connections per minute from your address" },
    [R_LOCAL_ERROR]      = { 451, "4.3.0", "Local error in processing" },
    [R_MAILBOX_BUSY]     = { 452, "4.2.2", "Mailbox nearly full, try again later" },
    [R_NO_SPACE]         = { 452, "4.3.1", "Insufficient system storage" },
    [R_TOO_MANY_RCPTS]   = { 452, "4.5.3", "Too many recipients" },
    [R_MESSAGE_RATE]     = { 452, "4.7.0", "Too many messages per minute from your address" },
    [R_AUTH_THROTTLED]   = { 454, "4.7.0", "Too many failed logins, try later" },
    [R_UNKNOWN_VERB]     = { 500, "5.5.2", "Command unrecognized" },
    [R_LINE_TOO_LONG]    = { 500, "5.5.6", "Line too long" },
    [R_BAD_ARGS]         = { 501, "5.5.4", "Syntax error in parameters or arguments" },
    [R_BAD_LOCAL]        = { 501, "5.1.3", "Bad recipient address syntax" },
    [R_BAD_DOMAIN]       = { 501, "5.1.2", "Bad destination domain syntax" },
    [R_BAD_SENDER]       = { 501, "5.1.7", "Bad sender address syntax" },
    [R_NO_ARGS_ALLOWED]  = { 501, "5.5.4", "No arguments allowed" },
    [R_NEED_HELO_ARG]    = { 501, "5.5.4", "Domain name required" },
    [R_AUTH_CANCELLED]   = { 501, "5.7.0", "Authentication cancelled" },
    [R_BAD_BASE64]       = { 501, "5.5.2", "Invalid base64 data" },
    [R_EXPN]             = { 502, "5.5.1", "EXPN not available" },
    [R_VRFY_DISABLED]    = { 502, "5.5.1", "VRFY command is disabled" },
    [R_BAD_SEQUENCE]     = { 503, "5.5.1", "Bad sequence of commands" },
    [R_NEED_MAIL]        = { 503, "5.5.1", "MAIL first" },
    [R_NEED_RCPT]        = { 503, "5.5.1", "RCPT first" },
    [R_NESTED_MAIL]      = { 503, "5.5.1", "Sender already given" },
    [R_ALREADY_AUTH]     = { 503, "5.5.1", "Already authenticated" },
    [R_AUTH_MECH]        = { 504, "5.5.4", "Unrecognized authentication mechanism" },
    [R_AUTH_REQUIRED]    = { 530, "5.7.0", "Authentication required" },
    [R_TLS_REQUIRED]     = { 530, "5.7.0", "Must issue a STARTTLS command first" },
    [R_AUTH_FAILED]      = { 535, "5.7.8", "Authentication credentials invalid" },
    [R_AUTH_NEEDS_TLS]   = { 538, "5.7.11", "Encryption required for requested authentication mechanism" },
    [R_NO_MAILBOX]       = { 550, "5.1.1", "No such user here" },
    [R_RELAY_DENIED]     = { 550, "5.7.1", "Relay access denied" },
    [R_MAILBOX_FULL]     = { 552, "5.2.2", "Mailbox full" },
    [R_TOO_BIG]          = { 552, "5.3.4", "Message too big" },
    [R_VRFY_AMBIGUOUS]   = { 553, "5.1.4", "Ambiguous; candidates:" },
    [R_VRFY_CANDIDATE]   = { 553, "5.1.4", "<%s@%s>" },
    [R_BAD_PARAM]        = { 555, "5.5.4", "Unsupported parameter" },
    [R_NEED_SMTPUTF8]    = { 553, "5.6.7", "Non-ASCII address requires SMTPUTF8" },
    [R_BDAT_BAD_SIZE]    = { 521, "5.5.4", "Bad BDAT size, closing connection" },
};

/* ---- the formatter --------------------------------------------------- */

/* Appends at *n, never past room: snprintf's "would have written" is
 * clamped, so *n never passes room and the next step's size never wraps. */
static void reply_put(char *buf, size_t room, size_t *n, const char *fmt, ...)
{
    if (*n >= room)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *n, room - *n + 1, fmt, ap);
    va_end(ap);
    if (w > 0)
        *n += (size_t)w < room - *n ? (size_t)w : room - *n;
}

static void reply_vput(char *buf, size_t room, size_t *n, const char *fmt,
                       va_list ap)
{
    if (*n >= room)
        return;
    int w = vsnprintf(buf + *n, room - *n + 1, fmt, ap);
    if (w > 0)
        *n += (size_t)w < room - *n ? (size_t)w : room - *n;
}

size_t reply_vformat(char *buf, size_t cap, enum reply_id id, unsigned flags,
                     const char *domain, va_list ap)
{
    char line[REPLY_LINE_MAX + 1];      /* room for vsnprintf's NUL */
    size_t room = (cap < REPLY_LINE_MAX ? cap : REPLY_LINE_MAX);
    if (room < 6 || (unsigned)id >= R_COUNT)
        return 0;
    room -= 2;                          /* the CRLF always fits */
    const struct reply *r = &replies[id];
    size_t n = 0;
    reply_put(line, room, &n, "%03d%c", r->code, (flags & REPLY_MORE) ? '-' : ' ');
    if (r->esc)
        reply_put(line, room, &n, "%s ", r->esc);
    if (r->code == 421)     /* every 421 text starts with the domain */
        reply_put(line, room, &n, r->text, domain ? domain : "");
    else
        reply_vput(line, room, &n, r->text, ap);
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\r' || line[i] == '\n' || line[i] == '\0')
            line[i] = ' ';
    memcpy(buf, line, n);
    memcpy(buf + n, "\r\n", 2);
    return n + 2;
}

size_t reply_format(char *buf, size_t cap, enum reply_id id, unsigned flags,
                    const char *domain, ...)
{
    va_list ap;
    va_start(ap, domain);
    size_t n = reply_vformat(buf, cap, id, flags, domain, ap);
    va_end(ap);
    return n;
}
