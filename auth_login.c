/*
 * auth_login.c - one login attempt: refused at once when its address or its
 * account is past the throttle (auth_throttle.c), else queued and checked on a
 * worker thread (crypt_r for hashes, a constant-time comparison for plain
 * passwords) while a 1 s timer runs. The queue hands a thread the waiting
 * check whose address and account are least busy (an address that logged
 * in as the user before goes first; ties in arrival order), at most
 * LOGIN_PER_ADDRESS of one address at a time, so guessers cannot keep
 * others' logins waiting.
 * A success is handed back as soon as the check is done; a failure only
 * once the delay is over too (the job waits in worker_later), so every
 * failure takes the same time whatever the hash cost. The caller hears
 * of the result through its done() callback; an attempt whose caller
 * left (login_cancel) owns itself until the check is over.
 */
#include "auth_login.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "auth_sasl.h"
#include "log.h"
#include "auth_passwd.h"
#include "stats.h"
#include "auth_throttle.h"
#include "worker.h"

#define LOGIN_NAME_MAX 256
#define LOGIN_PASS_MAX 256
#define LOGIN_MAX_THREADS 4
/* Checks handed to the threads at once, per thread: a thread finds its
 * next check waiting instead of idling for a loop turn after each one
 * (cheap checks would otherwise run one per turn), while a newcomer
 * still waits behind at most this many per thread. */
#define LOGIN_AHEAD 4
#define LOGIN_LEVELS 16                 /* queues by load at arrival */
#define LOGIN_PER_ADDRESS 2             /* checks of one address at a time */
#define LOGIN_FULL_WARN_MS (60 * 1000)  /* "table full" at most this often */

struct login {
    struct worker_job job;          /* first: the worker hands this back */
    login_done_fn done;             /* NULL once the caller has left */
    void *data;
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
    uint64_t start;                 /* worker_now_ms() at login_begin */
    unsigned level;                 /* its queue: the load when it came */
    TAILQ_ENTRY(login) link;        /* that queue's links, while waiting */
};

TAILQ_HEAD(login_list, login);

static struct worker *login_worker;
static size_t login_nthreads;
static size_t login_slots;              /* login_nthreads * LOGIN_AHEAD */
static struct login *login_running[LOGIN_MAX_THREADS * LOGIN_AHEAD];
/* Waiting checks, one FIFO per load level: picking one costs the levels
 * plus the few entries of addresses that already run their share, not a
 * walk of everything waiting (thousands, under a flood). */
static struct login_list waiting[LOGIN_LEVELS];
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

/* A free slot of the threads' share, or -1. */
static int login_free_thread(void)
{
    for (size_t i = 0; i < login_slots; i++)
        if (login_running[i] == NULL)
            return (int)i;
    return -1;
}

static unsigned login_running_from(const struct login *l)
{
    unsigned n = 0;
    for (size_t i = 0; i < login_slots; i++)
        n += login_running[i] && memcmp(login_running[i]->addr, l->addr, 16) == 0;
    return n;
}

/* Queues l by how busy its address and account are now: a trusted
 * pair at level 0, a fresh one at 1, a busy guesser further back. */
static void login_wait(struct login *l)
{
    unsigned load = l->trusted ? 0
                  : 1 + throttle_load(l->ip, l->user, worker_now_ms());
    l->level = load < LOGIN_LEVELS ? load : LOGIN_LEVELS - 1;
    TAILQ_INSERT_TAIL(&waiting[l->level], l, link);
}

/* The waiting check to run next, or NULL: of those whose address has
 * fewer than LOGIN_PER_ADDRESS running, the first of the lowest level
 * (trusted pairs, then the least busy addresses and accounts). An address
 * has at most a few checks counted at once (auth_throttle.h), so the
 * entries skipped are few. */
static struct login *login_pick(void)
{
    struct login *l;
    for (unsigned lv = 0; lv < LOGIN_LEVELS; lv++)
        TAILQ_FOREACH(l, &waiting[lv], link)
            if (login_running_from(l) < LOGIN_PER_ADDRESS)
                return l;
    return NULL;
}

/* Hands waiting checks to the idle threads. */
static void login_dispatch(void)
{
    int slot;
    struct login *l;
    while ((slot = login_free_thread()) >= 0 && (l = login_pick()) != NULL) {
        TAILQ_REMOVE(&waiting[l->level], l, link);
        login_running[slot] = l;
        worker_submit(login_worker, &l->job);
    }
}

static void login_unrun(const struct login *l)
{
    for (size_t i = 0; i < login_slots; i++)
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

/* The line fail2ban reads: keep its form stable (docs/fail2ban/). */
static void login_log_failure(const struct login *l)
{
    char safe[LOGIN_NAME_MAX * 4 + 8];
    stats.auth_failures++;
    log_warn("AUTH failed for user '%s' from %s",
             login_safe_name(safe, sizeof(safe), l->user), l->ip);
}

/* Tells the caller and forgets the attempt. */
static void login_answer(struct login *l, const char *user)
{
    l->done(l->data, user);
    login_free(l);
}

/* The delay after a failed check is over. */
static void login_on_delay(struct worker_job *job)
{
    struct login *l = (struct login *)job;
    login_log_failure(l);
    stats.auth_delayed++;
    login_answer(l, NULL);
}

static void login_on_checked(struct worker_job *job)
{
    struct login *l = (struct login *)job;
    l->checked = 1;
    login_unrun(l);
    uint64_t now = worker_now_ms(), due = l->start + LOGIN_FAIL_DELAY_MS;
    /* Counted from its start until now; a success is not a failure. */
    throttle_end(l->ip, l->user, l->ok, now);
    login_dispatch();
    if (l->done == NULL) {      /* the client left: still a failed guess */
        if (!l->ok)
            login_log_failure(l);
        login_free(l);
    } else if (l->ok) {
        login_answer(l, l->user);
    } else if (now >= due) {
        login_on_delay(&l->job);
    } else {
        l->job.done = login_on_delay;
        worker_later(login_worker, &l->job, due - now);
    }
}

/* ---- refusals --------------------------------------------------------- */

/* Every refusal is logged with the address; a full table also gets a
 * warning, at most once a minute. */
static void login_log_refusal(const char *ip, const char *user,
                              enum throttle_verdict v)
{
    char safe[LOGIN_NAME_MAX * 4 + 8];
    uint64_t now = worker_now_ms();
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
    login_slots = login_nthreads * LOGIN_AHEAD;
    for (unsigned lv = 0; lv < LOGIN_LEVELS; lv++)
        TAILQ_INIT(&waiting[lv]);
    login_worker = worker_new(login_nthreads);
    if (login_worker == NULL)
        return -1;
    return worker_attach(login_worker, sel);
}

/* Every waiting check still runs (its failure is logged for fail2ban)
 * before the threads stop. */
void login_shutdown(void)
{
    if (login_worker == NULL)
        return;
    struct login *l;
    for (unsigned lv = 0; lv < LOGIN_LEVELS; lv++)
        while ((l = TAILQ_FIRST(&waiting[lv])) != NULL) {
            TAILQ_REMOVE(&waiting[lv], l, link);
            worker_submit(login_worker, &l->job);
        }
    worker_free(login_worker);
    login_worker = NULL;
    throttle_free();
}

int login_refused(const char *ip)
{
    if (!throttle_blocked(ip, worker_now_ms()))
        return 0;
    login_log_refusal(ip, "", THROTTLE_ADDRESS);
    return 1;
}

/* A new attempt, its copies made; NULL when out of memory. */
static struct login *login_new(const char *ip, const char *user,
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
    snprintf(l->ip, sizeof(l->ip), "%s", ip);
    snprintf(l->user, sizeof(l->user), "%s", user);
    snprintf(l->pass, sizeof(l->pass), "%s", pass);
    (void)throttle_address(l->ip, l->addr);
    l->scheme = e ? e->scheme : USERS_CRYPT;
    l->known_user = e != NULL;
    l->trusted = throttle_known(l->ip, l->user);
    l->job.run = login_run;
    l->job.done = login_on_checked;
    return l;
}

struct login *login_begin(const char *ip, const char *user, const char *pass,
                          login_done_fn done, void *data)
{
    uint64_t now = worker_now_ms();
    enum throttle_verdict v = throttle_begin(ip, user, now);
    if (v != THROTTLE_GO) {
        login_log_refusal(ip, user, v);
        errno = EAGAIN;
        return NULL;
    }
    struct login *l = login_new(ip, user, pass);
    if (l == NULL) {
        throttle_end(ip, user, -1, now);    /* never ran */
        errno = ENOMEM;
        return NULL;
    }
    l->done = done;
    l->data = data;
    l->start = now;
    login_wait(l);
    login_dispatch();
    return l;
}

void login_cancel(struct login *l)
{
    if (l == NULL)
        return;
    l->done = NULL;
    if (!l->checked)
        return;     /* waiting or running: login_on_checked frees it */
    /* checked and failed: only its delay was still running */
    worker_later_cancel(login_worker, &l->job);
    login_log_failure(l);
    login_free(l);
}
