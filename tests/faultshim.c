/*
 * faultshim.c - an LD_PRELOAD library for e2e/test_faults.py: makes
 * write, fsync, syncfs and link fail the way a full or broken disk does,
 * but only on files under one directory (the mailbox root), so that the
 * log, the sockets and the rest of the process keep working.
 *
 * Built by the test itself:  cc -shared -fPIC -o faultshim.so faultshim.c -ldl
 *
 * Environment (read once, at load time):
 *   FAULT_ROOT=DIR         only descriptors/paths under DIR (absolute; it
 *                          need not exist yet) are affected
 *                          (required: without it the shim does nothing)
 *   FAULT_ARM=FILE         faults apply only while FILE exists, so a test
 *                          can switch them on and off while the server runs
 *   FAULT_WRITE_AFTER=N    write/pwrite/writev to a regular file past its
 *                          offset N: a short write up to N, then -1 ENOSPC
 *   FAULT_WRITE_ERRNO=EIO  fail those writes with EIO instead of ENOSPC
 *   FAULT_FSYNC=1          fsync/fdatasync of a regular file: -1 EIO
 *   FAULT_FSYNC_DIR=1      fsync/fdatasync of a directory: -1 EIO
 *   FAULT_FSYNC_MATCH=STR  those two only for a file or directory whose
 *                          path contains STR (e.g. /bob/new)
 *   FAULT_FSYNC_ONCE=1     only the first fsync they would fail fails
 *   FAULT_SYNCFS=1         syncfs: -1 EIO
 *   FAULT_LINK_AFTER=N     the first N link()s (or linkat()s) into DIR succeed, the others
 *                          fail with ENOSPC (N=0: every one fails)
 *   FAULT_LOG=FILE         one line per injected fault (for debugging)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef ssize_t write_fn(int, const void *, size_t);
typedef ssize_t pwrite_fn(int, const void *, size_t, off_t);
typedef ssize_t writev_fn(int, const struct iovec *, int);
typedef int fd_fn(int);
typedef int link_fn(const char *, const char *);
typedef int linkat_fn(int, const char *, int, const char *, int);

static struct {
    char root[PATH_MAX];
    size_t root_len;
    const char *arm;
    long long write_after;          /* -1: writes are not faulted */
    int write_errno;
    int fsync_file, fsync_dir, syncfs, fsync_once;
    const char *fsync_match;
    long long link_after;           /* -1: links are not faulted */
    const char *log;
    write_fn *real_write;
    pwrite_fn *real_pwrite;
    writev_fn *real_writev;
    fd_fn *real_fsync, *real_fdatasync, *real_syncfs;
    link_fn *real_link;
    linkat_fn *real_linkat;
} shim = { .write_after = -1, .link_after = -1 };

static atomic_llong shim_links;
static atomic_int shim_fsyncs_failed;

static long long shim_env_num(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? atoll(v) : -1;
}

static int shim_env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* dlsym hands back a data pointer; memcpy is the portable conversion. */
static void shim_resolve(void *dst, const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    memcpy(dst, &p, sizeof p);
}

/* realpath() for a path that may not exist yet (the server creates its
 * root after we are loaded): the longest existing prefix is resolved and
 * the rest appended as written. */
static int shim_canonical(const char *path, char *out, size_t len)
{
    char head[PATH_MAX], resolved[PATH_MAX];
    if (snprintf(head, sizeof head, "%s", path) >= (int)sizeof head)
        return -1;
    size_t cut = strlen(head);
    while (cut > 0) {
        char saved = head[cut];
        head[cut] = '\0';
        if (realpath(head, resolved) != NULL) {
            head[cut] = saved;
            int n = snprintf(out, len, "%s%s", resolved, head + cut);
            return n < 0 || (size_t)n >= len ? -1 : 0;
        }
        head[cut] = saved;
        while (cut > 0 && head[cut - 1] != '/')
            cut--;
        while (cut > 0 && head[cut - 1] == '/')
            cut--;
    }
    return -1;
}

__attribute__((constructor)) static void shim_init(void)
{
    shim_resolve(&shim.real_write, "write");
    shim_resolve(&shim.real_pwrite, "pwrite");
    shim_resolve(&shim.real_writev, "writev");
    shim_resolve(&shim.real_fsync, "fsync");
    shim_resolve(&shim.real_fdatasync, "fdatasync");
    shim_resolve(&shim.real_syncfs, "syncfs");
    shim_resolve(&shim.real_link, "link");
    shim_resolve(&shim.real_linkat, "linkat");
    const char *root = getenv("FAULT_ROOT");
    if (root == NULL || shim_canonical(root, shim.root, sizeof shim.root) < 0)
        shim.root[0] = '\0';
    shim.root_len = strlen(shim.root);
    shim.arm = getenv("FAULT_ARM");
    shim.write_after = shim_env_num("FAULT_WRITE_AFTER");
    const char *e = getenv("FAULT_WRITE_ERRNO");
    shim.write_errno = e && strcmp(e, "EIO") == 0 ? EIO : ENOSPC;
    shim.fsync_file = shim_env_flag("FAULT_FSYNC");
    shim.fsync_dir = shim_env_flag("FAULT_FSYNC_DIR");
    shim.fsync_once = shim_env_flag("FAULT_FSYNC_ONCE");
    shim.fsync_match = getenv("FAULT_FSYNC_MATCH");
    shim.syncfs = shim_env_flag("FAULT_SYNCFS");
    shim.link_after = shim_env_num("FAULT_LINK_AFTER");
    shim.log = getenv("FAULT_LOG");
}

static int shim_armed(void)
{
    if (shim.root_len == 0)
        return 0;
    return shim.arm == NULL || access(shim.arm, F_OK) == 0;
}

static int shim_path_inside(const char *path)
{
    return strncmp(path, shim.root, shim.root_len) == 0
           && (path[shim.root_len] == '/' || path[shim.root_len] == '\0');
}

/* The path fd was opened with (from /proc); -1 if unknown. */
static int shim_fd_path(int fd, char *path, size_t len)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, len - 1);
    if (n < 0)
        return -1;
    path[n] = '\0';
    return 0;
}

static int shim_fd_inside(int fd)
{
    char path[PATH_MAX];
    return shim_fd_path(fd, path, sizeof path) == 0 && shim_path_inside(path);
}

/* Which kind of file fd is: 'f' regular, 'd' directory, 0 other/error. */
static char shim_fd_kind(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return 0;
    return S_ISREG(st.st_mode) ? 'f' : S_ISDIR(st.st_mode) ? 'd' : 0;
}

/* Appends one line to FAULT_LOG; errno is kept for the caller. */
static void shim_note(const char *call, int fd, int err)
{
    if (shim.log == NULL)
        return;
    int saved = errno;
    int lfd = open(shim.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (lfd >= 0) {
        char line[128];
        int n = snprintf(line, sizeof line, "%s fd=%d errno=%d pid=%d\n",
                         call, fd, err, (int)getpid());
        if (n > 0)
            shim.real_write(lfd, line, (size_t)n);
        close(lfd);
    }
    errno = saved;
}

static int shim_fail(const char *call, int fd, int err)
{
    shim_note(call, fd, err);
    errno = err;
    return -1;
}

/* How many of count bytes at offset may still be written; -1: none. */
static long long shim_write_room(int fd, size_t count, off_t offset)
{
    if (shim.write_after < 0 || count == 0 || !shim_armed()
        || shim_fd_kind(fd) != 'f' || !shim_fd_inside(fd))
        return (long long)count;
    if (offset < 0)
        offset = lseek(fd, 0, SEEK_CUR);
    if (offset < 0)
        return (long long)count;
    long long room = shim.write_after - (long long)offset;
    if (room <= 0)
        return -1;
    return room < (long long)count ? room : (long long)count;
}

ssize_t write(int fd, const void *buf, size_t count)
{
    long long room = shim_write_room(fd, count, -1);
    if (room < 0)
        return shim_fail("write", fd, shim.write_errno);
    return shim.real_write(fd, buf, (size_t)room);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    long long room = shim_write_room(fd, count, offset);
    if (room < 0)
        return shim_fail("pwrite", fd, shim.write_errno);
    return shim.real_pwrite(fd, buf, (size_t)room, offset);
}

/* Whole vectors only: a short writev is cut at an iovec boundary. */
ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    long long room = shim_write_room(fd, total, -1);
    if (room < 0)
        return shim_fail("writev", fd, shim.write_errno);
    if ((size_t)room == total)
        return shim.real_writev(fd, iov, iovcnt);
    int keep = 0;
    for (size_t used = 0; keep < iovcnt && used + iov[keep].iov_len <= (size_t)room; keep++)
        used += iov[keep].iov_len;
    if (keep == 0)
        return shim_fail("writev", fd, shim.write_errno);
    return shim.real_writev(fd, iov, keep);
}

static int shim_sync_faulted(int fd)
{
    if (!(shim.fsync_file || shim.fsync_dir) || !shim_armed()
        || !shim_fd_inside(fd))
        return 0;
    char kind = shim_fd_kind(fd);
    if (!((kind == 'f' && shim.fsync_file) || (kind == 'd' && shim.fsync_dir)))
        return 0;
    char path[PATH_MAX];
    if (shim.fsync_match && *shim.fsync_match
        && (shim_fd_path(fd, path, sizeof path) < 0
            || strstr(path, shim.fsync_match) == NULL))
        return 0;
    return !shim.fsync_once || atomic_fetch_add(&shim_fsyncs_failed, 1) == 0;
}

int fsync(int fd)
{
    if (shim_sync_faulted(fd))
        return shim_fail("fsync", fd, EIO);
    return shim.real_fsync(fd);
}

int fdatasync(int fd)
{
    if (shim_sync_faulted(fd))
        return shim_fail("fdatasync", fd, EIO);
    return shim.real_fdatasync(fd);
}

int syncfs(int fd)
{
    if (shim.syncfs && shim_armed() && shim_fd_inside(fd))
        return shim_fail("syncfs", fd, EIO);
    return shim.real_syncfs(fd);
}

int link(const char *oldpath, const char *newpath)
{
    if (shim.link_after >= 0 && shim_armed()) {
        char dir[PATH_MAX];
        if (realpath(newpath, dir) == NULL) {
            /* newpath does not exist yet: resolve its directory */
            snprintf(dir, sizeof dir, "%s", newpath);
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = '\0';
            char resolved[PATH_MAX];
            if (realpath(slash ? dir : ".", resolved) != NULL)
                snprintf(dir, sizeof dir, "%s", resolved);
        }
        if (shim_path_inside(dir)
            && atomic_fetch_add(&shim_links, 1) >= shim.link_after)
            return shim_fail("link", -1, ENOSPC);
    }
    return shim.real_link(oldpath, newpath);
}

/* The server links through a descriptor of new/ (never a path that a
 * link could redirect): the same count, the directory known by its fd. */
int linkat(int olddirfd, const char *oldpath, int newdirfd,
           const char *newpath, int flags)
{
    if (shim.link_after >= 0 && shim_armed() && newpath[0] != '/'
        && newdirfd != AT_FDCWD && shim_fd_inside(newdirfd)
        && atomic_fetch_add(&shim_links, 1) >= shim.link_after)
        return shim_fail("linkat", newdirfd, ENOSPC);
    return shim.real_linkat(olddirfd, oldpath, newdirfd, newpath, flags);
}
