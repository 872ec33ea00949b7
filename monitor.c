/*
 * monitor.c - the UDP monitor (docs/monitor-protocol.md): turns
 * 14-byte requests into 15-byte responses from the stats counters,
 * switches transformations, and owns the UDP sockets it answers on.
 * Client datagrams are never fatal: the worst they get is an error status.
 */
#include "monitor.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "monitor_proto.h"
#include "stats.h"
#include "transform.h"

/* Room for any request; recvfrom with MSG_TRUNC still reports a longer
 * datagram's real length, which is what the length rule looks at. */
#define MONITOR_DGRAM_MAX 64
/* -m addresses, plus room for a numeric one resolving to several. */
#define MONITOR_MAX_FDS (ARGS_MAX_ADDRS * 2)
/* Datagrams one wake-up reads from one socket. The rest wait in the
 * kernel for the next turn, after every other ready handler has run: a
 * flood slows the monitor's answers, never the SMTP clients or SIGTERM. */
#define MONITOR_BURST 32

/* One bound socket: its address is what "from ourselves" is checked
 * against. Slots never move, since the selector holds pointers to them. */
struct monitor_sock {
    int fd;                         /* -1: slot free */
    struct sockaddr_storage local;  /* as bound (getsockname) */
};

static struct monitor_sock monitor_socks[MONITOR_MAX_FDS];
static size_t monitor_nsocks;       /* slots ever used (high-water mark) */
/* A copy of -k, valid as long as the sockets are. */
static uint8_t monitor_token[MON_TOKEN_LEN];

/* Refused datagrams (a wrong token, or malformed: bad length, version or
 * command, no signature, from ourselves) are counted, not logged one by
 * one: a timer armed by the first of them logs one summary a second
 * later, so a flood adds one line per second to the log. */
#define MONITOR_SUMMARY_MS 1000
static struct selector *monitor_sel;
static struct selector_timer monitor_summary_timer;
static struct {
    uint64_t bad_token, malformed;
    struct sockaddr_storage last;   /* the latest one's source */
    socklen_t last_len;
} monitor_refused;

/* ---- the protocol, no I/O --------------------------------------------- */

/* Compares every byte whatever the first difference, so the time taken
 * says nothing about how much of a guessed token was right. */
static bool monitor_token_ok(const uint8_t *got, const uint8_t *want)
{
    uint8_t diff = 0;

    for (size_t i = 0; i < MON_TOKEN_LEN; i++)
        diff |= (uint8_t)(got[i] ^ want[i]);
    return diff == 0;
}

/* The checks, in the order the protocol fixes: length, version, token,
 * command. */
static uint8_t monitor_check(const uint8_t *req, size_t n,
                             const uint8_t token[8])
{
    if (n != MON_REQUEST_LEN)
        return MON_BAD_LENGTH;
    if (req[2] != MON_VERSION)
        return MON_BAD_VERSION;
    if (!monitor_token_ok(req + MON_REQ_TOKEN, token))
        return MON_AUTH_FAILED;
    if (req[MON_REQ_CMD] >= MON_CMD_COUNT)
        return MON_BAD_COMMAND;
    return MON_OK;
}

static void monitor_put_amount(uint8_t *res, uint64_t amount)
{
    for (int i = 7; i >= 0; i--) {
        res[MON_RES_AMOUNT + i] = (uint8_t)(amount & 0xFF);
        amount >>= 8;
    }
}

/* The counter behind a counter command (every command but 0x03-0x05). */
static uint64_t monitor_counter(uint8_t cmd)
{
    switch (cmd) {
    case MON_CMD_HISTORICAL:         return stats.connections_total;
    case MON_CMD_CONCURRENT:         return stats.connections_current;
    case MON_CMD_BYTES:              return stats.bytes_transferred;
    case MON_CMD_MESSAGES:           return stats.messages_delivered;
    case MON_CMD_RECIPIENTS:         return stats.recipients_delivered;
    case MON_CMD_RCPT_REJECTED:      return stats.rcpt_rejected;
    case MON_CMD_AUTH_FAILURES:      return stats.auth_failures;
    case MON_CMD_TRANSFORM_FAILURES: return stats.transform_failures;
    case MON_CMD_UPTIME:             return stats_uptime();
    case MON_CMD_DROPPED:            return stats.monitor_dropped;
    case MON_CMD_TLS_SESSIONS:       return stats.tls_sessions;
    case MON_CMD_AUTH_DELAYED:       return stats.auth_delayed;
    case MON_CMD_AUTH_REFUSED:       return stats.auth_refused;
    case MON_CMD_CLIENT_LIMIT:       return stats.refused_client_limit;
    case MON_CMD_CLIENT_RATE:        return stats.refused_client_rate;
    case MON_CMD_MESSAGE_RATE:       return stats.refused_message_rate;
    default:                         return 0;
    }
}

/* Runs a command that passed the checks; fills status, amount, boolean.
 * ON and OFF answer the state after the switch, so repeating them is
 * harmless (a client may retransmit). */
static void monitor_run(uint8_t cmd, uint8_t *res)
{
    switch (cmd) {
    case MON_CMD_ON:
        if (transform_set_enabled(true) < 0) {
            res[MON_RES_STATUS] = MON_NOT_AVAILABLE;
            return;
        }
        res[MON_RES_BOOL] = transform_enabled() ? 1 : 0;
        return;
    case MON_CMD_OFF:
        transform_set_enabled(false);
        res[MON_RES_BOOL] = transform_enabled() ? 1 : 0;
        return;
    case MON_CMD_STATUS:
        res[MON_RES_BOOL] = transform_enabled() ? 1 : 0;
        return;
    default:
        monitor_put_amount(res, monitor_counter(cmd));
        return;
    }
}

/*
 * Which datagrams may be answered at all. A response is 15 bytes and
 * starts with the same signature as a request, so answering anything of
 * 15 bytes or more could mean answering another monitor's response (or
 * our own, forged back at us), and the two would answer each other
 * forever. Below 5 bytes there is no request id to echo, so an answer
 * could not be matched to anything a client sent.
 */
static bool monitor_answerable(const uint8_t *req, size_t n)
{
    return n >= MON_MIN_ANSWERED && n < MON_RESPONSE_LEN
           && req[0] == MON_SIG0 && req[1] == MON_SIG1;
}

size_t monitor_handle(const uint8_t *req, size_t n, const uint8_t token[8],
                      uint8_t res[15])
{
    if (!monitor_answerable(req, n))
        return 0;
    memset(res, 0, MON_RESPONSE_LEN);
    res[0] = MON_SIG0;
    res[1] = MON_SIG1;
    res[2] = MON_VERSION;
    res[MON_RES_ID] = req[MON_REQ_ID];
    res[MON_RES_ID + 1] = req[MON_REQ_ID + 1];
    res[MON_RES_STATUS] = monitor_check(req, n, token);
    if (res[MON_RES_STATUS] == MON_OK)
        monitor_run(req[MON_REQ_CMD], res);
    return MON_RESPONSE_LEN;
}

/* ---- sockets ---------------------------------------------------------- */

static void monitor_on_read(struct selector_key *key);
static void monitor_on_close(struct selector_key *key);

static const struct fd_handler monitor_handler = {
    .on_read = monitor_on_read,
    .on_write = NULL,
    .on_close = monitor_on_close,
};

static void monitor_peer_name(const struct sockaddr_storage *sa,
                              socklen_t len, char *buf, size_t size)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];

    if (getnameinfo((const struct sockaddr *)sa, len, host, sizeof host,
                    serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(buf, size, "?");
    else if (sa->ss_family == AF_INET6)
        snprintf(buf, size, "[%s]:%s", host, serv);
    else
        snprintf(buf, size, "%s:%s", host, serv);
}

/* The summary of the refused datagrams counted since the last one. */
static void monitor_log_refused(struct selector *s, void *data)
{
    char peer[NI_MAXHOST + NI_MAXSERV + 4];
    uint64_t total = monitor_refused.bad_token + monitor_refused.malformed;

    (void)s;
    (void)data;
    if (total == 0)
        return;
    monitor_peer_name(&monitor_refused.last, monitor_refused.last_len, peer,
                      sizeof peer);
    log_info("monitor: %llu datagrams refused in the last second (bad "
             "token: %llu, malformed: %llu), last from %s",
             (unsigned long long)total,
             (unsigned long long)monitor_refused.bad_token,
             (unsigned long long)monitor_refused.malformed, peer);
    monitor_refused.bad_token = monitor_refused.malformed = 0;
}

static void monitor_count_refused(bool bad_token,
                                  const struct sockaddr_storage *sa,
                                  socklen_t len)
{
    if (bad_token)
        monitor_refused.bad_token++;
    else
        monitor_refused.malformed++;
    memcpy(&monitor_refused.last, sa, sizeof *sa);
    monitor_refused.last_len = len;
    if (monitor_summary_timer.slot == 0 && monitor_sel) {
        monitor_summary_timer.on_expire = monitor_log_refused;
        selector_timer_set(monitor_sel, &monitor_summary_timer,
                           MONITOR_SUMMARY_MS);
    }
}

/* Switches are worth an admin's attention, reads are logged at debug
 * level, refusals only counted for the summary. */
static void monitor_log(const uint8_t *req, const uint8_t *res,
                        const struct sockaddr_storage *sa, socklen_t len)
{
    char peer[NI_MAXHOST + NI_MAXSERV + 4];
    uint8_t status = res[MON_RES_STATUS];

    if (status != MON_OK) {
        monitor_count_refused(status == MON_AUTH_FAILED, sa, len);
        return;
    }
    int cmd = req[MON_REQ_CMD];         /* a 14-byte request: it passed */
    monitor_peer_name(sa, len, peer, sizeof peer);
    if (cmd == MON_CMD_ON || cmd == MON_CMD_OFF)
        log_info("monitor: %s switched transformations %s", peer,
                 res[MON_RES_BOOL] ? "ON" : "OFF");
    else
        log_debug("monitor: %s asked for command %d", peer, cmd);
}

/* The port of an IPv4 or IPv6 address, host order; 0 for anything else. */
static uint16_t monitor_port_of(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

/* Whether a's address is b's, or b is bound to every address (then any
 * address of this host is ours; we take every one, which costs nothing:
 * a client never sends from the monitor's own port). */
static bool monitor_same_host(const struct sockaddr_storage *a,
                              const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        in_addr_t x = ((const struct sockaddr_in *)a)->sin_addr.s_addr;
        in_addr_t y = ((const struct sockaddr_in *)b)->sin_addr.s_addr;
        return x == y || y == htonl(INADDR_ANY);
    }
    const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
    const struct in6_addr *y = &((const struct sockaddr_in6 *)b)->sin6_addr;
    return IN6_ARE_ADDR_EQUAL(x, y) || IN6_IS_ADDR_UNSPECIFIED(y);
}

/* A datagram from port 0 (no one can answer there) or from the socket's
 * own address and port (a forgery: answering it would feed ourselves). */
static bool monitor_from_ourselves(const struct monitor_sock *ms,
                                   const struct sockaddr_storage *sa)
{
    uint16_t port = monitor_port_of(sa);

    return port == 0
        || (port == monitor_port_of(&ms->local)
            && monitor_same_host(sa, &ms->local));
}

/* Answers one datagram, or counts it as dropped. A response the kernel
 * cannot take now is dropped too: this is UDP, the client retransmits. */
static void monitor_answer(const struct monitor_sock *ms, const uint8_t *req,
                           size_t n, const struct sockaddr_storage *sa,
                           socklen_t len)
{
    uint8_t res[MON_RESPONSE_LEN];

    if (monitor_from_ourselves(ms, sa)
        || monitor_handle(req, n, monitor_token, res) == 0) {
        stats.monitor_dropped++;
        monitor_count_refused(false, sa, len);
        return;
    }
    monitor_log(req, res, sa, len);
    if (sendto(ms->fd, res, sizeof res, MSG_DONTWAIT,
               (const struct sockaddr *)sa, len) < 0)
        log_debug("monitor: sendto: %s", strerror(errno));
}

/* At most MONITOR_BURST datagrams per wake-up (see the selector's rule);
 * the socket stays readable, so the rest come in the next turn. */
static void monitor_on_read(struct selector_key *key)
{
    const struct monitor_sock *ms = key->data;
    uint8_t req[MONITOR_DGRAM_MAX];

    for (int i = 0; i < MONITOR_BURST; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        ssize_t n = recvfrom(key->fd, req, sizeof req, MSG_TRUNC,
                             (struct sockaddr *)&sa, &len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("monitor: recvfrom: %s", strerror(errno));
            return;
        }
        monitor_answer(ms, req, (size_t)n, &sa, len);
    }
}

static void monitor_on_close(struct selector_key *key)
{
    struct monitor_sock *ms = key->data;

    ms->fd = -1;
    close(key->fd);
}

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: only this machine can reach
 * a socket bound there. */
static bool monitor_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a)
            || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* IPv6 sockets are IPv6-only, so that "::" and "0.0.0.0" can both be
 * asked for; except for a v4-mapped address, which only a dual socket
 * can bind. */
static bool monitor_wants_v6only(const struct addrinfo *ai)
{
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ai->ai_addr;

    return ai->ai_family == AF_INET6
        && !IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
}

/* A non-blocking UDP socket bound to ai. The fd, or -1 with errno set. */
static int monitor_bind(const struct addrinfo *ai)
{
    int on = 1, err;
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);

    if (fd < 0)
        return -1;
    if (monitor_wants_v6only(ai)
        && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0)
        goto close_fd;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        goto close_fd;
    return fd;

close_fd:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

/* A free slot for a new socket, or NULL when all are taken. */
static struct monitor_sock *monitor_slot(void)
{
    for (size_t i = 0; i < monitor_nsocks; i++)
        if (monitor_socks[i].fd < 0)
            return &monitor_socks[i];
    if (monitor_nsocks == MONITOR_MAX_FDS)
        return NULL;
    return &monitor_socks[monitor_nsocks++];
}

/* Hands a bound socket to the selector and remembers it with its local
 * address. 0 or -1; on -1 the fd is closed. */
static int monitor_register(struct selector *s, int fd, const char *addr)
{
    struct monitor_sock *ms = monitor_slot();
    socklen_t len = sizeof ms->local;

    if (ms == NULL) {
        log_error("monitor: too many sockets, not serving %s", addr);
        close(fd);
        return -1;
    }
    ms->fd = -1;
    if (getsockname(fd, (struct sockaddr *)&ms->local, &len) < 0
        || selector_register(s, fd, &monitor_handler, OP_READ, ms) < 0) {
        log_error("monitor: cannot watch %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    ms->fd = fd;
    return 0;
}

/* True when a default address failed only because this machine lacks it
 * (no IPv6 loopback, say): the server goes on with the other one. */
static bool monitor_missing_here(int err)
{
    return err == EADDRNOTAVAIL || err == EAFNOSUPPORT;
}

/* Binds and registers one resolved address. 1: bound; 0: skipped (a
 * default address this machine lacks); -1 after logging why. */
static int monitor_add_one(struct selector *s, const struct addrinfo *ai,
                           const char *addr, const char *port, bool optional)
{
    int fd = monitor_bind(ai);

    if (fd < 0 && optional && monitor_missing_here(errno)) {
        log_warn("monitor: %s is not available here (%s), going on "
                 "without it", addr, strerror(errno));
        return 0;
    }
    if (fd < 0) {
        log_error("monitor: cannot bind %s port %s: %s", addr, port,
                  strerror(errno));
        return -1;
    }
    if (monitor_register(s, fd, addr) < 0)
        return -1;
    log_info("monitor: listening on %s port %s (UDP)", addr, port);
    return 1;
}

/* Binds and registers every socket addr stands for. Returns how many,
 * or -1 after logging why. optional: a default address, which may be
 * missing on this machine. */
static int monitor_add(struct selector *s, const char *addr, const char *port,
                       bool optional, bool default_token)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
    struct addrinfo *list;
    int rc, bound = 0;

    rc = getaddrinfo(addr, port, &hints, &list);
    if (rc != 0) {
        log_error("monitor: bad address %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        rc = monitor_add_one(s, ai, addr, port, optional);
        if (rc < 0) {
            bound = -1;
            break;
        }
        if (rc > 0 && default_token && !monitor_is_loopback(ai->ai_addr))
            log_warn("monitor: the default token is in use on non-loopback "
                     "address %s; set one with -k", addr);
        bound += rc;
    }
    freeaddrinfo(list);
    return bound;
}

int monitor_open(struct selector *s, const struct config *cfg)
{
    static const char *const defaults[] = { "127.0.0.1", "::1" };
    bool given = cfg->n_monitor_addrs > 0;
    const char *const *addrs = given ? cfg->monitor_addrs : defaults;
    size_t n = given ? cfg->n_monitor_addrs : 2;
    char port[8];
    int bound = 0;

    memcpy(monitor_token, cfg->token, MON_TOKEN_LEN);
    monitor_sel = s;
    snprintf(port, sizeof port, "%u", (unsigned)cfg->monitor_port);
    for (size_t i = 0; i < n; i++) {
        int r = monitor_add(s, addrs[i], port, !given,
                            cfg->token_is_default != 0);
        if (r < 0) {
            monitor_close(s);
            return -1;
        }
        bound += r;
    }
    if (bound == 0) {
        log_error("monitor: no address could be bound");
        return -1;
    }
    return 0;
}

void monitor_close(struct selector *s)
{
    selector_timer_cancel(s, &monitor_summary_timer);
    monitor_log_refused(s, NULL);       /* the count of the last second */
    monitor_sel = NULL;
    for (size_t i = 0; i < monitor_nsocks; i++) {
        int fd = monitor_socks[i].fd;
        if (fd >= 0 && selector_unregister(s, fd) < 0) {
            monitor_socks[i].fd = -1;
            close(fd);
        }
    }
}
