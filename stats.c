/*
 * stats.c - the counters the monitor reports. Updated and read only by
 * the event loop's thread, so they are plain integers.
 */
#include <time.h>

#include "stats.h"

struct stats stats;

void stats_init(void)
{
    struct stats zero = { 0 };
    stats = zero;
    stats.started = time(NULL);
}

uint64_t stats_uptime(void)
{
    time_t now = time(NULL);
    return now > stats.started ? (uint64_t)(now - stats.started) : 0;
}
