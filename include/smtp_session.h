/*
 * smtp_session.h - one SMTP client: its state, buffers and transaction.
 * Shared by the session family: smtp_session.c (connection, I/O, timers),
 * smtp_state.c (state, buffers, replies), smtp_tls.c (the TLS step),
 * smtp_commands.c (the command table and its handlers), smtp_envelope.c
 * (MAIL, RCPT, VRFY), smtp_data.c (DATA to new/) and smtp_accept.c (the
 * listeners).
 */
#ifndef SMTP_SESSION_H
#define SMTP_SESSION_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "smtpd_args.h"
#include "buffer.h"
#include "maildir.h"
#include "parser.h"
#include "smtp_reply.h"
#include "selector.h"
#include "transport.h"

#define SESSION_IN_SMALL    1024            /* command lines, idle clients */
#define SESSION_IN_BIG      (16 * 1024)     /* DATA and long AUTH lines */
#define SESSION_OUT_SIZE    1536
#define SESSION_REPLY_MAX   512             /* room kept for one reply */
#define SESSION_MAX_RCPTS   100
#define SESSION_MAX_ERRORS  10
#define SESSION_TLS_HANDSHAKE_MS 10000      /* or -T if shorter */
#define SESSION_MESSAGE_TIMEOUTS 10         /* a message: 10 x -T from its 354 */

/* States are bits so a command table row can list where it is allowed. */
enum session_state {
    ST_CONNECTED = 1 << 0,   /* greeted, no HELO/EHLO yet */
    ST_READY     = 1 << 1,   /* HELO/EHLO done, no transaction */
    ST_MAIL      = 1 << 2,   /* MAIL accepted */
    ST_RCPT      = 1 << 3,   /* at least one RCPT accepted */
    ST_DATA      = 1 << 4,   /* reading the message body */
    ST_AUTH      = 1 << 5,   /* reading a SASL response line */
    ST_WAIT      = 1 << 6,   /* spool file being made, or message with the filter/committer */
    ST_PROXY     = 1 << 7,   /* a --proxy-from peer: no greeting before its
                                PROXY header (smtp_proxy.h) */
    ST_CHUNK     = 1 << 8,   /* reading the bytes of a BDAT chunk */
};

enum auth_step { AUTH_NONE, AUTH_PLAIN_WAIT, AUTH_LOGIN_USER, AUTH_LOGIN_PASS };

struct spool_open;
struct proxy_header;

/* An RCPT to run again once its mailbox's quota figures are read. */
struct rcpt_wait {
    char top[MAILDIR_NAME_MAX + 1];     /* the mailbox (quota_wait) */
    char arg[];                         /* the RCPT's argument */
};

struct session_env {
    const struct config *cfg;
    struct selector *sel;
    struct committer *committer;
    bool shutting_down;
};

struct session {
    int fd;
    struct transport t;                 /* every read and write goes here */
    bool tls_starting;                  /* STARTTLS answered: handshake once
                                           the 220 is out; input ignored */
    bool greeting_owed;                 /* implicit TLS: 220 after the handshake */
    bool tls_after_proxy;               /* implicit TLS from a balancer: the
                                           PROXY header first, then TLS */
    enum session_state state;
    LIST_ENTRY(session) link;           /* every live session (shutdown) */

    struct buffer in;
    uint8_t *in_big;                    /* malloc'd while in use, else NULL */
    struct line_reader lines;
    struct buffer out;
    bool closing;                       /* close once out is flushed */
    bool after_reply_close;             /* shutdown: 421 after this transaction */

    struct selector_timer timer;        /* idle timeout */
    uint64_t last_activity;             /* selector_now_ms() */
    uint64_t message_start;             /* its first body byte came; 0: none yet */
    unsigned errors;                    /* erroneous commands in a row */

    char addr[INET6_ADDRSTRLEN + 8];    /* "[IPv6:::1]" style for Received */
    char ip[INET6_ADDRSTRLEN];          /* bare, for logs and SMTPD_CLIENT */
    uint16_t port;
    char *helo;                         /* as sent, malloc'd */
    bool esmtp;                         /* EHLO rather than HELO */
    char *auth_user;                    /* NULL until AUTH succeeds */
    enum auth_step auth_step;
    char *auth_login_user;              /* AUTH LOGIN: name before password */
    struct login *login;                /* a password check under way
                                           (auth_login.c): no input read */
    bool limited;                       /* counted in smtp_limits.c's table */
    bool never_limited;                 /* a PROXY health check */
    uint8_t limit_key[16];              /* the address's key there */

    /* the transaction */
    char *sender;                       /* bare address, "" for <> */
    bool smtputf8;                      /* MAIL carried SMTPUTF8 (RFC 6531) */
    bool mail_has_size;                 /* MAIL carried SIZE= */
    uint64_t mail_size;                 /* its value: quotas count it */
    char **rcpts;                       /* addresses as accepted */
    size_t nrcpts, rcpt_cap;
    char **boxes;                       /* the folders they reach, each once:
                                           "box" or "box/.tag" (addr.h) */
    size_t nboxes, box_cap;
    struct rcpt_wait *rcpt_waiting;     /* an RCPT that waits for a
                                           mailbox's maildirsize read */
    struct quota_wait *quota_wait;      /* that wait: no input is read */
    struct data_parser data;
    struct spool_open *opening;         /* spool file being created (maildir_spool.c) */
    struct maildir_msg msg;             /* spool file while in DATA */
    uint64_t body_size;                 /* body bytes after unstuffing */
    bool too_big;                       /* over -z: read and thrown away */
    int write_errno;                    /* first spool write error */
    struct commit_job *job;             /* handed to the committer */
    struct transform *transform;        /* running filter */
    struct maildir_msg filtered;        /* the filter's output */

    /* CHUNKING (smtp_data.c): the BDAT chunk being read */
    bool chunking;                      /* this transaction's content comes
                                           in BDAT chunks: no DATA */
    bool chunk_last;                    /* the chunk ends the message */
    bool chunk_refused;                 /* its bytes are read and dropped,
                                           then chunk_reply is said */
    enum reply_id chunk_reply;
    enum session_state chunk_return;    /* the state after a refused chunk */
    uint64_t chunk_size, chunk_left;    /* octets announced, still to read */
};

extern struct session_env session_env;

/* smtp_accept.c: the listening sockets' handlers */
void session_on_accept(struct selector_key *key);   /* listening socket */
void session_on_accept_tls(struct selector_key *key); /* implicit TLS port */

/* smtp_state.c: a session's data, no I/O */
void session_init(const struct config *cfg, struct selector *sel,
                  struct committer *c);
void session_reply(struct session *s, enum reply_id id, ...);
void session_reply_raw(struct session *s, const char *text, size_t len);
void session_reply_more(struct session *s, enum reply_id id, ...); /* "NNN-" */
void session_close_after_flush(struct session *s);
void session_reset_transaction(struct session *s);
void session_set_state(struct session *s, enum session_state st);
int session_use_big_input(struct session *s);
void session_use_small_input(struct session *s);  /* when big is not needed */
void session_format_peer(struct session *s, const struct sockaddr_storage *ss);

/* smtp_session.c */
/* A client accepted on fd: its session starts (tls: on the implicit-TLS
 * port, greeted after the handshake). 0, or -1 when it cannot: errno
 * EAGAIN when the loop cannot watch one more client, ENOMEM otherwise;
 * the caller then refuses the client and closes fd. */
int session_start(int fd, const struct sockaddr_storage *ss, bool tls);
void session_resume(struct session *s);     /* after ST_WAIT ends */
void session_shutdown_all(void);            /* SIGTERM */
void session_close_all(void);               /* the shutdown deadline */
size_t session_count(void);

/* smtp_session.c, for smtp_tls.c: the session's own I/O steps */
void session_process(struct session *s);    /* handle input, write output */
void session_update_interest(struct session *s);
void session_timer_rearm(struct session *s);   /* for the nearest limit */
void session_close(struct session *s);      /* frees it (via on_close) */

/* smtp_tls.c */
void session_start_tls(struct session *s);  /* after 220 to STARTTLS */
void session_tls_begin(struct session *s);  /* STARTTLS: the 220 is out */
void session_tls_step(struct session *s);   /* one handshake step */
int session_tls_implicit(struct session *s);    /* implicit-TLS port: 0/-1 */
void session_tls_proxy_read(struct session *s); /* its PROXY header */
void session_proxy_accepted(struct session *s, const struct proxy_header *h);
bool session_limits_admit(struct session *s);  /* false: refused, closing */

/* smtp_commands.c: the table; smtp_envelope.c: three of its handlers */
typedef void command_fn(struct session *s, const struct smtp_command *cmd);
command_fn envelope_mail, envelope_rcpt, envelope_vrfy;
/* The RCPT kept in s->rcpt_waiting runs again (and may wait again). */
void envelope_rcpt_again(struct session *s);
void commands_dispatch(struct session *s, char *line, size_t len);
void commands_auth_line(struct session *s, char *line, size_t len);

/* smtp_data.c */
void delivery_begin(struct session *s);     /* at DATA: 354 or an error follows */
void delivery_body(struct session *s, const uint8_t *p, size_t n);
void delivery_end(struct session *s);       /* after <CRLF>.<CRLF> */
void delivery_abandon(struct session *s);   /* the client left */
void delivery_timeout(struct session *s);   /* past 10 x -T: 421, dropped */
void delivery_bdat(struct session *s, const struct smtp_command *cmd);
size_t delivery_chunk(struct session *s, const uint8_t *p, size_t n);

#endif
