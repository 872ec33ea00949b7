/*
 * manager.c - the monitor's client (manager.1, docs/monitor-protocol.md): one 14-byte UDP request
 * per question, resent with the same id when unanswered, the answer printed
 * for a human. Standalone: libc, include/monitor_proto.h and its own
 * manager.h (shared with manager_args.c, the command line).
 * With several -i servers, every one is asked; counters are also summed.
 * Exit status: 0 ok, 1 error status / no answer (from any server) /
 * unknown host, 2 usage.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "manager.h"
#include "monitor_proto.h"

struct manager_answer {
    uint8_t status;
    uint64_t amount;
    bool flag;
};

/* What can be asked, and how its answer reads. The first six rows are
 * the menu, in its order (0 hist ... 5 off); `stats` asks every row with
 * in_stats set. */
struct manager_cmd {
    const char *name;       /* COMMAND word; NULL: only part of stats */
    uint8_t code;
    const char *label;
    bool boolean;           /* answers ON/OFF rather than an amount */
    bool in_stats;
};

static const struct manager_cmd manager_cmds[] = {
    { "hist",   MON_CMD_HISTORICAL, "historical connections", false, true },
    { "conc",   MON_CMD_CONCURRENT, "concurrent connections", false, true },
    { "bytes",  MON_CMD_BYTES,      "bytes transferred",      false, true },
    { "status", MON_CMD_STATUS,     "transformations",        true,  true },
    { "on",     MON_CMD_ON,         "transformations",        true,  false },
    { "off",    MON_CMD_OFF,        "transformations",        true,  false },
    { NULL, MON_CMD_MESSAGES,   "messages delivered",      false, true },
    { NULL, MON_CMD_RECIPIENTS, "recipients delivered",    false, true },
    { NULL, MON_CMD_RCPT_REJECTED, "recipients rejected",  false, true },
    { NULL, MON_CMD_AUTH_FAILURES, "auth failures",        false, true },
    { NULL, MON_CMD_TRANSFORM_FAILURES, "transformation failures", false, true },
    { NULL, MON_CMD_UPTIME,     "uptime seconds",          false, true },
    { NULL, MON_CMD_DROPPED,    "monitor datagrams dropped", false, true },
    { NULL, MON_CMD_TLS_SESSIONS, "TLS sessions",          false, true },
    { NULL, MON_CMD_AUTH_DELAYED, "logins delayed",        false, true },
    { NULL, MON_CMD_AUTH_REFUSED, "logins refused",        false, true },
    { NULL, MON_CMD_CLIENT_LIMIT, "client limit refusals", false, true },
    { NULL, MON_CMD_CLIENT_RATE, "client rate refusals", false, true },
    { NULL, MON_CMD_MESSAGE_RATE, "message rate refusals", false, true },
};
#define MANAGER_NCMDS (sizeof manager_cmds / sizeof manager_cmds[0])
#define MANAGER_MENU_LEN 6

static const char *const manager_status_text[] = {
    [MON_BAD_VERSION]   = "the server does not speak protocol version 0",
    [MON_AUTH_FAILED]   = "authentication failed (wrong token)",
    [MON_BAD_COMMAND]   = "the server does not know this command",
    [MON_BAD_LENGTH]    = "the server says the request length is wrong",
    [MON_ERROR]         = "the server had an unexpected error",
    [MON_NOT_AVAILABLE] = "not available: the server has no transformation "
                          "command (smtpd -t)",
};

/* ---- one question over UDP --------------------------------------------- */

static uint64_t manager_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Random, so that a late answer to an earlier run or question is not
 * taken for this one's. */
static uint16_t manager_request_id(void)
{
    uint16_t id;
    struct timespec ts;

    if (getrandom(&id, sizeof id, GRND_NONBLOCK) == (ssize_t)sizeof id)
        return id;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint16_t)((uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 3));
}

static void manager_build(const struct manager *m, uint8_t cmd, uint16_t id,
                          uint8_t req[MON_REQUEST_LEN])
{
    req[0] = MON_SIG0;
    req[1] = MON_SIG1;
    req[2] = MON_VERSION;
    req[MON_REQ_ID] = (uint8_t)(id >> 8);
    req[MON_REQ_ID + 1] = (uint8_t)(id & 0xFF);
    memcpy(req + MON_REQ_TOKEN, m->token, MON_TOKEN_LEN);
    req[MON_REQ_CMD] = cmd;
}

/* 0 and *ans filled when res[0..n) answers req; -1 for anything else
 * (stray or forged datagrams are ignored, not fatal). */
static int manager_parse(const uint8_t *req, const uint8_t *res, size_t n,
                         struct manager_answer *ans)
{
    if (n != MON_RESPONSE_LEN || res[0] != MON_SIG0 || res[1] != MON_SIG1
        || res[2] != MON_VERSION
        || memcmp(res + MON_RES_ID, req + MON_REQ_ID, 2) != 0)
        return -1;
    ans->status = res[MON_RES_STATUS];
    ans->amount = 0;
    for (int i = 0; i < 8; i++)
        ans->amount = ans->amount << 8 | res[MON_RES_AMOUNT + i];
    ans->flag = res[MON_RES_BOOL] != 0;
    return 0;
}

/* Waits MANAGER_WAIT_MS for the answer to req. 1: *ans filled; 0: none
 * this time; -1: the socket failed. A refusal (ICMP port unreachable:
 * nobody listens yet) does not end the wait early, so every try takes
 * the second the usage promises and a server that is starting up still
 * gets its chance. */
static int manager_wait(int fd, const uint8_t *req, struct manager_answer *ans)
{
    uint64_t deadline = manager_now_ms() + MANAGER_WAIT_MS;
    uint8_t res[MON_RESPONSE_LEN + 1];   /* +1: a longer one shows as such */

    for (;;) {
        uint64_t now = manager_now_ms();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (now >= deadline)
            return 0;
        int r = poll(&p, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r;
        ssize_t n = recv(fd, res, sizeof res, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN
                      || errno == ECONNREFUSED))
            continue;
        if (n < 0)
            return -1;
        if (manager_parse(req, res, (size_t)n, ans) == 0)
            return 1;
    }
}

/* Asks one address, resending the same request (same id) up to
 * MANAGER_TRIES times. 1, 0 or -1 as manager_wait. */
static int manager_ask_addr(const struct addrinfo *ai, const uint8_t *req,
                            struct manager_answer *ans)
{
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, ai->ai_protocol);
    int r = -1;

    if (fd < 0)
        return -1;
    /* connected: the kernel drops datagrams from anyone else, and a
     * refusal (ICMP port unreachable) comes back as ECONNREFUSED */
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        goto close_fd;
    for (int i = 0; i < MANAGER_TRIES; i++) {
        if (send(fd, req, MON_REQUEST_LEN, 0) < 0 && errno != ECONNREFUSED)
            break;
        r = manager_wait(fd, req, ans);
        if (r != 0)
            break;
    }
close_fd:
    close(fd);
    return r;
}

/* 0 with *ans filled, or -1 after saying why on stderr. */
static int manager_ask(const struct manager *m, const struct manager_server *srv,
                       uint8_t cmd, struct manager_answer *ans)
{
    uint8_t req[MON_REQUEST_LEN];

    manager_build(m, cmd, manager_request_id(), req);
    for (const struct addrinfo *ai = srv->addrs; ai != NULL; ai = ai->ai_next) {
        if (manager_ask_addr(ai, req, ans) == 1)
            return 0;
    }
    fprintf(stderr, "manager: no answer from %s port %s\n", srv->host, srv->port);
    return -1;
}

/* ---- answers for humans ------------------------------------------------ */

/* "ADDR:PORT: " before each answer when several servers are asked. */
static void manager_server_name(const struct manager *m,
                                const struct manager_server *srv,
                                char *dst, size_t len)
{
    if (m->nservers == 1)
        dst[0] = '\0';
    else if (strchr(srv->host, ':'))
        snprintf(dst, len, "[%s]:%s: ", srv->host, srv->port);
    else
        snprintf(dst, len, "%s:%s: ", srv->host, srv->port);
}

static void manager_print(const char *who, const struct manager_cmd *c,
                          const struct manager_answer *a)
{
    if (c->boolean)
        printf("%s%s: %s\n", who, c->label, a->flag ? "ON" : "OFF");
    else
        printf("%s%s: %" PRIu64 "\n", who, c->label, a->amount);
    fflush(stdout);
}

static void manager_print_status(const char *who, uint8_t status)
{
    size_t n = sizeof manager_status_text / sizeof manager_status_text[0];

    if (status < n && manager_status_text[status] != NULL)
        fprintf(stderr, "manager: %s%s\n", who, manager_status_text[status]);
    else
        fprintf(stderr, "manager: %sthe server answered unknown status %u\n",
                who, (unsigned)status);
}

/* Asks one server c and prints its answer; EXIT_OK with *a filled, or
 * EXIT_FAILED. A server that does not answer is not asked again. */
static int manager_run_one(struct manager *m, struct manager_server *srv,
                           const struct manager_cmd *c, struct manager_answer *a)
{
    char who[sizeof srv->host + 16];

    manager_server_name(m, srv, who, sizeof who);
    if (srv->silent || manager_ask(m, srv, c->code, a) < 0) {
        srv->silent = true;
        return EXIT_FAILED;
    }
    if (a->status != MON_OK) {
        manager_print_status(who, a->status);
        return EXIT_FAILED;
    }
    manager_print(who, c, a);
    return EXIT_OK;
}

/* Asks every server c, in -i order; for a counter asked of several, also
 * prints the sum of the answers (uptimes are not summed). EXIT_OK when
 * every server answered OK. */
static int manager_run(struct manager *m, const struct manager_cmd *c)
{
    struct manager_answer a;
    uint64_t sum = 0;
    size_t ok = 0;

    for (size_t i = 0; i < m->nservers; i++) {
        if (manager_run_one(m, &m->servers[i], c, &a) == EXIT_OK) {
            sum += a.amount;
            ok++;
        }
    }
    if (m->nservers > 1 && !c->boolean && c->code != MON_CMD_UPTIME && ok > 0) {
        if (ok == m->nservers)
            printf("total: %s: %" PRIu64 "\n", c->label, sum);
        else
            printf("total of %zu of %zu servers: %s: %" PRIu64 "\n", ok,
                   m->nservers, c->label, sum);
        fflush(stdout);
    }
    return ok == m->nservers ? EXIT_OK : EXIT_FAILED;
}

/* `stats`: every metric. A server that gave no answer is not asked the
 * rest (it would only time out again); with one server, the first
 * failure ends it. */
static int manager_run_stats(struct manager *m)
{
    int rc = EXIT_OK;

    for (size_t i = 0; i < MANAGER_NCMDS; i++) {
        if (manager_cmds[i].in_stats
            && manager_run(m, &manager_cmds[i]) != EXIT_OK) {
            rc = EXIT_FAILED;
            if (m->nservers == 1)
                break;
        }
    }
    return rc;
}

static const struct manager_cmd *manager_find(const char *word)
{
    for (size_t i = 0; i < MANAGER_NCMDS; i++) {
        if (manager_cmds[i].name && strcmp(manager_cmds[i].name, word) == 0)
            return &manager_cmds[i];
    }
    return NULL;
}

static int manager_command(struct manager *m, const char *word)
{
    if (strcmp(word, "stats") == 0)
        return manager_run_stats(m);
    return manager_run(m, manager_find(word));
}

/* ---- the menu ---------------------------------------------------------- */

static void manager_show_menu(void)
{
    /* the rows follow manager_cmds[0..5] */
    fputs("smtpd monitor:\n"
          "  0  hist    historical connections\n"
          "  1  conc    concurrent connections\n"
          "  2  bytes   bytes transferred\n"
          "  3  status  are transformations ON or OFF?\n"
          "  4  on      switch transformations ON\n"
          "  5  off     switch transformations OFF\n"
          "  s  stats   every metric\n"
          "  q  quit\n", stdout);
    fflush(stdout);
}

/* One line from stdin, trimmed, without its newline; an over-long line is
 * read to its end and cut. false at end of input. */
static bool manager_read_line(char *line, size_t size)
{
    size_t len;
    int c;

    if (fgets(line, (int)size, stdin) == NULL)
        return false;
    len = strlen(line);
    if (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    else
        while ((c = getchar()) != EOF && c != '\n')
            ;
    while (len > 0 && isspace((unsigned char)line[len - 1]))
        line[--len] = '\0';
    len = strspn(line, " \t");
    memmove(line, line + len, strlen(line + len) + 1);
    return true;
}

/* One menu answer: a digit, a command word, s, q. false: quit. */
static bool manager_menu_choice(struct manager *m, const char *choice)
{
    if (strcmp(choice, "q") == 0 || strcmp(choice, "quit") == 0)
        return false;
    if (choice[0] >= '0' && choice[0] < '0' + MANAGER_MENU_LEN
        && choice[1] == '\0')
        manager_run(m, &manager_cmds[choice[0] - '0']);
    else if (strcmp(choice, "s") == 0 || strcmp(choice, "stats") == 0)
        manager_run_stats(m);
    else if (manager_find(choice) != NULL)
        manager_run(m, manager_find(choice));
    else if (choice[0] != '\0')
        printf("unknown choice '%.40s': 0-5, s or q\n", choice);
    return true;
}

static int manager_menu(struct manager *m)
{
    char line[MANAGER_LINE_MAX];
    bool tty = isatty(STDIN_FILENO);

    manager_show_menu();
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        if (!manager_read_line(line, sizeof line))
            return EXIT_OK;
        for (size_t i = 0; i < m->nservers; i++)
            m->servers[i].silent = false;   /* each choice asks them all */
        if (!manager_menu_choice(m, line))
            return EXIT_OK;
    }
}

/* ---- main -------------------------------------------------------------- */

/* Every server, before any is asked: one unknown host ends the run. */
static int manager_resolve(struct manager *m)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_NUMERICSERV };

    for (size_t i = 0; i < m->nservers; i++) {
        struct manager_server *srv = &m->servers[i];
        int rc = getaddrinfo(srv->host, srv->port, &hints, &srv->addrs);
        if (rc != 0) {
            fprintf(stderr, "manager: cannot resolve %s: %s\n", srv->host,
                    gai_strerror(rc));
            return -1;
        }
    }
    return 0;
}

static void manager_free(struct manager *m)
{
    for (size_t i = 0; i < m->nservers; i++)
        if (m->servers[i].addrs != NULL)
            freeaddrinfo(m->servers[i].addrs);
}

int main(int argc, char **argv)
{
    static struct manager m;
    const char *command = NULL;
    int rc = manager_parse_args(argc, argv, &m, &command);

    if (rc >= 0)
        return rc;
    if (command != NULL && strcmp(command, "stats") != 0
        && manager_find(command) == NULL) {
        fprintf(stderr, "manager: unknown command '%s' (try -h)\n", command);
        return EXIT_USAGE;
    }
    if (manager_resolve(&m) < 0) {
        manager_free(&m);
        return EXIT_FAILED;
    }
    rc = command ? manager_command(&m, command) : manager_menu(&m);
    manager_free(&m);
    return rc;
}
