/*
 * unit_maildir.c - mailboxes and spool files on a real file system: each
 * test works in its own mkdtemp() directory under /tmp and removes it.
 */
#include "maildir.h"
#include "tmpdir.h"
#include "unit.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void tmpdir_make(char *dir, size_t len)
{
    tmpdir_make_named(dir, len, "unit_maildir");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void host_escaped(char *dst, size_t len)
{
    char raw[256] = "";
    size_t o = 0;
    gethostname(raw, sizeof raw - 1);
    for (const char *p = raw; *p && o + 5 < len; p++) {
        if (*p == '/' || *p == ':') {
            o += (size_t)snprintf(dst + o, len - o, "\\%03o", (unsigned)*p);
        } else {
            dst[o++] = *p;
        }
    }
    dst[o] = '\0';
}

static void test_root_init(void)
{
    char dir[64], path[PATH_MAX];
    struct stat st;
    tmpdir_make(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a/b/mail", dir);
    CHECK_EQ_INT(maildir_root_init(path), 0);
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_EQ_INT(st.st_mode & 0777, 0700);
    CHECK_EQ_INT(maildir_root_init(path), 0);          /* existing: fine */
    snprintf(path, sizeof path, "%s/file", dir);
    write_file(path, "x");
    errno = 0;
    CHECK_EQ_INT(maildir_root_init(path), -1);
    CHECK_EQ_INT(errno, ENOTDIR);
    tmpdir_remove(dir);
}

static void test_create_exists(void)
{
    char dir[64], path[PATH_MAX];
    struct stat st;
    tmpdir_make(dir, sizeof dir);
    CHECK_EQ_INT(maildir_create(dir, "alice"), 0);
    CHECK_EQ_INT(maildir_create(dir, "alice"), 0);     /* idempotent */
    CHECK_EQ_INT(maildir_exists(dir, "alice"), 1);
    snprintf(path, sizeof path, "%s/alice/cur", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK_EQ_INT(maildir_exists(dir, "bob"), 0);
    CHECK_EQ_INT(maildir_exists(dir, "../alice"), 0);
    CHECK_EQ_INT(maildir_exists(dir, ""), 0);

    const char *bad[] = { "", "../x", "a/b", ".a", "a.", "a..b", "Alice" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        CHECK_EQ_INT(maildir_create(dir, bad[i]), -1);
        CHECK_EQ_INT(errno, EINVAL);
    }
    /* A directory without cur/ is not a Maildir. */
    snprintf(path, sizeof path, "%s/half", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/half/tmp", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/half/new", dir);
    mkdir(path, 0700);
    CHECK_EQ_INT(maildir_exists(dir, "half"), 0);
    tmpdir_remove(dir);
}

/* Below root a link is never a mailbox: not a mailbox that is one, nor
 * a mailbox whose tmp/ or new/ is one. maildir_create refuses to make
 * anything through it (ELOOP), and no spool file is created through it. */
static void test_links_not_mailboxes(void)
{
    char dir[64], other[64], path[PATH_MAX], target[PATH_MAX];
    struct maildir_msg m;
    tmpdir_make(dir, sizeof dir);
    tmpdir_make(other, sizeof other);
    CHECK_EQ_INT(maildir_create(other, "far"), 0);
    snprintf(target, sizeof target, "%s/far", other);
    snprintf(path, sizeof path, "%s/eve", dir);
    CHECK_EQ_INT(symlink(target, path), 0);
    CHECK_EQ_INT(maildir_exists(dir, "eve"), 0);
    errno = 0;
    CHECK_EQ_INT(maildir_create(dir, "eve"), -1);
    CHECK_EQ_INT(errno, ELOOP);
    errno = 0;
    CHECK_EQ_INT(maildir_msg_open(&m, dir, "eve"), -1);
    CHECK_EQ_INT(errno, ELOOP);
    CHECK_EQ_INT(maildir_open_dir(dir, "eve", "new"), -1);

    /* a real mailbox with a linked tmp/ */
    CHECK_EQ_INT(maildir_create(dir, "bob"), 0);
    snprintf(path, sizeof path, "%s/bob/tmp", dir);
    CHECK_EQ_INT(rmdir(path), 0);
    snprintf(target, sizeof target, "%s/far/tmp", other);
    CHECK_EQ_INT(symlink(target, path), 0);
    CHECK_EQ_INT(maildir_exists(dir, "bob"), 0);
    errno = 0;
    CHECK_EQ_INT(maildir_create(dir, "bob"), -1);
    CHECK_EQ_INT(errno, ELOOP);
    errno = 0;
    CHECK_EQ_INT(maildir_msg_open(&m, dir, "bob"), -1);
    CHECK_EQ_INT(errno, ELOOP);
    CHECK_EQ_INT(dir_count(target, NULL, 0), 0);

    /* find_prefix lists neither */
    char names[4][MAILDIR_NAME_MAX + 1];
    CHECK_EQ_INT(maildir_find_prefix(dir, "", names, 4), 0);
    /* the real directory behind root/eve is still a mailbox of its root */
    CHECK_EQ_INT(maildir_exists(other, "far"), 1);
    int fd = maildir_open_dir(other, "far", "new");
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    tmpdir_remove(dir);
    tmpdir_remove(other);
}

static void test_find_prefix(void)
{
    char dir[64], path[PATH_MAX];
    char names[4][MAILDIR_NAME_MAX + 1];
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    maildir_create(dir, "alex");
    maildir_create(dir, "bob");
    maildir_create(dir, "al.x");
    /* Not candidates: uppercase, not a Maildir, a plain file. */
    snprintf(path, sizeof path, "%s/Alfred", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/alpha", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/alz", dir);
    write_file(path, "x");

    CHECK_EQ_INT(maildir_find_prefix(dir, "AL", names, 4), 3);
    CHECK(strcmp(names[0], "al.x") == 0);
    CHECK(strcmp(names[1], "alex") == 0);
    CHECK(strcmp(names[2], "alice") == 0);
    /* More found than fit: the count is all of them, the names the first. */
    CHECK_EQ_INT(maildir_find_prefix(dir, "al", names, 1), 3);
    CHECK(strcmp(names[0], "al.x") == 0);
    CHECK_EQ_INT(maildir_find_prefix(dir, "ali", names, 4), 1);
    CHECK(strcmp(names[0], "alice") == 0);
    CHECK_EQ_INT(maildir_find_prefix(dir, "", names, 4), 4);
    CHECK_EQ_INT(maildir_find_prefix(dir, "x", names, 4), 0);
    CHECK_EQ_INT(maildir_find_prefix(dir, "alicex", names, 4), 0);
    char longp[100];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    CHECK_EQ_INT(maildir_find_prefix(dir, longp, names, 4), 0);
    CHECK_EQ_INT(maildir_find_prefix(dir, "al", names, 0), 3);
    snprintf(path, sizeof path, "%s/missing", dir);
    CHECK_EQ_INT(maildir_find_prefix(path, "a", names, 4), -1);
    tmpdir_remove(dir);
}

static void test_msg_write_abort(void)
{
    char dir[64], path[PATH_MAX], buf[64];
    struct maildir_msg m;
    struct stat st;
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    CHECK_EQ_INT(maildir_msg_open(&m, dir, "alice"), 0);
    CHECK(m.fd >= 0);
    CHECK(fcntl(m.fd, F_GETFD) & FD_CLOEXEC);
    CHECK_EQ_INT(fcntl(m.fd, F_GETFL) & O_ACCMODE, O_RDWR);
    CHECK(fstat(m.fd, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_EQ_INT(maildir_msg_write(&m, "Subject: x\r\n\r\n", 14), 0);
    CHECK_EQ_INT(maildir_msg_write(&m, "body\r\n", 6), 0);
    CHECK_EQ_INT(m.size, 20);
    CHECK_EQ_INT(pread(m.fd, buf, sizeof buf, 0), 20);
    CHECK_MEM(buf, "Subject: x\r\n\r\nbody\r\n", 20);
    snprintf(path, sizeof path, "%s/alice/tmp", dir);
    CHECK_EQ_INT(dir_count(path, NULL, 0), 1);
    maildir_msg_abort(&m);
    CHECK_EQ_INT(m.fd, -1);
    CHECK(m.tmp_path == NULL);
    CHECK_EQ_INT(dir_count(path, NULL, 0), 0);
    maildir_msg_abort(&m);                      /* twice: harmless */
    errno = 0;
    CHECK_EQ_INT(maildir_msg_write(&m, "x", 1), -1);
    CHECK_EQ_INT(errno, EBADF);

    /* A failed open leaves a struct that abort accepts. */
    errno = 0;
    CHECK_EQ_INT(maildir_msg_open(&m, dir, "nobody"), -1);
    CHECK_EQ_INT(errno, ENOENT);
    CHECK_EQ_INT(m.fd, -1);
    maildir_msg_abort(&m);
    CHECK_EQ_INT(maildir_msg_open(&m, dir, "../alice"), -1);
    struct maildir_msg zero;
    memset(&zero, 0, sizeof zero);
    maildir_msg_abort(&zero);                   /* must not close fd 0 */
    CHECK(fcntl(0, F_GETFD) != -1 || errno != EBADF);
    tmpdir_remove(dir);
}

static int id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > MAILDIR_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]))
            return 0;
    return 1;
}

static void test_msg_names(void)
{
    char dir[64], host[300], want[PATH_MAX], pid[32];
    struct maildir_msg a, b;
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    host_escaped(host, sizeof host);
    CHECK_EQ_INT(maildir_msg_open(&a, dir, "alice"), 0);
    CHECK_EQ_INT(maildir_msg_open(&b, dir, "alice"), 0);
    CHECK(id_ok(a.id) && id_ok(b.id));
    CHECK(strcmp(a.id, b.id) != 0);
    CHECK(a.id[0] == 'M');
    /* the pid, then the process's random tag, which both IDs share */
    snprintf(pid, sizeof pid, "P%uR", (unsigned)getpid());
    CHECK(strstr(a.id, pid) != NULL);
    const char *ta = strchr(a.id, 'R'), *tb = strchr(b.id, 'R');
    CHECK(ta && tb && strncmp(ta, tb, 7) == 0 && ta[6] == 'Q');
    CHECK(a.sec > 0 && a.sec <= time(NULL));
    snprintf(want, sizeof want, "%s/alice/tmp/%lld.%s.%s", dir,
             (long long)a.sec, a.id, host);
    CHECK(strcmp(a.tmp_path, want) == 0);
    maildir_msg_abort(&a);
    maildir_msg_abort(&b);
    tmpdir_remove(dir);
}

static void test_msg_copy(void)
{
    char dir[64], path[PATH_MAX];
    struct maildir_msg a, t, t2;
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    CHECK_EQ_INT(maildir_msg_open(&a, dir, "alice"), 0);
    CHECK_EQ_INT(maildir_msg_open_copy(&t, &a, dir, "alice"), 0);
    CHECK_EQ_INT(maildir_msg_open_copy(&t2, &t, dir, "alice"), 0);
    CHECK(strcmp(a.id, t.id) == 0 && strcmp(a.id, t2.id) == 0);
    CHECK_EQ_INT(t.sec, a.sec);
    CHECK(strcmp(a.tmp_path, t.tmp_path) != 0);
    CHECK(strcmp(t.tmp_path, t2.tmp_path) != 0);
    CHECK_EQ_INT(strncmp(a.tmp_path, t.tmp_path, strlen(a.tmp_path)), 0);
    CHECK_EQ_INT(t.size, 0);
    snprintf(path, sizeof path, "%s/alice/tmp", dir);
    CHECK_EQ_INT(dir_count(path, NULL, 0), 3);
    maildir_msg_abort(&a);
    maildir_msg_abort(&t);
    maildir_msg_abort(&t2);
    CHECK_EQ_INT(dir_count(path, NULL, 0), 0);
    tmpdir_remove(dir);
}

static void set_age(const char *path, time_t age)
{
    struct timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = time(NULL) - age;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    utimensat(AT_FDCWD, path, ts, 0);
}

static void test_clean_tmp(void)
{
    char dir[64], path[PATH_MAX], name[256];
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    maildir_create(dir, "bob");
    snprintf(path, sizeof path, "%s/alice/tmp/old", dir);
    write_file(path, "x");
    set_age(path, 40 * 3600);
    snprintf(path, sizeof path, "%s/alice/tmp/fresh", dir);
    write_file(path, "x");
    set_age(path, 3600);
    snprintf(path, sizeof path, "%s/bob/tmp/old2", dir);
    write_file(path, "x");
    set_age(path, 37 * 3600);
    snprintf(path, sizeof path, "%s/bob/tmp/olddir", dir);
    mkdir(path, 0700);                      /* only regular files go */
    set_age(path, 40 * 3600);
    snprintf(path, sizeof path, "%s/bob/new/oldmail", dir);
    write_file(path, "x");                  /* new/ is never touched */
    set_age(path, 40 * 3600);

    CHECK_EQ_INT(maildir_clean_tmp(dir, 36 * 3600), 2);
    snprintf(path, sizeof path, "%s/alice/tmp", dir);
    CHECK_EQ_INT(dir_count(path, name, sizeof name), 1);
    CHECK(strcmp(name, "fresh") == 0);
    snprintf(path, sizeof path, "%s/bob/tmp", dir);
    CHECK_EQ_INT(dir_count(path, name, sizeof name), 1);
    CHECK(strcmp(name, "olddir") == 0);
    snprintf(path, sizeof path, "%s/bob/new", dir);
    CHECK_EQ_INT(dir_count(path, NULL, 0), 1);
    CHECK_EQ_INT(maildir_clean_tmp(dir, 36 * 3600), 0);
    snprintf(path, sizeof path, "%s/missing", dir);
    CHECK_EQ_INT(maildir_clean_tmp(path, 10), -1);
    tmpdir_remove(dir);
}

/* Many mailboxes, read whole or only the first few: strcmp order either
 * way (the names are made in an order readdir does not keep). */
static void test_find_prefix_many(void)
{
    enum { N = 300 };
    static char all[N][MAILDIR_NAME_MAX + 1];
    char dir[64], name[16], few[5][MAILDIR_NAME_MAX + 1];
    tmpdir_make(dir, sizeof dir);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "u%03d", (i * 7) % N);   /* 7 is coprime */
        maildir_create(dir, name);
    }
    CHECK_EQ_INT(maildir_find_prefix(dir, "", all, N), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "u%03d", i);
        CHECK(strcmp(all[i], name) == 0);
    }
    CHECK_EQ_INT(maildir_find_prefix(dir, "u1", few, 5), 100);
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "u1%02d", i);
        CHECK(strcmp(few[i], name) == 0);
    }
    tmpdir_remove(dir);
}

UNIT_MAIN("maildir",
          { "root_init", test_root_init },
          { "create_exists", test_create_exists },
          { "links_not_mailboxes", test_links_not_mailboxes },
          { "find_prefix", test_find_prefix },
          { "find_prefix_many", test_find_prefix_many },
          { "msg_write_abort", test_msg_write_abort },
          { "msg_names", test_msg_names },
          { "msg_copy", test_msg_copy },
          { "clean_tmp", test_clean_tmp })
