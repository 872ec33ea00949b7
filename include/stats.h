/*
 * stats.h - the server's counters since start, read by the monitor and
 * the metrics endpoint.
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
    uint64_t auth_delayed;          /* 535s held back by the failure delay */
    uint64_t auth_refused;          /* AUTH answered 454: too many failures */
    uint64_t transform_failures;    /* transformations that failed */
    uint64_t monitor_dropped;       /* monitor datagrams not answered */
    uint64_t tls_sessions;          /* TLS handshakes completed (both ports) */
    uint64_t messages_rejected;     /* transactions ended by a 5xx after DATA */
    uint64_t messages_failed;       /* transactions ended by a 4xx after DATA */
    uint64_t auth_ok;               /* AUTH answered 235 */
    uint64_t refused_max_clients;   /* 421 4.3.2 at accept: over -c */
    uint64_t refused_client_limit;  /* over the per-client connection limit */
    uint64_t refused_client_rate;   /* over the per-client connection rate */
    uint64_t refused_message_rate;  /* MAIL over the per-client message rate */
    uint64_t refused_proxy;         /* closed for a missing, bad or slow
                                       PROXY header */
    uint64_t metrics_refused;       /* metrics connections over the cap */
    time_t started;                 /* time(NULL) at start */
};

extern struct stats stats;

void stats_init(void);
/* Seconds since stats_init(). */
uint64_t stats_uptime(void);

#endif
