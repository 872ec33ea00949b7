/*
 * smtp_reply.h - every SMTP reply the server sends, in one table (smtp_reply.c):
 * code, enhanced status code (RFC 3463) and text side by side. A few texts
 * are printf formats filled in by session_reply(). reply_format() turns a
 * row into one line; it is the only code that writes a reply line.
 */
#ifndef SMTP_REPLY_H
#define SMTP_REPLY_H

#include <stdarg.h>
#include <stddef.h>

#define REPLY_LINE_MAX 512      /* RFC 5321 4.5.3.1.5, CRLF included */

enum reply_id {
    R_GREETING,         /* 220 DOMAIN ESMTP (no enhanced code) */
    R_TLS_GO,           /* 220 2.0.0 Ready to start TLS */
    R_BYE,              /* 221 2.0.0 */
    R_HELO,             /* 250 DOMAIN (no enhanced code) */
    R_EHLO_KEYWORD,     /* 250 %s, one line of the EHLO list */
    R_OKAY,               /* 250 2.0.0 Ok */
    R_SENDER_OK,        /* 250 2.1.0 */
    R_RCPT_OK,          /* 250 2.1.5 */
    R_QUEUED,           /* 250 2.0.0 Ok: queued as %s */
    R_RESET,            /* 250 2.0.0 Reset */
    R_CHUNK_OK,         /* 250 2.0.0 %llu octets received (BDAT) */
    R_VRFY_OK,          /* 250 2.1.5 <%s@%s> */
    R_HELP,             /* 214 2.0.0 ... */
    R_AUTH_OK,          /* 235 2.7.0 */
    R_AUTH_CHALLENGE,   /* 334 %s (no enhanced code: RFC 4954) */
    R_DATA_GO,          /* 354 */
    R_SHUTDOWN,         /* 421 4.3.0 */
    R_TOO_MANY_CLIENTS, /* 421 4.3.2 */
    R_IDLE_TIMEOUT,     /* 421 4.4.2 */
    R_MESSAGE_TIMEOUT,  /* 421 4.4.2 a message slower than 10 x -T */
    R_TOO_MANY_ERRORS,  /* 421 4.7.0 */
    R_CLIENT_LIMIT,     /* 421 4.7.0 --client-limit */
    R_CLIENT_RATE,      /* 421 4.7.0 --client-rate */
    R_LOCAL_ERROR,      /* 451 4.3.0 */
    R_MAILBOX_BUSY,     /* 452 4.2.2 near its quota, a transaction open */
    R_NO_SPACE,         /* 452 4.3.1 */
    R_TOO_MANY_RCPTS,   /* 452 4.5.3 */
    R_MESSAGE_RATE,     /* 452 4.7.0 --message-rate */
    R_AUTH_THROTTLED,   /* 454 4.7.0 too many failed logins */
    R_UNKNOWN_VERB,     /* 500 5.5.2 */
    R_LINE_TOO_LONG,    /* 500 5.5.6 */
    R_BAD_ARGS,         /* 501 5.5.4 */
    R_BAD_LOCAL,        /* 501 5.1.3 */
    R_BAD_DOMAIN,       /* 501 5.1.2 */
    R_BAD_SENDER,       /* 501 5.1.7 */
    R_NO_ARGS_ALLOWED,  /* 501 5.5.4 (e.g. "DATA x") */
    R_NEED_HELO_ARG,    /* 501 5.5.4 */
    R_AUTH_CANCELLED,   /* 501 5.7.0 */
    R_BAD_BASE64,       /* 501 5.5.2 */
    R_EXPN,             /* 502 5.5.1 */
    R_VRFY_DISABLED,    /* 502 5.5.1 --vrfy off */
    R_BAD_SEQUENCE,     /* 503 5.5.1 */
    R_NEED_MAIL,        /* 503 5.5.1 MAIL first */
    R_NEED_RCPT,        /* 503 5.5.1 RCPT first */
    R_NESTED_MAIL,      /* 503 5.5.1 */
    R_ALREADY_AUTH,     /* 503 5.5.1 */
    R_AUTH_MECH,        /* 504 5.5.4 unknown mechanism */
    R_AUTH_REQUIRED,    /* 530 5.7.0 */
    R_TLS_REQUIRED,     /* 530 5.7.0 (--require-tls) */
    R_AUTH_FAILED,      /* 535 5.7.8 */
    R_AUTH_NEEDS_TLS,   /* 538 5.7.11 (RFC 4954) */
    R_NO_MAILBOX,       /* 550 5.1.1 */
    R_RELAY_DENIED,     /* 550 5.7.1 */
    R_MAILBOX_FULL,     /* 552 5.2.2 over its quota */
    R_TOO_BIG,          /* 552 5.3.4 */
    R_VRFY_AMBIGUOUS,   /* 553 5.1.4 (multi-line, candidates) */
    R_VRFY_CANDIDATE,   /* 553 5.1.4 <%s@%s>, one line of the above */
    R_BAD_PARAM,        /* 555 5.5.4 */
    R_NEED_SMTPUTF8,    /* 553 5.6.7 a UTF-8 address without SMTPUTF8 */
    R_BDAT_BAD_SIZE,    /* 521 5.5.4 a BDAT size that does not parse: close */
    R_COUNT
};

struct reply {
    int code;
    const char *esc;    /* enhanced status code, NULL where RFC 2034 exempts */
    const char *text;   /* may be a printf format */
};

extern const struct reply replies[R_COUNT];

/* REPLY_MORE: a line of a multi-line reply, "NNN-" instead of "NNN ". */
#define REPLY_MORE 1u

/*
 * Formats row id into buf as one line "NNN[-| ][ESC ]text\r\n" of at
 * most min(cap, REPLY_LINE_MAX) bytes, not NUL-terminated; returns its
 * length (0 only when cap < 6). A 421 text takes domain as its only
 * argument, other rows take ap. A text too long is cut, a CR or LF in
 * an argument becomes a space: the result is always one whole line.
 * Pure: no I/O, no state.
 */
size_t reply_vformat(char *buf, size_t cap, enum reply_id id, unsigned flags,
                     const char *domain, va_list ap);
size_t reply_format(char *buf, size_t cap, enum reply_id id, unsigned flags,
                    const char *domain, ...);

#endif
