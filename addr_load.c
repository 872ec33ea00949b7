/*
 * addr_load.c - the --aliases file in use: read and parsed
 * (addr_aliases.c) at start, where an error exits 2; on SIGHUP reread on
 * a thread of its own and swapped in by the loop, or, when the new file
 * is bad, logged and the old table kept.
 */
#include "addr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"
#include "worker.h"

#define ADDR_FILE_MAX (64u << 20)       /* a sanity bound */
#define ADDR_ERR_MAX  (ALIASES_ERR_MAX + 256)

static const struct config *addr_cfg;
static struct aliases *addr_table;

static int addr_is_mailbox(const char *name, void *arg)
{
    const char *root = arg;
    return strcmp(name, "postmaster") == 0 || maildir_exists(root, name);
}

/* The whole file, NUL-terminated, in *text; -1 with err filled in. */
static int addr_read(const char *path, char **text, size_t *len, char *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, ADDR_ERR_MAX, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > ADDR_FILE_MAX) {
        snprintf(err, ADDR_ERR_MAX, "%s: %s", path, S_ISREG(st.st_mode)
                 ? "too big" : "not a regular file");
        close(fd);
        return -1;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) {
            snprintf(err, ADDR_ERR_MAX, "%s: %s", path,
                     n == 0 ? "changed while read" : strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    if (buf == NULL) {
        snprintf(err, ADDR_ERR_MAX, "%s: out of memory", path);
        return -1;
    }
    buf[got] = '\0';
    *text = buf;
    *len = got;
    return 0;
}

static struct aliases *addr_load(const struct config *cfg, char *err)
{
    char *text;
    size_t len, line;
    char why[ALIASES_ERR_MAX];
    if (addr_read(cfg->aliases_file, &text, &len, err) < 0)
        return NULL;
    struct aliases *a = aliases_parse(text, len, addr_is_mailbox,
                                      (void *)cfg->root, &line, why, sizeof why);
    free(text);
    if (a == NULL && line)
        snprintf(err, ADDR_ERR_MAX, "%s:%zu: %s", cfg->aliases_file, line, why);
    else if (a == NULL)
        snprintf(err, ADDR_ERR_MAX, "%s: %s", cfg->aliases_file, why);
    return a;
}

void addr_start(const struct config *cfg)
{
    char err[ADDR_ERR_MAX];
    addr_cfg = cfg;
    if (cfg->aliases_file == NULL)
        return;
    addr_table = addr_load(cfg, err);
    if (addr_table == NULL) {
        fprintf(stderr, "smtpd: %s\n", err);
        exit(2);
    }
    log_info("aliases: %zu from %s", addr_table->n, cfg->aliases_file);
}

/* ---- reloads ---------------------------------------------------------- */

struct addr_job {
    struct worker_job job;              /* first: the worker's link */
    struct aliases *table;              /* NULL on error */
    char err[ADDR_ERR_MAX];
};

static struct worker *addr_worker;
static bool addr_running, addr_again, addr_stopping;

static void addr_job_run(struct worker_job *job)
{
    struct addr_job *j = (struct addr_job *)job;
    j->table = addr_load(addr_cfg, j->err);     /* addr_cfg never changes */
}

static void addr_submit(void);

static void addr_job_done(struct worker_job *job)
{
    struct addr_job *j = (struct addr_job *)job;
    addr_running = false;
    if (addr_stopping) {
        aliases_free(j->table);
    } else if (j->table) {
        aliases_free(addr_table);
        addr_table = j->table;
        log_info("aliases reloaded: %zu from %s", addr_table->n,
                 addr_cfg->aliases_file);
    } else {
        log_error("aliases not reloaded, the old ones stay: %s", j->err);
    }
    free(j);
    if (addr_again && !addr_stopping) {
        addr_again = false;
        addr_submit();
    }
}

static void addr_submit(void)
{
    struct addr_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        log_error("aliases not reloaded, the old ones stay: out of memory");
        return;
    }
    j->job.run = addr_job_run;
    j->job.done = addr_job_done;
    addr_running = true;
    worker_submit(addr_worker, &j->job);
}

int addr_init(struct selector *sel)
{
    if (addr_cfg == NULL || addr_cfg->aliases_file == NULL)
        return 0;
    addr_worker = worker_new(1);
    if (addr_worker == NULL)
        return -1;
    return worker_attach(addr_worker, sel);
}

void addr_reload(void)
{
    if (addr_worker == NULL || addr_stopping)
        return;
    if (addr_running)
        addr_again = true;
    else
        addr_submit();
}

void addr_shutdown(void)
{
    addr_stopping = true;
    if (addr_worker == NULL)
        return;
    worker_free(addr_worker);
    addr_worker = NULL;
}

const struct aliases *addr_aliases(void)
{
    return addr_table;
}

void addr_free(void)
{
    aliases_free(addr_table);
    addr_table = NULL;
}
