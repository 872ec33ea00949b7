/*
 * batch_flush.c - what one committer batch costs under each way of making
 * it durable, with the device cache flushes it caused. Backs the
 * committer's choice (docs/benchmarks.md, "Sharing the disk").
 *
 *   cc -O2 -D_GNU_SOURCE -pthread bench/batch_flush.c -o build/bench/batch_flush
 *   build/bench/batch_flush DIR [BATCHES] [BATCH] [BOXES] [DEV]
 *       defaults: 200 batches of 16 files of 1 KB into 4 mailboxes;
 *       DEV (e.g. vda) names /sys/block/DEV/stat for the flush counts.
 *
 * Each batch: BATCH files written in tmp/ (not timed, as the event loop
 * writes them), then timed: make the data durable, link each into its
 * mailbox's new/, make the names durable, unlink tmp/. The ways:
 *   syncfs     syncfs, link, syncfs
 *   fsync      write-back started on all, fsync per file, link, fsync of
 *              new/ once per message
 *   fsync-dir1 the same, each new/ synced once per batch
 *   pool       the fsyncs of files, then of the distinct new/, issued
 *              together by 8 threads
 * Run it twice, quiet and next to a writer (bench/neighbour.sh), and
 * compare only figures of one run.
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

#define MAX_BATCH 256
#define MAX_BOXES 16
#define THREADS 8

enum way { WAY_SYNCFS, WAY_FSYNC, WAY_FSYNC_DIR1, WAY_POOL, WAY_COUNT };
static const char *way_name[] = { "syncfs", "fsync", "fsync-dir1", "pool" };

static char top[PATH_MAX / 2];
static int nbatch = 200, batch = 16, nboxes = 4;
static const char *dev;
static char payload[1024];

/* One batch's open files and their names. */
static int fds[MAX_BATCH];
static char tmp_path[MAX_BATCH][PATH_MAX];
static char new_path[MAX_BATCH][PATH_MAX];
static int dir_fd[MAX_BOXES];

/* Flush requests completed and ms spent on them (fields 16, 17). */
static void flushes(unsigned long long *count, unsigned long long *ms)
{
    char path[128];
    unsigned long long f[17] = { 0 };
    *count = *ms = 0;
    if (!dev)
        return;
    snprintf(path, sizeof path, "/sys/block/%s/stat", dev);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return;
    for (int i = 0; i < 17; i++)
        if (fscanf(fp, "%llu", &f[i]) != 1)
            break;
    fclose(fp);
    *count = f[15];
    *ms = f[16];
}

static void make_dirs(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tmp", top);
    if (mkdir(top, 0700) < 0 || mkdir(path, 0700) < 0)
        die(top);
    for (int b = 0; b < nboxes; b++) {
        snprintf(path, sizeof path, "%s/box%d", top, b);
        if (mkdir(path, 0700) < 0)
            die(path);
        snprintf(path, sizeof path, "%s/box%d/new", top, b);
        if (mkdir(path, 0700) < 0)
            die(path);
        dir_fd[b] = open(path, O_RDONLY | O_DIRECTORY);
        if (dir_fd[b] < 0)
            die(path);
    }
}

static void write_batch(int round)
{
    for (int i = 0; i < batch; i++) {
        snprintf(tmp_path[i], PATH_MAX, "%s/tmp/%d.%d", top, round, i);
        snprintf(new_path[i], PATH_MAX, "%s/box%d/new/%d.%d", top,
                 i % nboxes, round, i);
        fds[i] = open(tmp_path[i], O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fds[i] < 0 || write(fds[i], payload, sizeof payload) < 0)
            die(tmp_path[i]);
    }
}

/* ---- the pool: threads take fds from a shared list ----------------- */

static int *pool_list;
static int pool_len, pool_next;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

static void *pool_thread(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&pool_lock);
        int i = pool_next < pool_len ? pool_next++ : -1;
        pthread_mutex_unlock(&pool_lock);
        if (i < 0)
            return NULL;
        if (fsync(pool_list[i]) < 0)
            die("fsync");
    }
}

static void pool_fsync(int *list, int len)
{
    pthread_t t[THREADS];
    pool_list = list;
    pool_len = len;
    pool_next = 0;
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, pool_thread, NULL) != 0)
            die("pthread_create");
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
}

/* ---- one batch, one way -------------------------------------------- */

static void sync_data(enum way w, int root)
{
    if (w == WAY_SYNCFS) {
        if (syncfs(root) < 0)
            die("syncfs");
        return;
    }
    for (int i = 0; i < batch; i++)
        sync_file_range(fds[i], 0, 0, SYNC_FILE_RANGE_WRITE);
    if (w == WAY_POOL)
        pool_fsync(fds, batch);
    else
        for (int i = 0; i < batch; i++)
            if (fsync(fds[i]) < 0)
                die("fsync");
}

static void sync_names(enum way w, int root)
{
    int distinct = batch < nboxes ? batch : nboxes;
    if (w == WAY_SYNCFS && syncfs(root) < 0)
        die("syncfs");
    if (w == WAY_FSYNC)
        for (int i = 0; i < batch; i++)
            if (fsync(dir_fd[i % nboxes]) < 0)
                die("fsync dir");
    if (w == WAY_FSYNC_DIR1)
        for (int b = 0; b < distinct; b++)
            if (fsync(dir_fd[b]) < 0)
                die("fsync dir");
    if (w == WAY_POOL)
        pool_fsync(dir_fd, distinct);
}

static double run_batch(enum way w, int root)
{
    double t0 = now();
    sync_data(w, root);
    for (int i = 0; i < batch; i++)
        if (link(tmp_path[i], new_path[i]) < 0)
            die("link");
    sync_names(w, root);
    for (int i = 0; i < batch; i++) {
        close(fds[i]);
        unlink(tmp_path[i]);
    }
    return now() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [BATCHES] [BATCH] [BOXES] [DEV]\n", argv[0]);
        return 2;
    }
    snprintf(top, sizeof top, "%s/batch_flush.%d", argv[1], (int)getpid());
    if (argc > 2) nbatch = atoi(argv[2]);
    if (argc > 3) batch = atoi(argv[3]);
    if (argc > 4) nboxes = atoi(argv[4]);
    if (argc > 5) dev = argv[5];
    if (nbatch < 1 || batch < 1 || batch > MAX_BATCH || nboxes < 1 ||
        nboxes > MAX_BOXES) {
        fprintf(stderr, "out of range\n");
        return 2;
    }
    memset(payload, 'x', sizeof payload);
    make_dirs();
    int root = open(top, O_RDONLY | O_DIRECTORY);
    if (root < 0)
        die(top);
    double *lat = calloc((size_t)nbatch, sizeof *lat);
    printf("%-10s %10s %9s %9s %9s %12s %10s\n", "way", "files/s",
           "p50 ms", "p99 ms", "max ms", "flush/batch", "flush ms");
    int round = 0;
    for (int w = 0; w < WAY_COUNT; w++) {
        unsigned long long f0, m0, f1, m1;
        double total = 0;
        flushes(&f0, &m0);
        for (int k = 0; k < nbatch; k++) {
            write_batch(round++);
            lat[k] = run_batch((enum way)w, root);
            total += lat[k];
        }
        flushes(&f1, &m1);
        qsort(lat, (size_t)nbatch, sizeof *lat, cmp_double);
        printf("%-10s %10.0f %9.2f %9.2f %9.2f %12.1f %10.3f\n", way_name[w],
               nbatch * batch / total, lat[nbatch / 2] * 1e3,
               lat[nbatch * 99 / 100] * 1e3, lat[nbatch - 1] * 1e3,
               (double)(f1 - f0) / nbatch,
               f1 > f0 ? (double)(m1 - m0) / (double)(f1 - f0) : 0.0);
    }
    free(lat);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    return system(cmd) == 0 ? 0 : 1;
}
