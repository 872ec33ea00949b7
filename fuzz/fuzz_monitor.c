/*
 * fuzz_monitor.c - libFuzzer harness for monitor_handle(), the monitor
 * protocol without I/O: any datagram gets no answer or a well-formed
 * 15-byte one that agrees with the request, and only a datagram that may
 * be a request (5 to 14 bytes with the signature) gets one at all: an
 * answer to anything of response size could start two monitors
 * answering each other forever. Stubs stand in for the rest
 * of the server (build with -DFUZZ_MONITOR_NO_STUBS to link the real one).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "monitor.h"
#include "monitor_proto.h"
#include "selector.h"
#include "stats.h"
#include "transform.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_token[MON_TOKEN_LEN] = "smtpd";

#ifndef FUZZ_MONITOR_NO_STUBS
struct stats stats = {
    .connections_total = 0x0102030405060708ULL,
    .connections_current = 3,
    .bytes_transferred = UINT64_MAX,
};
static bool fuzz_on;
/* Whether a -t command is configured: set per input from the id's low
 * bit, so both answers to ON are reached. */
static bool fuzz_available;

uint64_t stats_uptime(void) { return 42; }
bool transform_enabled(void) { return fuzz_on; }

int transform_set_enabled(bool on)
{
    if (on && !fuzz_available)
        return -1;
    fuzz_on = on;
    return 0;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    (void)level;
    (void)fmt;
}

int selector_register(struct selector *s, int fd, const struct fd_handler *h,
                      unsigned interest, void *data)
{
    (void)s; (void)fd; (void)h; (void)interest; (void)data;
    return -1;
}

int selector_unregister(struct selector *s, int fd)
{
    (void)s; (void)fd;
    return -1;
}

/* The once-a-second summary of refused datagrams: no clock here. */
void selector_timer_set(struct selector *s, struct selector_timer *t,
                        uint64_t delay_ms)
{
    (void)s; (void)t; (void)delay_ms;
}

void selector_timer_cancel(struct selector *s, struct selector_timer *t)
{
    (void)s; (void)t;
}
#define FUZZ_SET_AVAILABLE(b) (fuzz_available = (b))
#else
#define FUZZ_SET_AVAILABLE(b) ((void)(b))
#endif

/* What must hold of any answer: the fixed header, the echoed id, a known
 * status, status 0 only for a valid request, and a proper boolean. */
static void fuzz_check_answer(const uint8_t *req, size_t n, const uint8_t *res)
{
    if (res[0] != MON_SIG0 || res[1] != MON_SIG1 || res[2] != MON_VERSION)
        abort();
    if (memcmp(res + MON_RES_ID, req + MON_REQ_ID, 2) != 0)
        abort();
    if (res[MON_RES_STATUS] > MON_NOT_AVAILABLE || res[MON_RES_BOOL] > 1)
        abort();
    if (n != MON_REQUEST_LEN && res[MON_RES_STATUS] != MON_BAD_LENGTH)
        abort();
    if (res[MON_RES_STATUS] == MON_OK
        && (req[2] != MON_VERSION || req[MON_REQ_CMD] >= MON_CMD_COUNT
            || memcmp(req + MON_REQ_TOKEN, fuzz_token, MON_TOKEN_LEN) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t res[MON_RESPONSE_LEN + 1];
    size_t r;

    FUZZ_SET_AVAILABLE(size > 3 && (data[3] & 1));
    memset(res, 0xAA, sizeof res);
    r = monitor_handle(data, size, fuzz_token, res);
    if (r != 0 && r != MON_RESPONSE_LEN)
        abort();
    if (res[MON_RESPONSE_LEN] != 0xAA)      /* wrote past the response */
        abort();
    bool may_be_request = size >= MON_MIN_ANSWERED && size < MON_RESPONSE_LEN
                          && data[0] == MON_SIG0 && data[1] == MON_SIG1;
    if ((r != 0) != may_be_request)
        abort();
    if (r == MON_RESPONSE_LEN)
        fuzz_check_answer(data, size, res);
    return 0;
}
