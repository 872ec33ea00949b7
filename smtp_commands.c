/*
 * commands.c - what each SMTP command does. One table row per verb says
 * in which states it is allowed, so "bad sequence" is answered in one
 * place and every handler only does its own job (STYLE.md habit 2).
 */
#include <ctype.h>
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
#define VRFY_MAX_CANDIDATES 10

typedef void command_fn(struct session *s, const struct smtp_command *cmd);

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

static command_fn cmd_helo, cmd_ehlo, cmd_mail, cmd_rcpt, cmd_data, cmd_rset,
    cmd_noop, cmd_quit, cmd_vrfy, cmd_help, cmd_expn, cmd_auth, cmd_starttls,
    cmd_unknown;

static const struct command_row commands[] = {
    { VERB_HELO, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_helo },
    { VERB_EHLO, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_ehlo },
    { VERB_MAIL, ST_READY,          R_BAD_SEQUENCE, 0,              cmd_mail },
    { VERB_RCPT, ST_MAIL | ST_RCPT, R_NEED_MAIL,    CMD_OWN_NUL,    cmd_rcpt },
    { VERB_DATA, ST_RCPT,           R_NEED_RCPT,    CMD_NO_ARGS,    cmd_data },
    { VERB_RSET, ST_COMMAND,        R_BAD_SEQUENCE, CMD_NO_ARGS,    cmd_rset },
    { VERB_NOOP, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_noop },
    { VERB_QUIT, ST_COMMAND,        R_BAD_SEQUENCE, CMD_NO_ARGS,    cmd_quit },
    { VERB_VRFY, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_vrfy },
    { VERB_HELP, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_help },
    { VERB_EXPN, ST_COMMAND,        R_BAD_SEQUENCE, 0,              cmd_expn },
    { VERB_AUTH, ST_READY,          R_BAD_SEQUENCE, 0,              cmd_auth },
    { VERB_STARTTLS, ST_COMMAND,    R_BAD_SEQUENCE, 0,              cmd_starttls },
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
    if (passwd_count() && auth_allowed_now(s))
        session_reply_more(s, R_EHLO_KEYWORD, "AUTH PLAIN LOGIN");
    if (tls_enabled() && !s->t.secure)
        session_reply_more(s, R_EHLO_KEYWORD, "STARTTLS");
    session_reply(s, R_EHLO_KEYWORD, "HELP");
}

/* ---- MAIL, RCPT, DATA ------------------------------------------------- */

static char *path_to_string(const struct smtp_path *path)
{
    size_t len = strlen(path->local) + strlen(path->domain) + 2;
    char *str = malloc(len);
    if (str == NULL)
        return NULL;
    if (path->null_path)
        str[0] = '\0';
    else if (path->domain[0])
        snprintf(str, len, "%s@%s", path->local, path->domain);
    else
        snprintf(str, len, "%s", path->local);
    return str;
}

static void cmd_mail(struct session *s, const struct smtp_command *cmd)
{
    if (session_env.cfg->require_tls && !s->t.secure) {
        session_reply(s, R_TLS_REQUIRED);
        return;
    }
    if (session_env.cfg->require_auth && s->auth_user == NULL) {
        session_reply(s, R_AUTH_REQUIRED);
        return;
    }
    struct smtp_path path;
    struct mail_params params;
    switch (parser_mail_from(cmd->arg, &path, &params)) {
    case PATH_OK:         break;
    case PATH_SYNTAX:     session_reply(s, R_BAD_ARGS);   return;
    case PATH_BAD_LOCAL:
    case PATH_BAD_DOMAIN: session_reply(s, R_BAD_SENDER); return;
    case PATH_BAD_PARAM:  session_reply(s, R_BAD_PARAM);  return;
    }
    if (params.has_size && params.size > session_env.cfg->max_size) {
        session_reply(s, R_TOO_BIG);
        return;
    }
    s->sender = path_to_string(&path);
    if (s->sender == NULL) {
        session_reply(s, R_LOCAL_ERROR);
        return;
    }
    session_set_state(s, ST_MAIL);
    session_reply(s, R_SENDER_OK);
}

static void lowercase(char *p)
{
    for (; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

static bool mailbox_known(const char *box)
{
    return strcmp(box, "postmaster") == 0
           || maildir_exists(session_env.cfg->root, box);
}

static void rcpt_refuse(struct session *s, const char *arg, enum reply_id id)
{
    char safe[128];
    stats.rcpt_rejected++;
    log_info("%s:%u rcpt rejected %s: %d %s", s->ip, s->port,
             log_escape(safe, sizeof(safe), arg), replies[id].code, replies[id].esc);
    session_reply(s, id);
}

/* Which reply a parsed RCPT path earns, before the mailbox is looked up. */
static enum reply_id rcpt_check(enum path_status st, const struct smtp_path *path)
{
    switch (st) {
    case PATH_OK:         break;
    case PATH_SYNTAX:     return R_BAD_ARGS;
    case PATH_BAD_LOCAL:  return R_BAD_LOCAL;
    case PATH_BAD_DOMAIN: return R_BAD_DOMAIN;
    case PATH_BAD_PARAM:  return R_BAD_PARAM;
    }
    if (path->domain[0] && strcasecmp(path->domain, session_env.cfg->domain) != 0)
        return R_RELAY_DENIED;
    return R_RCPT_OK;
}

static int rcpt_add(struct session *s, const struct smtp_path *path, char *box)
{
    if (s->nrcpts == s->rcpt_cap) {
        size_t cap = s->rcpt_cap ? s->rcpt_cap * 2 : 4;
        char **r = realloc(s->rcpts, cap * sizeof(*r));
        if (r)
            s->rcpts = r;
        char **b = realloc(s->boxes, cap * sizeof(*b));
        if (b)
            s->boxes = b;
        if (r == NULL || b == NULL)
            return -1;
        s->rcpt_cap = cap;
    }
    struct smtp_path full = *path;
    if (full.domain[0] == '\0')
        snprintf(full.domain, sizeof(full.domain), "%s", session_env.cfg->domain);
    char *addr = path_to_string(&full);
    if (addr == NULL)
        return -1;
    s->rcpts[s->nrcpts] = addr;
    s->boxes[s->nrcpts] = box;
    s->nrcpts++;
    return 0;
}

/* The argument as a C string in which a NUL byte reads as the control
 * byte 0x01: refused like any other where it stands (in a local-part
 * 501 5.1.3, in a domain 501 5.1.2), instead of ending the string early
 * and passing for something shorter. */
static const char *rcpt_arg(const struct smtp_command *cmd, char *buf,
                            size_t size)
{
    if (!cmd->has_nul || cmd->arg_len >= size)
        return cmd->arg;
    for (size_t i = 0; i < cmd->arg_len; i++)
        buf[i] = cmd->arg[i] ? cmd->arg[i] : '\x01';
    buf[cmd->arg_len] = '\0';
    return buf;
}

static void cmd_rcpt(struct session *s, const struct smtp_command *cmd)
{
    char buf[SMTP_LINE_MAX + 1];
    const char *arg = rcpt_arg(cmd, buf, sizeof buf);
    if (s->nrcpts >= SESSION_MAX_RCPTS) {
        rcpt_refuse(s, arg, R_TOO_MANY_RCPTS);
        return;
    }
    struct smtp_path path;
    enum reply_id id = rcpt_check(parser_rcpt_to(arg, &path), &path);
    if (id != R_RCPT_OK) {
        rcpt_refuse(s, arg, id);
        return;
    }
    char *box = strdup(path.local);
    if (box == NULL) {
        session_reply(s, R_LOCAL_ERROR);
        return;
    }
    lowercase(box);
    if (!mailbox_known(box)) {
        free(box);
        rcpt_refuse(s, arg, R_NO_MAILBOX);
        return;
    }
    if (rcpt_add(s, &path, box) < 0) {
        free(box);
        session_reply(s, R_LOCAL_ERROR);
        return;
    }
    session_set_state(s, ST_RCPT);
    session_reply(s, R_RCPT_OK);
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

/* VRFY user | user@domain | <user@domain>: the local-part, or NULL when
 * the argument names another domain or is not an address at all. */
static char *vrfy_local_part(const char *arg, enum reply_id *why)
{
    char buf[SMTP_PATH_MAX + 3];
    size_t len = strlen(arg);
    if (len >= 2 && arg[0] == '<' && arg[len - 1] == '>') {
        arg++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(buf)) {
        *why = R_BAD_ARGS;
        return NULL;
    }
    memcpy(buf, arg, len);
    buf[len] = '\0';
    char *at = strchr(buf, '@');
    if (at) {
        *at = '\0';
        if (strcasecmp(at + 1, session_env.cfg->domain) != 0) {
            *why = R_NO_MAILBOX;
            return NULL;
        }
    }
    if (!parser_local_part_ok(buf, strlen(buf))) {
        *why = R_BAD_LOCAL;
        return NULL;
    }
    lowercase(buf);
    return strdup(buf);
}

/* The 553 lists as many candidates as the output buffer has room for,
 * so a long -d cannot overflow it. */
static void vrfy_ambiguous(struct session *s, char names[][MAILDIR_NAME_MAX + 1],
                           size_t n)
{
    size_t dlen = strlen(session_env.cfg->domain), used = 0, fit = 0;
    const size_t head = 34, frame = 15;     /* the first line; "553-5.1.4 <@>\r\n" */
    size_t room = buffer_space(&s->out);
    while (fit < n && head + used + frame + strlen(names[fit]) + dlen <= room)
        used += frame + strlen(names[fit++]) + dlen;
    if (fit < 2) {
        session_reply(s, R_VRFY_AMBIGUOUS);     /* not even two: no list */
        return;
    }
    session_reply_more(s, R_VRFY_AMBIGUOUS);
    for (size_t i = 0; i + 1 < fit; i++)
        session_reply_more(s, R_VRFY_CANDIDATE, names[i], session_env.cfg->domain);
    char line[REPLY_LINE_MAX];      /* the last line, counted as one error */
    size_t len = reply_format(line, sizeof(line), R_VRFY_CANDIDATE, 0,
                              session_env.cfg->domain, names[fit - 1],
                              session_env.cfg->domain);
    session_reply_raw(s, line, len);
    s->errors++;
}

/* --vrfy: on answers anyone, auth only a logged-in client, off no one. */
static enum reply_id vrfy_refusal(const struct session *s)
{
    switch (session_env.cfg->vrfy) {
    case VRFY_OFF:  return R_VRFY_DISABLED;
    case VRFY_AUTH: return s->auth_user ? R_OKAY : R_AUTH_REQUIRED;
    case VRFY_ON:   break;
    }
    return R_OKAY;
}

static void cmd_vrfy(struct session *s, const struct smtp_command *cmd)
{
    enum reply_id why = vrfy_refusal(s);
    if (why != R_OKAY) {
        session_reply(s, why);
        return;
    }
    why = R_BAD_ARGS;
    char *name = vrfy_local_part(cmd->arg, &why);
    if (name == NULL) {
        session_reply(s, why);
        return;
    }
    char found[VRFY_MAX_CANDIDATES][MAILDIR_NAME_MAX + 1];
    int n = 0;
    if (mailbox_known(name))
        session_reply(s, R_VRFY_OK, name, session_env.cfg->domain);
    else if ((n = maildir_find_prefix(session_env.cfg->root, name, found,
                                      VRFY_MAX_CANDIDATES)) >= 2)
        vrfy_ambiguous(s, found, n > VRFY_MAX_CANDIDATES ? VRFY_MAX_CANDIDATES : (size_t)n);
    else
        session_reply(s, R_NO_MAILBOX);
    free(name);
}

/* ---- AUTH (RFC 4954): PLAIN and LOGIN ------------------------------- */

#define AUTH_DECODED_MAX (SMTP_AUTH_LINE_MAX / 4 * 3 + 3)

/* The credentials are complete: login.c answers once they are checked. */
static void auth_finish(struct session *s, const char *user, const char *pass)
{
    s->auth_step = AUTH_NONE;
    session_set_state(s, ST_READY);
    login_begin(s, user, pass);
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
