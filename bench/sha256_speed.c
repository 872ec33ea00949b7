/*
 * sha256_speed.c - how fast maildir_sha256.c hashes message bodies, by
 * each path (portable C, x86 SHA instructions when the CPU has them), for
 * 1 KB and 100 KB inputs: the journal hashes every body on the committer
 * thread. Not part of make test; figures in docs/benchmarks.md.
 *
 *   make build/bench/sha256_speed && build/bench/sha256_speed [MB]
 *       MB (default 256): how much each measurement hashes; each is run
 *       3 times and the best is printed, in MB/s (10^6 bytes).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "maildir_sha256.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The digests are folded in here, so that no call can be left out. */
static volatile uint8_t sink;

/* MB/s over total bytes hashed len at a time, the best of 3 runs. */
static double speed(const uint8_t *buf, size_t len, size_t total)
{
    double best = 0;
    for (int run = 0; run < 3; run++) {
        size_t count = total / len;
        double t0 = now();
        for (size_t i = 0; i < count; i++) {
            uint8_t d[SHA256_LEN];
            sha256(buf, len, d);
            sink ^= d[i % SHA256_LEN];
        }
        double mbs = (double)(count * len) / 1e6 / (now() - t0);
        if (mbs > best)
            best = mbs;
    }
    return best;
}

int main(int argc, char **argv)
{
    size_t total = (size_t)(argc > 1 ? atoi(argv[1]) : 256) << 20;
    static const size_t sizes[] = { 1024, 100 * 1024 };
    static const struct { enum sha256_path path; const char *name; } paths[] = {
        { SHA256_PORTABLE, "portable" },
        { SHA256_SHANI, "sha-ni" },
    };
    static uint8_t buf[100 * 1024];
    if (total == 0) {
        fprintf(stderr, "usage: sha256_speed [MB]\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + (i >> 8));
    printf("%-9s %10s %10s\n", "path", "1 KB", "100 KB");
    for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
        if (sha256_set_path(paths[p].path) != 0) {
            printf("%-9s (not on this CPU)\n", paths[p].name);
            continue;
        }
        printf("%-9s", paths[p].name);
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
            printf(" %6.0f MB/s", speed(buf, sizes[s], total));
        printf("\n");
    }
    return 0;
}
