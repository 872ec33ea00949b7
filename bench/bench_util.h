/*
 * bench_util.h - the two helpers every C probe in bench/ needs: stop with
 * the failing call's error, and a monotonic clock in seconds.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline void die(const char *what)
{
    perror(what);
    exit(1);
}

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
