/*
 * smtp_data.c - one message from DATA to new/: the spool file with our
 * trace headers, the size limit, the optional filter, the hand-over to
 * the committer, and the reply that tells the client how it went. 250 is
 * sent only from the committer's callback, after the file is durable.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "smtp_limits.h"
#include "smtp_session.h"
#include "maildir_spool.h"
#include "smtp_bdat.h"
#include "stats.h"
#include "transform.h"

static enum reply_id delivery_error_reply(int err)
{
    return (err == ENOSPC || err == EDQUOT) ? R_NO_SPACE : R_LOCAL_ERROR;
}

/* "Received:" per RFC 5321 4.4, with SMTP/ESMTP[S][A] (RFC 3848). */
static int delivery_trace_headers(struct session *s)
{
    char date[64], helo[256], head[1024];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    log_escape(helo, sizeof(helo), s->helo ? s->helo : "unknown");
    const char *with = s->auth_user ? (s->t.secure ? "ESMTPSA" : "ESMTPA")
                       : s->esmtp ? (s->t.secure ? "ESMTPS" : "ESMTP") : "SMTP";
    if (s->smtputf8)            /* RFC 6531 3.7.3 */
        with = s->auth_user ? (s->t.secure ? "UTF8SMTPSA" : "UTF8SMTPA")
               : s->t.secure ? "UTF8SMTPS" : "UTF8SMTP";
    char for_rcpt[SMTP_PATH_MAX + 16] = "";
    if (s->nrcpts == 1)
        snprintf(for_rcpt, sizeof(for_rcpt), " for <%s>", s->rcpts[0]);
    int n = snprintf(head, sizeof(head),
                     "Return-Path: <%s>\r\n"
                     "Received: from %s (%s) by %s with %s id %s%s; %s\r\n",
                     s->sender, helo, s->addr, session_env.cfg->domain, with,
                     s->msg.id, for_rcpt, date);
    if (n < 0 || (size_t)n >= sizeof(head)) {
        errno = EOVERFLOW;
        return -1;
    }
    return maildir_msg_write(&s->msg, head, (size_t)n);
}

/* The spool file made off the loop thread (maildir_spool.c) becomes the
 * session's, with the trace headers in it and the big input buffer in
 * place: R_OKAY, or the reply that says why not (nothing is left then). */
static enum reply_id delivery_spool_ready(struct session *s,
                                          struct maildir_msg *msg, int error)
{
    s->opening = NULL;
    s->msg = *msg;
    msg->fd = -1;
    msg->tmp_path = NULL;
    if (error || delivery_trace_headers(s) < 0) {
        int err = error ? error : errno;
        log_error("%s:%u cannot create spool file in %s: %s", s->ip, s->port,
                  s->boxes[0], strerror(err));
        maildir_msg_abort(&s->msg);
        return delivery_error_reply(err);
    }
    if (session_use_big_input(s) < 0) {
        maildir_msg_abort(&s->msg);
        return R_LOCAL_ERROR;
    }
    s->body_size = 0;
    s->too_big = false;
    s->write_errno = 0;
    return R_OKAY;
}

/* The spool file exists: 354. A failure answers DATA and keeps the
 * transaction. */
static void delivery_opened(void *data, struct maildir_msg *msg, int error)
{
    struct session *s = data;
    enum reply_id id = delivery_spool_ready(s, msg, error);
    if (id != R_OKAY) {
        session_set_state(s, ST_RCPT);
        session_reply(s, id);
    } else {
        data_parser_init(&s->data);
        session_set_state(s, ST_DATA);
        session_reply(s, R_DATA_GO);
    }
    session_resume(s);
}

/* The spool file goes into the tmp/ of the first folder's mailbox. */
static const char *delivery_spool_box(const struct session *s)
{
    static char box[MAILDIR_NAME_MAX + 1];
    snprintf(box, sizeof box, "%.*s", (int)strcspn(s->boxes[0], "/"),
             s->boxes[0]);
    return box;
}

/* Nothing more is read from the client until the file exists: a client
 * sends the body only after 354 (RFC 5321 3.3, RFC 2920 3.1). */
void delivery_begin(struct session *s)
{
    if (s->chunking) {          /* the content already came in BDAT chunks */
        session_reply(s, R_BAD_SEQUENCE);
        return;
    }
    s->opening = spool_open_start(session_env.cfg->root, delivery_spool_box(s),
                                  NULL,
                                  delivery_opened, s);
    if (s->opening == NULL) {
        log_error("%s:%u cannot create spool file in %s: %s", s->ip, s->port,
                  s->boxes[0], strerror(errno));
        session_reply(s, R_LOCAL_ERROR);
        return;
    }
    session_set_state(s, ST_WAIT);
}

/* Body bytes: to the spool, until the size limit or a write error; after
 * that they are read and thrown away so the reply comes at the end. */
void delivery_body(struct session *s, const uint8_t *p, size_t n)
{
    if (s->message_start == 0 && n > 0)   /* its 10 x -T run from here */
        s->message_start = selector_now_ms();
    s->body_size += n;
    if (s->too_big || s->write_errno)
        return;
    if (s->body_size > session_env.cfg->max_size) {
        s->too_big = true;
        maildir_msg_abort(&s->msg);
        return;
    }
    if (n && maildir_msg_write(&s->msg, p, n) < 0) {
        s->write_errno = errno;
        log_error("%s:%u writing %s: %s", s->ip, s->port, s->msg.id,
                  strerror(errno));
        maildir_msg_abort(&s->msg);
    }
}

/* ---- the access log ------------------------------------------------- */

static void delivery_log(struct session *s, const char *id, uint64_t size,
                         const char *result)
{
    char helo[256], rcpts[1024], tls[96];
    size_t o = 0;
    rcpts[0] = '\0';
    for (size_t i = 0; i < s->nrcpts && o < sizeof(rcpts); i++)
        o += (size_t)snprintf(rcpts + o, sizeof(rcpts) - o, "%s<%s>",
                              i ? "," : "", s->rcpts[i]);
    transport_describe(&s->t, tls, sizeof(tls));
    log_info("message id=%s client=%s:%u tls=%s user=%s helo=%s from=<%s> to=%s "
             "size=%llu result=%s", id, s->ip, s->port, tls[0] ? tls : "-",
             s->auth_user ? s->auth_user : "-",
             log_escape(helo, sizeof(helo), s->helo ? s->helo : ""),
             s->sender, rcpts, (unsigned long long)size, result);
}

/* ---- after the filter and the disk ---------------------------------- */

/* Ends the transaction with its reply. Callers that were called back by
 * the committer or the filter then call session_resume(); the others are
 * inside session_process(), which goes on by itself. */
static void delivery_finish(struct session *s, enum reply_id id, const char *qid)
{
    if (replies[id].code >= 500)
        stats.messages_rejected++;
    else if (replies[id].code >= 400)
        stats.messages_failed++;
    if (id == R_QUEUED && s->limited)
        limits_message_sent(s->limit_key, selector_now_ms());
    if (id == R_QUEUED)
        session_reply(s, id, qid);
    else
        session_reply(s, id);
    session_reset_transaction(s);
    if (s->after_reply_close && !s->closing)
        session_reply(s, R_SHUTDOWN);
}

static void delivery_committed(struct commit_job *job)
{
    struct session *s = job->data;
    if (job->error == 0) {
        stats.messages_delivered++;
        stats.recipients_delivered += job->nboxes;
    }
    if (s == NULL) {    /* the client left after its final dot */
        log_info("message id=%s %s after the client left", job->msg.id,
                 job->error ? "failed" : "delivered");
        return;
    }
    s->job = NULL;
    if (job->error) {
        log_error("%s:%u delivery of %s failed: %s", s->ip, s->port,
                  job->msg.id, strerror(job->error));
        delivery_log(s, job->msg.id, job->msg.size, "failed");
        delivery_finish(s, delivery_error_reply(job->error), NULL);
    } else {
        delivery_log(s, job->msg.id, job->msg.size, "delivered");
        delivery_finish(s, R_QUEUED, job->msg.id);
    }
    session_resume(s);
}

/* The distinct folders (RCPT keeps each once), owned by the job. */
static int delivery_job_boxes(struct session *s, struct commit_job *job)
{
    job->boxes = calloc(s->nboxes, sizeof(char *));
    if (job->boxes == NULL)
        return -1;
    for (size_t i = 0; i < s->nboxes; i++) {
        job->boxes[job->nboxes] = strdup(s->boxes[i]);
        if (job->boxes[job->nboxes] == NULL)
            return -1;
        job->nboxes++;
    }
    return 0;
}

/* Hands msg (moved out of the session) to the committer. */
static void delivery_commit(struct session *s, struct maildir_msg *msg)
{
    struct commit_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        maildir_msg_abort(msg);
        delivery_finish(s, R_LOCAL_ERROR, NULL);
        return;
    }
    job->msg = *msg;
    msg->fd = -1;
    msg->tmp_path = NULL;
    job->done = delivery_committed;
    job->data = s;
    if (delivery_job_boxes(s, job) < 0) {
        commit_job_free(job);
        delivery_finish(s, R_LOCAL_ERROR, NULL);
        return;
    }
    s->job = job;
    session_set_state(s, ST_WAIT);
    committer_submit(session_env.committer, job);
}

/* ---- the filter ------------------------------------------------------- */

static char *delivery_recipient_list(struct session *s)
{
    size_t len = 1;
    for (size_t i = 0; i < s->nrcpts; i++)
        len += strlen(s->rcpts[i]) + 1;
    char *list = malloc(len);
    if (list == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < s->nrcpts; i++)
        o += (size_t)snprintf(list + o, len - o, "%s%s", i ? "," : "", s->rcpts[i]);
    list[o] = '\0';
    return list;
}

static void delivery_filtered(void *data, bool ok, const char *reason)
{
    struct session *s = data;
    s->transform = NULL;
    maildir_msg_abort(&s->msg);         /* the original is not needed now */
    struct stat st;
    if (ok && fstat(s->filtered.fd, &st) < 0) {
        ok = false;
        reason = strerror(errno);
    } else if (ok && (uint64_t)st.st_size > session_env.cfg->max_size + TRANSFORM_HEADROOM) {
        ok = false;     /* RLIMIT_FSIZE may act a little late: check exactly */
        reason = "output larger than the size limit";
    }
    if (!ok) {
        stats.transform_failures++;
        log_warn("%s:%u filter failed for %s: %s", s->ip, s->port,
                 s->filtered.id, reason);
        delivery_log(s, s->filtered.id, 0, "filter-failed");
        maildir_msg_abort(&s->filtered);
        delivery_finish(s, R_LOCAL_ERROR, NULL);
    } else {
        s->filtered.size = (uint64_t)st.st_size;
        delivery_commit(s, &s->filtered);
    }
    session_resume(s);
}

/* 0 when the filter runs on s->filtered (its callback finishes the
 * message), else -1 with errno. */
static int delivery_filter_start(struct session *s)
{
    char *list = delivery_recipient_list(s);
    struct transform_job job = {
        .in_fd = s->msg.fd, .out_fd = s->filtered.fd, .id = s->msg.id,
        .sender = s->sender, .recipients = list, .client = s->ip,
    };
    if (list)
        s->transform = transform_start(session_env.sel, &job,
                                       delivery_filtered, s);
    free(list);
    return s->transform ? 0 : -1;
}

static void delivery_filter_failed(struct session *s, int err)
{
    stats.transform_failures++;
    log_error("%s:%u cannot start the filter: %s", s->ip, s->port,
              strerror(err));
    maildir_msg_abort(&s->filtered);
    maildir_msg_abort(&s->msg);
    delivery_finish(s, R_LOCAL_ERROR, NULL);
}

/* The filter's output file exists (maildir_spool.c made it off the loop). */
static void delivery_filter_opened(void *data, struct maildir_msg *msg,
                                   int error)
{
    struct session *s = data;
    s->opening = NULL;
    s->filtered = *msg;
    msg->fd = -1;
    msg->tmp_path = NULL;
    if (error || delivery_filter_start(s) < 0)
        delivery_filter_failed(s, error ? error : errno);
    session_resume(s);
}

/* The filter's output goes to a copy sharing the message's queue ID, in
 * the same tmp/, made off the loop like the message's own file. */
static void delivery_filter(struct session *s)
{
    s->opening = spool_open_start(session_env.cfg->root, delivery_spool_box(s),
                                  &s->msg, delivery_filter_opened, s);
    if (s->opening == NULL)
        delivery_filter_failed(s, errno);
    else
        session_set_state(s, ST_WAIT);
}

void delivery_end(struct session *s)
{
    if (s->too_big) {
        log_info("%s:%u message over %llu bytes refused", s->ip, s->port,
                 (unsigned long long)session_env.cfg->max_size);
        delivery_finish(s, R_TOO_BIG, NULL);
    } else if (s->write_errno) {
        delivery_finish(s, delivery_error_reply(s->write_errno), NULL);
    } else if (transform_enabled()) {
        delivery_filter(s);
    } else {
        delivery_commit(s, &s->msg);
    }
}

/* The whole message did not arrive within 10 x -T of its 354 (a client
 * trickling bytes, each read inside -T): it is dropped with its spool
 * file, and the client gets 421 4.4.2 and is closed. */
void delivery_timeout(struct session *s)
{
    log_info("%s:%u message %s not complete within %u s (%llu bytes so far), "
             "dropped, closing", s->ip, s->port, s->msg.id,
             SESSION_MESSAGE_TIMEOUTS * session_env.cfg->timeout_s,
             (unsigned long long)s->body_size);
    maildir_msg_abort(&s->msg);
    session_reset_transaction(s);
    stats.messages_failed++;
    session_reply(s, R_MESSAGE_TIMEOUT);
}

void delivery_abandon(struct session *s)
{
    spool_open_cancel(s->opening);      /* its file is removed when made */
    s->opening = NULL;
    if (s->job)
        s->job->data = NULL;    /* the committer finishes it alone */
    s->job = NULL;
    if (s->transform)
        transform_cancel(s->transform);
    s->transform = NULL;
    maildir_msg_abort(&s->msg);
    maildir_msg_abort(&s->filtered);
}

/* ---- CHUNKING: BDAT n [LAST] (RFC 3030) ------------------------------ */

/* The chunk's bytes are all in: its reply, or the end of the message. */
static void chunk_done(struct session *s)
{
    if (s->chunk_refused) {
        s->chunk_refused = false;
        session_set_state(s, s->chunk_return);
        session_reply(s, s->chunk_reply);
    } else if (s->chunk_last) {
        session_set_state(s, ST_RCPT);
        delivery_end(s);
    } else {
        session_set_state(s, ST_RCPT);
        if (s->too_big)
            session_reply(s, R_TOO_BIG);
        else if (s->write_errno)
            session_reply(s, delivery_error_reply(s->write_errno));
        else
            session_reply(s, R_CHUNK_OK, (unsigned long long)s->chunk_size);
        if (s->after_reply_close && !s->closing)
            session_reply(s, R_SHUTDOWN);
    }
}

/* A chunk of size octets that is read and thrown away, then answered
 * with id: the client sends them whatever we say (RFC 3030 2). */
static void chunk_refuse(struct session *s, uint64_t size, enum reply_id id)
{
    s->chunk_refused = true;
    s->chunk_reply = id;
    s->chunk_return = s->state;
    s->chunk_size = s->chunk_left = size;
    s->chunk_last = false;
    if (size > 0)
        (void)session_use_big_input(s);     /* faster, not needed */
    session_set_state(s, ST_CHUNK);
    if (size == 0)
        chunk_done(s);
}

/* The first chunk's spool file exists: its bytes go there. */
static void chunk_opened(void *data, struct maildir_msg *msg, int error)
{
    struct session *s = data;
    enum reply_id id = delivery_spool_ready(s, msg, error);
    session_set_state(s, ST_RCPT);
    if (id != R_OKAY) {
        chunk_refuse(s, s->chunk_size, id);
    } else {
        log_info("%s:%u message %s comes in BDAT chunks", s->ip, s->port,
                 s->msg.id);
        s->chunking = true;
        session_set_state(s, ST_CHUNK);
        if (s->chunk_left == 0)
            chunk_done(s);
    }
    session_resume(s);
}

/* Like DATA, nothing is read until the first chunk's file exists; its
 * bytes wait in the input buffer meanwhile. */
static void chunk_first(struct session *s)
{
    s->message_start = selector_now_ms();
    s->opening = spool_open_start(session_env.cfg->root, delivery_spool_box(s),
                                  NULL, chunk_opened, s);
    if (s->opening == NULL) {
        log_error("%s:%u cannot create spool file in %s: %s", s->ip, s->port,
                  s->boxes[0], strerror(errno));
        chunk_refuse(s, s->chunk_size, R_LOCAL_ERROR);
        return;
    }
    session_set_state(s, ST_WAIT);
}

void delivery_bdat(struct session *s, const struct smtp_command *cmd)
{
    struct bdat_header h;
    enum bdat_status st = cmd->has_nul ? BDAT_BAD
                          : bdat_parse(cmd->arg, cmd->arg_len, &h);
    if (st == BDAT_BAD) {       /* where its bytes end cannot be known */
        session_reply(s, R_BDAT_BAD_SIZE);
        session_close_after_flush(s);
        return;
    }
    if (st == BDAT_EMPTY_CHUNK) {
        session_reply(s, R_BAD_ARGS);
        return;
    }
    if (s->state != ST_RCPT) {
        chunk_refuse(s, h.size, s->state == ST_MAIL ? R_NEED_RCPT : R_NEED_MAIL);
        return;
    }
    s->chunk_refused = false;
    s->chunk_size = s->chunk_left = h.size;
    s->chunk_last = h.last;
    if (!s->chunking) {
        chunk_first(s);
        return;
    }
    session_set_state(s, ST_CHUNK);
    if (h.size == 0)
        chunk_done(s);
}

/* Bytes of the chunk being read: to the spool file (delivery_body keeps
 * the size limit), or dropped for a refused chunk. Returns how many of
 * the n were the chunk's; the rest is the next command. */
size_t delivery_chunk(struct session *s, const uint8_t *p, size_t n)
{
    size_t used = bdat_take(&s->chunk_left, n);
    if (!s->chunk_refused)
        delivery_body(s, p, used);
    if (s->chunk_left == 0)
        chunk_done(s);
    return used;
}
