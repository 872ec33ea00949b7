/*
 * monitor.h - the UDP monitor (docs/monitor-protocol.md): answers 14-byte requests with
 * 15-byte responses from the stats counters and switches
 * transformations. Served by the same selector as SMTP.
 */
#ifndef MONITOR_H
#define MONITOR_H

#include <stddef.h>
#include <stdint.h>
#include "smtpd_args.h"
#include "selector.h"

/* Binds cfg->monitor_addrs (or 127.0.0.1 and ::1) on cfg->monitor_port and
 * registers the sockets. 0, or -1 after logging why. */
int monitor_open(struct selector *s, const struct config *cfg);

/* Unregisters and closes the sockets. */
void monitor_close(struct selector *s);

/*
 * The protocol itself, with no I/O (fuzz/fuzz_monitor.c feeds it):
 * builds the response to req[0..n) into res[MON_RESPONSE_LEN]. Returns
 * MON_RESPONSE_LEN, or 0 when no answer is due (no signature).
 */
size_t monitor_handle(const uint8_t *req, size_t n, const uint8_t token[8],
                      uint8_t res[15]);

#endif
