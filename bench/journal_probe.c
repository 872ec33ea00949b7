/*
 * journal_probe.c - what making a batch of 1 KB messages durable costs,
 * file by file against one write-ahead journal (docs/benchmarks.md,
 * "The write-ahead journal"). Backs the journal's design.
 *
 *   make build/bench/journal_probe      (with maildir_sha256.c)
 *   build/bench/journal_probe [-n BATCHES] [-t SECONDS] [-b 16,64]
 *                             [-d DEV] [-l LABEL] [-q] DIR
 *       defaults: at most 200 batches or 30 s for each batch size, batch
 *       sizes 16 and 64; DEV (e.g. vda) names /sys/block/DEV/stat for the
 *       cache flushes; LABEL fills the first column (e.g. the neighbour);
 *       -q leaves out the table's header.
 *
 * Three ways, taking turns batch by batch (so that a neighbour's bursts
 * fall on all of them alike). The messages are written first, untimed (in
 * the server the loop and the workers write them); then the timed part,
 * the "flush", which the 250s wait for:
 *   files          each message a file in tmp/ (written); flush: fsync
 *                  each, link each into new/, fsync new/ once
 *   journal-zero   each message a record (a 96-byte header with the body's
 *                  SHA-256 and its own, the file and mailbox names, the
 *                  body, padding to 8 bytes) appended with one pwrite to a
 *                  64 MiB journal filled with zeros and synced when made;
 *                  flush: one fdatasync
 *   journal-alloc  the same into a journal made with fallocate (its
 *                  blocks are unwritten extents until first written)
 * The journals start at offset 8192 (after two header slots) and are not
 * wrapped within a run of the defaults (about 54,000 records fit). Run it
 * quiet and next to a writer (bench/neighbour.sh); compare only figures of
 * one run.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "maildir_sha256.h"

#define MAX_BATCH 256
#define MAX_SIZES 8
#define BODY 1024
#define JOURNAL_SIZE (64L << 20)
#define JOURNAL_START 8192L
#define RECORD_HEADER 96
#define NAMES_MAX 128

enum way { WAY_FILES, WAY_ZERO, WAY_ALLOC, WAY_COUNT };
static const char *way_name[] = { "files", "journal-zero", "journal-alloc" };

static char top[PATH_MAX / 2];
static const char *dev;
static char body[BODY];
static int top_fd, new_fd, tmp_fd;
static int journal_fd[WAY_COUNT];
static off_t journal_off[WAY_COUNT];
static uint64_t journal_seq[WAY_COUNT];
static unsigned char record_buf[MAX_BATCH * (RECORD_HEADER + NAMES_MAX + BODY)];
static int file_fd[MAX_BATCH];
static long serial;

/* One way's figures for one batch size. */
struct tally {
    double *lat;
    int n;
    unsigned long long flushes;
};

/* Flush requests the device completed (field 16 of its stat), 0 without DEV. */
static unsigned long long flushes(void)
{
    char path[128];
    unsigned long long f[16] = { 0 };
    if (!dev)
        return 0;
    snprintf(path, sizeof path, "/sys/block/%s/stat", dev);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    for (int i = 0; i < 16; i++)
        if (fscanf(fp, "%llu", &f[i]) != 1)
            break;
    fclose(fp);
    return f[15];
}

/* SHA-256 of a then b, with the server's own code (maildir_sha256.c). */
static void sha256_two(const void *a, size_t alen, const void *b, size_t blen,
                       unsigned char out[SHA256_LEN])
{
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, a, alen);
    sha256_update(&s, b, blen);
    sha256_final(&s, out);
}

/* ---- making the directories and the two journals ----------------- */

static int make_dir(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", top, name);
    if (mkdir(path, 0700) < 0)
        die(path);
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        die(path);
    return fd;
}

static int make_journal(enum way w)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", top, way_name[w]);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        die(path);
    if (w == WAY_ALLOC) {
        if (fallocate(fd, 0, 0, JOURNAL_SIZE) < 0)
            die("fallocate");
    } else {
        static char zeros[1 << 20];
        for (off_t off = 0; off < JOURNAL_SIZE; off += sizeof zeros)
            if (pwrite(fd, zeros, sizeof zeros, off) != (ssize_t)sizeof zeros)
                die("pwrite zeros");
    }
    if (fsync(fd) < 0 || fsync(top_fd) < 0)
        die("fsync journal");
    journal_off[w] = JOURNAL_START;
    return fd;
}

static void setup(void)
{
    if (mkdir(top, 0700) < 0)
        die(top);
    top_fd = open(top, O_RDONLY | O_DIRECTORY);
    if (top_fd < 0)
        die(top);
    tmp_fd = make_dir("tmp");
    new_fd = make_dir("new");
    journal_fd[WAY_ZERO] = make_journal(WAY_ZERO);
    journal_fd[WAY_ALLOC] = make_journal(WAY_ALLOC);
}

/* ---- one batch, each way ------------------------------------------ */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Appends one record for message NAME to P; returns its length. */
static size_t make_record(unsigned char *p, enum way w, const char *name)
{
    char names[NAMES_MAX];
    int nl = snprintf(names, sizeof names, "%s%cu%c", name, 0, 0);
    size_t len = RECORD_HEADER + (size_t)nl + BODY;
    size_t padded = (len + 7) & ~(size_t)7;
    memset(p, 0, padded);
    memcpy(p, "SMTPDJR1", 8);
    put32(p + 8, 1);
    put32(p + 12, (uint32_t)nl);
    put64(p + 16, journal_seq[w]++);
    put64(p + 24, BODY);
    sha256(body, BODY, p + 32);
    sha256_two(p, 64, names, (size_t)nl, p + 64);
    memcpy(p + RECORD_HEADER, names, (size_t)nl);
    memcpy(p + RECORD_HEADER + nl, body, BODY);
    return padded;
}

static double batch_journal(enum way w, int n)
{
    size_t len = 0;
    char name[64];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%ld.M%dP%d.probe", serial++, i, (int)getpid());
        len += make_record(record_buf + len, w, name);
    }
    if (journal_off[w] + (off_t)len > JOURNAL_SIZE)
        journal_off[w] = JOURNAL_START;   /* wrap: every later write overwrites */
    if (pwrite(journal_fd[w], record_buf, len, journal_off[w]) != (ssize_t)len)
        die("pwrite record");
    journal_off[w] += (off_t)len;
    double t0 = now();
    if (fdatasync(journal_fd[w]) < 0)
        die("fdatasync");
    return now() - t0;
}

static double batch_files(int n)
{
    char name[MAX_BATCH][64];
    for (int i = 0; i < n; i++) {
        snprintf(name[i], sizeof name[i], "%ld.M%dP%d.probe", serial++, i, (int)getpid());
        file_fd[i] = openat(tmp_fd, name[i], O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (file_fd[i] < 0 || write(file_fd[i], body, BODY) != BODY)
            die("write tmp/");
    }
    double t0 = now();
    for (int i = 0; i < n; i++)
        if (fsync(file_fd[i]) < 0)
            die("fsync");
    for (int i = 0; i < n; i++)
        if (linkat(tmp_fd, name[i], new_fd, name[i], 0) < 0)
            die("link");
    if (fsync(new_fd) < 0)
        die("fsync new/");
    double t = now() - t0;
    for (int i = 0; i < n; i++) {
        close(file_fd[i]);
        unlinkat(tmp_fd, name[i], 0);
    }
    return t;
}

/* ---- the runs and the table --------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *label, int n, enum way w, struct tally *t)
{
    double total = 0;
    for (int i = 0; i < t->n; i++)
        total += t->lat[i];
    qsort(t->lat, (size_t)t->n, sizeof *t->lat, cmp_double);
    printf("| %s | %d | %s | %d | %.2f | %.2f | %.2f | %.2f | %.0f | %.1f |\n",
           label, n, way_name[w], t->n, t->lat[t->n / 2] * 1e3,
           t->lat[t->n * 9 / 10] * 1e3, t->lat[t->n * 99 / 100] * 1e3,
           t->lat[t->n - 1] * 1e3, (double)t->n * n / total,
           dev ? (double)t->flushes / t->n : 0.0);
    fflush(stdout);
}

/* Up to NBATCH batches of N messages each way, taking turns, or until
 * SECONDS have passed; then one table row per way. */
static void run_size(int n, int nbatch, double seconds, const char *label)
{
    struct tally t[WAY_COUNT];
    for (int w = 0; w < WAY_COUNT; w++) {
        t[w].lat = calloc((size_t)nbatch, sizeof *t[w].lat);
        t[w].n = 0;
        t[w].flushes = 0;
        if (!t[w].lat)
            die("calloc");
    }
    double end = now() + seconds;
    for (int k = 0; k < nbatch && (k == 0 || now() < end); k++) {
        for (int j = 0; j < WAY_COUNT; j++) {
            enum way w = (enum way)((k + j) % WAY_COUNT);
            unsigned long long f0 = flushes();
            double lat = w == WAY_FILES ? batch_files(n) : batch_journal(w, n);
            t[w].flushes += flushes() - f0;
            t[w].lat[t[w].n++] = lat;
        }
    }
    for (int w = 0; w < WAY_COUNT; w++) {
        report(label, n, (enum way)w, &t[w]);
        free(t[w].lat);
    }
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [-n BATCHES] [-t SECONDS] [-b 16,64] [-d DEV] "
            "[-l LABEL] [-q] DIR\n", prog);
    exit(2);
}

int main(int argc, char **argv)
{
    int nbatch = 200, sizes[MAX_SIZES] = { 16, 64 }, nsizes = 2, header = 1;
    double seconds = 30;
    const char *label = "-";
    int opt;
    while ((opt = getopt(argc, argv, "n:t:b:d:l:q")) != -1) {
        switch (opt) {
        case 'n': nbatch = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'b':
            nsizes = 0;
            for (char *s = strtok(optarg, ","); s && nsizes < MAX_SIZES; s = strtok(NULL, ","))
                sizes[nsizes++] = atoi(s);
            break;
        case 'd': dev = optarg; break;
        case 'l': label = optarg; break;
        case 'q': header = 0; break;
        default: usage(argv[0]);
        }
    }
    if (optind != argc - 1 || nbatch < 1 || seconds <= 0 || nsizes < 1)
        usage(argv[0]);
    for (int i = 0; i < nsizes; i++)
        if (sizes[i] < 1 || sizes[i] > MAX_BATCH)
            usage(argv[0]);
    snprintf(top, sizeof top, "%s/journal_probe.%d", argv[optind], (int)getpid());
    memset(body, 'x', sizeof body);
    setup();
    if (header) {
        printf("| neighbour | per batch | way | batches | median ms | p90 ms "
               "| p99 ms | max ms | msgs/s of flush time | flushes/batch |\n");
        printf("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    for (int i = 0; i < nsizes; i++)
        run_size(sizes[i], nbatch, seconds, label);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    return system(cmd) == 0 ? 0 : 1;
}
