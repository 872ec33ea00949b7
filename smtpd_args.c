/*
 * smtpd_args.c - smtpd's command line (smtpd.8) into struct config. Checks every
 * value that needs no I/O; on a bad one prints one line and exits 2 before
 * anything is opened.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtpd_args.h"
#include "parser.h"
#include "smtp_limits.h"
#include "maildir_journal.h"
#include "maildir_quota.h"
#include "transport_tls.h"

static const char usage_text[] =
    "usage: smtpd [-d DOMAIN] [-s PORT] [-p PORT] [-a ADDR]... [-m ADDR]...\n"
    "             [-f DIR] [-u USER:PASS]... [-A] [-k TOKEN] [-t CMD]\n"
    "             [-l FILE] [-L LEVEL] [-c N] [-z BYTES] [-T SECONDS] [-v] [-h]\n"
#ifdef SMTPD_TLS
    "             [--tls-cert FILE [--tls-key FILE] [--smtps-port PORT]\n"
    "              [--require-tls]]\n"
#endif
    "             [--passwd-file FILE]...\n"
    "             [--proxy-from ADDR[/PREFIX]]... [--vrfy on|auth|off]\n"
    "             [--monitor-token-file FILE] [--metrics ADDR:PORT]\n"
    "             [--recipient-delimiter CHARS] [--aliases FILE]\n"
    "             [--quota BYTES[:COUNT]]\n"
    "             [--client-limit N] [--client-rate N] [--message-rate N]\n"
    "             [--limit-exempt ADDR[/PREFIX]]...\n"
    "             [--no-journal] [--checkpoint SECONDS] [--journal-size BYTES]\n"
    "\n"
    "  -d DOMAIN     local mail domain, also the greeting name (localhost)\n"
    "  -s PORT       SMTP TCP port (2525)\n"
    "  -p PORT       monitor UDP port (6060)\n"
    "  -a ADDR       SMTP listen address, repeatable (every IPv4 and IPv6 address)\n"
    "  -m ADDR       monitor listen address, repeatable (127.0.0.1 and ::1)\n"
    "  -f DIR        mailbox root, DIR/<user>/{tmp,new,cur} (./mail)\n"
    "  -u USER:PASS  a user who may AUTH; mailbox created at start, repeatable\n"
    "                (for demos: other local users may see PASS at start)\n"
    "  -A            require AUTH before MAIL\n"
    "  -k TOKEN      monitor token, up to 8 bytes (" DEFAULT_MONITOR_TOKEN ");\n"
    "                other local users may see it at start: prefer\n"
    "                --monitor-token-file\n"
    "  -t CMD        transformation command, run as /bin/sh -c CMD (none)\n"
    "  -l FILE       log file, reopened on SIGHUP (standard error)\n"
    "  -L LEVEL      debug, info, warning or error (info)\n"
    "  -c N          most concurrent SMTP clients (10000)\n"
    "  -z BYTES      largest message, advertised as SIZE (10485760)\n"
    "  -T SECONDS    idle timeout per command and DATA read; longest\n"
    "                transformation run; a message gets 10 x -T, a TLS\n"
    "                handshake 10 s or -T if shorter (300)\n"
    "  -v            print the version and exit\n"
    "  -h            print this help and exit\n"
#ifdef SMTPD_TLS
    "  --tls-cert FILE    PEM certificate (chain): offer STARTTLS; AUTH only\n"
    "                     inside TLS; reloaded on SIGHUP (none)\n"
    "  --tls-key FILE     PEM private key (the --tls-cert file)\n"
    "  --smtps-port PORT  also listen for implicit TLS on PORT (none)\n"
    "  --require-tls      refuse MAIL before STARTTLS (530 5.7.0)\n"
#endif
    "  --passwd-file FILE users who may AUTH, Dovecot passwd-file lines\n"
    "                     user:{SCHEME}hash (SHA512-CRYPT, SHA256-CRYPT,\n"
    "                     BLF-CRYPT, CRYPT, PLAIN); reread on SIGHUP;\n"
    "                     repeatable, adds to -u\n"
    "  --proxy-from ADDR[/PREFIX]\n"
    "                     clients from here (a load balancer) must start with\n"
    "                     a PROXY protocol header, version 1 or 2, before\n"
    "                     anything else, TLS included; repeatable\n"
    "                     (none)\n"
    "  --vrfy on|auth|off VRFY answers anyone, only after AUTH (530 5.7.0\n"
    "                     before), or no one (502 5.5.1); auth or off for a\n"
    "                     server facing the internet (on)\n"
    "  --monitor-token-file FILE\n"
    "                     the monitor token is FILE's first line, up to 8\n"
    "                     bytes (instead of -k; none)\n"
    "  --metrics ADDR:PORT\n"
    "                     serve Prometheus metrics on http://ADDR:PORT/metrics;\n"
    "                     IPv6 as [ADDR]:PORT (off)\n"
    "  --recipient-delimiter CHARS\n"
    "                     user+tag reaches user, into its folder .tag if it\n"
    "                     has one; up to 8 of + - _ . =, \"\" for none (+)\n"
    "  --aliases FILE     local aliases, lines name: target, target...; \"*\"\n"
    "                     catches the rest; reread on SIGHUP (none)\n"
    "  --quota BYTES[:COUNT]\n"
    "                     every mailbox's limit (suffixes k M G), kept in its\n"
    "                     maildirsize; RCPT gets 552 5.2.2 when full; a\n"
    "                     passwd-file user's userdb_quota_rule=*:storage=N\n"
    "                     [:messages=M] (N in KiB) is that user's (none)\n"
    "  --client-limit N   most connections open at once per client address\n"
    "                     (an IPv6 client by its /64); the next gets 421 4.7.0\n"
    "                     (0 = none)\n"
    "  --client-rate N    most new connections per client address in any\n"
    "                     minute; the next gets 421 4.7.0 (0 = none)\n"
    "  --message-rate N   most messages per client address in any minute;\n"
    "                     MAIL gets 452 4.7.0 past it (0 = none)\n"
    "  --limit-exempt ADDR[/PREFIX]\n"
    "                     clients never held to those three limits;\n"
    "                     repeatable (none)\n"
    "  --no-journal       make each message durable by syncing its files and\n"
    "                     new/ directories, instead of the write-ahead journal\n"
    "                     (DIR/.journal/) synced once per batch (journal)\n"
    "  --checkpoint SECONDS\n"
    "                     how often the journal's files are synced and its\n"
    "                     space freed, 1-3600 (10)\n"
    "  --journal-size BYTES\n"
    "                     the journal's largest size, suffixes k M G, at\n"
    "                     least 8M, in steps of 4M (64M)\n";

/* Long options have no letter: their values start above any char. */
enum {
    OPT_FIRST_LONG = 256,
    OPT_TLS_CERT = OPT_FIRST_LONG, OPT_TLS_KEY, OPT_SMTPS_PORT, OPT_REQUIRE_TLS,
    OPT_PASSWD_FILE, OPT_PROXY_FROM,
    OPT_VRFY,
    OPT_TOKEN_FILE,
    OPT_METRICS,
    OPT_DELIMITER, OPT_ALIASES, OPT_QUOTA,
    OPT_CLIENT_LIMIT, OPT_CLIENT_RATE, OPT_MESSAGE_RATE, OPT_LIMIT_EXEMPT,
    OPT_NO_JOURNAL, OPT_CHECKPOINT, OPT_JOURNAL_SIZE,
};

static const struct option long_options[] = {
    { "tls-cert",    required_argument, NULL, OPT_TLS_CERT },
    { "tls-key",     required_argument, NULL, OPT_TLS_KEY },
    { "smtps-port",  required_argument, NULL, OPT_SMTPS_PORT },
    { "require-tls", no_argument,       NULL, OPT_REQUIRE_TLS },
    { "passwd-file", required_argument, NULL, OPT_PASSWD_FILE },
    { "proxy-from",  required_argument, NULL, OPT_PROXY_FROM },
    { "vrfy",        required_argument, NULL, OPT_VRFY },
    { "monitor-token-file", required_argument, NULL, OPT_TOKEN_FILE },
    { "metrics",     required_argument, NULL, OPT_METRICS },
    { "recipient-delimiter", required_argument, NULL, OPT_DELIMITER },
    { "aliases",     required_argument, NULL, OPT_ALIASES },
    { "quota",       required_argument, NULL, OPT_QUOTA },
    { "client-limit", required_argument, NULL, OPT_CLIENT_LIMIT },
    { "client-rate", required_argument, NULL, OPT_CLIENT_RATE },
    { "message-rate", required_argument, NULL, OPT_MESSAGE_RATE },
    { "limit-exempt", required_argument, NULL, OPT_LIMIT_EXEMPT },
    { "no-journal",  no_argument,       NULL, OPT_NO_JOURNAL },
    { "checkpoint",  required_argument, NULL, OPT_CHECKPOINT },
    { "journal-size", required_argument, NULL, OPT_JOURNAL_SIZE },
    { NULL, 0, NULL, 0 },
};

static _Noreturn void args_die(const char *fmt, const char *value)
{
    fputs("smtpd: ", stderr);
    fprintf(stderr, fmt, value);
    fputs(" (smtpd -h for help)\n", stderr);
    exit(2);
}

/* Decimal in [min, max], nothing else on the line. */
static uint64_t args_number(const char *s, uint64_t min, uint64_t max,
                            const char *what)
{
    if (!isdigit((unsigned char)s[0]))
        args_die(what, s);
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        args_die(what, s);
    return v;
}

static void args_address(const char *s, const char *what)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, s, buf) != 1 && inet_pton(AF_INET6, s, buf) != 1)
        args_die(what, s);
}

static int args_domain_ok(const char *d)
{
    size_t len = strlen(d);
    if (len == 0 || len > SMTP_DOMAIN_MAX || d[0] == '.' || d[0] == '-')
        return 0;
    for (const char *p = d; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return 0;
    return strstr(d, "..") == NULL;
}

/* Copies USER:PASS out of argv, then blanks the password there so that
 * ps and /proc/PID/cmdline do not show it (a brief window at start-up
 * remains; a careful site puts passwords in a file it protects). */
static void args_user(struct config *cfg, char *spec)
{
    char *colon = strchr(spec, ':');
    if (colon == NULL || colon == spec)
        args_die("bad -u '%s': expected USER:PASS", spec);
    if (!parser_local_part_ok(spec, (size_t)(colon - spec)))
        args_die("bad -u user name in '%s'", spec);
    if (cfg->n_users == ARGS_MAX_USERS)
        args_die("too many -u users (at most %s)", "256");
    char *name = strndup(spec, (size_t)(colon - spec));
    char *pass = strdup(colon + 1);
    if (name == NULL || pass == NULL)
        args_die("out of memory%s", "");
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (args_find_user(cfg, name))
        args_die("user '%s' given twice", name);
    memset(colon + 1, 'x', strlen(colon + 1));
    cfg->users[cfg->n_users].name = name;
    cfg->users[cfg->n_users].pass = pass;
    cfg->n_users++;
}

static void args_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->domain = "localhost";
    cfg->smtp_port = 2525;
    cfg->monitor_port = 6060;
    cfg->root = "./mail";
    memcpy(cfg->token, DEFAULT_MONITOR_TOKEN, strlen(DEFAULT_MONITOR_TOKEN));
    cfg->token_is_default = 1;
    cfg->log_level = LOG_INFO;
    cfg->max_clients = 10000;
    cfg->max_size = 10485760;
    cfg->checkpoint = JOURNAL_CHECKPOINT_DEFAULT;
    cfg->journal_size = JOURNAL_SIZE_DEFAULT;
    cfg->timeout_s = 300;
    memcpy(cfg->delimiters, "+", 2);
}

static void args_add_addr(const char **list, size_t *n, const char *addr,
                          const char *what)
{
    args_address(addr, what);
    if (*n == ARGS_MAX_ADDRS)
        args_die("too many addresses: '%s'", addr);
    list[(*n)++] = addr;
}

/* Copies -k, then blanks it in argv as args_user does the passwords (a
 * too long one is not echoed either: it may be the token with a typo). */
static void args_token(struct config *cfg, char *tok)
{
    size_t len = strlen(tok);
    if (len > MONITOR_TOKEN_LEN)
        args_die("-k token is longer than 8 bytes%s", "");
    memset(cfg->token, 0, sizeof(cfg->token));
    memcpy(cfg->token, tok, len);
    memset(tok, 'x', len);
    cfg->token_is_default = 0;
}

static _Noreturn void args_token_file_die(const char *path, const char *why)
{
    fprintf(stderr, "smtpd: %s: %s\n", path, why);
    exit(2);
}

void args_load_token_file(struct config *cfg)
{
    const char *path = cfg->token_file;
    char buf[MONITOR_TOKEN_LEN + 3];        /* token, CR, LF, one more */
    struct stat st;
    if (path == NULL)
        return;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        args_token_file_die(path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        args_token_file_die(path, "not a regular file");
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) < 0 && errno == EINTR)
        ;
    close(fd);
    if (n < 0)
        args_token_file_die(path, strerror(errno));
    size_t len = 0;
    while (len < (size_t)n && buf[len] != '\n')
        len++;
    size_t end = len;
    if (end > 0 && buf[end - 1] == '\r')
        end--;                              /* a CRLF file */
    if (len == (size_t)n && (size_t)n == sizeof buf)
        end = sizeof buf;                   /* no newline in sight */
    if (end == 0)
        args_token_file_die(path, "no token on the first line");
    if (end > MONITOR_TOKEN_LEN)
        args_token_file_die(path, "the token on the first line is longer "
                                  "than 8 bytes");
    if (memchr(buf, '\0', end))
        args_token_file_die(path, "NUL byte in the token");
    memset(cfg->token, 0, sizeof(cfg->token));
    memcpy(cfg->token, buf, end);
    explicit_bzero(buf, sizeof buf);
    cfg->token_is_default = 0;
    if (st.st_mode & (S_IRGRP | S_IROTH))
        log_warn("%s: readable by group or others (chmod 600 or 640 with "
                 "a trusted group)", path);
}

static void args_proxy_from(struct config *cfg, const char *arg)
{
    if (cfg->n_proxy_from == ARGS_MAX_ADDRS)
        args_die("too many --proxy-from entries: '%s'", arg);
    if (proxy_net_parse(arg, &cfg->proxy_from[cfg->n_proxy_from]) < 0)
        args_die("bad --proxy-from '%s': expected ADDR or ADDR/PREFIX", arg);
    cfg->n_proxy_from++;
}

static void args_vrfy(struct config *cfg, const char *arg)
{
    if (strcmp(arg, "on") == 0)
        cfg->vrfy = VRFY_ON;
    else if (strcmp(arg, "auth") == 0)
        cfg->vrfy = VRFY_AUTH;
    else if (strcmp(arg, "off") == 0)
        cfg->vrfy = VRFY_OFF;
    else
        args_die("bad --vrfy '%s': expected on, auth or off", arg);
}

/* --metrics ADDR:PORT, an IPv6 ADDR in brackets: [::1]:9100. */
static void args_metrics(struct config *cfg, const char *arg)
{
    const char *bad = "bad --metrics '%s': expected ADDR:PORT or [ADDR]:PORT";
    const char *colon = strrchr(arg, ':');
    const char *addr = arg, *end = colon;
    if (colon == NULL)
        args_die(bad, arg);
    if (arg[0] == '[') {
        addr = arg + 1;
        end = colon - 1;
        if (end < addr || *end != ']')
            args_die(bad, arg);
    }
    size_t len = (size_t)(end - addr);
    if (len == 0 || len >= sizeof(cfg->metrics_addr))
        args_die(bad, arg);
    memcpy(cfg->metrics_addr, addr, len);
    cfg->metrics_addr[len] = '\0';
    unsigned char buf[sizeof(struct in6_addr)];
    int family = arg[0] == '[' ? AF_INET6 : AF_INET;
    if (inet_pton(family, cfg->metrics_addr, buf) != 1)
        args_die(bad, arg);
    cfg->metrics_port = (uint16_t)args_number(colon + 1, 1, 65535,
                                              "bad --metrics port '%s'");
}

/* --recipient-delimiter: "" (none) or up to 8 of "+-_.=". */
static void args_delimiter(struct config *cfg, const char *arg)
{
    size_t len = strlen(arg);
    if (len >= sizeof(cfg->delimiters) || strspn(arg, "+-_.=") != len)
        args_die("bad --recipient-delimiter '%s': at most 8 of + - _ . =", arg);
    memcpy(cfg->delimiters, arg, len + 1);
}

/* --client-limit, --client-rate, --message-rate, --limit-exempt. */
static void args_limits(struct config *cfg, int opt, const char *arg)
{
    switch (opt) {
    case OPT_CLIENT_LIMIT:
        cfg->client_limit = (unsigned)args_number(arg, 0, 1000000,
                                                  "bad --client-limit '%s'");
        break;
    case OPT_CLIENT_RATE:
        cfg->client_rate = (unsigned)args_number(arg, 0, LIMITS_RATE_MAX,
                                                 "bad --client-rate '%s'");
        break;
    case OPT_MESSAGE_RATE:
        cfg->message_rate = (unsigned)args_number(arg, 0, LIMITS_RATE_MAX,
                                                  "bad --message-rate '%s'");
        break;
    default:
        if (cfg->n_limit_exempt == ARGS_MAX_ADDRS)
            args_die("too many --limit-exempt entries: '%s'", arg);
        if (proxy_net_parse(arg, &cfg->limit_exempt[cfg->n_limit_exempt]) < 0)
            args_die("bad --limit-exempt '%s': expected ADDR or ADDR/PREFIX", arg);
        cfg->n_limit_exempt++;
    }
}

/* --no-journal, --checkpoint, --journal-size (rounded up to 4 MiB). */
static void args_journal(struct config *cfg, int opt, const char *arg)
{
    uint64_t size;
    switch (opt) {
    case OPT_NO_JOURNAL: cfg->no_journal = 1; break;
    case OPT_CHECKPOINT:
        cfg->checkpoint = (unsigned)args_number(arg, 1, 3600,
                                                "bad --checkpoint '%s': 1-3600");
        break;
    default:
        if (quota_parse_size(arg, strlen(arg), 1, &size) < 0
            || size < JOURNAL_SIZE_MIN || size > (1ULL << 40))
            args_die("bad --journal-size '%s': at least 8M, suffixes k M G", arg);
        cfg->journal_size = (size + JOURNAL_STEP - 1) / JOURNAL_STEP * JOURNAL_STEP;
    }
}

static void args_option(struct config *cfg, int opt, char *arg)
{
    switch (opt) {
    case OPT_NO_JOURNAL: case OPT_CHECKPOINT: case OPT_JOURNAL_SIZE:
        args_journal(cfg, opt, arg);
        break;
    case OPT_DELIMITER: args_delimiter(cfg, arg); break;
    case OPT_QUOTA:
        if (quota_parse_limit(arg, &cfg->quota) < 0)
            args_die("bad --quota '%s': BYTES[:COUNT], suffixes k M G", arg);
        break;
    case OPT_ALIASES:
        if (arg[0] == '\0')
            args_die("empty --aliases%s", "");
        cfg->aliases_file = arg;
        break;
    case OPT_CLIENT_LIMIT: case OPT_CLIENT_RATE:
    case OPT_MESSAGE_RATE: case OPT_LIMIT_EXEMPT:
        args_limits(cfg, opt, arg);
        break;
    case OPT_METRICS: args_metrics(cfg, arg); break;
    case OPT_PROXY_FROM: args_proxy_from(cfg, arg); break;
    case OPT_VRFY: args_vrfy(cfg, arg); break;
    case 'd':
        if (!args_domain_ok(arg))
            args_die("bad domain '%s'", arg);
        cfg->domain = arg;
        break;
    case 's': cfg->smtp_port = (uint16_t)args_number(arg, 1, 65535, "bad SMTP port '%s'"); break;
    case 'p': cfg->monitor_port = (uint16_t)args_number(arg, 1, 65535, "bad monitor port '%s'"); break;
    case 'a': args_add_addr(cfg->smtp_addrs, &cfg->n_smtp_addrs, arg, "bad listen address '%s'"); break;
    case 'm': args_add_addr(cfg->monitor_addrs, &cfg->n_monitor_addrs, arg, "bad monitor address '%s'"); break;
    case 'f':
        if (arg[0] == '\0')
            args_die("empty mailbox root%s", "");
        cfg->root = arg;
        break;
    case 'u': args_user(cfg, arg); break;
    case 'A': cfg->require_auth = 1; break;
    case 'k': args_token(cfg, arg); break;
    case 't':
        if (arg[0] == '\0')
            args_die("empty transformation command%s", "");
        cfg->transform_cmd = arg;
        break;
    case 'l': cfg->log_file = arg; break;
    case 'L':
        if (log_level_parse(arg, &cfg->log_level) < 0)
            args_die("unknown log level '%s' (debug, info, warning, error)", arg);
        break;
    case 'c': cfg->max_clients = (unsigned)args_number(arg, 1, 1000000, "bad client limit '%s'"); break;
    case 'z': cfg->max_size = args_number(arg, 1, UINT64_MAX / 2, "bad size limit '%s'"); break;
    case 'T': cfg->timeout_s = (unsigned)args_number(arg, 1, 86400, "bad timeout '%s'"); break;
    case 'v':
        if (TLS_BUILT)
            printf("smtpd %s (TLS: %s)\n", SMTPD_VERSION, tls_library());
        else
            printf("smtpd %s (built without TLS)\n", SMTPD_VERSION);
        exit(0);
    case OPT_TLS_CERT:    cfg->tls_cert = arg; break;
    case OPT_TLS_KEY:     cfg->tls_key = arg; break;
    case OPT_SMTPS_PORT:  cfg->smtps_port = (uint16_t)args_number(arg, 1, 65535, "bad --smtps-port '%s'"); break;
    case OPT_REQUIRE_TLS: cfg->require_tls = 1; break;
    case OPT_TOKEN_FILE:
        if (arg[0] == '\0')
            args_die("empty --monitor-token-file%s", "");
        cfg->token_file = arg;
        break;
    case OPT_PASSWD_FILE:
        if (cfg->n_passwd_files == ARGS_MAX_PASSWD_FILES)
            args_die("too many --passwd-file options: '%s'", arg);
        cfg->passwd_files[cfg->n_passwd_files++] = arg;
        break;
    case 'h': fputs(usage_text, stdout); exit(0);
    default:
        fputs(usage_text, stderr);
        exit(2);
    }
}

/* An unknown option, or one without its value: named as typed. */
static _Noreturn void args_bad_option(int opt, char **argv)
{
    char bad[3] = { '-', (char)optopt, '\0' };
    const char *name = optopt == 0 || optopt >= OPT_FIRST_LONG
                       ? argv[optind - 1] : bad;
    args_die(opt == '?' ? "unknown option %s" : "option %s needs a value", name);
}

/* The TLS options need each other, and a build with TLS. */
static void args_check_tls(const struct config *cfg)
{
    bool any = cfg->tls_cert || cfg->tls_key || cfg->smtps_port || cfg->require_tls;
    if (any && !TLS_BUILT)
        args_die("TLS options given, but this smtpd is built without TLS%s", "");
    if (cfg->tls_key && !cfg->tls_cert)
        args_die("--tls-key needs --tls-cert%s", "");
    if (cfg->smtps_port && !cfg->tls_cert)
        args_die("--smtps-port needs --tls-cert%s", "");
    if (cfg->require_tls && !cfg->tls_cert)
        args_die("--require-tls needs --tls-cert%s", "");
    if (cfg->smtps_port && cfg->smtps_port == cfg->smtp_port)
        args_die("--smtps-port is the same as the SMTP port%s", "");
}

void args_parse(int argc, char **argv, struct config *cfg)
{
    args_defaults(cfg);
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":d:s:p:a:m:f:u:Ak:t:l:L:c:z:T:vh",
                              long_options, NULL)) != -1) {
        if (opt == '?' || opt == ':')
            args_bad_option(opt, argv);
        args_option(cfg, opt, optarg);
    }
    if (optind < argc)
        args_die("unexpected argument '%s'", argv[optind]);
    args_check_tls(cfg);
    if (cfg->token_file && !cfg->token_is_default)
        args_die("-k and --monitor-token-file exclude each other%s", "");
}

void args_free(struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_users; i++) {
        free(cfg->users[i].name);
        free(cfg->users[i].pass);
    }
    cfg->n_users = 0;
}

const struct user *args_find_user(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_users; i++)
        if (strcmp(cfg->users[i].name, name) == 0)
            return &cfg->users[i];
    return NULL;
}
