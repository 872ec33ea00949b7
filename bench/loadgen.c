/*
 * loadgen.c - the load smtp-source cannot make: N idle SMTP clients held
 * open (each must get its 220 greeting), one more client's whole
 * transaction timed while they are connected, then the N held until told
 * to stop. Non-blocking, epoll, loopback only, bounded in time.
 *
 *   cc -std=c11 -O2 -D_GNU_SOURCE bench/loadgen.c -o build/loadgen
 *   loadgen -p PORT -n N [-a ADDR] [-r RCPT] [-t SECONDS] [-P]
 *
 * Prints key=value lines: "greeted=.. failed=.. connect_s=..", with -P
 * "probe_ms=.. probe_data_ms=..", then "READY"; holds the clients until
 * SIGTERM/SIGINT or -t seconds from start, then "closed_by_server=..".
 * Exit status 0 only when every client was greeted (and the probe passed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOADGEN_INFLIGHT 256    /* connects not yet greeted: stays < backlog */
#define LOADGEN_EVENTS 512
#define LOADGEN_PROBE_TIMEOUT 10 /* seconds per probe reply */

enum loadgen_state { LG_CONNECTING, LG_GREETING, LG_HELD, LG_DONE };

struct loadgen_conn {
    int fd;
    unsigned char state;
    unsigned char pos;          /* bytes seen of the current reply line */
    char head[4];               /* its first four bytes: "220 " or "220-" */
};

struct loadgen {
    struct sockaddr_in addr;
    int epfd;
    long n, opened, inflight, greeted, failed, closed;
    double deadline;
    const char *rcpt;
    struct loadgen_conn *conns;
};

static volatile sig_atomic_t loadgen_stop;

static void loadgen_on_signal(int sig)
{
    (void)sig;
    loadgen_stop = 1;
}

static double loadgen_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A client that failed or was closed: RST instead of TIME_WAIT, so that
 * repeated runs of 10,000 clients do not exhaust the ephemeral ports. */
static void loadgen_drop(struct loadgen_conn *c)
{
    struct linger lin = { 1, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lin, sizeof lin);
    close(c->fd);
    c->fd = -1;
    c->state = LG_DONE;
}

static void loadgen_fail(struct loadgen *lg, struct loadgen_conn *c)
{
    loadgen_drop(c);
    lg->failed++;
    lg->inflight--;
}

/* Start one non-blocking connect; a local failure counts as failed. */
static void loadgen_open(struct loadgen *lg)
{
    long i = lg->opened++;
    struct loadgen_conn *c = &lg->conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = LG_CONNECTING;
    c->pos = 0;
    lg->inflight++;
    if (c->fd < 0) {
        c->state = LG_DONE;
        lg->failed++;
        lg->inflight--;
        return;
    }
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN | EPOLLRDHUP,
                              .data.u64 = (uint64_t)i };
    if ((connect(c->fd, (struct sockaddr *)&lg->addr, sizeof lg->addr) < 0
         && errno != EINPROGRESS)
        || epoll_ctl(lg->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        loadgen_fail(lg, c);
}

/* Feed greeting bytes; the client is greeted at the end of a "220 " line. */
static void loadgen_parse(struct loadgen *lg, struct loadgen_conn *c,
                          const char *buf, ssize_t len)
{
    for (ssize_t k = 0; k < len && c->state == LG_GREETING; k++) {
        if (c->pos < 4)
            c->head[c->pos] = buf[k];
        if (c->pos < 255)
            c->pos++;
        if (buf[k] != '\n')
            continue;
        if (c->pos < 4 || memcmp(c->head, "220", 3) != 0) {
            loadgen_fail(lg, c);
            return;
        }
        if (c->head[3] == ' ') {
            c->state = LG_HELD;
            lg->greeted++;
            lg->inflight--;
        }
        c->pos = 0;
    }
}

static void loadgen_readable(struct loadgen *lg, struct loadgen_conn *c)
{
    char buf[512];
    ssize_t r = read(c->fd, buf, sizeof buf);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {               /* closed by the server, or reset */
        if (c->state == LG_HELD) {
            lg->closed++;
            loadgen_drop(c);
        } else {
            loadgen_fail(lg, c);
        }
        return;
    }
    if (c->state == LG_GREETING)
        loadgen_parse(lg, c, buf, r);
}

static void loadgen_event(struct loadgen *lg, const struct epoll_event *ev)
{
    struct loadgen_conn *c = &lg->conns[ev->data.u64];
    if (c->state == LG_DONE)
        return;
    if (c->state == LG_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            loadgen_fail(lg, c);
            return;
        }
        struct epoll_event mod = { .events = EPOLLIN | EPOLLRDHUP,
                                   .data.u64 = ev->data.u64 };
        epoll_ctl(lg->epfd, EPOLL_CTL_MOD, c->fd, &mod);
        c->state = LG_GREETING;
    }
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        loadgen_readable(lg, c);
}

/* One epoll round, 100 ms at most. 0, or -1 when stopped or past deadline. */
static int loadgen_turn(struct loadgen *lg)
{
    struct epoll_event evs[LOADGEN_EVENTS];
    if (loadgen_stop || loadgen_now() > lg->deadline)
        return -1;
    int k = epoll_wait(lg->epfd, evs, LOADGEN_EVENTS, 100);
    for (int i = 0; i < k; i++)
        loadgen_event(lg, &evs[i]);
    return 0;
}

/* Phase 1: every client connected and greeted (or failed). */
static void loadgen_connect_all(struct loadgen *lg)
{
    while (lg->greeted + lg->failed < lg->n) {
        while (lg->opened < lg->n && lg->inflight < LOADGEN_INFLIGHT)
            loadgen_open(lg);
        if (loadgen_turn(lg) < 0)
            return;
    }
}

/* ---- the probe: one blocking client, timed ---------------------------- */

/* Read one whole reply (continuation lines too); its code or -1. */
static int loadgen_reply(int fd)
{
    char line[1024];
    size_t len = 0;
    for (;;) {
        char ch;
        if (read(fd, &ch, 1) != 1)
            return -1;
        if (len < sizeof line - 1)
            line[len++] = ch;
        if (ch != '\n')
            continue;
        line[len] = '\0';
        if (len >= 4 && line[3] == ' ')
            return atoi(line);
        len = 0;
    }
}

static int loadgen_say(int fd, const char *text, int want)
{
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        return -1;
    return loadgen_reply(fd) == want ? 0 : -1;
}

static int loadgen_probe_session(int fd, const char *rcpt, double *data_done)
{
    char cmd[600];
    if (loadgen_reply(fd) != 220
        || loadgen_say(fd, "EHLO loadgen.invalid\r\n", 250) < 0
        || loadgen_say(fd, "MAIL FROM:<probe@loadgen.invalid>\r\n", 250) < 0)
        return -1;
    snprintf(cmd, sizeof cmd, "RCPT TO:<%s>\r\n", rcpt);
    if (loadgen_say(fd, cmd, 250) < 0 || loadgen_say(fd, "DATA\r\n", 354) < 0
        || loadgen_say(fd, "Subject: probe\r\n\r\nprobe\r\n.\r\n", 250) < 0)
        return -1;
    *data_done = loadgen_now();
    return loadgen_say(fd, "QUIT\r\n", 221);
}

/* EHLO/MAIL/RCPT/DATA/./QUIT on a fresh connection; prints its times. */
static int loadgen_probe(const struct loadgen *lg)
{
    struct timeval tv = { LOADGEN_PROBE_TIMEOUT, 0 };
    double start = loadgen_now(), data_done = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc = connect(fd, (const struct sockaddr *)&lg->addr, sizeof lg->addr);
    if (rc == 0)
        rc = loadgen_probe_session(fd, lg->rcpt, &data_done);
    double end = loadgen_now();
    close(fd);
    if (rc < 0) {
        printf("probe=failed\n");
        return -1;
    }
    printf("probe_ms=%.2f probe_data_ms=%.2f\n", (end - start) * 1e3,
           (data_done - start) * 1e3);
    return 0;
}

/* ---- setup ------------------------------------------------------------ */

static void loadgen_usage(void)
{
    fprintf(stderr, "usage: loadgen -p PORT -n N [-a ADDR] [-r RCPT] "
                    "[-t SECONDS] [-P]\n");
    exit(2);
}

/* The held clients need n descriptors: raise the soft limit to the hard. */
static int loadgen_rlimit(long n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)n + 16 > rl.rlim_cur) {
        fprintf(stderr, "loadgen: open-files limit %ld is below %ld + 16\n",
                (long)rl.rlim_cur, n);
        return -1;
    }
    return 0;
}

static int loadgen_args(struct loadgen *lg, int argc, char **argv, int *probe)
{
    const char *addr = "127.0.0.1";
    long port = 0, secs = 600;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:n:r:t:P")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = strtol(optarg, NULL, 10); break;
        case 'n': lg->n = strtol(optarg, NULL, 10); break;
        case 'r': lg->rcpt = optarg; break;
        case 't': secs = strtol(optarg, NULL, 10); break;
        case 'P': *probe = 1; break;
        default: loadgen_usage();
        }
    }
    lg->addr.sin_family = AF_INET;
    lg->addr.sin_port = htons((uint16_t)port);
    if (port <= 0 || port > 65535 || lg->n < 0 || secs <= 0
        || inet_pton(AF_INET, addr, &lg->addr.sin_addr) != 1)
        loadgen_usage();
    lg->deadline = loadgen_now() + (double)secs;
    return 0;
}

static void loadgen_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = loadgen_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv)
{
    struct loadgen lg = { .rcpt = "u@localhost" };
    int probe = 0, rc = 0;
    loadgen_args(&lg, argc, argv, &probe);
    loadgen_signals();
    lg.conns = calloc((size_t)lg.n + 1, sizeof *lg.conns);
    lg.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!lg.conns || lg.epfd < 0 || loadgen_rlimit(lg.n) < 0) {
        perror("loadgen: setup");
        return 1;
    }
    double start = loadgen_now();
    loadgen_connect_all(&lg);
    printf("greeted=%ld failed=%ld connect_s=%.3f\n", lg.greeted,
           lg.n - lg.greeted, loadgen_now() - start);
    if (lg.greeted != lg.n)
        rc = 1;
    if (probe && loadgen_probe(&lg) < 0)
        rc = 1;
    printf("READY\n");
    fflush(stdout);
    while (loadgen_turn(&lg) == 0)
        ;
    printf("closed_by_server=%ld\n", lg.closed);
    for (long i = 0; i < lg.opened; i++)
        if (lg.conns[i].state != LG_DONE)
            loadgen_drop(&lg.conns[i]);
    free(lg.conns);
    close(lg.epfd);
    return rc;
}
