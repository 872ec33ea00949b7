/*
 * committer.c - group commit: a thread that makes finished spool files
 * durable and links them into every recipient's new/, many messages per
 * disk flush, and hands the results back to the event loop via an eventfd.
 * Failures are reported per job as an errno; nothing is left behind.
 *
 * Unlike qmail (qmail-local) and OpenSMTPD (mail.maildir), we DO sync the
 * new/ directories after linking: the file's data being on disk is not
 * enough, the directory entry that names it must be too, or a crash right
 * after our 250 could lose the message on a filesystem that reorders
 * metadata. We promise that a 250 survives kill -9 and power loss (docs/reliability.md).
 *
 * Why syncfs() and not fsync() per file: each fsync is a journal commit
 * plus a cache flush, which caps delivery near 1,000 messages/s on our
 * disks; one syncfs over a batch of 64 files reached 1,900-4,500 files/s
 * (docs/benchmarks.md, bench/fsync_ceiling.c). syncfs covers only the
 * filesystem of root, so it assumes every mailbox lives there; a spool
 * file found elsewhere (a mailbox symlinked to another disk) switches the
 * batch to per-file and per-directory fsync. syncfs reports write-back
 * errors only since Linux 5.8, and reports any error on the filesystem,
 * not just ours: when it fails we fall back to fsync, which tells exactly
 * which of our files and directories are affected.
 */
#include "maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>


struct committer {
    char *root;
    int root_fd;                    /* the filesystem syncfs() flushes */
    dev_t root_dev;
    int event_fd;                   /* readable while finished jobs wait */
    pthread_t thread;
    pthread_mutex_t lock;           /* guards the two lists and stopping */
    pthread_cond_t wake;            /* jobs queued, or stop */
    struct commit_job *queued;      /* submitted, waiting for a batch */
    struct commit_job **queued_tail;
    struct commit_job *finished;    /* flushed, done() not yet run */
    struct commit_job **finished_tail;
    int stopping;
    size_t pending;                 /* loop thread only: submitted - collected */
};

/* ---- paths ------------------------------------------------------------ */

/* root/box/new[/name]; name NULL gives the directory. */
static int committer_new_path(const struct committer *c, const char *box,
                              const char *name, char *dst, size_t len)
{
    int n = name ? snprintf(dst, len, "%s/%s/new/%s", c->root, box, name)
                 : snprintf(dst, len, "%s/%s/new", c->root, box);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* Recipients given twice get one file; the second link would say EEXIST. */
static int committer_box_repeated(const struct commit_job *j, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (strcmp(j->boxes[k], j->boxes[i]) == 0)
            return 1;
    return 0;
}

/* Removes the new/ entries of boxes[0..count) of a failed job. */
static void committer_unlink_new(const struct committer *c,
                                 const struct commit_job *j, size_t count)
{
    char name[NAME_MAX + 1], path[PATH_MAX];
    if (maildir_msg_final_name(&j->msg, name, sizeof name) < 0)
        return;
    for (size_t i = 0; i < count; i++)
        if (committer_new_path(c, j->boxes[i], name, path, sizeof path) == 0)
            unlink(path);
}

/* ---- step 1: the data ------------------------------------------------- */

/* Gets the job's file ready for syncing; 1 if it lies outside root's
 * filesystem (syncfs would not cover it), 0 if inside, -1 if it failed.
 * The name carries the real size, whoever wrote the file. */
static int committer_prepare(const struct committer *c, struct commit_job *j)
{
    struct stat st;
    if (j->nboxes == 0 || !j->msg.tmp_path) {
        j->error = EINVAL;          /* nowhere to deliver, or no file */
        return -1;
    }
    if (j->msg.fd < 0)
        j->msg.fd = open(j->msg.tmp_path, O_RDONLY | O_CLOEXEC);
    if (j->msg.fd < 0 || fstat(j->msg.fd, &st) < 0) {
        j->error = errno;
        return -1;
    }
    j->msg.size = (uint64_t)st.st_size;
    return st.st_dev != c->root_dev;
}

/* Closes the file, checking close() too: on some filesystems (NFS) a
 * write error shows up only there. */
static void committer_close_file(struct commit_job *j)
{
    if (j->msg.fd < 0)
        return;
    if (close(j->msg.fd) < 0 && !j->error)
        j->error = errno;
    j->msg.fd = -1;
}

/*
 * syncfs writes back every dirty page of the filesystem, other programs'
 * too: next to a busy writer (a dd loop), syncfs-link-syncfs took 28 ms
 * for one message and 49 ms for 16, where fsync of our own files and
 * new/ took 2 ms and 8 ms (a scratch timing program; the server-level
 * figures are in docs/benchmarks.md). So the batch goes file by file
 * when the filesystem has much unwritten data (Dirty + Writeback in
 * /proc/meminfo, which is machine-wide: a busy disk elsewhere also
 * counts, and then fsync is merely as good), and for a lone message to one
 * or two mailboxes, where both cost the same on a quiet disk.
 */
#define COMMITTER_BUSY_BYTES (32ULL << 20)

static unsigned long long committer_unwritten_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (f == NULL)
        return 0;
    char line[128];
    unsigned long long kb, total = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Dirty: %llu kB", &kb) == 1
            || sscanf(line, "Writeback: %llu kB", &kb) == 1)
            total += kb * 1024;
    fclose(f);
    return total;
}

static int committer_prefer_fsync(const struct commit_job *batch)
{
    if (batch && batch->next == NULL && batch->nboxes <= 2)
        return 1;
    return committer_unwritten_bytes() > COMMITTER_BUSY_BYTES;
}

/* fsync of every file, with the write-back of all of them started first:
 * the disk works on them together, and the first fsync's journal commit
 * usually covers the others, which then return at once. */
static void committer_fsync_files(struct commit_job *batch)
{
    for (struct commit_job *j = batch; j; j = j->next)
        if (!j->error)
            sync_file_range(j->msg.fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    for (struct commit_job *j = batch; j; j = j->next)
        if (!j->error && fsync(j->msg.fd) < 0)
            j->error = errno;
}

/* Makes every file's data durable. Returns 1 when the batch went (and its
 * directories must go) file by file, 0 when syncfs covered it. */
static int committer_sync_data(const struct committer *c,
                               struct commit_job *batch)
{
    int exact = committer_prefer_fsync(batch);
    for (struct commit_job *j = batch; j; j = j->next)
        if (committer_prepare(c, j) > 0)
            exact = 1;
    if (exact || syncfs(c->root_fd) < 0) {
        exact = 1;
        committer_fsync_files(batch);
    }
    for (struct commit_job *j = batch; j; j = j->next)
        committer_close_file(j);
    return exact;
}

/* ---- step 2: the links ------------------------------------------------ */

static void committer_link_job(const struct committer *c, struct commit_job *j)
{
    char name[NAME_MAX + 1], path[PATH_MAX];
    if (maildir_msg_final_name(&j->msg, name, sizeof name) < 0) {
        j->error = errno;
        return;
    }
    for (size_t i = 0; i < j->nboxes; i++) {
        const char *box = j->boxes[i];
        if (box[0] == '\0' || box[0] == '.' || strchr(box, '/'))
            errno = EINVAL;         /* never a path outside root */
        else if (committer_box_repeated(j, i))
            continue;
        else if (committer_new_path(c, box, name, path, sizeof path) == 0 &&
                 link(j->msg.tmp_path, path) == 0)
            continue;
        j->error = errno;
        committer_unlink_new(c, j, i);
        return;
    }
}

/* ---- step 3: the directory entries ------------------------------------ */

static int committer_sync_new_dir(const struct committer *c, const char *box)
{
    char path[PATH_MAX];
    if (committer_new_path(c, box, NULL, path, sizeof path) < 0)
        return -1;
    return maildir_sync_dir(path);
}

/*
 * Fallback: fsync the new/ of every box of every linked job. A directory
 * shared by many jobs is synced once per job, but only the first fsync
 * costs a journal commit; the others find nothing dirty and return at
 * once, so this is as cheap as deduplicating and much simpler.
 */
static void committer_sync_dirs(const struct committer *c,
                                struct commit_job *batch)
{
    for (struct commit_job *j = batch; j; j = j->next) {
        for (size_t i = 0; i < j->nboxes && !j->error; i++) {
            if (committer_sync_new_dir(c, j->boxes[i]) < 0) {
                j->error = errno;
                committer_unlink_new(c, j, j->nboxes);
            }
        }
    }
}

static void committer_sync_links(const struct committer *c,
                                 struct commit_job *batch, int exact)
{
    int linked = 0;
    for (struct commit_job *j = batch; j; j = j->next)
        if (!j->error)
            linked = 1;
    if (!linked)
        return;
    if (!exact && syncfs(c->root_fd) == 0)
        return;
    committer_sync_dirs(c, batch);
}

/* ---- the thread ------------------------------------------------------- */

/* The four delivery steps (maildir.h) for a whole batch. The tmp/ files go last, so
 * a crash at any point leaves each message either whole in tmp/ (removed
 * by maildir_clean_tmp at the next start) or durable in new/. */
static void committer_run_batch(const struct committer *c,
                                struct commit_job *batch)
{
    int exact = committer_sync_data(c, batch);
    for (struct commit_job *j = batch; j; j = j->next)
        if (!j->error)
            committer_link_job(c, j);
    committer_sync_links(c, batch, exact);
    for (struct commit_job *j = batch; j; j = j->next)
        if (j->msg.tmp_path)
            unlink(j->msg.tmp_path);
}

static void committer_notify(const struct committer *c)
{
    uint64_t one = 1;
    /* EAGAIN would mean the counter is full: the loop is notified anyway. */
    while (write(c->event_fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

/* Waits for jobs, takes all of them as one batch, flushes, hands them
 * back; jobs queued during a flush form the next batch at once. */
static void *committer_main(void *arg)
{
    struct committer *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->queued && !c->stopping)
            pthread_cond_wait(&c->wake, &c->lock);
        if (!c->queued)
            break;                  /* stopping, and nothing left to do */
        struct commit_job *batch = c->queued;
        c->queued = NULL;
        c->queued_tail = &c->queued;
        pthread_mutex_unlock(&c->lock);

        committer_run_batch(c, batch);

        pthread_mutex_lock(&c->lock);
        *c->finished_tail = batch;
        while (*c->finished_tail)
            c->finished_tail = &(*c->finished_tail)->next;
        committer_notify(c);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Signals are for the loop thread (SIGCHLD, SIGTERM, SIGHUP...): the
 * committer thread starts with all of them blocked. */
static int committer_start(struct committer *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->thread, NULL, committer_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

/* ---- public ----------------------------------------------------------- */

static int committer_open_fds(struct committer *c)
{
    struct stat st;
    c->root_fd = open(c->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->root_fd < 0 || fstat(c->root_fd, &st) < 0)
        return -1;
    c->root_dev = st.st_dev;
    c->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return c->event_fd < 0 ? -1 : 0;
}

/* Undoes committer_open_fds and the allocations; keeps errno. */
static void committer_release_fds(struct committer *c)
{
    int saved = errno;
    if (c->root_fd >= 0)
        close(c->root_fd);
    if (c->event_fd >= 0)
        close(c->event_fd);
    free(c->root);
    free(c);
    errno = saved;
}

struct committer *committer_new(const char *root)
{
    struct committer *c = calloc(1, sizeof *c);
    int rc;
    if (!c)
        return NULL;
    c->root_fd = c->event_fd = -1;
    c->queued_tail = &c->queued;
    c->finished_tail = &c->finished;
    c->root = strdup(root);
    if (!c->root || committer_open_fds(c) < 0)
        goto undo_alloc;
    if ((rc = pthread_mutex_init(&c->lock, NULL)) != 0) {
        errno = rc;
        goto undo_alloc;
    }
    if ((rc = pthread_cond_init(&c->wake, NULL)) != 0) {
        errno = rc;
        goto undo_mutex;
    }
    if (committer_start(c) < 0)
        goto undo_cond;
    return c;

undo_cond:
    pthread_cond_destroy(&c->wake);
undo_mutex:
    pthread_mutex_destroy(&c->lock);
undo_alloc:
    committer_release_fds(c);
    return NULL;
}

void committer_free(struct committer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    committer_collect(c);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    close(c->root_fd);
    close(c->event_fd);
    free(c->root);
    free(c);
}

/* Submitting does not wake the thread: committer_flush does, once per
 * loop turn, so everything one turn produced goes into one batch. */
void committer_submit(struct committer *c, struct commit_job *job)
{
    job->next = NULL;
    job->error = 0;
    c->pending++;
    pthread_mutex_lock(&c->lock);
    *c->queued_tail = job;
    c->queued_tail = &job->next;
    pthread_mutex_unlock(&c->lock);
}

/* A busy thread needs no signal: it takes the queue when its flush ends. */
void committer_flush(struct committer *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->queued)
        pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

int committer_fd(const struct committer *c)
{
    return c->event_fd;
}

/* Frees what the job owns and the job itself (it must come from malloc). */
static void committer_job_release(struct commit_job *job)
{
    for (size_t i = 0; i < job->nboxes; i++)
        free(job->boxes[i]);
    free(job->boxes);
    free(job->msg.tmp_path);
    free(job);
}

void committer_collect(struct committer *c)
{
    uint64_t count;
    while (read(c->event_fd, &count, sizeof count) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&c->lock);
    struct commit_job *list = c->finished;
    c->finished = NULL;
    c->finished_tail = &c->finished;
    pthread_mutex_unlock(&c->lock);

    while (list) {
        struct commit_job *next = list->next;
        list->next = NULL;
        c->pending--;
        if (list->done)
            list->done(list);
        committer_job_release(list);
        list = next;
    }
}

size_t committer_pending(const struct committer *c)
{
    return c->pending;
}

void commit_job_free(struct commit_job *job)
{
    if (!job)
        return;
    maildir_msg_abort(&job->msg);
    committer_job_release(job);
}
