/*
 * unit_transform.c - transform.c against a real selector, real spool files
 * and real children: output, exit codes, signals, -T, environment, cancel,
 * descriptors, and that every child is reaped. SIGCHLD is handled the way
 * smtpd.c does it: a self-pipe in the selector whose reader reaps.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "selector.h"
#include "transform.h"
#include "unit.h"

#define RUN_LIMIT_MS 10000
#define OUT_MAX 4096

static int sigchld_pipe[2] = { -1, -1 };

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t n = write(sigchld_pipe[1], "c", 1);
    (void)n;                        /* full pipe: a wake-up is pending */
    errno = saved;
}

static void sigchld_on_read(struct selector_key *key)
{
    char buf[64];
    while (read(key->fd, buf, sizeof buf) > 0)
        ;
    transform_reap();
}

static const struct fd_handler sigchld_handler = {
    .on_read = sigchld_on_read,
};

/* A selector with the SIGCHLD self-pipe registered. */
static struct selector *loop_new(void)
{
    struct selector *s = selector_new(1024);
    if (!s)
        return NULL;
    if (sigchld_pipe[0] < 0) {
        if (pipe2(sigchld_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
            return NULL;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigchld;
        sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGCHLD, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);   /* as the server does */
    }
    selector_register(s, sigchld_pipe[0], &sigchld_handler, OP_READ, NULL);
    return s;
}

/* ---- one run --------------------------------------------------------- */

struct result {
    int calls;                      /* done() calls: must end up 1 */
    bool ok;
    char reason[64];
};

static void on_done(void *data, bool ok, const char *reason)
{
    struct result *r = data;
    r->calls++;
    r->ok = ok;
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "(null)");
}

/* An unlinked temp file holding content, its offset left at the end (the
 * child must still read from 0). */
static int spool_with(const char *content, size_t len)
{
    char path[] = "/tmp/unit_transform.XXXXXX";
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -1;
    unlink(path);
    if (len && write(fd, content, len) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    return fd;
}

/* transform_start with the job spelled out as arguments. */
static struct transform *start_job(struct selector *s, int in, int out,
                                   const char *sender, const char *rcpts,
                                   const char *client, transform_done_fn done,
                                   void *data)
{
    struct transform_job job = {
        .in_fd = in, .out_fd = out, .id = "UNITTEST", .sender = sender,
        .recipients = rcpts, .client = client,
    };
    return transform_start(s, &job, done, data);
}

/* Turns the loop until r has an answer, or ms pass. */
static void loop_until_done(struct selector *s, struct result *r, uint64_t ms)
{
    uint64_t end = selector_now_ms() + ms;
    while (r->calls == 0 && selector_now_ms() < end)
        selector_select(s, 100);
}

/* Whole output of a finished run, NUL-terminated. */
static size_t out_read(int fd, char *buf, size_t max)
{
    ssize_t n = pread(fd, buf, max - 1, 0);
    n = n < 0 ? 0 : n;
    buf[n] = '\0';
    return (size_t)n;
}

/* Runs cmd over input; output (NUL-terminated) into out. */
static void run(const char *cmd, unsigned timeout_s, const char *input,
                struct result *r, char *out)
{
    memset(r, 0, sizeof *r);
    out[0] = '\0';
    struct selector *s = loop_new();
    int in = spool_with(input, strlen(input));
    int o = spool_with("", 0);
    CHECK(s && in >= 0 && o >= 0);
    transform_configure(cmd, timeout_s);
    struct transform *t = start_job(s, in, o, "alice@example.org",
                                          "postmaster@localhost,bob@localhost",
                                          "127.0.0.1", on_done, r);
    CHECK(t != NULL);
    if (t)
        loop_until_done(s, r, RUN_LIMIT_MS);
    CHECK_EQ_INT(r->calls, 1);
    out_read(o, out, OUT_MAX);
    close(in);
    close(o);
    selector_destroy(s);
}

/* Every child reaped: nothing left to wait for. */
static void check_no_children(void)
{
    CHECK_EQ_INT(transform_running(), 0);
    errno = 0;
    CHECK_EQ_INT(waitpid(-1, NULL, WNOHANG), -1);
    CHECK_EQ_INT(errno, ECHILD);
}

/* ---- tests ----------------------------------------------------------- */

static void test_uppercase(void)
{
    struct result r;
    char out[OUT_MAX];
    run("tr a-z A-Z", 10, "Subject: hi\r\n\r\nhello world\r\n", &r, out);
    CHECK(r.ok);
    CHECK(strcmp(out, "SUBJECT: HI\r\n\r\nHELLO WORLD\r\n") == 0);
    check_no_children();
}

static void test_exit_status(void)
{
    struct result r;
    char out[OUT_MAX];
    run("exit 3", 10, "x\r\n", &r, out);
    CHECK(!r.ok);
    CHECK(strcmp(r.reason, "exit 3") == 0);
    check_no_children();
}

static void test_signal(void)
{
    struct result r;
    char out[OUT_MAX];
    run("kill -9 $$", 10, "x\r\n", &r, out);
    CHECK(!r.ok);
    CHECK(strcmp(r.reason, "signal 9") == 0);
    check_no_children();
}

static void test_timeout(void)
{
    struct result r;
    char out[OUT_MAX];
    uint64_t t0 = selector_now_ms();
    run("sleep 30", 1, "x\r\n", &r, out);
    uint64_t took = selector_now_ms() - t0;
    CHECK(!r.ok);
    CHECK(strcmp(r.reason, "timeout") == 0);
    CHECK(took >= 900);         /* not before its 1 s limit */
    check_no_children();
}

static void test_environment(void)
{
    struct result r;
    char out[OUT_MAX];
    /* an inherited SMTPD_SENDER must be replaced, not duplicated */
    setenv("SMTPD_SENDER", "stale@old", 1);
    run("printf '%s|%s|%s|' \"$SMTPD_SENDER\" \"$SMTPD_RECIPIENTS\" "
        "\"$SMTPD_CLIENT\"; env | grep -c '^SMTPD_SENDER='", 10, "", &r, out);
    unsetenv("SMTPD_SENDER");
    CHECK(r.ok);
    CHECK(strcmp(out, "alice@example.org|postmaster@localhost,bob@localhost"
                      "|127.0.0.1|1\n") == 0);
    check_no_children();
}

/* A program that never reads its (large) input still succeeds: the input
 * is a file, so nothing can fill up and nobody gets SIGPIPE. */
static void test_ignores_input(void)
{
    size_t len = 1 << 20;
    char *big = malloc(len + 1);
    CHECK(big != NULL);
    if (!big)
        return;
    memset(big, 'a', len);
    big[len] = '\0';
    struct result r;
    char out[OUT_MAX];
    run("echo hi", 10, big, &r, out);
    free(big);
    CHECK(r.ok);
    CHECK(strcmp(out, "hi\n") == 0);
    check_no_children();
}

/* Only 0, 1 and 2 reach the program: everything else is close-on-exec.
 * Whatever the test itself inherited (a CI runner's fds) is made
 * close-on-exec first, as the server's own descriptors are. */
static void test_descriptors(void)
{
    for (int fd = 3; fd < 1024; fd++)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    struct result r;
    char out[OUT_MAX];
    /* no pipeline or redirection: the shell would hold a pipe end or a
     * saved fd of its own while ls looks */
    run("ls /proc/$$/fd", 10, "", &r, out);
    CHECK(r.ok);
    CHECK(strcmp(out, "0\n1\n2\n") == 0);
    if (strcmp(out, "0\n1\n2\n") != 0)
        fprintf(stderr, "child fds: %s\n", out);
    check_no_children();
}

/* A process whose /proc entry is gone or a zombie is dead. */
static bool pid_dead(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && (p[2] == 'Z' || p[2] == 'X');
}

/* The shell exits 0 but leaves a background job: the group kill at reap
 * must not let it outlive the run. */
static void test_grandchild_killed(void)
{
    struct result r;
    char out[OUT_MAX];
    run("sleep 30 & echo $!", 10, "", &r, out);
    CHECK(r.ok);
    pid_t pid = (pid_t)atoi(out);
    CHECK(pid > 0);
    bool dead = false;
    for (int i = 0; i < 100 && pid > 0 && !(dead = pid_dead(pid)); i++)
        usleep(20000);
    CHECK(dead);
    check_no_children();
}

/* The caller's descriptor may be write-only (the spool file it wrote). */
static void test_write_only_input(void)
{
    char path[] = "/tmp/unit_transform.XXXXXX";
    int tmp = mkostemp(path, O_CLOEXEC);
    CHECK(tmp >= 0);
    if (tmp < 0)
        return;
    close(tmp);
    int in = open(path, O_WRONLY | O_CLOEXEC);
    CHECK(write(in, "abc\r\n", 5) == 5);
    int o = spool_with("stale output to be truncated", 28);
    struct selector *s = loop_new();
    struct result r = { 0 };
    transform_configure("cat", 10);
    CHECK(start_job(s, in, o, "", "postmaster@localhost", "::1",
                          on_done, &r) != NULL);
    loop_until_done(s, &r, RUN_LIMIT_MS);
    char out[OUT_MAX];
    out_read(o, out, sizeof out);
    CHECK(r.ok);
    CHECK(strcmp(out, "abc\r\n") == 0);
    close(in);
    close(o);
    unlink(path);
    selector_destroy(s);
    check_no_children();
}

static void test_cancel(void)
{
    struct selector *s = loop_new();
    int in = spool_with("x\r\n", 3), o = spool_with("", 0);
    struct result r = { 0 };
    transform_configure("sleep 30", 0);
    struct transform *t = start_job(s, in, o, "a@b", "c@d", "127.0.0.1",
                                          on_done, &r);
    CHECK(t != NULL);
    CHECK_EQ_INT(transform_running(), 1);
    transform_cancel(t);
    uint64_t end = selector_now_ms() + RUN_LIMIT_MS;
    while (transform_running() > 0 && selector_now_ms() < end)
        selector_select(s, 100);
    CHECK_EQ_INT(r.calls, 0);
    close(in);
    close(o);
    selector_destroy(s);
    check_no_children();
}

/* Three 2-second programs at once finish in about 2 s, not 6: nothing
 * waits for anything. */
static void test_concurrent(void)
{
    enum { N = 3 };
    struct selector *s = loop_new();
    struct result r[N];
    int in[N], o[N];
    transform_configure("sleep 2; cat", 10);
    for (int i = 0; i < N; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "msg %d\r\n", i);
        memset(&r[i], 0, sizeof r[i]);
        in[i] = spool_with(msg, (size_t)len);
        o[i] = spool_with("", 0);
        CHECK(start_job(s, in[i], o[i], "a@b", "c@d", "127.0.0.1",
                              on_done, &r[i]) != NULL);
    }
    /* all three run at once: none waits for another to end */
    CHECK_EQ_INT(transform_running(), N);
    for (int i = 0; i < N; i++)
        loop_until_done(s, &r[i], RUN_LIMIT_MS);
    for (int i = 0; i < N; i++) {
        char out[OUT_MAX], want[32];
        snprintf(want, sizeof want, "msg %d\r\n", i);
        out_read(o[i], out, sizeof out);
        CHECK(r[i].ok && r[i].calls == 1);
        CHECK(strcmp(out, want) == 0);
        close(in[i]);
        close(o[i]);
    }
    selector_destroy(s);
    check_no_children();
}

static void test_switch(void)
{
    transform_configure(NULL, 5);
    CHECK(!transform_enabled());
    CHECK_EQ_INT(transform_set_enabled(true), -1);
    CHECK(!transform_enabled());
    CHECK_EQ_INT(transform_set_enabled(false), 0);
    transform_configure("cat", 5);
    CHECK(transform_enabled());
    CHECK_EQ_INT(transform_set_enabled(false), 0);
    CHECK(!transform_enabled());
    CHECK_EQ_INT(transform_set_enabled(true), 0);
    CHECK(transform_enabled());
    transform_configure(NULL, 0);
}

UNIT_MAIN("transform",
          { "uppercase", test_uppercase },
          { "exit_status", test_exit_status },
          { "signal", test_signal },
          { "timeout", test_timeout },
          { "environment", test_environment },
          { "ignores_input", test_ignores_input },
          { "descriptors", test_descriptors },
          { "grandchild_killed", test_grandchild_killed },
          { "write_only_input", test_write_only_input },
          { "cancel", test_cancel },
          { "concurrent", test_concurrent },
          { "switch", test_switch })
