/*
 * smtpd.c - main: reads the command line, prepares the mailbox root,
 * opens the listeners, the committer and the monitor, turns signals into
 * events (self-pipe) and runs the loop until a graceful stop is over.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include "smtpd_args.h"
#include "log.h"
#include "auth_login.h"
#include "maildir.h"
#include "maildir_replay.h"
#include "metrics.h"
#include "monitor.h"
#include "addr.h"
#include "auth_passwd.h"
#include "selector.h"
#include "smtp_limits.h"
#include "smtp_session.h"
#include "maildir_spool.h"
#include "stats.h"
#include "transport_tls.h"
#include "transform.h"

#define TMP_MAX_AGE (36 * 3600)     /* stale tmp/ files (maildir(5)) */
#define LISTEN_BACKLOG 4096

static int signal_pipe[2] = { -1, -1 };
static int listeners[ARGS_MAX_ADDRS * 4];
static size_t nlisteners;
static bool stopping;
static struct selector_timer stop_timer;

static _Noreturn void die_startup(const char *what, const char *arg)
{
    fprintf(stderr, "smtpd: %s %s: %s\n", what, arg, strerror(errno));
    exit(2);
}

/* ---- signals: the handler only writes the number to a pipe ---------- */

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(signal_pipe[1], &b, 1);
    (void)w;    /* a full pipe already holds a wake-up */
    errno = saved;
}

static void signals_install(void)
{
    if (pipe2(signal_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        die_startup("cannot create", "the signal pipe");
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
}

static void listeners_close(struct selector *sel)
{
    for (size_t i = 0; i < nlisteners; i++)
        selector_unregister(sel, listeners[i]);
    nlisteners = 0;
}

static void on_stop_deadline(struct selector *sel, void *data)
{
    (void)sel;
    (void)data;
    log_warn("shutdown: closing %zu sessions still open", session_count());
    session_close_all();
}

/* SIGTERM/SIGINT: no new clients; sessions end as smtpd.8 says. A second
 * signal closes everything at once. */
static void begin_stop(struct selector *sel, const struct config *cfg)
{
    if (stopping) {
        session_close_all();
        return;
    }
    stopping = true;
    log_info("shutting down: %zu sessions open", session_count());
    listeners_close(sel);
    session_shutdown_all();
    stop_timer.on_expire = on_stop_deadline;
    selector_timer_set(sel, &stop_timer, (uint64_t)cfg->timeout_s * 1000);
}

/* SIGHUP: the log file first, so the reloads' outcome lands in the new
 * one; then the password files and the certificate (a certbot deploy
 * hook). A bad new file or certificate keeps the one in use. */
static void on_sighup(const struct config *cfg)
{
    if (log_reopen() < 0)
        log_error("cannot reopen the log file: %s", strerror(errno));
    else
        log_info("log file reopened");
    passwd_reload();
    addr_reload();
    if (cfg->tls_cert == NULL)
        return;
    char err[512];
    if (tls_configure(cfg->tls_cert, cfg->tls_key, err, sizeof(err)) < 0)
        log_error("TLS certificate not reloaded, keeping the old one: %s", err);
    else
        log_info("TLS certificate reloaded from %s", cfg->tls_cert);
}

/* One read per wake-up (the selector's rule): what is left of a burst of
 * signals is read in the next turn. */
static void on_signal_pipe(struct selector_key *key)
{
    const struct config *cfg = key->data;
    unsigned char sigs[64];
    ssize_t n = read(key->fd, sigs, sizeof(sigs));
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (sigs[i] == SIGCHLD)
                transform_reap();
            else if (sigs[i] == SIGHUP)
                on_sighup(cfg);
            else if (sigs[i] == SIGTERM || sigs[i] == SIGINT)
                begin_stop(key->s, cfg);
        }
    }
}

static void on_close_fd(struct selector_key *key)
{
    close(key->fd);
}

static const struct fd_handler signal_handler = {
    .on_read = on_signal_pipe, .on_close = on_close_fd,
};
static const struct fd_handler listen_handler = {
    .on_read = session_on_accept, .on_close = on_close_fd,
};
static const struct fd_handler listen_tls_handler = {
    .on_read = session_on_accept_tls, .on_close = on_close_fd,
};

/* ---- start-up ------------------------------------------------------- */

/* As many descriptors as we are allowed: every client costs one. */
static size_t raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1048576 ? 1048576
                                                                : (size_t)rl.rlim_cur;
}

/* Says which it is: a root that exists but cannot be written in, one
 * that is not a directory, or one that could not be made. */
static _Noreturn void die_root(const char *root)
{
    struct stat st;
    int saved = errno;
    if (stat(root, &st) == 0 && !S_ISDIR(st.st_mode))
        fprintf(stderr, "smtpd: the mailbox root %s is not a directory\n", root);
    else if (stat(root, &st) == 0)
        fprintf(stderr, "smtpd: cannot write in the mailbox root %s: %s\n",
                root, strerror(saved));
    else
        fprintf(stderr, "smtpd: cannot create the mailbox root %s: %s\n",
                root, strerror(saved));
    exit(2);
}

/* The root as resolved at start: -f may name a link, nothing below it
 * may be one (maildir.h). */
static char *resolved_root;

static void prepare_mailboxes(struct config *cfg)
{
    if (maildir_root_init(cfg->root) < 0)
        die_root(cfg->root);
    resolved_root = realpath(cfg->root, NULL);
    if (resolved_root == NULL)
        die_startup("cannot resolve the mailbox root", cfg->root);
    cfg->root = resolved_root;
    if (maildir_create(cfg->root, "postmaster") < 0)
        die_startup("cannot create mailbox", "postmaster");
    for (size_t i = 0; i < cfg->n_users; i++) {
        if (maildir_create(cfg->root, cfg->users[i].name) == 0)
            continue;
        if (errno != ELOOP)
            die_startup("cannot create mailbox", cfg->users[i].name);
        log_warn("mailbox %s/%s is a symbolic link: not a mailbox, "
                 "nothing is delivered there", cfg->root, cfg->users[i].name);
    }
    int removed = maildir_clean_tmp(cfg->root, TMP_MAX_AGE);
    if (removed > 0)
        log_info("removed %d stale files from tmp/", removed);
    /* before the first client: what a crash left in the journals */
    if (journal_recover(cfg->root) < 0)
        die_startup("cannot replay the journals in", cfg->root);
}

static int listen_on(struct selector *sel, const char *addr, uint16_t port,
                     const struct fd_handler *handler)
{
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_PASSIVE,
                              .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai;
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    if (getaddrinfo(addr, service, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    }
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0
        || listen(fd, LISTEN_BACKLOG) < 0
        || selector_register(sel, fd, handler, OP_READ, NULL) < 0) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        errno = saved;
        return -1;
    }
    freeaddrinfo(ai);
    listeners[nlisteners++] = fd;
    log_info("listening on %s port %u", addr, port);
    return 0;
}

/* Explicit -a addresses must all work; of the default pair, one will do
 * (a machine without IPv6 still serves IPv4). */
static int open_port(struct selector *sel, const struct config *cfg,
                     uint16_t port, const struct fd_handler *handler)
{
    static const char *const any[] = { "0.0.0.0", "::" };
    bool explicit = cfg->n_smtp_addrs > 0;
    const char *const *addrs = explicit ? cfg->smtp_addrs : any;
    size_t n = explicit ? cfg->n_smtp_addrs : 2, opened = 0;
    for (size_t i = 0; i < n; i++) {
        if (listen_on(sel, addrs[i], port, handler) == 0) {
            opened++;
            continue;
        }
        log_error("cannot listen on %s port %u: %s", addrs[i], port,
                  strerror(errno));
        if (explicit)
            return -1;
    }
    return opened > 0 ? 0 : -1;
}

/* The SMTP port, and the implicit-TLS port on the same addresses. */
static int open_listeners(struct selector *sel, const struct config *cfg)
{
    if (open_port(sel, cfg, cfg->smtp_port, &listen_handler) < 0)
        return -1;
    if (cfg->smtps_port)
        return open_port(sel, cfg, cfg->smtps_port, &listen_tls_handler);
    return 0;
}

/* --tls-cert: loaded before any socket opens; a bad pair exits 2. Without
 * it, passwords would cross a network in clear: say so. */
static void prepare_tls(const struct config *cfg)
{
    char err[512];
    if (cfg->tls_cert && tls_configure(cfg->tls_cert, cfg->tls_key, err,
                                       sizeof(err)) < 0) {
        fprintf(stderr, "smtpd: %s\n", err);
        exit(2);
    }
    if (cfg->tls_cert || passwd_count() == 0)
        return;
    bool public = cfg->n_smtp_addrs == 0;
    for (size_t i = 0; i < cfg->n_smtp_addrs; i++)
        if (strcmp(cfg->smtp_addrs[i], "::1") != 0
            && strncmp(cfg->smtp_addrs[i], "127.", 4) != 0)
            public = true;
    if (public)
        log_warn("AUTH is offered without TLS on a non-loopback address: "
                 "passwords cross the network in clear (use --tls-cert)");
}

static void on_turn(void *data)
{
    committer_flush(data);
}

/* ---- the loop ------------------------------------------------------- */

static bool stop_done(struct committer *c)
{
    return stopping && session_count() == 0 && committer_pending(c) == 0
           && transform_running() == 0;
}

static int serve(const struct config *cfg, struct selector *sel, struct committer *c)
{
    while (!stop_done(c)) {
        if (selector_select(sel, -1) < 0) {
            log_error("event loop: %s", strerror(errno));
            return 1;
        }
    }
    log_info("stopped");
    (void)cfg;
    return 0;
}

/* A mailbox's maildirsize read (RCPT found it not counted yet, or full),
 * on the committer's thread in order with the deliveries. */
static struct committer *quota_committer;

static int quota_reread(const char *top, const struct quota_limit *lim)
{
    if (committer_refresh(quota_committer, top, lim) == 0)
        return 0;
    log_warn("quota: cannot read %s/maildirsize: %s", top, strerror(errno));
    return -1;
}

int main(int argc, char **argv)
{
    struct config cfg;
    args_parse(argc, argv, &cfg);
    if (log_open(cfg.log_file, cfg.log_level) < 0)
        die_startup("cannot open log file", cfg.log_file);
    args_load_token_file(&cfg);
    passwd_start(&cfg);
    prepare_tls(&cfg);
    prepare_mailboxes(&cfg);
    passwd_start_mailboxes();
    addr_start(&cfg);
    quota_setup(&cfg.quota, passwd_quota, NULL);
    if (quota_load(cfg.root) < 0)
        log_warn("quota: cannot list %s: %s", cfg.root, strerror(errno));
    stats_init();
    signals_install();
    transform_configure(cfg.transform_cmd, cfg.timeout_s);
    transform_limit_output(cfg.max_size + TRANSFORM_HEADROOM);

    struct selector *sel = selector_new(raise_fd_limit());
    struct committer *c = sel ? committer_new(cfg.root) : NULL;
    if (c && !cfg.no_journal
        && committer_use_journal(c, cfg.journal_size, cfg.checkpoint) < 0) {
        committer_free(c);
        c = NULL;
    }
    if (sel == NULL || c == NULL) {
        log_error("cannot start: %s", strerror(errno));
        return 1;
    }
    session_init(&cfg, sel, c);
    metrics_watch_journal(committer_journal(c));
    quota_committer = c;
    quota_setup(&cfg.quota, passwd_quota, quota_reread);
    struct limits_conf limits = { cfg.client_limit, cfg.client_rate,
                                  cfg.message_rate };
    selector_set_turn_hook(sel, on_turn, c);
    if (selector_register(sel, signal_pipe[0], &signal_handler, OP_READ, &cfg) < 0
        || committer_attach(c, sel) < 0
        || login_init(sel) < 0 || spool_init(sel) < 0 || passwd_init(sel) < 0
        || addr_init(sel) < 0
        || open_listeners(sel, &cfg) < 0 || monitor_open(sel, &cfg) < 0
        || metrics_open(sel, &cfg) < 0 || limits_init(&limits, 0) < 0) {
        log_error("cannot start; see above");
        return 1;
    }
    log_info("smtpd ready: domain %s, SMTP port %u, monitor port %u, %s backend",
             cfg.domain, cfg.smtp_port, cfg.monitor_port, selector_backend_name());
    if (cfg.smtps_port)
        log_info("TLS: STARTTLS on port %u, implicit TLS on port %u, "
                 "certificate %s", cfg.smtp_port, cfg.smtps_port, cfg.tls_cert);
    else if (cfg.tls_cert)
        log_info("TLS: STARTTLS on port %u, certificate %s", cfg.smtp_port,
                 cfg.tls_cert);
    int rc = serve(&cfg, sel, c);

    monitor_close(sel);
    metrics_close(sel);
    login_shutdown();
    spool_shutdown();
    passwd_shutdown();
    addr_shutdown();
    committer_free(c);
    selector_destroy(sel);
    close(signal_pipe[1]);
    tls_cleanup();
    log_close();
    passwd_free();
    addr_free();
    quota_free();
    limits_free();
    args_free(&cfg);
    free(resolved_root);
    return rc;
}
