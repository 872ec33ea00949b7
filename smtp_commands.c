/*
 * smtp_commands.c - what each SMTP command does. One table row per verb
 * says in which states it is allowed, so "bad sequence" is answered in
 * one place and every handler only does its own job. The envelope's
 * commands (MAIL, RCPT, VRFY) are smtp_envelope.c's; here are the others,
 * AUTH's exchange and the answer to its password check included, and
 * the wait of an RCPT for its mailbox's quota figures.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth_sasl.h"
#include "log.h"
#include "auth_login.h"
#include "auth_passwd.h"
#include "smtp_session.h"
#include "stats.h"
#include "transport_tls.h"

#define ST_COMMAND (ST_CONNECTED | ST_READY | ST_MAIL | ST_RCPT)

struct command_row {
    enum smtp_verb verb;
    unsigned allowed;           /* states where the verb makes sense */
    enum reply_id refusal;      /* the answer anywhere else */
    unsigned flags;             /* CMD_* below */
    command_fn *handle;
};

enum {
    CMD_NO_ARGS = 1 << 0,       /* "DATA x" is a syntax error */
    CMD_OWN_NUL = 1 << 1,       /* the handler judges a NUL byte itself */
};

static command_fn cmd_helo, cmd_ehlo, cmd_rcpt, cmd_data, cmd_rset, cmd_noop,
    cmd_quit, cmd_help, cmd_expn, cmd_auth, cmd_starttls, cmd_unknown;

static const struct command_row commands[] = {
    { VERB_HELO, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_helo },
    { VERB_EHLO, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_ehlo },
    { VERB_MAIL, ST_READY,          R_BAD_SEQUENCE, 0,              envelope_mail },
    { VERB_RCPT, ST_MAIL | ST_RCPT, R_NEED_MAIL,    CMD_OWN_NUL,    cmd_rcpt },
    { VERB_DATA, ST_RCPT,           R_NEED_RCPT,    CMD_NO_ARGS,    cmd_data },
    { VERB_RSET, ST_COMMAND,        R_BAD_SEQUENCE, CMD_NO_ARGS,    cmd_rset },
    { VERB_NOOP, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_noop },
    { VERB_QUIT, ST_COMMAND,        R_BAD_SEQUENCE, CMD_NO_ARGS,    cmd_quit },
    { VERB_VRFY, ST_COMMAND,        R_BAD_SEQUENCE, 0,              envelope_vrfy },
    { VERB_HELP, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_help },
    { VERB_EXPN, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_expn },
    { VERB_AUTH, ST_READY,          R_BAD_SEQUENCE, 0,              cmd_auth },
    { VERB_STARTTLS, ST_COMMAND,    R_BAD_SEQUENCE, 0,              cmd_starttls },
    /* BDAT judges its state itself: a refused chunk's bytes are still read */
    { VERB_BDAT, ST_COMMAND,        R_BAD_SEQUENCE, CMD_OWN_NUL,    delivery_bdat },
    { VERB_UNKNOWN, ST_COMMAND,     R_UNKNOWN_VERB, 0,              cmd_unknown },
};

void commands_dispatch(struct session *s, char *line, size_t len)
{
    struct smtp_command cmd;
    parser_command(line, len, &cmd);
    const struct command_row *row = commands;
    while (row->verb != cmd.verb && row->verb != VERB_UNKNOWN)
        row++;
    if (!(row->allowed & s->state))
        session_reply(s, row->refusal);
    else if (cmd.has_nul && row->verb != VERB_UNKNOWN
             && !(row->flags & CMD_OWN_NUL))
        session_reply(s, R_BAD_ARGS);
    else if ((row->flags & CMD_NO_ARGS) && cmd.arg_len > 0)
        session_reply(s, R_NO_ARGS_ALLOWED);
    else
        row->handle(s, &cmd);
    if (cmd.verb == VERB_AUTH)      /* an initial response holds a password */
        explicit_bzero(line, len);
}

/* ---- HELO, EHLO ------------------------------------------------------- */

static int greet(struct session *s, const struct smtp_command *cmd, bool esmtp)
{
    if (cmd->arg_len == 0) {
        session_reply(s, R_NEED_HELO_ARG);
        return -1;
    }
    char *helo = strdup(cmd->arg);
    if (helo == NULL) {
        session_reply(s, R_LOCAL_ERROR);
        return -1;
    }
    free(s->helo);
    s->helo = helo;
    s->esmtp = esmtp;
    session_reset_transaction(s);          /* RFC 5321 4.1.4 */
    session_set_state(s, ST_READY);
    return 0;
}

static void cmd_helo(struct session *s, const struct smtp_command *cmd)
{
    if (greet(s, cmd, false) == 0)
        session_reply(s, R_HELO, session_env.cfg->domain);
}

/* With a certificate, passwords travel only inside TLS. */
static bool auth_allowed_now(const struct session *s)
{
    return !tls_enabled() || s->t.secure;
}

static void cmd_ehlo(struct session *s, const struct smtp_command *cmd)
{
    if (greet(s, cmd, true) < 0)
        return;
    const struct config *cfg = session_env.cfg;
    char size[32];
    snprintf(size, sizeof(size), "SIZE %llu", (unsigned long long)cfg->max_size);
    session_reply_more(s, R_HELO, cfg->domain);
    session_reply_more(s, R_EHLO_KEYWORD, "PIPELINING");
    session_reply_more(s, R_EHLO_KEYWORD, size);
    session_reply_more(s, R_EHLO_KEYWORD, "8BITMIME");
    session_reply_more(s, R_EHLO_KEYWORD, "ENHANCEDSTATUSCODES");
    session_reply_more(s, R_EHLO_KEYWORD, "CHUNKING");
    session_reply_more(s, R_EHLO_KEYWORD, "SMTPUTF8");
    if (s->t.secure)
        session_reply_more(s, R_EHLO_KEYWORD, "REQUIRETLS");
    if (passwd_count() && auth_allowed_now(s))
        session_reply_more(s, R_EHLO_KEYWORD, "AUTH PLAIN LOGIN");
    if (tls_enabled() && !s->t.secure)
        session_reply_more(s, R_EHLO_KEYWORD, "STARTTLS");
    session_reply(s, R_EHLO_KEYWORD, "HELP");
}

/* ---- DATA (MAIL, RCPT and VRFY: smtp_envelope.c) ---------------------- */

static void lowercase(char *p)
{
    for (; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

/* ---- RCPT: the wait for a mailbox's quota figures -------------------- */

static void rcpt_wait(struct session *s);

/* The figures are back: the RCPT is judged again and answered (or waits
 * for another of its mailboxes), then what the client sent meanwhile. */
static void rcpt_ready(void *data)
{
    struct session *s = data;
    s->quota_wait = NULL;
    if (s->closing) {           /* shutting down: its 421 is on the way */
        free(s->rcpt_waiting);
        s->rcpt_waiting = NULL;
        return;
    }
    envelope_rcpt_again(s);
    rcpt_wait(s);
    session_resume(s);          /* may free s */
}

/* smtp_envelope.c left the RCPT unanswered: no input is read until its
 * mailbox's maildirsize is read on the committer's thread. */
static void rcpt_wait(struct session *s)
{
    if (s->rcpt_waiting == NULL)
        return;
    s->quota_wait = quota_wait(s->rcpt_waiting->top, rcpt_ready, s);
    if (s->quota_wait == NULL) {
        free(s->rcpt_waiting);
        s->rcpt_waiting = NULL;
        session_reply(s, R_LOCAL_ERROR);
    }
}

static void cmd_rcpt(struct session *s, const struct smtp_command *cmd)
{
    envelope_rcpt(s, cmd);
    rcpt_wait(s);
}

static void cmd_data(struct session *s, const struct smtp_command *cmd)
{
    (void)cmd;
    delivery_begin(s);
}

/* ---- the rest --------------------------------------------------------- */

static void cmd_rset(struct session *s, const struct smtp_command *cmd)
{
    (void)cmd;
    session_reset_transaction(s);
    session_reply(s, R_RESET);
}

static void cmd_noop(struct session *s, const struct smtp_command *cmd)
{
    (void)cmd;
    session_reply(s, R_OKAY);
}

static void cmd_quit(struct session *s, const struct smtp_command *cmd)
{
    (void)cmd;
    session_reply(s, R_BYE);
}

static void cmd_help(struct session *s, const struct smtp_command *cmd)
{
    (void)cmd;
    session_reply(s, R_HELP);
}

static void cmd_expn(struct session *s, const struct smtp_command *cmd)
{
    (void)cmd;
    session_reply(s, R_EXPN);
}

static void cmd_unknown(struct session *s, const struct smtp_command *cmd)
{
    (void)cmd;
    session_reply(s, R_UNKNOWN_VERB);
}

/* RFC 3207: without a certificate STARTTLS is not a command at all. After
 * the handshake the session starts over, as if just greeted. */
static void cmd_starttls(struct session *s, const struct smtp_command *cmd)
{
    if (!tls_enabled()) {
        session_reply(s, R_UNKNOWN_VERB);
        return;
    }
    if (s->t.secure) {
        session_reply(s, R_BAD_SEQUENCE);
        return;
    }
    if (cmd->arg_len > 0) {
        session_reply(s, R_NO_ARGS_ALLOWED);
        return;
    }
    session_reply(s, R_TLS_GO);
    session_reset_transaction(s);
    free(s->helo);
    s->helo = NULL;
    s->esmtp = false;
    free(s->auth_user);
    s->auth_user = NULL;
    session_set_state(s, ST_CONNECTED);
    session_start_tls(s);
}

/* ---- AUTH (RFC 4954): PLAIN and LOGIN ------------------------------- */

#define AUTH_DECODED_MAX (SMTP_AUTH_LINE_MAX / 4 * 3 + 3)

/* The verdict of auth_login.c: 235, the name (lowercased) being the
 * session's from now on, or 535; then what the client sent meanwhile. */
static void auth_checked(void *data, const char *user)
{
    struct session *s = data;
    enum reply_id id = R_AUTH_FAILED;
    s->login = NULL;
    if (user && (s->auth_user = strdup(user)) == NULL) {
        id = R_LOCAL_ERROR;
    } else if (user) {
        lowercase(s->auth_user);
        log_info("%s:%u authenticated as %s", s->ip, s->port, s->auth_user);
        stats.auth_ok++;
        id = R_AUTH_OK;
    }
    if (s->closing)             /* shutting down: its 421 is on the way */
        return;
    session_reply(s, id);
    session_resume(s);          /* may free s */
}

/* The credentials are complete: the session reads nothing more until
 * auth_checked, unless the attempt is refused at once. */
static void auth_finish(struct session *s, const char *user, const char *pass)
{
    s->auth_step = AUTH_NONE;
    session_set_state(s, ST_READY);
    s->login = login_begin(s->ip, user, pass, auth_checked, s);
    if (s->login == NULL)
        session_reply(s, errno == EAGAIN ? R_AUTH_THROTTLED : R_LOCAL_ERROR);
}

/* Decodes one base64 SASL response into the caller's buffer (at least
 * AUTH_DECODED_MAX + 1 bytes), NUL-terminated. The caller wipes it. */
static char *auth_decode(struct session *s, const char *b64, size_t len,
                         uint8_t *decoded, size_t *out)
{
    if (auth_base64_decode(b64, len, decoded, AUTH_DECODED_MAX, out) < 0) {
        s->auth_step = AUTH_NONE;
        session_set_state(s, ST_READY);
        session_reply(s, R_BAD_BASE64);
        return NULL;
    }
    decoded[*out] = '\0';
    return (char *)decoded;
}

/* explicit_bzero: a plain memset of a buffer about to die is removed by
 * the optimiser, and the password would stay on the stack. */
static void auth_plain(struct session *s, const char *b64, size_t len)
{
    uint8_t decoded[AUTH_DECODED_MAX + 1];
    char user[256], pass[256];
    size_t n;
    char *msg = auth_decode(s, b64, len, decoded, &n);
    if (msg == NULL)
        return;
    if (auth_plain_split((uint8_t *)msg, n, user, sizeof(user), pass, sizeof(pass)) < 0)
        user[0] = pass[0] = '\0';   /* malformed: fails like a wrong password */
    auth_finish(s, user, pass);
    explicit_bzero(pass, sizeof(pass));
    explicit_bzero(decoded, sizeof(decoded));
}

static void auth_challenge(struct session *s, enum auth_step step, const char *text)
{
    s->auth_step = step;
    session_set_state(s, ST_AUTH);
    session_reply(s, R_AUTH_CHALLENGE, text);
}

static void auth_login_user(struct session *s, const char *b64, size_t len)
{
    uint8_t decoded[AUTH_DECODED_MAX + 1];
    size_t n;
    char *user = auth_decode(s, b64, len, decoded, &n);
    if (user == NULL)
        return;
    free(s->auth_login_user);
    s->auth_login_user = strdup(user);
    explicit_bzero(decoded, n);
    auth_challenge(s, AUTH_LOGIN_PASS, "UGFzc3dvcmQ6");     /* "Password:" */
}

static void auth_login_pass(struct session *s, const char *b64, size_t len)
{
    uint8_t decoded[AUTH_DECODED_MAX + 1];
    size_t n;
    char *pass = auth_decode(s, b64, len, decoded, &n);
    if (pass == NULL)
        return;
    auth_finish(s, s->auth_login_user ? s->auth_login_user : "", pass);
    explicit_bzero(decoded, sizeof(decoded));
}

void commands_auth_line(struct session *s, char *line, size_t len)
{
    if (len == 1 && line[0] == '*') {
        s->auth_step = AUTH_NONE;
        session_set_state(s, ST_READY);
        stats.auth_failures++;
        log_info("%s:%u AUTH cancelled by the client", s->ip, s->port);
        session_reply(s, R_AUTH_CANCELLED);
        return;
    }
    switch (s->auth_step) {
    case AUTH_PLAIN_WAIT:
        auth_plain(s, line, len);
        break;
    case AUTH_LOGIN_USER:
        auth_login_user(s, line, len);
        break;
    case AUTH_LOGIN_PASS:
        auth_login_pass(s, line, len);
        break;
    case AUTH_NONE:
        session_set_state(s, ST_READY);
        session_reply(s, R_BAD_SEQUENCE);
        break;
    }
    explicit_bzero(line, len);      /* the base64 is the password too */
}

static void cmd_auth(struct session *s, const struct smtp_command *cmd)
{
    if (!auth_allowed_now(s)) {
        session_reply(s, R_AUTH_NEEDS_TLS);
        return;
    }
    if (cmd->arg_len == 0) {
        session_reply(s, R_BAD_ARGS);
        return;
    }
    if (passwd_count() == 0) {
        session_reply(s, R_AUTH_MECH);
        return;
    }
    if (s->auth_user) {
        session_reply(s, R_ALREADY_AUTH);
        return;
    }
    if (login_refused(s->ip)) {
        session_reply(s, R_AUTH_THROTTLED);
        return;
    }
    const char *mech = cmd->arg;
    size_t mlen = strcspn(mech, " ");
    const char *initial = mech[mlen] ? mech + mlen + 1 : NULL;
    while (initial && *initial == ' ')
        initial++;
    if (mlen == 5 && strncasecmp(mech, "PLAIN", 5) == 0) {
        if (initial && *initial)
            auth_plain(s, initial, strlen(initial));
        else
            auth_challenge(s, AUTH_PLAIN_WAIT, "");
    } else if (mlen == 5 && strncasecmp(mech, "LOGIN", 5) == 0) {
        if (initial && *initial)
            auth_login_user(s, initial, strlen(initial));
        else
            auth_challenge(s, AUTH_LOGIN_USER, "VXNlcm5hbWU6");  /* "Username:" */
    } else {
        session_reply(s, R_AUTH_MECH);
    }
}
