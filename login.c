/*
 * login.c - one login attempt: refused at once when its address has failed
 * too often, else checked on a worker thread (crypt_r for hashes, a
 * constant-time comparison for plain passwords) while a 1 s timer runs.
 * A success is answered as soon as the check is done; a failure only once
 * both are, so every failure takes the same time whatever the hash cost.
 * The attempt owns itself: a session that goes away only unhooks itself.
 */
#include "login.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "log.h"
#include "passwd.h"
#include "session.h"
#include "stats.h"
#include "throttle.h"
#include "worker.h"

#define LOGIN_NAME_MAX 256
#define LOGIN_PASS_MAX 256
#define LOGIN_MAX_THREADS 4

struct login {
    struct worker_job job;          /* first: the worker hands this back */
    struct session *s;              /* NULL once the client has left */
    char ip[INET6_ADDRSTRLEN];      /* the client's, for throttle and log */
    char user[LOGIN_NAME_MAX];      /* as the client sent it */
    char pass[LOGIN_PASS_MAX];      /* wiped once checked */
    char *hash;                     /* a copy: a reload may free the table */
    enum users_scheme scheme;
    int ok;                         /* the check's verdict */
    int checked;                    /* the worker is done */
    int delayed;                    /* the failure delay is over */
    struct selector_timer timer;
};

static struct worker *login_worker;

static void login_free(struct login *l)
{
    explicit_bzero(l->pass, sizeof(l->pass));
    if (l->hash) {
        explicit_bzero(l->hash, strlen(l->hash));
        free(l->hash);
    }
    free(l);
}

/* ---- on the worker thread --------------------------------------------- */

static int login_crypt_matches(const char *pass, const char *hash)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (cd == NULL)
        return 0;
    const char *out = crypt_r(pass, hash, cd);
    /* crypt_r says "*0"/"*1" (or NULL) on errors: never equal to a hash. */
    int same = out != NULL && out[0] != '*'
               && auth_password_equal(out, hash);
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return same;
}

static void login_run(struct worker_job *job)
{
    struct login *l = (struct login *)job;
    if (l->hash == NULL) {      /* no such user: the work of a wrong one */
        (void)auth_password_equal("smtpd-no-such-user-dummy", l->pass);
        l->ok = 0;
    } else if (l->scheme == USERS_PLAIN) {
        l->ok = auth_password_equal(l->hash, l->pass);
    } else {
        l->ok = login_crypt_matches(l->pass, l->hash);
    }
    explicit_bzero(l->pass, sizeof(l->pass));
}

/* ---- back on the loop thread ------------------------------------------ */

/* The user name for the log: printable ASCII, and a quote cannot end the
 * quoted name early (fail2ban reads these lines). */
static char *login_safe_name(char *dst, size_t len, const char *user)
{
    char tmp[LOGIN_NAME_MAX];
    size_t o = 0;
    for (const char *p = user; *p && o + 2 < sizeof(tmp); p++)
        tmp[o++] = *p == '\'' ? '?' : *p;
    tmp[o] = '\0';
    return log_escape(dst, len, tmp);
}

/* Replies, forgets the attempt, and reads what the client sent since. */
static void login_reply(struct login *l, enum reply_id id)
{
    struct session *s = l->s;
    selector_timer_cancel(session_env.sel, &l->timer);
    s->login = NULL;
    login_free(l);
    if (s->closing)             /* shutting down: its 421 is on the way */
        return;
    session_reply(s, id);
    session_resume(s);          /* may free s */
}

static void login_succeeded(struct login *l)
{
    struct session *s = l->s;
    s->auth_user = strdup(l->user);
    if (s->auth_user == NULL) {
        login_reply(l, R_LOCAL_ERROR);
        return;
    }
    for (char *p = s->auth_user; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    log_info("%s:%u authenticated as %s", s->ip, s->port, s->auth_user);
    login_reply(l, R_AUTH_OK);
}

/* The line fail2ban reads: keep its form stable (docs/fail2ban/). */
static void login_log_failure(const struct login *l)
{
    char safe[LOGIN_NAME_MAX * 4 + 8];
    stats.auth_failures++;
    log_warn("AUTH failed for user '%s' from %s",
             login_safe_name(safe, sizeof(safe), l->user), l->ip);
}

static void login_failed(struct login *l)
{
    login_log_failure(l);
    stats.auth_delayed++;
    login_reply(l, R_AUTH_FAILED);
}

static void login_on_checked(struct worker_job *job)
{
    struct login *l = (struct login *)job;
    l->checked = 1;
    /* Counted as soon as it is known, not after the delay, so that many
     * connections from one address cannot all slip in under the limit. */
    if (!l->ok)
        throttle_fail(l->ip, selector_now_ms());
    if (l->s == NULL) {         /* the client left: still a failed guess */
        if (!l->ok)
            login_log_failure(l);
        login_free(l);
    } else if (l->ok)
        login_succeeded(l);
    else if (l->delayed)
        login_failed(l);
    /* else the timer answers */
}

static void login_on_delay(struct selector *sel, void *data)
{
    struct login *l = data;
    (void)sel;
    l->delayed = 1;
    if (l->checked)
        login_failed(l);
}

/* ---- public ----------------------------------------------------------- */

static void login_on_worker(struct selector_key *key)
{
    worker_collect(key->data);
}

static const struct fd_handler login_worker_handler = {
    .on_read = login_on_worker,
};

/* One thread fewer than the cores, so the loop keeps one; at most 4. */
static size_t login_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 2)
        return 1;
    return n - 1 > LOGIN_MAX_THREADS ? LOGIN_MAX_THREADS : (size_t)(n - 1);
}

int login_init(struct selector *sel)
{
    if (throttle_init() < 0)
        return -1;
    login_worker = worker_new(login_threads());
    if (login_worker == NULL)
        return -1;
    return selector_register(sel, worker_fd(login_worker),
                             &login_worker_handler, OP_READ, login_worker);
}

void login_shutdown(struct selector *sel)
{
    if (login_worker == NULL)
        return;
    selector_unregister(sel, worker_fd(login_worker));
    worker_free(login_worker);
    login_worker = NULL;
    throttle_free();
}

int login_refused(const char *ip)
{
    if (!throttle_blocked(ip, selector_now_ms()))
        return 0;
    stats.auth_refused++;
    log_warn("AUTH refused from %s: too many failed logins", ip);
    return 1;
}

void login_begin(struct session *s, const char *user, const char *pass)
{
    if (login_refused(s->ip)) {
        session_reply(s, R_AUTH_THROTTLED);
        return;
    }
    struct login *l = calloc(1, sizeof(*l));
    const struct users_entry *e = passwd_find(user);
    /* Never compare a cut-off password: too long fails like a wrong one. */
    if (strlen(pass) >= sizeof(l->pass) || strlen(user) >= sizeof(l->user))
        e = NULL;
    if (l == NULL || (e && (l->hash = strdup(e->hash)) == NULL)) {
        free(l);
        session_reply(s, R_LOCAL_ERROR);
        return;
    }
    snprintf(l->ip, sizeof(l->ip), "%s", s->ip);
    snprintf(l->user, sizeof(l->user), "%s", user);
    snprintf(l->pass, sizeof(l->pass), "%s", pass);
    l->scheme = e ? e->scheme : USERS_PLAIN;
    l->s = s;
    l->job.run = login_run;
    l->job.done = login_on_checked;
    l->timer.on_expire = login_on_delay;
    l->timer.data = l;
    s->login = l;
    selector_timer_set(session_env.sel, &l->timer, LOGIN_FAIL_DELAY_MS);
    worker_submit(login_worker, &l->job);
}

void login_abandon(struct session *s)
{
    struct login *l = s->login;
    if (l == NULL)
        return;
    s->login = NULL;
    l->s = NULL;
    selector_timer_cancel(session_env.sel, &l->timer);
    if (l->checked && !l->ok)
        login_log_failure(l);   /* known, only its 535 was still waiting */
    if (l->checked)
        login_free(l);
    /* else login_on_checked logs it and frees it when the worker hands it
     * back */
}
