/*
 * manager_args.c - the manager's command line: -i (repeatable, with an
 * optional port), -p, -k, -h, -v and one optional COMMAND.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manager.h"

static void manager_usage(FILE *out)
{
    fputs(
"usage: manager [-i ADDR[:PORT]]... [-p PORT] [-k TOKEN] [COMMAND]\n"
"\n"
"Asks a running smtpd through its UDP monitor (docs/monitor-protocol.md).\n"
"\n"
"options:\n"
"  -i ADDR   server: IPv4 or IPv6 address, or host name, optionally with\n"
"            its own port: ADDR:PORT, [IPV6]:PORT (default 127.0.0.1);\n"
"            repeatable: every server is asked, each answer printed and,\n"
"            for counters, their sum (at most 16 servers)\n"
"  -p PORT   monitor UDP port of the servers given without one, 1-65535\n"
"            (default 6060)\n"
"  -k TOKEN  monitor token, at most 8 bytes (default \"" MON_DEFAULT_TOKEN "\",\n"
"            the same as smtpd's)\n"
"  -h        print this help and exit\n"
"  -v        print the version and exit\n"
"\n"
"COMMAND (one request, the answer on standard output):\n"
"  hist      historical connections: SMTP clients accepted since start\n"
"  conc      concurrent connections: SMTP clients connected now\n"
"  bytes     bytes transferred: read from and written to SMTP clients\n"
"  status    whether transformations are ON or OFF\n"
"  on        switch transformations ON (the server needs -t)\n"
"  off       switch transformations OFF\n"
"  stats     every metric, one per line: the three above, transformations,\n"
"            messages delivered, recipients delivered, recipients rejected,\n"
"            auth failures, transformation failures, uptime seconds,\n"
"            monitor datagrams dropped, TLS sessions, logins delayed,\n"
"            logins refused\n"
"\n"
"Without COMMAND, a menu read line by line from standard input:\n"
"  0 hist   1 conc   2 bytes   3 status   4 on   5 off   s stats   q quit\n"
"  (a command word works too; end of input quits)\n"
"\n"
"Each request waits 1 second for its answer and is sent again with the\n"
"same id when none came, 3 times in all (about 3 seconds before \"no\n"
"answer\"), also when the server's host says nothing listens there.\n"
"\n"
"exit status: 0 done; 1 error status from a server, no answer from one\n"
"of them, or an unknown host; 2 bad usage.\n", out);
}

/* ---- command line ------------------------------------------------------ */

static int manager_set_port(char port[8], const char *arg)
{
    size_t len = strlen(arg);
    unsigned long v;

    if (len == 0 || len > 5 || strspn(arg, "0123456789") != len)
        return -1;
    v = strtoul(arg, NULL, 10);
    if (v == 0 || v > 65535)
        return -1;
    snprintf(port, 8, "%lu", v);
    return 0;
}

static int manager_set_token(struct manager *m, const char *arg)
{
    size_t len = strlen(arg);

    if (len > MON_TOKEN_LEN)
        return -1;
    memset(m->token, 0, sizeof m->token);
    memcpy(m->token, arg, len);
    return 0;
}

/* Splits -i's ADDR, ADDR:PORT, [IPV6] or [IPV6]:PORT; a bare IPv6
 * address (two colons or more) has no port. *host_len is the host's
 * length at arg + *host_at; *port is NULL when none was given. */
static int manager_split_host(const char *arg, size_t *host_at,
                              size_t *host_len, const char **port)
{
    const char *colon = strrchr(arg, ':');

    *host_at = 0;
    *port = NULL;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return -1;
        *host_at = 1;
        *host_len = (size_t)(close - arg) - 1;
        if (close[1] == ':')
            *port = close + 2;
        return 0;
    }
    if (colon != NULL && strchr(arg, ':') == colon) {
        *host_len = (size_t)(colon - arg);
        *port = colon + 1;
        return 0;
    }
    *host_len = strlen(arg);
    return 0;
}

/* One more -i server; its port, if it has none, comes from -p later. */
static int manager_add_server(struct manager *m, const char *arg)
{
    struct manager_server *srv = &m->servers[m->nservers];
    size_t at, len;
    const char *port;

    if (m->nservers == MANAGER_MAX_SERVERS
        || manager_split_host(arg, &at, &len, &port) < 0
        || len == 0 || len >= sizeof srv->host)
        return -1;
    memset(srv, 0, sizeof *srv);
    if (port != NULL && manager_set_port(srv->port, port) < 0)
        return -1;
    memcpy(srv->host, arg + at, len);
    srv->host[len] = '\0';
    m->nservers++;
    return 0;
}

/* One option; EXIT_OK to go on, else the problem is printed. */
static int manager_option(struct manager *m, int opt, const char *arg)
{
    switch (opt) {
    case 'i':
        if (manager_add_server(m, arg) == 0)
            return EXIT_OK;
        if (m->nservers == MANAGER_MAX_SERVERS)
            fprintf(stderr, "manager: at most %d servers (-i)\n", MANAGER_MAX_SERVERS);
        else
            fprintf(stderr, "manager: bad address '%s'\n", arg);
        return EXIT_USAGE;
    case 'p':
        if (manager_set_port(m->port, arg) == 0)
            return EXIT_OK;
        fprintf(stderr, "manager: bad port '%s' (1-65535)\n", arg);
        return EXIT_USAGE;
    case 'k':
        if (manager_set_token(m, arg) == 0)
            return EXIT_OK;
        fprintf(stderr, "manager: token longer than %d bytes\n", MON_TOKEN_LEN);
        return EXIT_USAGE;
    case ':':
        fprintf(stderr, "manager: option -%c needs a value (try -h)\n", optopt);
        return EXIT_USAGE;
    default:
        fprintf(stderr, "manager: unknown option -%c (try -h)\n", optopt);
        return EXIT_USAGE;
    }
}

/* Fills m from argv. Returns -1 to go on (*command set, NULL for the
 * menu), else the exit status to end with (-h, -v, bad usage). */
int manager_parse_args(int argc, char **argv, struct manager *m,
                              const char **command)
{
    int opt;

    snprintf(m->port, sizeof m->port, "%d", MON_DEFAULT_PORT);
    manager_set_token(m, MON_DEFAULT_TOKEN);
    opterr = 0;
    while ((opt = getopt(argc, argv, ":i:p:k:hv")) != -1) {
        if (opt == 'h') {
            manager_usage(stdout);
            return EXIT_OK;
        }
        if (opt == 'v') {
            puts("manager " MANAGER_VERSION);
            return EXIT_OK;
        }
        if (manager_option(m, opt, optarg) != EXIT_OK)
            return EXIT_USAGE;
    }
    if (argc - optind > 1) {
        fprintf(stderr, "manager: one COMMAND at most (try -h)\n");
        return EXIT_USAGE;
    }
    *command = optind < argc ? argv[optind] : NULL;
    if (m->nservers == 0)
        manager_add_server(m, "127.0.0.1");
    for (size_t i = 0; i < m->nservers; i++)
        if (m->servers[i].port[0] == '\0')
            memcpy(m->servers[i].port, m->port, sizeof m->port);
    return -1;
}
