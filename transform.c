/*
 * transform.c - runs the -t command over one message (docs/transformations.md) without ever
 * blocking the loop: spool files as the child's stdin/stdout, exit noticed
 * via SIGCHLD -> transform_reap(), -T enforced by a selector timer. Owns
 * the ON/OFF switch, the children's process groups and their reaping.
 */
#include "transform.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transform_errpipe.h"
#include "log.h"

extern char **environ;

/* One running command. Lives from transform_start until its reap. */
struct transform {
    pid_t pid;                      /* also the pgid: the child leads it */
    bool timed_out;                 /* the timer killed it */
    bool cancelled;                 /* the session is gone: no done() */
    struct selector *sel;
    struct selector_timer timer;    /* -T deadline; unarmed when 0 */
    transform_done_fn done;
    void *data;
    LIST_ENTRY(transform) link;     /* transform_runs */
};

static char *transform_cmd;         /* NULL: no -t */
static unsigned transform_timeout_s;
static uint64_t transform_output_max;   /* RLIMIT_FSIZE of a child; 0: none */
static bool transform_on;
static LIST_HEAD(, transform) transform_runs = LIST_HEAD_INITIALIZER(transform_runs);
static unsigned transform_nruns;

/* The variables we set; an inherited one of the same name is dropped. */
static const char *const transform_env_names[] = {
    "SMTPD_SENDER", "SMTPD_RECIPIENTS", "SMTPD_CLIENT",
};
#define TRANSFORM_NENV \
    (sizeof transform_env_names / sizeof transform_env_names[0])

/* ---- configuration ------------------------------------------------- */

void transform_configure(const char *cmd, unsigned timeout_s)
{
    free(transform_cmd);
    transform_cmd = cmd ? strdup(cmd) : NULL;
    if (cmd && !transform_cmd)
        log_error("transform: out of memory, transformations disabled");
    transform_timeout_s = timeout_s;
    transform_on = transform_cmd != NULL;
}

void transform_limit_output(uint64_t bytes)
{
    transform_output_max = bytes;
}

/* A filter that never stops writing would fill the disk until -T; with
 * RLIMIT_FSIZE the kernel stops it (SIGXFSZ) at the limit instead. Set
 * just after the spawn, so a child could write a little before it takes
 * effect; the caller checks the output's size exactly afterwards. */
static void transform_apply_limit(pid_t pid)
{
    if (transform_output_max == 0)
        return;
    struct rlimit rl = { transform_output_max, transform_output_max };
    if (prlimit(pid, RLIMIT_FSIZE, &rl, NULL) < 0)
        log_warn("transform: cannot limit the output of pid %d: %s",
                 (int)pid, strerror(errno));
}

bool transform_enabled(void)
{
    return transform_cmd != NULL && transform_on;
}

int transform_set_enabled(bool on)
{
    if (on && !transform_cmd) {
        transform_on = false;
        errno = ENOENT;
        return -1;
    }
    if (on != transform_on)
        log_info("transform: switched %s", on ? "ON" : "OFF");
    transform_on = on;
    return 0;
}

unsigned transform_running(void)
{
    return transform_nruns;
}

/* ---- the child's environment --------------------------------------- */

static bool transform_env_ours(const char *entry)
{
    for (size_t i = 0; i < TRANSFORM_NENV; i++) {
        size_t n = strlen(transform_env_names[i]);
        if (strncmp(entry, transform_env_names[i], n) == 0 && entry[n] == '=')
            return true;
    }
    return false;
}

static char *transform_env_entry(const char *name, const char *value)
{
    size_t len = strlen(name) + 1 + strlen(value ? value : "") + 1;
    char *e = malloc(len);
    if (e)
        snprintf(e, len, "%s=%s", name, value ? value : "");
    return e;
}

static void transform_env_free(char **env)
{
    if (!env)
        return;
    for (size_t i = 0; i < TRANSFORM_NENV; i++)
        free(env[i]);
    free(env);
}

/* environ minus any old SMTPD_* of ours, with our three first (they are
 * the malloc'd entries, env[0..2]). NULL with errno on failure. */
static char **transform_env_build(const char *sender, const char *rcpts,
                                  const char *client)
{
    const char *values[TRANSFORM_NENV] = { sender, rcpts, client };
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + TRANSFORM_NENV + 1, sizeof *env);
    if (!env)
        return NULL;
    for (size_t i = 0; i < TRANSFORM_NENV; i++) {
        env[i] = transform_env_entry(transform_env_names[i], values[i]);
        if (!env[i]) {
            transform_env_free(env);
            return NULL;
        }
    }
    size_t k = TRANSFORM_NENV;
    for (size_t i = 0; i < n; i++)
        if (!transform_env_ours(environ[i]))
            env[k++] = environ[i];
    return env;
}

/* ---- spawning -------------------------------------------------------- */

/* fd moved to a number >= 3 (close-on-exec), so the dup2 to 0 and 1 in
 * the child can never overwrite the other source descriptor, even when
 * the server runs with stdin/stdout closed. Consumes fd; -1 on failure. */
static int transform_own_high(int fd)
{
    if (fd < 0 || fd >= 3)
        return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    close(fd);
    errno = saved;
    return high;
}

/*
 * The child's stdin. We open the spool file anew through /proc/self/fd
 * rather than lseek(in_fd, 0): the new open file description has its own
 * offset (0) and is read-only, so it works even when the caller's fd is
 * write-only, and neither side's offset moves under the other while the
 * child runs. Without /proc we fall back to rewinding in_fd itself; the
 * caller must then leave that offset alone until done().
 */
static int transform_open_input(int in_fd)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", in_fd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        return transform_own_high(fd);
    if (lseek(in_fd, 0, SEEK_SET) < 0)
        return -1;
    return fcntl(in_fd, F_DUPFD_CLOEXEC, 3);
}

/* The child's stdout shares out_fd's open file description on purpose:
 * it writes from offset 0 of an emptied file, and afterwards out_fd's
 * offset sits at the end of the output (fstat gives its size). */
static int transform_open_output(int out_fd)
{
    if (lseek(out_fd, 0, SEEK_SET) < 0 || ftruncate(out_fd, 0) < 0)
        return -1;
    return fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
}

/* A new process group (pgroup 0: the child's own pid) so one kill(-pid)
 * reaches every grandchild; an empty mask and default dispositions, since
 * the server ignores SIGPIPE and an ignored signal survives exec. */
static int transform_attr_init(posix_spawnattr_t *attr)
{
    static const int defaults[] = {
        SIGPIPE, SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGQUIT,
        SIGUSR1, SIGUSR2, SIGALRM, SIGXFSZ, SIGTTIN, SIGTTOU,
    };
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        sigaddset(&def, defaults[i]);
    int err = posix_spawnattr_init(attr);
    if (err == 0)
        err = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETPGROUP
                                       | POSIX_SPAWN_SETSIGMASK
                                       | POSIX_SPAWN_SETSIGDEF);
    if (err == 0)
        err = posix_spawnattr_setpgroup(attr, 0);
    if (err == 0)
        err = posix_spawnattr_setsigmask(attr, &none);
    if (err == 0)
        err = posix_spawnattr_setsigdefault(attr, &def);
    return err;
}

/* posix_spawn (vfork-like: no copy of the server's memory) of
 * /bin/sh -c CMD with in/out/err as 0/1/2 (err -1: the server's own
 * stderr is inherited); everything else is close-on-exec. Returns 0 or an
 * errno value. */
static int transform_spawn(pid_t *pid, int in, int out, int err_fd,
                           char **env)
{
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    int err = transform_attr_init(&attr);
    if (err != 0)
        return err;
    err = posix_spawn_file_actions_init(&fa);
    if (err == 0) {
        err = posix_spawn_file_actions_adddup2(&fa, in, STDIN_FILENO);
        if (err == 0)
            err = posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
        if (err == 0 && err_fd >= 0)
            err = posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
        if (err == 0) {
            char *argv[] = { "/bin/sh", "-c", transform_cmd, NULL };
            err = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, env);
        }
        posix_spawn_file_actions_destroy(&fa);
    }
    posix_spawnattr_destroy(&attr);
    return err;
}

/* ---- runs ------------------------------------------------------------ */

static void transform_list_add(struct transform *t)
{
    LIST_INSERT_HEAD(&transform_runs, t, link);
    transform_nruns++;
}

static void transform_list_remove(struct transform *t)
{
    LIST_REMOVE(t, link);
    transform_nruns--;
}

static struct transform *transform_find(pid_t pid)
{
    struct transform *t;
    LIST_FOREACH(t, &transform_runs, link)
        if (t->pid == pid)
            return t;
    return NULL;
}

/* The whole group: the shell and anything it started. ESRCH (all gone)
 * is the normal case after the leader exited on its own. */
static void transform_kill_group(pid_t pgid)
{
    if (kill(-pgid, SIGKILL) < 0 && errno != ESRCH)
        log_warn("transform: kill group %d: %s", (int)pgid, strerror(errno));
}

static void transform_stop_timer(struct transform *t)
{
    if (t->timer.slot != 0)
        selector_timer_cancel(t->sel, &t->timer);
}

/* -T passed: kill now, report "timeout" when the reap comes (SIGCHLD). */
static void transform_on_timeout(struct selector *s, void *data)
{
    (void)s;
    struct transform *t = data;
    t->timed_out = true;
    transform_kill_group(t->pid);
}

static struct transform *transform_new(struct selector *s,
                                       transform_done_fn done, void *data)
{
    struct transform *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->sel = s;
    t->done = done;
    t->data = data;
    t->timer.on_expire = transform_on_timeout;
    t->timer.data = t;
    return t;
}

/* The child's stderr: a pipe into the log, prefixed with the message's
 * ID. Should that fail (no descriptor, or one the selector cannot
 * watch), the child writes to the server's own stderr as a last resort. */
static int transform_open_errors(struct selector *s, const char *id)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "transform %s", id ? id : "?");
    int fd = transform_own_high(errpipe_open(s, prefix));
    if (fd < 0)
        log_warn("transform: filter stderr not logged: %s", strerror(errno));
    return fd;
}

/* Spawns with the descriptors and environment prepared; returns 0 or an
 * errno value. Everything it opened is closed again before returning. */
static int transform_launch(struct transform *t, const struct transform_job *job,
                            char **env)
{
    int in = transform_open_input(job->in_fd);
    if (in < 0)
        return errno;
    int out = transform_open_output(job->out_fd);
    if (out < 0) {
        int err = errno;
        close(in);
        return err;
    }
    int err_fd = transform_open_errors(t->sel, job->id);
    int err = transform_spawn(&t->pid, in, out, err_fd, env);
    close(in);
    close(out);
    if (err_fd >= 0)
        close(err_fd);
    return err;
}

struct transform *transform_start(struct selector *s,
                                  const struct transform_job *job,
                                  transform_done_fn done, void *data)
{
    if (!transform_cmd) {
        errno = ENOENT;
        return NULL;
    }
    struct transform *t = transform_new(s, done, data);
    char **env = transform_env_build(job->sender, job->recipients,
                                     job->client);
    int err = t && env ? transform_launch(t, job, env) : ENOMEM;
    transform_env_free(env);
    if (err != 0) {
        log_warn("transform: spawn failed: %s", strerror(err));
        free(t);
        errno = err;
        return NULL;
    }
    transform_apply_limit(t->pid);
    transform_list_add(t);
    if (transform_timeout_s > 0)
        selector_timer_set(s, &t->timer, (uint64_t)transform_timeout_s * 1000);
    log_debug("transform: started pid %d", (int)t->pid);
    return t;
}

void transform_cancel(struct transform *t)
{
    if (!t || t->cancelled)
        return;
    t->cancelled = true;
    transform_stop_timer(t);
    transform_kill_group(t->pid);
}

/* ---- reaping --------------------------------------------------------- */

/* Fills reason for a failed run; false if the run succeeded. */
static bool transform_failed(const struct transform *t, const siginfo_t *si,
                             char *reason, size_t len)
{
    if (t->timed_out)
        snprintf(reason, len, "timeout");
    else if (si->si_code == CLD_EXITED && si->si_status != 0)
        snprintf(reason, len, "exit %d", si->si_status);
    else if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED)
        snprintf(reason, len, "signal %d", si->si_status);
    else
        return false;
    return true;
}

static void transform_finish(struct transform *t, const siginfo_t *si)
{
    char reason[32] = "";
    bool failed = transform_failed(t, si, reason, sizeof reason);
    transform_list_remove(t);
    transform_stop_timer(t);
    if (failed && !t->cancelled)
        log_warn("transform: pid %d failed: %s", (int)t->pid, reason);
    if (!t->cancelled && t->done)
        t->done(t->data, !failed, failed ? reason : "ok");
    free(t);
}

/*
 * Peeks at one exited child with WNOWAIT, kills its group while the
 * leader is still a zombie (so its pid, which is the pgid, cannot have
 * been reused by then), and only then reaps it. Returns false when no
 * child is waiting.
 */
static bool transform_reap_one(void)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    while (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        if (errno != EINTR)
            return false;           /* ECHILD: no children at all */
    if (si.si_pid == 0)
        return false;               /* children, none exited yet */
    pid_t pid = si.si_pid;
    struct transform *t = transform_find(pid);
    if (t)
        transform_kill_group(pid);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (t)
        transform_finish(t, &si);
    return true;
}

void transform_reap(void)
{
    int saved = errno;
    while (transform_reap_one())
        ;
    errno = saved;
}
