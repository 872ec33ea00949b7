/*
 * metrics.h - the Prometheus endpoint (--metrics ADDR:PORT): HTTP on the
 * same selector as SMTP, GET or HEAD /metrics answered with the stats
 * counters in the text exposition format 0.0.4.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>
#include "smtpd_args.h"
#include "metrics_http.h"
#include "selector.h"

#define METRICS_MAX_CONNS   64      /* more at once are closed on accept */
#define METRICS_REQUEST_MS  5000    /* a request must be whole by then: 400 */

/* Listens on cfg->metrics_addr port cfg->metrics_port, when given, and
 * registers the socket. 0 (also when off), or -1 after logging why. */
int metrics_open(struct selector *s, const struct config *cfg);

/* Adds the journal's figures (smtpd_journal_*) to every scrape. */
struct journal;
void metrics_watch_journal(const struct journal *j);

/* Closes the listener and every metrics connection. */
void metrics_close(struct selector *s);

/* The counters as exposition text into buf. Returns the length, or 0
 * when cap is too small. No I/O. */
size_t metrics_render(char *buf, size_t cap);

/*
 * The whole HTTP reply (status line, headers, body) to a request parsed
 * as st from in (r filled when st is DONE; anything else gets 400) into
 * out. Returns the length, or 0 when cap is too small. No I/O.
 */
size_t metrics_answer(const char *in, const struct metrics_http_req *r,
                      enum metrics_http_status st, char *out, size_t cap);

#endif
