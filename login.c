/*
 * login.c - one login attempt: refused at once when its address or its
 * account is past the throttle (throttle.c), else queued and checked on a
 * worker thread (crypt_r for hashes, a constant-time comparison for plain
 * passwords) while a 1 s timer runs. The queue hands a thread the waiting
 * check whose address and account are least busy (an address that logged
 * in as the user before goes first; ties in arrival order), at most
 * LOGIN_PER_ADDRESS of one address at a time, so guessers cannot keep
 * others' logins waiting.
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
#define LOGIN_PER_ADDRESS 2             /* checks of one address at a time */
#define LOGIN_FULL_WARN_MS (60 * 1000)  /* "table full" at most this often */

struct login {
    struct worker_job job;          /* first: the worker hands this back */
    struct session *s;              /* NULL once the client has left */
    char ip[INET6_ADDRSTRLEN];      /* the client's, for throttle and log */
    uint8_t addr[16];               /* its throttle key (IPv6: the /64) */
    char user[LOGIN_NAME_MAX];      /* as the client sent it */
    char pass[LOGIN_PASS_MAX];      /* wiped once checked */
    char *hash;                     /* a copy: a reload may free the table */
    enum users_scheme scheme;
    int known_user;                 /* 0: hash is the dearest entry's */
    int trusted;                    /* ip logged in as user before */
    int ok;                         /* the check's verdict */
    int checked;                    /* the worker is done */
    int delayed;                    /* the failure delay is over */
    struct login *prev, *next;      /* the waiting list, while waiting */
    struct selector_timer timer;
};

static struct worker *login_worker;
static size_t login_nthreads;
static struct login *login_running[LOGIN_MAX_THREADS];
static struct login *waiting_head, *waiting_tail;
static uint64_t login_full_warned;      /* when "table full" was logged */

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

/* An unknown user is checked against the dearest entry's hash (or, with
 * no hashes at all, compared like a plain password), then fails. */
static void login_run(struct worker_job *job)
{
    struct login *l = (struct login *)job;
    if (l->hash == NULL)
        l->ok = auth_password_equal("smtpd-no-such-user-dummy", l->pass);
    else if (l->scheme == USERS_PLAIN)
        l->ok = auth_password_equal(l->hash, l->pass);
    else
        l->ok = login_crypt_matches(l->pass, l->hash);
    l->ok = l->ok && l->known_user;
    explicit_bzero(l->pass, sizeof(l->pass));
}

/* ---- the queue: least busy address first ------------------------------ */

static void login_wait(struct login *l)
{
    l->prev = waiting_tail;
    l->next = NULL;
    if (waiting_tail)
        waiting_tail->next = l;
    else
        waiting_head = l;
    waiting_tail = l;
}

static void login_unwait(struct login *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        waiting_head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        waiting_tail = l->prev;
    l->prev = l->next = NULL;
}

/* A free thread's slot, or -1. */
static int login_free_thread(void)
{
    for (size_t i = 0; i < login_nthreads; i++)
        if (login_running[i] == NULL)
            return (int)i;
    return -1;
}

static unsigned login_running_from(const struct login *l)
{
    unsigned n = 0;
    for (size_t i = 0; i < login_nthreads; i++)
        n += login_running[i] && memcmp(login_running[i]->addr, l->addr, 16) == 0;
    return n;
}

/* The waiting check to run next, or NULL: of those whose address has
 * fewer than LOGIN_PER_ADDRESS running, the trusted ones, then the one
 * whose address and account have the fewest failures and checks lately;
 * the first come among equals. */
static struct login *login_pick(void)
{
    struct login *best = NULL;
    unsigned best_load = 0;
    uint64_t now = selector_now_ms();
    for (struct login *l = waiting_head; l; l = l->next) {
        if (login_running_from(l) >= LOGIN_PER_ADDRESS)
            continue;
        unsigned load = l->trusted ? 0 : 1 + throttle_load(l->ip, l->user, now);
        if (best == NULL || load < best_load) {
            best = l;
            best_load = load;
        }
    }
    return best;
}

/* Hands waiting checks to the idle threads. */
static void login_dispatch(void)
{
    int slot;
    struct login *l;
    while ((slot = login_free_thread()) >= 0 && (l = login_pick()) != NULL) {
        login_unwait(l);
        login_running[slot] = l;
        worker_submit(login_worker, &l->job);
    }
}

static void login_unrun(const struct login *l)
{
    for (size_t i = 0; i < login_nthreads; i++)
        if (login_running[i] == l)
            login_running[i] = NULL;
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
    stats.auth_ok++;
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
    login_unrun(l);
    /* Counted from its start until now; a success is not a failure. */
    throttle_end(l->ip, l->user, l->ok, selector_now_ms());
    login_dispatch();
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

/* ---- refusals --------------------------------------------------------- */

/* Every refusal is logged with the address; a full table also gets a
 * warning, at most once a minute. */
static void login_log_refusal(const char *ip, const char *user,
                              enum throttle_verdict v)
{
    char safe[LOGIN_NAME_MAX * 4 + 8];
    uint64_t now = selector_now_ms();
    stats.auth_refused++;
    switch (v) {
    case THROTTLE_ACCOUNT:
        log_warn("AUTH refused from %s: too many failed logins for user '%s'",
                 ip, login_safe_name(safe, sizeof(safe), user));
        break;
    case THROTTLE_FULL:
        if (login_full_warned == 0 || now - login_full_warned >= LOGIN_FULL_WARN_MS) {
            login_full_warned = now;
            log_warn("login throttle: every entry is locked; new addresses "
                     "and names get 454 until one frees");
        }
        log_warn("AUTH refused from %s: login throttle full", ip);
        break;
    default:
        log_warn("AUTH refused from %s: too many failed logins", ip);
        break;
    }
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
    if (throttle_init(0) < 0)
        return -1;
    login_nthreads = login_threads();
    login_worker = worker_new(login_nthreads);
    if (login_worker == NULL)
        return -1;
    return selector_register(sel, worker_fd(login_worker),
                             &login_worker_handler, OP_READ, login_worker);
}

/* Every waiting check still runs (its failure is logged for fail2ban)
 * before the threads stop. */
void login_shutdown(struct selector *sel)
{
    if (login_worker == NULL)
        return;
    selector_unregister(sel, worker_fd(login_worker));
    while (waiting_head) {
        struct login *l = waiting_head;
        login_unwait(l);
        worker_submit(login_worker, &l->job);
    }
    worker_free(login_worker);
    login_worker = NULL;
    throttle_free();
}

int login_refused(const char *ip)
{
    if (!throttle_blocked(ip, selector_now_ms()))
        return 0;
    login_log_refusal(ip, "", THROTTLE_ADDRESS);
    return 1;
}

/* A new attempt for s, its copies made; NULL when out of memory. */
static struct login *login_new(struct session *s, const char *user,
                               const char *pass)
{
    struct login *l = calloc(1, sizeof(*l));
    const struct users_entry *e = passwd_find(user);
    /* Never compare a cut-off password: too long fails like a wrong one. */
    if (strlen(pass) >= sizeof(l->pass) || strlen(user) >= sizeof(l->user))
        e = NULL;
    const char *hash = e ? e->hash : passwd_costliest_hash();
    if (l == NULL || (hash && (l->hash = strdup(hash)) == NULL)) {
        free(l);
        return NULL;
    }
    snprintf(l->ip, sizeof(l->ip), "%s", s->ip);
    snprintf(l->user, sizeof(l->user), "%s", user);
    snprintf(l->pass, sizeof(l->pass), "%s", pass);
    (void)throttle_address(l->ip, l->addr);
    l->scheme = e ? e->scheme : USERS_CRYPT;
    l->known_user = e != NULL;
    l->trusted = throttle_known(l->ip, l->user);
    l->s = s;
    l->job.run = login_run;
    l->job.done = login_on_checked;
    l->timer.on_expire = login_on_delay;
    l->timer.data = l;
    return l;
}

void login_begin(struct session *s, const char *user, const char *pass)
{
    enum throttle_verdict v = throttle_begin(s->ip, user, selector_now_ms());
    if (v != THROTTLE_GO) {
        login_log_refusal(s->ip, user, v);
        session_reply(s, R_AUTH_THROTTLED);
        return;
    }
    struct login *l = login_new(s, user, pass);
    if (l == NULL) {
        throttle_end(s->ip, user, -1, selector_now_ms());  /* never ran */
        session_reply(s, R_LOCAL_ERROR);
        return;
    }
    s->login = l;
    selector_timer_set(session_env.sel, &l->timer, LOGIN_FAIL_DELAY_MS);
    login_wait(l);
    login_dispatch();
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
    /* else (waiting or running) it is still checked: login_on_checked
     * logs a failure and frees it */
}
