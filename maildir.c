/*
 * maildir.c - mailboxes under the root, and one message's spool file in a
 * Maildir tmp/: unique names, exclusive create, writes, abort. Making the
 * file durable and linking it into new/ is maildir_commit.c's job.
 * Returns 0, or -1 with errno set. Never exits.
 */
#include "maildir.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Our host name as the Maildir convention wants it: '/' and ':' would
 * break the name (a path separator, the info separator), so they are
 * written as octal escapes. Worst case every byte takes 4. */
static char maildir_host[4 * 64 + 1];
static pthread_once_t maildir_host_once = PTHREAD_ONCE_INIT;

/* Deliveries made by this process; with the pid and the microsecond it
 * makes every name unique on this host. */
static atomic_ullong maildir_counter;

/* ---- small helpers ---------------------------------------------------- */

static int maildir_path(char *dst, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* snprintf that refuses to truncate: a cut path would name another file. */
static int maildir_path(char *dst, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* The local-part rule, checked again here so that no caller mistake
 * can make us touch a path outside root ('/', "..", a leading dot).
 * lower_only: mailbox directories are always lowercase. */
static int maildir_name_ok(const char *s, int lower_only)
{
    size_t len = strlen(s);
    if (len == 0 || len > MAILDIR_NAME_MAX || s[0] == '.' || s[len - 1] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.' && s[i + 1] == '.')
            return 0;
        if (lower_only && isupper(ch))
            return 0;
        if (ch >= 0x80)     /* UTF-8, checked as characters by parser.c */
            continue;
        if (!isalnum(ch) && !strchr("._+-", ch))
            return 0;
    }
    return 1;
}

/* close() that keeps the errno of the step that failed before it. */
static void maildir_close_keep(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

/* fd of dir/name when it is a real directory: never through a link
 * (ELOOP, where Linux says ENOTDIR for O_DIRECTORY). -1 with errno. */
static int maildir_open_at(int dir, const char *name)
{
    struct stat st;
    int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOTDIR &&
        fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        errno = ELOOP;
    return fd;
}

/* A Maildir++ folder's directory: "." and 1-64 of [A-Za-z0-9_-]. */
static int maildir_folder_ok(const char *f)
{
    size_t len = strlen(f);
    if (len < 2 || len > MAILDIR_NAME_MAX + 1 || f[0] != '.')
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!isalnum((unsigned char)f[i]) && f[i] != '_' && f[i] != '-')
            return 0;
    return 1;
}

/* root was resolved once at start (it may itself be a link); below it,
 * every component is opened with O_NOFOLLOW, so a mailbox, tmp/ or new/
 * that is a link is refused rather than followed out of root. */
int maildir_open_dir(const char *root, const char *box, const char *sub)
{
    char name[MAILDIR_NAME_MAX + 1];
    const char *slash = strchr(box, '/'), *folder = slash ? slash + 1 : NULL;
    size_t len = slash ? (size_t)(slash - box) : strlen(box);
    if (len == 0 || len > MAILDIR_NAME_MAX || box[0] == '.' ||
        (folder && !maildir_folder_ok(folder)) ||
        (sub && (sub[0] == '\0' || sub[0] == '.' || strchr(sub, '/')))) {
        errno = EINVAL;             /* never a path out of root */
        return -1;
    }
    memcpy(name, box, len);
    name[len] = '\0';
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return -1;
    int fd = maildir_open_at(rfd, name);
    maildir_close_keep(rfd);
    if (fd >= 0 && folder) {
        int ffd = maildir_open_at(fd, folder);
        maildir_close_keep(fd);
        fd = ffd;
    }
    if (fd < 0 || sub == NULL)
        return fd;
    int sfd = maildir_open_at(fd, sub);
    maildir_close_keep(fd);
    return sfd;
}

/* 1 when dir/name is a directory itself, not a link to one. */
static int maildir_is_dir_at(int dir, const char *name)
{
    struct stat st;
    return fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISDIR(st.st_mode);
}

/* mkdir that accepts an existing directory; *created tells which. */
static int maildir_mkdir(const char *path, int *created)
{
    struct stat st;
    if (mkdir(path, 0700) == 0) {
        *created = 1;
        return 0;
    }
    if (errno != EEXIST)
        return -1;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* The same below root, relative to dir: a link is not a directory of
 * ours, even when it points at one (ELOOP). */
static int maildir_mkdir_at(int dir, const char *name, int *created)
{
    struct stat st;
    if (mkdirat(dir, name, 0700) == 0) {
        *created = 1;
        return 0;
    }
    if (errno != EEXIST || fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
        return -1;
    }
    return 0;
}

/* ---- mailboxes -------------------------------------------------------- */

/* Creates every missing component, like mkdir -p, so "-f a/b/mail" works. */
int maildir_root_init(const char *root)
{
    char path[PATH_MAX];
    int created = 0;
    if (root[0] == '\0') {
        errno = ENOENT;
        return -1;
    }
    if (maildir_path(path, sizeof path, "%s", root) < 0)
        return -1;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = maildir_mkdir(path, &created);
        *p = '/';
        if (rc < 0)
            return -1;
    }
    if (maildir_mkdir(path, &created) < 0)
        return -1;
    /* Fail now, with a clear errno, rather than at the first delivery. */
    return access(path, W_OK | X_OK);
}

/* Makes root/name/{tmp,new,cur} through descriptors; with sync, the new
 * entries are made durable (the box, then root). */
static int maildir_create_in(const char *root, const char *name, int *created,
                             int sync)
{
    static const char *const subdirs[] = { "tmp", "new", "cur" };
    int made = 0, rc = -1;

    if (!maildir_name_ok(name, 1)) {
        errno = EINVAL;
        return -1;
    }
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return -1;
    int box = -1;
    if (maildir_mkdir_at(rfd, name, &made) < 0 ||
        (box = maildir_open_at(rfd, name)) < 0)
        goto out;
    for (size_t i = 0; i < 3; i++)
        if (maildir_mkdir_at(box, subdirs[i], &made) < 0)
            goto out;
    /* A mailbox made for a user must survive a crash like its mail does. */
    if (sync && made && (fsync(box) < 0 || fsync(rfd) < 0))
        goto out;
    rc = 0;
out:
    if (box >= 0)
        maildir_close_keep(box);
    maildir_close_keep(rfd);
    if (made)
        *created = 1;
    return rc;
}

int maildir_create_unsynced(const char *root, const char *name, int *created)
{
    return maildir_create_in(root, name, created, 0);
}

int maildir_create(const char *root, const char *name)
{
    int created = 0;
    return maildir_create_in(root, name, &created, 1);
}

int maildir_exists(const char *root, const char *name)
{
    static const char *const subdirs[] = { "tmp", "new", "cur" };

    if (!maildir_name_ok(name, 0))
        return 0;
    int box = maildir_open_dir(root, name, NULL);
    if (box < 0)
        return 0;
    int ok = 1;
    for (size_t i = 0; i < 3 && ok; i++)
        ok = maildir_is_dir_at(box, subdirs[i]);
    close(box);
    return ok;
}

int maildir_folder_exists(const char *root, const char *name,
                          const char *folder)
{
    static const char *const subdirs[] = { "tmp", "new", "cur" };
    char box[2 * MAILDIR_NAME_MAX + 4];

    if (!maildir_name_ok(name, 0) || maildir_path(box, sizeof box, "%s/%s",
                                                  name, folder) < 0)
        return 0;
    int fd = maildir_open_dir(root, box, NULL);
    if (fd < 0)
        return 0;
    int ok = 1;
    for (size_t i = 0; i < 3 && ok; i++)
        ok = maildir_is_dir_at(fd, subdirs[i]);
    close(fd);
    return ok;
}

static DIR *maildir_opendir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    DIR *d = fdopendir(fd);
    if (!d) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return d;
}

static int maildir_cmp_names(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Adds name to names[0..*n), at most max, the smallest in strcmp order
 * winning: appended while there is room, sorted once (*sorted) when it
 * runs out or at the end (100,000 mailboxes read whole must not cost an
 * insertion sort); past max, one that sorts first replaces the largest. */
static void maildir_keep_name(char names[][MAILDIR_NAME_MAX + 1], size_t *n,
                              size_t max, bool *sorted, const char *name)
{
    if (*n < max) {
        memcpy(names[(*n)++], name, strlen(name) + 1);
        return;
    }
    if (max == 0)
        return;
    if (!*sorted) {
        qsort(names, *n, sizeof names[0], maildir_cmp_names);
        *sorted = true;
    }
    size_t i = max - 1;
    if (strcmp(name, names[i]) >= 0)
        return;
    for (; i > 0 && strcmp(names[i - 1], name) > 0; i--)
        memcpy(names[i], names[i - 1], MAILDIR_NAME_MAX + 1);
    memcpy(names[i], name, strlen(name) + 1);
}

int maildir_find_prefix(const char *root, const char *prefix,
                        char names[][MAILDIR_NAME_MAX + 1], size_t max)
{
    char low[MAILDIR_NAME_MAX + 1];
    size_t plen = strlen(prefix), kept = 0;
    bool sorted = false;
    int found = 0;

    if (plen > MAILDIR_NAME_MAX)
        return 0;                     /* no mailbox name is that long */
    for (size_t i = 0; i <= plen; i++)
        low[i] = (char)tolower((unsigned char)prefix[i]);
    DIR *d = maildir_opendir(root);
    if (!d)
        return -1;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e)
            break;
        if (strncmp(e->d_name, low, plen) != 0 ||
            !maildir_name_ok(e->d_name, 1) || !maildir_exists(root, e->d_name))
            continue;
        found++;
        maildir_keep_name(names, &kept, max, &sorted, e->d_name);
    }
    int saved = errno;
    if (!sorted && kept > 1)
        qsort(names, kept, sizeof names[0], maildir_cmp_names);
    closedir(d);
    errno = saved;
    return saved ? -1 : found;
}

/* Removes the old regular files of one box's tmp/; how many, or -1. */
static int maildir_clean_box(int root_fd, const char *box, time_t now,
                             time_t max_age)
{
    int removed = 0;
    int bfd = maildir_open_at(root_fd, box);
    if (bfd < 0)
        return -1;
    int fd = maildir_open_at(bfd, "tmp");
    close(bfd);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && now - st.st_mtime > max_age &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

/* Stale spool files come from a crash between create and commit (or
 * between commit and the final tmp unlink): never from a live session,
 * as long as max_age is longer than any session may last. */
int maildir_clean_tmp(const char *root, time_t max_age)
{
    DIR *d = maildir_opendir(root);
    if (!d)
        return -1;
    time_t now = time(NULL);
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!maildir_name_ok(e->d_name, 1))
            continue;
        int n = maildir_clean_box(dirfd(d), e->d_name, now, max_age);
        if (n > 0)
            removed += n;
    }
    closedir(d);
    return removed;
}

/* ---- one message ------------------------------------------------------ */

static void maildir_host_init(void)
{
    char raw[256] = "";
    char *out = maildir_host;

    if (gethostname(raw, sizeof raw - 1) < 0 || raw[0] == '\0')
        strcpy(raw, "localhost");
    raw[sizeof raw - 1] = '\0';
    for (const char *p = raw; *p && out < maildir_host + sizeof maildir_host - 5; p++) {
        if (*p == '/') {
            memcpy(out, "\\057", 4);
            out += 4;
        } else if (*p == ':') {
            memcpy(out, "\\072", 4);
            out += 4;
        } else {
            *out++ = *p;
        }
    }
    *out = '\0';
}

const char *maildir_hostname(void)
{
    pthread_once(&maildir_host_once, maildir_host_init);
    return maildir_host;
}

/* Per process, drawn once: with the pid it names this process among all
 * the instances that share a mailbox root, on this host or another (pids
 * repeat across hosts and after restarts; 5 base-36 characters, about 26
 * random bits, make a repeat of both together very unlikely). */
static char maildir_tag[6];
static pthread_once_t maildir_tag_once = PTHREAD_ONCE_INIT;

static void maildir_tag_init(void)
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    uint32_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec ^ ((uint32_t)getpid() << 16);
    }
    for (int i = 0; i < 5; i++) {
        maildir_tag[i] = digits[r % 36];
        r /= 36;
    }
    maildir_tag[5] = '\0';
}

/* Queue ID "M<usec>P<pid>R<tag>Q<n>": at most 1+6+1+7+1+5+1+10 = 32
 * characters of [A-Za-z0-9]. The pid and the random tag name the
 * process, n (wrapping at 10^10) the message within it, so an ID names
 * one message across every instance on a shared root. The ID and m->sec
 * together make the unique file name. */
static void maildir_make_id(struct maildir_msg *m)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_once(&maildir_tag_once, maildir_tag_init);
    unsigned long long n = atomic_fetch_add(&maildir_counter, 1) % 10000000000ULL;
    m->sec = ts.tv_sec;
    unsigned usec = (unsigned)(ts.tv_nsec / 1000) % 1000000u;
    unsigned pid = (unsigned)getpid() % 10000000u;  /* Linux: at most 2^22 */
    snprintf(m->id, sizeof m->id, "M%uP%uR%sQ%llu", usec, pid, maildir_tag, n);
}

/* A box name as the committer and we use it in paths: never a way out of
 * root. Full local-part validation is the caller's job. */
static int maildir_box_ok(const char *box)
{
    return box[0] != '\0' && box[0] != '.' && !strchr(box, '/');
}

/*
 * Creates root/box/tmp/<sec>.<ID>.<host><suffix>. Opened O_RDWR, not
 * O_WRONLY (maildir.h says "open for writing"): the transformation reads
 * the spool back through this descriptor to feed its child's stdin.
 */
static int maildir_msg_create(struct maildir_msg *m, const char *root,
                              const char *box, const char *suffix)
{
    char path[PATH_MAX], *name;
    if (maildir_path(path, sizeof path, "%s/%s/tmp/%lld.%s.%s%s", root, box,
                     (long long)m->sec, m->id, maildir_hostname(), suffix) < 0)
        return -1;
    name = strrchr(path, '/') + 1;
    int dir = maildir_open_dir(root, box, "tmp");
    if (dir < 0)
        return -1;
    int fd = openat(dir, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC |
                    O_NOFOLLOW, 0600);
    m->tmp_path = fd < 0 ? NULL : strdup(path);
    if (fd >= 0 && !m->tmp_path) {
        unlinkat(dir, name, 0);
        close(fd);
        fd = -1;
        errno = ENOMEM;
    }
    maildir_close_keep(dir);
    if (fd < 0)
        return -1;
    m->fd = fd;
    return 0;
}

static void maildir_msg_reset(struct maildir_msg *m)
{
    m->fd = -1;
    m->tmp_path = NULL;
    m->size = 0;
}

/* EEXIST should never happen (the name is unique); if a stale file from a
 * recycled pid collides anyway, a fresh name is cheap. */
#define MAILDIR_CREATE_TRIES 3

int maildir_msg_open(struct maildir_msg *m, const char *root, const char *box)
{
    maildir_msg_reset(m);
    if (!maildir_box_ok(box)) {
        errno = EINVAL;
        return -1;
    }
    for (int i = 0; i < MAILDIR_CREATE_TRIES; i++) {
        maildir_make_id(m);
        if (maildir_msg_create(m, root, box, "") == 0)
            return 0;
        if (errno != EEXIST)
            break;
    }
    return -1;
}

/* The copy shares sec and ID (the name in new/ carries the ID the client
 * was given) and differs in tmp/ by a ".t<n>" suffix, n unique. */
int maildir_msg_open_copy(struct maildir_msg *m, const struct maildir_msg *like,
                          const char *root, const char *box)
{
    char suffix[32];
    maildir_msg_reset(m);
    if (!maildir_box_ok(box)) {
        errno = EINVAL;
        return -1;
    }
    m->sec = like->sec;
    memcpy(m->id, like->id, sizeof m->id);
    for (int i = 0; i < MAILDIR_CREATE_TRIES; i++) {
        snprintf(suffix, sizeof suffix, ".t%llu",
                 (unsigned long long)atomic_fetch_add(&maildir_counter, 1));
        if (maildir_msg_create(m, root, box, suffix) == 0)
            return 0;
        if (errno != EEXIST)
            break;
    }
    return -1;
}

int maildir_msg_write(struct maildir_msg *m, const void *p, size_t n)
{
    const char *at = p;
    if (m->fd < 0) {
        errno = EBADF;
        return -1;
    }
    while (n > 0) {
        ssize_t w = write(m->fd, at, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        at += w;
        n -= (size_t)w;
        m->size += (uint64_t)w;
    }
    return 0;
}

/* Safe on a struct that maildir_msg_open filled (even when it failed) and
 * on a zeroed one: without a tmp_path there is nothing of ours to close. */
void maildir_msg_abort(struct maildir_msg *m)
{
    if (m->tmp_path) {
        if (m->fd >= 0)
            close(m->fd);
        unlink(m->tmp_path);
        free(m->tmp_path);
    }
    maildir_msg_reset(m);
}

int maildir_msg_final_name(const struct maildir_msg *m, char *dst, size_t len)
{
    return maildir_path(dst, len, "%lld.%s.%s,S=%llu", (long long)m->sec,
                        m->id, maildir_hostname(), (unsigned long long)m->size);
}
