/*
 * fsync_ceiling.c - how many durable Maildir deliveries per second the disk
 * allows: one fsync per file (1 and 2 threads) against group commit (64
 * files, one syncfs, rename all, one syncfs). Backs the committer's design.
 *
 *   cc -O2 -D_GNU_SOURCE -pthread bench/fsync_ceiling.c -o build/fsync_ceiling
 *   build/fsync_ceiling DIR [N] [SIZE]      (defaults: N=2000, SIZE=1024)
 *
 * DIR must be on the disk to measure (not tmpfs); the program works in
 * DIR/fsync_ceiling.<pid>/ and removes it. Figures drift run to run:
 * compare only numbers printed by one run.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define BATCH 64
#define BASE_MAX (PATH_MAX / 4)     /* short enough for every path built on it */

struct run {
    char dir[PATH_MAX / 2]; /* a Maildir-like directory: tmp/ and new/ */
    long first, count;      /* files first .. first+count-1 */
    size_t size;
    int failed;
};

static char *payload;

static void mkdirs(const char *dir)
{
    char path[PATH_MAX];
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        die(dir);
    snprintf(path, sizeof path, "%s/tmp", dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        die(path);
    snprintf(path, sizeof path, "%s/new", dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        die(path);
}

/* create + write; fsync too when asked. 0 or -1. */
static int write_file(const struct run *r, long i, int sync)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tmp/%ld", r->dir, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int rc = write(fd, payload, r->size) == (ssize_t)r->size ? 0 : -1;
    if (rc == 0 && sync)
        rc = fsync(fd);
    if (close(fd) < 0)
        rc = -1;
    return rc;
}

static int move_file(const struct run *r, long i)
{
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(from, sizeof from, "%s/tmp/%ld", r->dir, i);
    snprintf(to, sizeof to, "%s/new/%ld", r->dir, i);
    return rename(from, to);
}

static int open_dir(const struct run *r, const char *sub)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", r->dir, sub);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    return fd;
}

/* (a), (b): the classic Maildir delivery, one file at a time. */
static void *one_at_a_time(void *arg)
{
    struct run *r = arg;
    int dfd = open_dir(r, "new");
    for (long i = r->first; i < r->first + r->count && !r->failed; i++)
        if (write_file(r, i, 1) < 0 || move_file(r, i) < 0 || fsync(dfd) < 0)
            r->failed = 1;
    close(dfd);
    return NULL;
}

/* (c): group commit, as maildir_commit.c does it. */
static void batched(struct run *r)
{
    int dfd = open_dir(r, "new");
    for (long b = r->first; b < r->first + r->count && !r->failed; b += BATCH) {
        long end = b + BATCH < r->first + r->count ? b + BATCH : r->first + r->count;
        for (long i = b; i < end && !r->failed; i++)
            if (write_file(r, i, 0) < 0)
                r->failed = 1;
        if (syncfs(dfd) < 0)
            r->failed = 1;
        for (long i = b; i < end && !r->failed; i++)
            if (move_file(r, i) < 0)
                r->failed = 1;
        if (syncfs(dfd) < 0)
            r->failed = 1;
    }
    close(dfd);
}

/* Removes the files of a run (not timed) so the next starts alike. */
static void cleanup(const struct run *r)
{
    char path[PATH_MAX];
    for (long i = r->first; i < r->first + r->count; i++) {
        snprintf(path, sizeof path, "%s/new/%ld", r->dir, i);
        unlink(path);
        snprintf(path, sizeof path, "%s/tmp/%ld", r->dir, i);
        unlink(path);
    }
    sync();
}

static void report(const char *what, long n, double secs, int failed)
{
    if (failed)
        printf("%-44s FAILED (%s)\n", what, strerror(errno));
    else
        printf("%-44s %8.0f files/s  (%ld in %.2f s)\n", what, (double)n / secs,
               n, secs);
}

static void run_single(const char *base, long n, size_t size)
{
    struct run r = { .first = 0, .count = n, .size = size };
    snprintf(r.dir, sizeof r.dir, "%s/a", base);
    mkdirs(r.dir);
    double t = now();
    one_at_a_time(&r);
    report("(a) fsync per file, 1 thread", n, now() - t, r.failed);
    cleanup(&r);
}

static void run_two_threads(const char *base, long n, size_t size)
{
    struct run r[2];
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        r[k] = (struct run){ .first = 0, .count = n / 2 + (k ? n % 2 : 0), .size = size };
        snprintf(r[k].dir, sizeof r[k].dir, "%s/b%d", base, k);
        mkdirs(r[k].dir);
    }
    double t = now();
    for (int k = 0; k < 2; k++)
        if (pthread_create(&th[k], NULL, one_at_a_time, &r[k]) != 0)
            die("pthread_create");
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    report("(b) fsync per file, 2 threads, 2 dirs", n, now() - t,
           r[0].failed || r[1].failed);
    cleanup(&r[0]);
    cleanup(&r[1]);
}

static void run_batched(const char *base, long n, size_t size)
{
    struct run r = { .first = 0, .count = n, .size = size };
    snprintf(r.dir, sizeof r.dir, "%s/c", base);
    mkdirs(r.dir);
    double t = now();
    batched(&r);
    report("(c) batches of 64, syncfs x2 per batch", n, now() - t, r.failed);
    cleanup(&r);
}

static void remove_base(const char *base)
{
    static const char *const subs[] = { "a", "b0", "b1", "c" };
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s/tmp", base, subs[i]);
        rmdir(path);
        snprintf(path, sizeof path, "%s/%s/new", base, subs[i]);
        rmdir(path);
        snprintf(path, sizeof path, "%s/%s", base, subs[i]);
        rmdir(path);
    }
    rmdir(base);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s DIR [N] [SIZE]\n", argv[0]);
        return 2;
    }
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
    long size = argc > 3 ? strtol(argv[3], NULL, 10) : 1024;
    if (n < 2 || size < 0 || size > 64L * 1024 * 1024) {
        fprintf(stderr, "%s: N must be >= 2, SIZE 0..64M\n", argv[0]);
        return 2;
    }
    payload = malloc((size_t)size + 1);
    if (!payload)
        die("malloc");
    memset(payload, 'x', (size_t)size);

    char base[BASE_MAX];
    if (strlen(argv[1]) > BASE_MAX - 32) {
        fprintf(stderr, "%s: DIR too long\n", argv[0]);
        return 2;
    }
    snprintf(base, sizeof base, "%s/fsync_ceiling.%ld", argv[1], (long)getpid());
    if (mkdir(base, 0700) < 0)
        die(base);
    printf("%ld files of %ld bytes in %s\n", n, size, argv[1]);
    run_single(base, n, (size_t)size);
    run_two_threads(base, n, (size_t)size);
    run_batched(base, n, (size_t)size);
    remove_base(base);
    free(payload);
    return 0;
}
