/*
 * smtp_envelope.c - who a message is from and for: MAIL (the sender and
 * its SIZE), RCPT (the path, the domain, the mailbox, the list of at most
 * SESSION_MAX_RCPTS recipients, the folders they reach, resolved by
 * addr_resolve.c) and VRFY (the same resolution, said aloud). Only these commands look into the mailbox root. Like every
 * handler they only queue replies; the session does the I/O.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "log.h"
#include "smtp_limits.h"
#include "smtp_session.h"
#include "stats.h"

#define VRFY_MAX_CANDIDATES 10

/* ---- MAIL, RCPT ------------------------------------------------------- */

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

void envelope_mail(struct session *s, const struct smtp_command *cmd)
{
    if (session_env.cfg->require_tls && !s->t.secure) {
        session_reply(s, R_TLS_REQUIRED);
        return;
    }
    if (session_env.cfg->require_auth && s->auth_user == NULL) {
        session_reply(s, R_AUTH_REQUIRED);
        return;
    }
    if (s->limited && limits_message_check(s->limit_key, selector_now_ms())
                      != LIMITS_GO) {
        stats.refused_message_rate++;
        log_warn("%s:%u MAIL refused: over --message-rate %u messages per "
                 "minute from the address", s->ip, s->port,
                 session_env.cfg->message_rate);
        session_reply(s, R_MESSAGE_RATE);
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
    case PATH_BAD_UTF8:   session_reply(s, R_BAD_LOCAL);  return;
    }
    if (params.requiretls && !s->t.secure) {    /* RFC 8689: TLS only */
        session_reply(s, R_BAD_PARAM);
        return;
    }
    if (path.utf8 && !params.smtputf8) {
        session_reply(s, R_NEED_SMTPUTF8);
        return;
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
    s->smtputf8 = params.smtputf8;
    s->mail_has_size = params.has_size;
    s->mail_size = params.has_size ? params.size : 0;
    session_set_state(s, ST_MAIL);
    session_reply(s, R_SENDER_OK);
}

static void lowercase(char *p)
{
    for (; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

/* The folders a local-part reaches (addr_resolve.c). */
static enum addr_status envelope_resolve(const char *local,
                                         struct addr_dests *dests)
{
    return addr_resolve(session_env.cfg->root, session_env.cfg->delimiters,
                        addr_aliases(), local, dests);
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
static enum reply_id rcpt_check(const struct session *s, enum path_status st,
                                const struct smtp_path *path)
{
    switch (st) {
    case PATH_OK:         break;
    case PATH_SYNTAX:     return R_BAD_ARGS;
    case PATH_BAD_UTF8:
    case PATH_BAD_LOCAL:  return R_BAD_LOCAL;
    case PATH_BAD_DOMAIN: return R_BAD_DOMAIN;
    case PATH_BAD_PARAM:  return R_BAD_PARAM;
    }
    if (path->utf8 && !s->smtputf8)
        return R_NEED_SMTPUTF8;
    if (path->domain[0] && strcasecmp(path->domain, session_env.cfg->domain) != 0)
        return R_RELAY_DENIED;
    return R_RCPT_OK;
}

/* The transaction's folders gain dests, each kept once. */
static int rcpt_add_boxes(struct session *s, struct addr_dests *dests)
{
    for (size_t i = 0; i < dests->n; i++) {
        size_t k = 0;
        while (k < s->nboxes && strcmp(s->boxes[k], dests->v[i]) != 0)
            k++;
        if (k < s->nboxes)
            continue;
        if (s->nboxes == s->box_cap) {
            size_t cap = s->box_cap ? s->box_cap * 2 : 4;
            char **b = realloc(s->boxes, cap * sizeof(*b));
            if (b == NULL)
                return -1;
            s->boxes = b;
            s->box_cap = cap;
        }
        s->boxes[s->nboxes++] = dests->v[i];
        dests->v[i] = NULL;
    }
    return 0;
}

static int rcpt_add(struct session *s, const struct smtp_path *path,
                    struct addr_dests *dests)
{
    if (s->nrcpts == s->rcpt_cap) {
        size_t cap = s->rcpt_cap ? s->rcpt_cap * 2 : 4;
        char **r = realloc(s->rcpts, cap * sizeof(*r));
        if (r == NULL)
            return -1;
        s->rcpts = r;
        s->rcpt_cap = cap;
    }
    struct smtp_path full = *path;
    if (full.domain[0] == '\0')
        snprintf(full.domain, sizeof(full.domain), "%s", session_env.cfg->domain);
    char *addr = path_to_string(&full);
    if (addr == NULL || rcpt_add_boxes(s, dests) < 0) {
        free(addr);
        return -1;
    }
    s->rcpts[s->nrcpts++] = addr;
    return 0;
}

/* The quotas of the mailboxes dests reach, from the usage in memory
 * (maildir_quota.h): held for this transaction when they pass. When a
 * mailbox must be read first (not counted yet, or found full), the RCPT
 * is kept in s->rcpt_waiting, unanswered, for smtp_commands.c to wait
 * for the read and run it again (envelope_rcpt_again): R_OKAY. */
static enum reply_id rcpt_quota(struct session *s, const char *arg,
                                const struct addr_dests *dests)
{
    char top[MAILDIR_NAME_MAX + 1];
    switch (quota_hold(s->boxes, s->nboxes, dests->v, dests->n,
                       s->mail_has_size, s->mail_size,
                       session_env.cfg->max_size, top, sizeof top)) {
    case QUOTA_OK:   return R_RCPT_OK;
    case QUOTA_FULL: return R_MAILBOX_FULL;
    case QUOTA_BUSY: return R_MAILBOX_BUSY;
    case QUOTA_READ: break;
    }
    size_t len = strlen(arg);
    struct rcpt_wait *w = malloc(sizeof *w + len + 1);
    if (w == NULL)
        return R_LOCAL_ERROR;
    memcpy(w->top, top, sizeof w->top);
    memcpy(w->arg, arg, len + 1);
    s->rcpt_waiting = w;
    return R_OKAY;
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

/* RCPT with its argument: checked, resolved, its quotas asked; once
 * more after a wait for a mailbox's read. */
static void rcpt_run(struct session *s, const char *arg)
{
    if (s->nrcpts >= SESSION_MAX_RCPTS) {
        rcpt_refuse(s, arg, R_TOO_MANY_RCPTS);
        return;
    }
    struct smtp_path path;
    enum reply_id id = rcpt_check(s, parser_rcpt_to(arg, &path), &path);
    if (id != R_RCPT_OK) {
        rcpt_refuse(s, arg, id);
        return;
    }
    struct addr_dests dests = { 0 };
    enum addr_status st = envelope_resolve(path.local, &dests);
    if (st == ADDR_UNKNOWN) {
        addr_dests_free(&dests);
        rcpt_refuse(s, arg, R_NO_MAILBOX);
        return;
    }
    id = st == ADDR_FOUND ? rcpt_quota(s, arg, &dests) : R_RCPT_OK;
    if (id == R_OKAY) {             /* waiting for a read: smtp_commands.c */
        addr_dests_free(&dests);
        return;
    }
    if (id != R_RCPT_OK) {
        addr_dests_free(&dests);
        rcpt_refuse(s, arg, id);
        return;
    }
    /* out of memory below leaves a mailbox held until the next start's
     * count: a 451 that rare is not worth undoing the hold for */
    if (st != ADDR_FOUND || rcpt_add(s, &path, &dests) < 0) {
        addr_dests_free(&dests);
        session_reply(s, R_LOCAL_ERROR);
        return;
    }
    addr_dests_free(&dests);
    session_set_state(s, ST_RCPT);
    session_reply(s, R_RCPT_OK);
}

void envelope_rcpt(struct session *s, const struct smtp_command *cmd)
{
    char buf[SMTP_LINE_MAX + 1];
    rcpt_run(s, rcpt_arg(cmd, buf, sizeof buf));
}

void envelope_rcpt_again(struct session *s)
{
    struct rcpt_wait *w = s->rcpt_waiting;
    s->rcpt_waiting = NULL;
    if (w)
        rcpt_run(s, w->arg);
    free(w);
}

/* ---- VRFY ------------------------------------------------------------- */

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

void envelope_vrfy(struct session *s, const struct smtp_command *cmd)
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
    struct addr_dests dests = { 0 };
    enum addr_status st = envelope_resolve(name, &dests);
    addr_dests_free(&dests);
    if (st == ADDR_FOUND)
        session_reply(s, R_VRFY_OK, name, session_env.cfg->domain);
    else if (st == ADDR_NO_MEMORY)
        session_reply(s, R_LOCAL_ERROR);
    else if ((n = maildir_find_prefix(session_env.cfg->root, name, found,
                                      VRFY_MAX_CANDIDATES)) >= 2)
        vrfy_ambiguous(s, found, n > VRFY_MAX_CANDIDATES ? VRFY_MAX_CANDIDATES : (size_t)n);
    else
        session_reply(s, R_NO_MAILBOX);
    free(name);
}
