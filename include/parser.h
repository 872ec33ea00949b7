/*
 * parser.h - SMTP bytes in, commands and DATA body bytes out. No I/O, no
 * allocation, no global state: everything here can be fed any bytes
 * (fuzz/fuzz_parser.c does) and never reads or writes outside the
 * buffers it is given.
 */
#ifndef PARSER_H
#define PARSER_H

#include <stddef.h>
#include <stdint.h>

#define SMTP_LINE_MAX       512     /* RFC 5321 4.5.3.1.4, CRLF included */
#define SMTP_AUTH_LINE_MAX  12288   /* AUTH command and SASL responses */
#define SMTP_LOCAL_MAX      64
#define SMTP_DOMAIN_MAX     255
#define SMTP_PATH_MAX       (SMTP_LOCAL_MAX + 1 + SMTP_DOMAIN_MAX)

/* ---- command lines ---------------------------------------------------- */

/* Remembers, across calls, that an over-long line is being thrown away. */
struct line_reader {
    int skipping;
};

enum line_status {
    LINE_READY,      /* a whole line: p[0..*line_len) without CR LF */
    LINE_NEED_MORE,  /* no whole line yet */
    LINE_TOO_LONG,   /* an over-long line just ended: answer 500 5.5.6 */
};

/*
 * Looks for the next line in p[0..n). A line ends with LF (a CR before it
 * is stripped). limit counts the line with its CR LF. *consumed is how many
 * bytes the caller must drop from its buffer: the line and its end for
 * LINE_READY and LINE_TOO_LONG; for LINE_NEED_MORE, 0 normally, or n when
 * the bytes belong to a line already over the limit (they are discarded as
 * they come, so an endless line costs no memory).
 * A caller whose buffer is full with no LF must call again with the same
 * bytes: when n >= limit the reader starts skipping.
 */
enum line_status parser_next_line(struct line_reader *lr, const uint8_t *p,
                                  size_t n, size_t limit, size_t *consumed,
                                  size_t *line_len);

/* True when the (partial) line p[0..n) is an AUTH command, so its limit is
 * SMTP_AUTH_LINE_MAX rather than SMTP_LINE_MAX. */
int parser_is_auth_line(const uint8_t *p, size_t n);

enum smtp_verb {
    VERB_HELO, VERB_EHLO, VERB_MAIL, VERB_RCPT, VERB_DATA, VERB_RSET,
    VERB_NOOP, VERB_QUIT, VERB_VRFY, VERB_HELP, VERB_EXPN, VERB_AUTH,
    VERB_BDAT,
    VERB_STARTTLS,
    VERB_UNKNOWN,
};

struct smtp_command {
    enum smtp_verb verb;
    const char *arg;      /* after the verb and one or more spaces; "" if none */
    size_t arg_len;       /* trailing spaces removed */
    int has_nul;          /* the line held a NUL byte: refuse it (501) */
};

/* Splits a line (without CR LF) into verb and argument. Verbs are matched
 * case-insensitively; anything else is VERB_UNKNOWN. The line must be
 * NUL-terminated at line[len] so arg is a C string. */
void parser_command(const char *line, size_t len, struct smtp_command *cmd);

/* ---- MAIL FROM / RCPT TO ---------------------------------------------- */

struct smtp_path {
    int null_path;                        /* "<>" */
    int utf8;                             /* non-ASCII (valid UTF-8) in it:
                                             only with SMTPUTF8 (RFC 6531) */
    char local[SMTP_LOCAL_MAX + 1];       /* as sent (case kept) */
    char domain[SMTP_DOMAIN_MAX + 1];     /* as sent, "" when absent */
};

enum path_status {
    PATH_OK,
    PATH_SYNTAX,       /* not "FROM:<...>" / "TO:<...>" or bad params: 501 5.5.4 */
    PATH_BAD_LOCAL,    /* local-part not acceptable (README.md, "Mailboxes and users"): 501 5.1.3 */
    PATH_BAD_DOMAIN,   /* domain syntax bad: 501 5.1.2 */
    PATH_BAD_PARAM,    /* unknown or malformed ESMTP parameter: 555 5.5.4 */
    PATH_BAD_UTF8,     /* local-part not valid UTF-8 (broken, overlong): 501 5.1.3 */
};

struct mail_params {
    int has_size;
    uint64_t size;     /* SIZE=, RFC 1870 */
    int body_8bit;     /* BODY=8BITMIME (RFC 6152); BODY=7BIT also accepted */
    int smtputf8;      /* SMTPUTF8 (RFC 6531) */
    int requiretls;    /* REQUIRETLS (RFC 8689): the session judges it */
};

/*
 * arg is what follows "MAIL" ("FROM:<a@b> SIZE=10") or "RCPT" ("TO:<a@b>").
 * A source route "@x,@y:" is dropped (RFC 5321 C). For RCPT,
 * "<postmaster>" without a domain is accepted (domain ""). Local-parts are
 * checked against the mailbox-name rule (1-64 of [A-Za-z0-9._+-], no leading, trailing
 * or double dot); quoted local-parts are refused as PATH_BAD_LOCAL.
 */
enum path_status parser_mail_from(const char *arg, struct smtp_path *path,
                                  struct mail_params *params);
enum path_status parser_rcpt_to(const char *arg, struct smtp_path *path);

/* The local-part check, used by RCPT, VRFY and -u. 1 if acceptable:
 * 1-64 octets of [A-Za-z0-9._+-] or UTF-8 characters from U+00A0 on,
 * no leading, trailing or double dot. */
int parser_local_part_ok(const char *s, size_t len);
/* The same, saying why: PATH_OK, PATH_BAD_UTF8 (checked first) or
 * PATH_BAD_LOCAL. */
enum path_status parser_local_part_check(const char *s, size_t len);

/* ---- DATA ------------------------------------------------------------- */

/* The body machine, fed byte by byte: it sees "\r\n.\r\n" however the bytes
 * are split across reads, never ends on a bare LF or bare CR, and removes
 * the leading dot of every line. Starts at the beginning of a line. */
struct data_parser {
    int state;
};

void data_parser_init(struct data_parser *dp);

/*
 * Feeds in[0..n). Body bytes (unstuffed, line ends exactly as sent, the
 * final CR LF before the dot included) go to out, which must hold n + 2
 * bytes; *out_len says how many. Returns how many input bytes were used:
 * all n, or fewer when the end of data was seen, in which case *done is
 * set to 1 and the rest of the input belongs to the next command.
 */
size_t data_parser_feed(struct data_parser *dp, const uint8_t *in, size_t n,
                        uint8_t *out, size_t *out_len, int *done);

#endif
