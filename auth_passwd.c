/*
 * auth_passwd.c - reading the --passwd-file files (auth_users.c parses them) and
 * the -u users into the one table AUTH looks in; making every user's
 * mailbox. At start an error exits 2. SIGHUP rereads the files on a
 * worker thread (read, parse, new mailboxes, syncfs) and the loop swaps
 * the new table in; a bad or changing file is logged, the old table
 * stays, and the reload is tried again once a second for 10 s.
 */
#include "auth_passwd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"
#include "worker.h"

#define PASSWD_FILE_MAX (256u << 20)    /* a sanity bound, ~2 million users */
#define PASSWD_ERR_MAX 512
#define PASSWD_NOTES_MAX 2048
/* A file modified less than this long ago is looked at again after this
 * long: a writer between two writes leaves a file that reads cleanly but
 * is only half there. */
#define PASSWD_SETTLE_NS 200000000L
#define PASSWD_RETRY_MS 1000            /* a failed reload is tried again */
#define PASSWD_RETRY_FOR_MS 10000       /* ... for this long after SIGHUP */

static const struct config *passwd_cfg;
static struct userdb *passwd_db;        /* the users now */

/* Warnings found while loading: logged at once at start; collected by a
 * reload on the worker thread and logged by the loop when it is done. */
struct passwd_notes {
    char text[PASSWD_NOTES_MAX];        /* lines, each ending in '\n' */
    size_t len;
};

/* ---- one file --------------------------------------------------------- */

static int passwd_fail(char *err, const char *path, const char *why)
{
    snprintf(err, PASSWD_ERR_MAX, "%s: %s", path, why);
    return -1;
}

__attribute__((format(printf, 2, 3)))
static void passwd_note(struct passwd_notes *notes, const char *fmt, ...)
{
    char line[PASSWD_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (notes == NULL) {
        log_warn("%s", line);
        return;
    }
    int n = snprintf(notes->text + notes->len, sizeof notes->text - notes->len,
                     "%s\n", line);
    if (n > 0 && (size_t)n < sizeof notes->text - notes->len)
        notes->len += (size_t)n;
}

static bool passwd_same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && a->st_ino == b->st_ino
           && a->st_mtim.tv_sec == b->st_mtim.tv_sec
           && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Whether the file was modified within PASSWD_SETTLE_NS of now (or in
 * the future: a clock that stepped back). */
static bool passwd_fresh(const struct stat *st)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long age = ((long long)now.tv_sec - st->st_mtim.tv_sec) * 1000000000LL
                    + (now.tv_nsec - st->st_mtim.tv_nsec);
    return age < PASSWD_SETTLE_NS;
}

/* The file read so far must still be what fstat said before: same size
 * and mtime, and as many bytes read; a fresh one also a moment later. */
static int passwd_check_unchanged(int fd, const struct stat *before,
                                  size_t got, const char *path, char *err)
{
    struct stat after;
    if (fstat(fd, &after) < 0)
        return passwd_fail(err, path, strerror(errno));
    bool same = got == (size_t)before->st_size
                && passwd_same_stat(before, &after);
    if (same && passwd_fresh(&after)) {
        struct timespec pause = { 0, PASSWD_SETTLE_NS };
        while (nanosleep(&pause, &pause) < 0 && errno == EINTR)
            ;
        same = fstat(fd, &after) == 0 && passwd_same_stat(before, &after);
    }
    return same ? 0 : passwd_fail(err, path, "changed while it was read "
                                  "(being written?)");
}

/* Opens a regular file without ever blocking (a FIFO or device is
 * refused after open, which O_NONBLOCK keeps from waiting). The fd, or
 * -1 with err set. Warns about a file that group or others may read. */
static int passwd_open(const char *path, struct stat *st, char *err,
                       struct passwd_notes *notes)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, st) < 0) {
        passwd_fail(err, path, strerror(errno));
    } else if (!S_ISREG(st->st_mode)) {
        passwd_fail(err, path, "not a regular file");
    } else if (st->st_size > PASSWD_FILE_MAX) {
        passwd_fail(err, path, "file too large");
    } else {
        if (st->st_mode & (S_IRGRP | S_IROTH))
            passwd_note(notes, "%s: readable by group or others (chmod 600 "
                        "or 640 with a trusted group)", path);
        return fd;
    }
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Reads the whole file, one byte more than fstat says (to see it grow);
 * NULL with err set, also when the file changed while it was read. */
static char *passwd_slurp(const char *path, size_t *len, char *err,
                          struct passwd_notes *notes)
{
    struct stat st;
    int fd = passwd_open(path, &st, err, notes);
    if (fd < 0)
        return NULL;
    size_t want = (size_t)st.st_size + 1;
    char *text = malloc(want);
    size_t got = 0;
    ssize_t n = 1;
    while (text && got < want
           && ((n = read(fd, text + got, want - got)) > 0
               || (n < 0 && errno == EINTR)))
        got += n > 0 ? (size_t)n : 0;
    if (text == NULL || n < 0
        || passwd_check_unchanged(fd, &st, got, path, err) < 0) {
        if (text == NULL || n < 0)
            passwd_fail(err, path, text ? strerror(errno) : "out of memory");
        if (text)
            explicit_bzero(text, got);
        free(text);
        close(fd);
        return NULL;
    }
    close(fd);
    *len = got;
    return text;
}

/* Entries [from, db->n) that traditional DES (13 characters, 8 of the
 * password count) or MD5-crypt hold: both are cracked fast today. */
static void passwd_warn_weak(const struct userdb *db, size_t from,
                             const char *path, struct passwd_notes *notes)
{
    size_t des = 0, md5 = 0;
    for (size_t i = from; i < db->n; i++) {
        const char *h = db->v[i].hash;
        if (db->v[i].scheme != USERS_CRYPT)
            continue;
        des += strlen(h) == 13 && h[0] != '$';
        md5 += strncmp(h, "$1$", 3) == 0;
    }
    if (des)
        passwd_note(notes, "%s: %zu users with DES crypt passwords (only 8 "
                    "characters count); a modern hash is safer (doveadm pw "
                    "-s SHA512-CRYPT)", path, des);
    if (md5)
        passwd_note(notes, "%s: %zu users with MD5-crypt ($1$) passwords; a "
                    "modern hash is safer (doveadm pw -s SHA512-CRYPT)",
                    path, md5);
}

/* reload: an empty file or one without users is refused (a file being
 * rewritten is empty for a moment); at start it only means no users. */
static int passwd_load_file(struct userdb *db, const char *path, char *err,
                            struct passwd_notes *notes, bool reload)
{
    size_t len, line = 0;
    const char *why = NULL;
    char *text = passwd_slurp(path, &len, err, notes);
    if (text == NULL)
        return -1;
    size_t plain = db->n_plain, first = db->n;
    int rc = userdb_parse_text(db, text, len, &line, &why);
    explicit_bzero(text, len);
    free(text);
    if (rc < 0) {
        snprintf(err, PASSWD_ERR_MAX, "%s:%zu: %s", path, line, why);
        return -1;
    }
    for (size_t i = first; i < db->n; i++)
        db->v[i].file = path;       /* cfg's string: lives as long as db */
    if (reload && db->n == first)
        return passwd_fail(err, path, len == 0 ? "empty file"
                                               : "no users in the file");
    if (db->n_plain > plain)
        passwd_note(notes, "%s: %zu users with {PLAIN} passwords; a hash is "
                    "safer (doveadm pw -s SHA512-CRYPT)", path,
                    db->n_plain - plain);
    passwd_warn_weak(db, first, path, notes);
    return 0;
}

/* ---- the whole table -------------------------------------------------- */

/* "FILE:LINE: user 'x' is listed twice (also at FILE:LINE)", naming
 * the later line first; a -u user has no line ("also given with -u"). */
static void passwd_dup_error(const struct userdb *db, const char *dup,
                             char *err)
{
    const struct users_entry *a = NULL, *b = NULL;
    for (size_t i = 0; i < db->n && b == NULL; i++) {
        if (strcmp(db->v[i].name, dup) != 0)
            continue;
        if (a == NULL)
            a = &db->v[i];
        else
            b = &db->v[i];
    }
    if (b == NULL) {            /* cannot happen: finish found two */
        snprintf(err, PASSWD_ERR_MAX, "user '%s' is listed twice", dup);
        return;
    }
    /* b is the one to name: from a file if either is, the later line */
    if ((b->file == NULL && a->file != NULL) ||
        (a->file && a->file == b->file && a->line > b->line)) {
        const struct users_entry *t = a;
        a = b;
        b = t;
    }
    if (b->file == NULL)
        snprintf(err, PASSWD_ERR_MAX, "user '%s' is listed twice", dup);
    else if (a->file == NULL)
        snprintf(err, PASSWD_ERR_MAX, "%s:%zu: user '%s' is listed twice "
                 "(also given with -u)", b->file, b->line, dup);
    else
        snprintf(err, PASSWD_ERR_MAX, "%s:%zu: user '%s' is listed twice "
                 "(also at %s:%zu)", b->file, b->line, dup, a->file, a->line);
}

static struct userdb *passwd_load(const struct config *cfg, char *err,
                                  struct passwd_notes *notes, bool reload)
{
    struct userdb *db = userdb_new();
    const char *dup = NULL;
    if (db == NULL) {
        snprintf(err, PASSWD_ERR_MAX, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_users; i++) {
        const struct user *u = &cfg->users[i];
        if (userdb_add(db, u->name, strlen(u->name), u->pass,
                       strlen(u->pass), USERS_PLAIN) < 0) {
            snprintf(err, PASSWD_ERR_MAX, "out of memory");
            goto undo_db;
        }
    }
    db->n_plain = 0;            /* -u passwords are documented as plain */
    for (size_t i = 0; i < cfg->n_passwd_files; i++)
        if (passwd_load_file(db, cfg->passwd_files[i], err, notes, reload) < 0)
            goto undo_db;
    if (userdb_finish(db, &dup) < 0) {
        passwd_dup_error(db, dup, err);
        goto undo_db;
    }
    return db;

undo_db:
    userdb_free(db);
    return NULL;
}

/* Makes the mailboxes of the users not in old (all of them when old is
 * NULL), then one syncfs for all of them. 0, or -1 with err set. */
static int passwd_make_mailboxes(const struct userdb *db,
                                 const struct userdb *old, char *err)
{
    const char *root = passwd_cfg->root;
    int created = 0;
    for (size_t i = 0; i < db->n; i++) {
        const char *name = db->v[i].name;
        if (old && userdb_find(old, name))
            continue;
        if (maildir_create_unsynced(root, name, &created) < 0) {
            if (errno == ELOOP) {   /* a link: not a mailbox, not followed */
                log_warn("mailbox %s/%s is a symbolic link: not a mailbox, "
                         "nothing is delivered there", root, name);
                continue;
            }
            snprintf(err, PASSWD_ERR_MAX, "cannot create mailbox %s/%s: %s",
                     root, name, strerror(errno));
            return -1;
        }
    }
    int fd = created ? open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (created && (fd < 0 || syncfs(fd) < 0)) {
        snprintf(err, PASSWD_ERR_MAX, "cannot sync mailboxes under %s: %s",
                 root, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (fd >= 0)
        close(fd);
    return 0;
}

void passwd_start(const struct config *cfg)
{
    char err[PASSWD_ERR_MAX];
    passwd_cfg = cfg;
    passwd_db = passwd_load(cfg, err, NULL, false);
    if (passwd_db == NULL) {
        fprintf(stderr, "smtpd: %s\n", err);
        exit(2);
    }
    if (cfg->n_passwd_files)
        log_info("%zu users may log in", passwd_db->n);
}

void passwd_start_mailboxes(void)
{
    char err[PASSWD_ERR_MAX];
    if (passwd_make_mailboxes(passwd_db, NULL, err) < 0) {
        fprintf(stderr, "smtpd: %s\n", err);
        exit(2);
    }
}

/* ---- reloads: read on the worker, swapped in on the loop -------------- */

struct passwd_job {
    struct worker_job job;              /* first: the worker's link */
    const struct userdb *old;           /* read only; the loop keeps it */
    struct userdb *db;                  /* the new table, NULL on error */
    char err[PASSWD_ERR_MAX];
    struct passwd_notes notes;
};

static struct worker *passwd_worker;
static struct worker_job passwd_retry;  /* handed back later: a retry */
static bool passwd_running;             /* a job is out */
static bool passwd_again;               /* SIGHUP while it was */
static bool passwd_stopping;
static uint64_t passwd_retry_until;     /* worker_now_ms(); retries end */

/* On the worker thread: touches nothing but the job, the files and the
 * mailbox root (passwd_cfg never changes after start). */
static void passwd_job_run(struct worker_job *job)
{
    struct passwd_job *j = (struct passwd_job *)job;
    j->db = passwd_load(passwd_cfg, j->err, &j->notes, true);
    if (j->db && passwd_make_mailboxes(j->db, j->old, j->err) < 0) {
        userdb_free(j->db);
        j->db = NULL;
    }
}

static void passwd_log_notes(const struct passwd_notes *notes)
{
    const char *p = notes->text, *end = notes->text + notes->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        log_warn("%.*s", (int)(nl - p), p);
        p = nl + 1;
    }
}

static void passwd_job_done(struct worker_job *job);

static void passwd_submit(void)
{
    struct passwd_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        log_error("password files not reloaded, the old users stay: out "
                  "of memory");
        return;
    }
    j->job.run = passwd_job_run;
    j->job.done = passwd_job_done;
    j->old = passwd_db;
    passwd_running = true;
    worker_submit(passwd_worker, &j->job);
}

static void passwd_on_retry(struct worker_job *job)
{
    (void)job;
    if (!passwd_running && !passwd_stopping)
        passwd_submit();
}

/* On the loop thread: the new table goes in, or the old one stays and a
 * retry is armed while the time since the last SIGHUP allows. */
static void passwd_job_done(struct worker_job *job)
{
    struct passwd_job *j = (struct passwd_job *)job;
    passwd_running = false;
    if (passwd_stopping) {
        userdb_free(j->db);
        free(j);
        return;
    }
    passwd_log_notes(&j->notes);
    bool retry = false;
    if (j->db) {
        userdb_free(passwd_db);
        passwd_db = j->db;
        log_info("password files reloaded: %zu users may log in",
                 passwd_db->n);
    } else {
        retry = !passwd_again
                && worker_now_ms() + PASSWD_RETRY_MS <= passwd_retry_until;
        log_error("password files not reloaded, the old users stay: %s%s",
                  j->err, retry ? " (trying again in a second)" : "");
    }
    free(j);
    if (passwd_again) {
        passwd_again = false;
        passwd_submit();
    } else if (retry) {
        passwd_retry.done = passwd_on_retry;
        worker_later(passwd_worker, &passwd_retry, PASSWD_RETRY_MS);
    }
}

int passwd_init(struct selector *sel)
{
    passwd_worker = worker_new(1);
    if (passwd_worker == NULL)
        return -1;
    return worker_attach(passwd_worker, sel);
}

void passwd_shutdown(void)
{
    passwd_stopping = true;
    if (passwd_worker == NULL)
        return;
    worker_later_cancel(passwd_worker, &passwd_retry);
    worker_free(passwd_worker);         /* waits for a reload under way */
    passwd_worker = NULL;
}

void passwd_reload(void)
{
    if (passwd_cfg == NULL || passwd_cfg->n_passwd_files == 0
        || passwd_worker == NULL || passwd_stopping)
        return;
    passwd_retry_until = worker_now_ms() + PASSWD_RETRY_FOR_MS;
    if (passwd_running) {
        passwd_again = true;
        return;
    }
    worker_later_cancel(passwd_worker, &passwd_retry);
    passwd_submit();
}

const struct users_entry *passwd_find(const char *name)
{
    return userdb_find(passwd_db, name);
}

int passwd_quota(const char *name, struct quota_limit *out)
{
    const struct users_entry *e = userdb_find(passwd_db, name);
    if (e == NULL || !e->has_quota)
        return 0;
    *out = e->quota;
    return 1;
}

const char *passwd_costliest_hash(void)
{
    return passwd_db && passwd_db->costliest ? passwd_db->costliest->hash : NULL;
}

size_t passwd_count(void)
{
    return passwd_db ? passwd_db->n : 0;
}

void passwd_free(void)
{
    userdb_free(passwd_db);
    passwd_db = NULL;
}
