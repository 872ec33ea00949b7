/*
 * stats.h - the server's counters since start, read by the monitor.
 * Plain globals: one thread updates and reads them (the event loop).
 */
#ifndef STATS_H
#define STATS_H

#include <stdint.h>
#include <time.h>

struct stats {
    uint64_t connections_total;     /* SMTP clients accepted, ever */
    uint64_t connections_current;   /* SMTP clients connected now */
    uint64_t bytes_transferred;     /* read from + written to SMTP clients */
    uint64_t messages_delivered;    /* messages answered 250 after DATA */
    uint64_t recipients_delivered;  /* mailbox files made by those */
    uint64_t rcpt_rejected;         /* RCPT answered 4xx/5xx */
    uint64_t auth_failures;         /* AUTH answered 535 or cancelled */
    uint64_t transform_failures;    /* transformations that failed */
    uint64_t monitor_dropped;       /* monitor datagrams not answered */
    time_t started;                 /* time(NULL) at start */
};

extern struct stats stats;

void stats_init(void);
/* Seconds since stats_init(). */
uint64_t stats_uptime(void);

#endif
