/*
 * maildir_quota.c - mailbox quotas, Maildir++ style: the maildirsize
 * file at each limited mailbox's top (on the committer's thread, or at
 * start before clients are served), and the usage cached per mailbox
 * with the transactions open to it, which RCPT asks on the loop thread
 * in memory only; when a mailbox must be read first, the RCPTs waiting
 * for that read.
 */
#include "maildir_quota.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"

#define QUOTA_FILE "maildirsize"
#define QUOTA_FILE_TMP "maildirsize.smtpd"
#define QUOTA_FILE_MAX 5120     /* past this, recalculated (Maildir++) */

/* ---- maildirsize ------------------------------------------------------ */

/* The size a message file counts for: its name's S=, else st_size. */
static int64_t quota_file_size(int dir, const char *name)
{
    const char *s = strstr(name, ",S=");
    if (s) {
        char *end;
        unsigned long long v = strtoull(s + 3, &end, 10);
        if (end != s + 3 && (*end == '\0' || *end == ',' || *end == ':'))
            return (int64_t)v;
    }
    struct stat st;
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return -1;
    return (int64_t)st.st_size;
}

/* Adds the files of box/sub (sub "new" or "cur") to *u. */
static int quota_count_dir(int box, const char *sub, struct quota_usage *u)
{
    int fd = openat(box, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int64_t sz = quota_file_size(fd, e->d_name);
        if (sz < 0)
            continue;
        u->bytes += sz;
        u->count++;
    }
    closedir(d);
    return 0;
}

/* The usage of the mailbox top (descriptor) and its Maildir++ folders. */
static int quota_recount(int top, struct quota_usage *u)
{
    *u = (struct quota_usage){ 0, 0 };
    if (quota_count_dir(top, "new", u) < 0 || quota_count_dir(top, "cur", u) < 0)
        return -1;
    int fd = dup(top);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' || strcmp(e->d_name, ".") == 0
            || strcmp(e->d_name, "..") == 0)
            continue;
        int f = openat(top, e->d_name,
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (f < 0)
            continue;
        quota_count_dir(f, "new", u);
        quota_count_dir(f, "cur", u);
        close(f);
    }
    closedir(d);
    return 0;
}

static int quota_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Rewrites maildirsize from the files: limit line, one total line. */
static int quota_rewrite(int top, const char *limit_line, bool sync,
                         struct quota_usage *u)
{
    char text[160];
    if (quota_recount(top, u) < 0)
        return -1;
    int n = snprintf(text, sizeof text, "%s%" PRId64 " %" PRId64 "\n",
                     limit_line, u->bytes, u->count);
    int fd = openat(top, QUOTA_FILE_TMP,
                    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    if (quota_write_all(fd, text, (size_t)n) < 0 || (sync && fsync(fd) < 0)) {
        int saved = errno;
        close(fd);
        unlinkat(top, QUOTA_FILE_TMP, 0);
        errno = saved;
        return -1;
    }
    if (close(fd) < 0 || renameat(top, QUOTA_FILE_TMP, top, QUOTA_FILE) < 0)
        return -1;
    return sync ? fsync(top) : 0;
}

/* Sums an existing maildirsize whose first line is limit_line; -1 when it
 * is not one (then it is rewritten). */
static int quota_sum(const char *text, size_t len, const char *limit_line,
                     struct quota_usage *u)
{
    size_t ll = strlen(limit_line);
    if (len < ll || memcmp(text, limit_line, ll) != 0 || text[len - 1] != '\n')
        return -1;
    *u = (struct quota_usage){ 0, 0 };
    for (size_t pos = ll; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        char line[64];
        size_t n = (size_t)(nl - text) - pos;
        long long b, c;
        char extra;
        if (n == 0 || n >= sizeof line)
            return -1;
        memcpy(line, text + pos, n);
        line[n] = '\0';
        if (sscanf(line, "%lld %lld%c", &b, &c, &extra) != 2)
            return -1;
        u->bytes += b;
        u->count += c;
        pos += n + 1;
    }
    return 0;
}

int quota_file_update(const char *root, const char *top,
                      const struct quota_limit *lim, uint64_t add, bool sync,
                      struct quota_usage *out)
{
    char limit_line[64], text[QUOTA_FILE_MAX + 1], line[48];
    if (quota_limit_line(lim, limit_line, sizeof limit_line) == 0) {
        errno = EINVAL;
        return -1;
    }
    int dir = maildir_open_dir(root, top, NULL);
    if (dir < 0)
        return -1;
    int rc = -1;
    size_t len = 0;
    int fd = openat(dir, QUOTA_FILE,
                    O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    int ok = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
             && st.st_size <= QUOTA_FILE_MAX;
    if (ok) {
        ssize_t r;
        while (len < sizeof text
               && ((r = read(fd, text + len, sizeof text - len)) > 0
                   || (r < 0 && errno == EINTR)))
            len += r > 0 ? (size_t)r : 0;
        ok = len <= QUOTA_FILE_MAX && quota_sum(text, len, limit_line, out) == 0;
    }
    int n = snprintf(line, sizeof line, "%" PRIu64 " 1\n", add);
    if (ok && add > 0 && len + (size_t)n > QUOTA_FILE_MAX)
        ok = 0;                         /* it would grow past: recalculate */
    if (ok && add > 0) {
        ok = quota_write_all(fd, line, (size_t)n) == 0
             && (!sync || fsync(fd) == 0);
        out->bytes += (int64_t)add;
        out->count++;
    }
    if (ok)
        rc = 0;
    else
        rc = quota_rewrite(dir, limit_line, sync, out);
    int saved = errno;
    if (fd >= 0)
        close(fd);
    close(dir);
    errno = saved;
    return rc;
}

/* ---- the cache -------------------------------------------------------- */

struct quota_box {
    char name[MAILDIR_NAME_MAX + 1];
    bool known;                 /* usage read from maildirsize */
    bool reading;               /* a read is under way (quota_read_back) */
    struct quota_usage used;
    uint64_t holds;             /* transactions open to it */
    uint64_t held_bytes;        /* the SIZE= they declared */
    double read_at;             /* when last asked or read (monotonic s) */
};

/* A session waiting for a mailbox's read (RCPT's QUOTA_READ). */
struct quota_wait {
    char top[MAILDIR_NAME_MAX + 1];
    void (*ready)(void *data);
    void *data;
    bool due;                   /* its read is back: ready() runs now */
    struct quota_wait *next;
};

static struct {
    struct quota_limit dflt;
    quota_user_fn user;
    quota_refresh_fn refresh;
    struct quota_box *v;        /* sorted by name */
    size_t n, cap;
    struct quota_wait *waits;   /* few: only RCPTs waiting for a read */
} quota;

void quota_setup(const struct quota_limit *dflt, quota_user_fn user,
                 quota_refresh_fn refresh)
{
    quota.dflt = dflt ? *dflt : (struct quota_limit){ 0, 0 };
    quota.user = user;
    quota.refresh = refresh;
}

struct quota_limit quota_limit_of(const char *top)
{
    struct quota_limit l;
    if (quota.user && quota.user(top, &l) == 1)
        return l;
    return quota.dflt;
}

void quota_top(const char *box, char *dst, size_t size)
{
    snprintf(dst, size, "%.*s", (int)strcspn(box, "/"), box);
}

static struct quota_box *quota_find(const char *name, bool create)
{
    size_t lo = 0, hi = quota.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(quota.v[mid].name, name);
        if (c == 0)
            return &quota.v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!create)
        return NULL;
    if (quota.n == quota.cap) {
        size_t cap = quota.cap ? quota.cap * 2 : 16;
        struct quota_box *v = realloc(quota.v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        quota.v = v;
        quota.cap = cap;
    }
    memmove(&quota.v[lo + 1], &quota.v[lo], (quota.n - lo) * sizeof *quota.v);
    quota.n++;
    struct quota_box *b = &quota.v[lo];
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    return b;
}

int quota_load(const char *root)
{
    int total = maildir_find_prefix(root, "", NULL, 0);
    if (total <= 0)
        return total;
    char (*names)[MAILDIR_NAME_MAX + 1] = calloc((size_t)total, sizeof *names);
    if (names == NULL)
        return -1;
    int n = maildir_find_prefix(root, "", names, (size_t)total);
    for (int i = 0; i < n && i < total; i++) {
        struct quota_limit lim = quota_limit_of(names[i]);
        struct quota_usage u;
        if (lim.bytes == 0 && lim.count == 0)
            continue;
        if (quota_file_update(root, names[i], &lim, 0, true, &u) < 0) {
            log_warn("quota: %s/%s/maildirsize: %s", root, names[i],
                     strerror(errno));
            continue;
        }
        quota_delivered(names[i], &u);
    }
    free(names);
    return n < 0 ? -1 : 0;
}

void quota_delivered(const char *top, const struct quota_usage *u)
{
    struct quota_box *b = quota_find(top, true);
    if (b == NULL)
        return;
    b->known = true;
    b->used = *u;
}

static double quota_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The waits on top run one by one, each unlinked and freed before its
 * ready(): a ready() may start another RCPT, and so another wait, which
 * waits for the next read. */
static void quota_wake(const char *top)
{
    for (struct quota_wait *w = quota.waits; w; w = w->next)
        w->due = strcmp(w->top, top) == 0;
    for (;;) {
        struct quota_wait **p = &quota.waits;
        while (*p && !(*p)->due)
            p = &(*p)->next;
        struct quota_wait *w = *p;
        if (w == NULL)
            return;
        *p = w->next;
        void (*ready)(void *) = w->ready;
        void *data = w->data;
        free(w);
        ready(data);
    }
}

void quota_read_back(const char *top, const struct quota_usage *u)
{
    struct quota_box *b = quota_find(top, true);
    if (b) {
        b->reading = false;
        b->read_at = quota_now();   /* the next read a second after this */
        if (u) {
            b->known = true;
            b->used = *u;
        }
    }
    quota_wake(top);
}

struct quota_wait *quota_wait(const char *top, void (*ready)(void *data),
                              void *data)
{
    struct quota_wait *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    snprintf(w->top, sizeof w->top, "%s", top);
    w->ready = ready;
    w->data = data;
    w->next = quota.waits;
    quota.waits = w;
    return w;
}

void quota_wait_cancel(struct quota_wait *w)
{
    for (struct quota_wait **p = &quota.waits; w && *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            free(w);
            return;
        }
}

/* Whether top is among the mailboxes of v[0..n). */
static bool quota_among(char *const *v, size_t n, const char *top)
{
    char t[MAILDIR_NAME_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        quota_top(v[i], t, sizeof t);
        if (strcmp(t, top) == 0)
            return true;
    }
    return false;
}

/* Asks for b's maildirsize to be read, once a second at most: true when
 * the read is under way. */
static bool quota_read(struct quota_box *b, const struct quota_limit *lim)
{
    double now = quota_now();
    if (quota.refresh == NULL || (b->read_at != 0 && now - b->read_at < 1.0))
        return false;
    b->read_at = now;
    if (quota.refresh(b->name, lim) < 0)
        return false;
    b->reading = true;
    return true;
}

/* The verdict from the usage in memory. The room is what the limit
 * leaves once the SIZE= of the transactions open to the mailbox is
 * counted as on its way. */
static enum quota_verdict quota_measure(const struct quota_box *b,
                                        const struct quota_limit *lim,
                                        bool has_size, uint64_t size,
                                        uint64_t max_size)
{
    uint64_t used = b->used.bytes > 0 ? (uint64_t)b->used.bytes : 0;
    uint64_t count = b->used.count > 0 ? (uint64_t)b->used.count : 0;
    if ((lim->bytes && used >= lim->bytes) || (lim->count && count >= lim->count))
        return QUOTA_FULL;
    uint64_t room = lim->bytes ? lim->bytes - used : UINT64_MAX;
    room = room > b->held_bytes ? room - b->held_bytes : 0;
    if (has_size && lim->bytes && size > room)
        return QUOTA_FULL;
    if (b->holds == 0)
        return QUOTA_OK;
    if (lim->count && count + b->holds >= lim->count)
        return QUOTA_BUSY;
    if (!has_size && lim->bytes && room <= max_size)
        return QUOTA_BUSY;
    return QUOTA_OK;
}

/* A mailbox not counted yet is read first; one found full is read again
 * (a message may have been expunged since), unless the SIZE= alone is
 * over its limit. An RCPT waits for either read. */
static enum quota_verdict quota_judge(const char *top, bool has_size,
                                      uint64_t size, uint64_t max_size)
{
    struct quota_limit lim = quota_limit_of(top);
    if (lim.bytes == 0 && lim.count == 0)
        return QUOTA_OK;
    struct quota_box *b = quota_find(top, true);
    if (b == NULL)
        return QUOTA_OK;            /* out of memory: left unchecked */
    if (b->reading)
        return QUOTA_READ;
    if (!b->known)
        return quota_read(b, &lim) ? QUOTA_READ : QUOTA_OK;
    enum quota_verdict v = quota_measure(b, &lim, has_size, size, max_size);
    bool hopeless = has_size && lim.bytes && size > lim.bytes;
    if (v == QUOTA_FULL && !hopeless && quota_read(b, &lim))
        return QUOTA_READ;
    return v;
}

enum quota_verdict quota_hold(char *const *held, size_t nheld,
                              char *const *dests, size_t n,
                              bool has_size, uint64_t size, uint64_t max_size,
                              char *wait, size_t wait_size)
{
    char top[MAILDIR_NAME_MAX + 1];
    enum quota_verdict worst = QUOTA_OK;
    for (size_t i = 0; i < n; i++) {
        quota_top(dests[i], top, sizeof top);
        if (quota_among(held, nheld, top))
            continue;
        enum quota_verdict v = quota_judge(top, has_size, size, max_size);
        if (v == QUOTA_FULL)
            return QUOTA_FULL;      /* no need to wait for the others */
        if (v == QUOTA_READ && worst != QUOTA_READ)
            snprintf(wait, wait_size, "%s", top);
        if (v == QUOTA_READ || (v == QUOTA_BUSY && worst == QUOTA_OK))
            worst = v;
    }
    if (worst != QUOTA_OK)
        return worst;
    for (size_t i = 0; i < n; i++) {
        quota_top(dests[i], top, sizeof top);
        if (quota_among(held, nheld, top) || quota_among(dests, i, top))
            continue;
        struct quota_box *b = quota_find(top, true);
        if (b) {
            b->holds++;
            b->held_bytes += has_size ? size : 0;
        }
    }
    return QUOTA_OK;
}

void quota_release(char *const *boxes, size_t n, bool has_size,
                   uint64_t size)
{
    char top[MAILDIR_NAME_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        quota_top(boxes[i], top, sizeof top);
        if (quota_among(boxes, i, top))
            continue;
        struct quota_box *b = quota_find(top, false);
        if (b == NULL || b->holds == 0)
            continue;
        b->holds--;
        uint64_t sz = has_size ? size : 0;
        b->held_bytes -= sz < b->held_bytes ? sz : b->held_bytes;
    }
}

void quota_free(void)
{
    while (quota.waits)
        quota_wait_cancel(quota.waits);
    free(quota.v);
    memset(&quota, 0, sizeof quota);
}
