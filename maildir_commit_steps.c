/*
 * maildir_commit_steps.c - what the committer's thread does with one
 * batch (maildir_commit_steps.h): each message's file made durable, linked
 * into every recipient's new/, counted in maildirsize, and the new/
 * entries made durable; either all of that file by file (--no-journal,
 * and messages the journal does not take), or with one record per
 * message in the write-ahead journal and one sync of it for the batch.
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
 * file found elsewhere (a mailbox that is a mount point of another disk;
 * links are never followed below root) switches the batch to per-file
 * and per-directory fsync. syncfs reports write-back
 * errors only since Linux 5.8, and reports any error on the filesystem,
 * not just ours: when it fails we fall back to fsync, which tells exactly
 * which of our files and directories are affected.
 */
#include "maildir_commit_steps.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "maildir_checkpoint.h"
#include "maildir_journal.h"
#include "maildir_quota.h"

/* ---- paths ------------------------------------------------------------ */

/* root/box/new as a descriptor: real directories only (maildir.h), so
 * a new/ or a mailbox that is a link never receives a message. */
static int committer_new_dir(const struct committer *c, const char *box)
{
    return maildir_open_dir(c->root, box, "new");
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
    char name[NAME_MAX + 1];
    if (maildir_msg_final_name(&j->msg, name, sizeof name) < 0)
        return;
    for (size_t i = 0; i < count; i++) {
        int dir = committer_new_dir(c, j->boxes[i]);
        if (dir >= 0) {
            unlinkat(dir, name, 0);
            close(dir);
        }
    }
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
        j->msg.fd = open(j->msg.tmp_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
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
 * too: next to a busy writer (a dd loop) a batch of 16 files took 40 ms
 * that way against 3 ms file by file (bench/batch_flush.c;
 * docs/benchmarks.md, "Sharing the disk"). So batches go file by file
 * while the machine holds much unwritten data (Dirty + Writeback in
 * /proc/meminfo, which is machine-wide: a busy disk elsewhere also counts,
 * and then fsync is merely as good), and for a while after: a writer's
 * dirty data comes and goes within milliseconds (a dd loop's drops each
 * time a round ends), and a syncfs that starts in such a lull waits for
 * all the writer dirties meanwhile. Also file by file: a lone message to
 * one or two mailboxes, where both cost the same on a quiet disk, and a
 * batch with a file outside root's filesystem, which syncfs would not cover.
 */
#define COMMITTER_BUSY_BYTES (32ULL << 20)
#define COMMITTER_CALM_SECONDS 2.0

enum commit_flush commit_flush_choose(size_t jobs, size_t boxes,
                                      int outside_root, double since_busy)
{
    if (outside_root)
        return COMMIT_FLUSH_FILES;
    if (jobs == 1 && boxes <= 2)
        return COMMIT_FLUSH_FILES;
    if (since_busy < COMMITTER_CALM_SECONDS)
        return COMMIT_FLUSH_FILES;
    return COMMIT_FLUSH_FILESYSTEM;
}

static double committer_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds since the machine last held more than COMMITTER_BUSY_BYTES
 * unwritten, as far as this thread has looked. */
static double committer_since_busy(struct committer *c)
{
    double now = committer_now();
    if (maildir_unwritten_bytes() > COMMITTER_BUSY_BYTES)
        c->busy_at = now;
    return now - c->busy_at;
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
static int committer_sync_data(struct committer *c,
                               struct commit_job *batch)
{
    size_t jobs = 0, boxes = 0;
    int outside = 0;
    for (struct commit_job *j = batch; j; j = j->next) {
        jobs++;
        boxes += j->nboxes;
        if (committer_prepare(c, j) > 0)
            outside = 1;
    }
    int exact = commit_flush_choose(jobs, boxes, outside,
                                    committer_since_busy(c))
                == COMMIT_FLUSH_FILES;
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
    char name[NAME_MAX + 1];
    if (maildir_msg_final_name(&j->msg, name, sizeof name) < 0) {
        j->error = errno;
        return;
    }
    for (size_t i = 0; i < j->nboxes; i++) {
        if (committer_box_repeated(j, i))
            continue;
        /* maildir_open_dir refuses a box name that leaves root. */
        int dir = committer_new_dir(c, j->boxes[i]);
        int rc = dir < 0 ? -1 : linkat(AT_FDCWD, j->msg.tmp_path, dir, name, 0);
        if (dir >= 0) {
            int saved = errno;
            close(dir);
            errno = saved;
        }
        if (rc == 0)
            continue;
        j->error = errno;
        committer_unlink_new(c, j, i);
        return;
    }
}

/* ---- step 2b: the quota accounting ----------------------------------- */

/* One "size 1" line in the maildirsize of each limited box's mailbox,
 * right after the job's links, so a recalculation there counts this
 * message once and the next job's not yet. A failure is logged and the
 * delivery stands: the file is recalculated the next time. */
static void committer_count_job(const struct committer *c,
                                struct commit_job *j, int exact)
{
    char top[MAILDIR_NAME_MAX + 1];
    if (j->error || j->quota == NULL)
        return;
    for (size_t i = 0; i < j->nboxes; i++) {
        struct commit_quota *q = &j->quota[i];
        if (committer_box_repeated(j, i)
            || (q->limit.bytes == 0 && q->limit.count == 0))
            continue;
        quota_top(j->boxes[i], top, sizeof top);
        if (quota_file_update(c->root, top, &q->limit, j->msg.size,
                              exact, &q->usage) == 0)
            q->counted = 1;
        else
            log_warn("quota: %s/%s/maildirsize: %s", c->root, top,
                     strerror(errno));
    }
}

/* ---- step 3: the directory entries ------------------------------------ */

static int committer_sync_new_dir(const struct committer *c, const char *box)
{
    int dir = committer_new_dir(c, box);
    if (dir < 0)
        return -1;
    int rc = fsync(dir);
    int saved = errno;
    close(dir);
    errno = saved;
    return rc;
}

/* One (box, job) pair per recipient of a linked job, sorted by box so
 * that each new/ is synced once per batch: on a filesystem without a
 * journal every fsync is a flush of the disk's cache, and a batch of 16
 * messages to one mailbox would otherwise pay 16 (docs/benchmarks.md). */
struct committer_dir_ref {
    const char *box;
    struct commit_job *job;
};

static int committer_dir_ref_cmp(const void *a, const void *b)
{
    const struct committer_dir_ref *x = a, *y = b;
    return strcmp(x->box, y->box);
}

/* A linked job whose names cannot be made durable loses them all. */
static void committer_fail_linked(const struct committer *c,
                                  struct commit_job *j, int err)
{
    if (j->error)
        return;
    j->error = err;
    committer_unlink_new(c, j, j->nboxes);
}

/* fsync of each distinct new/ of the linked jobs; a failure fails every
 * job that has a link there. */
static void committer_sync_dirs(const struct committer *c,
                                struct commit_job *batch)
{
    size_t n = 0, k = 0;
    for (struct commit_job *j = batch; j; j = j->next)
        if (!j->error)
            n += j->nboxes;
    if (n == 0)
        return;
    struct committer_dir_ref *refs = malloc(n * sizeof *refs);
    for (struct commit_job *j = batch; j; j = j->next)
        for (size_t i = 0; i < j->nboxes && !j->error && refs; i++)
            refs[k++] = (struct committer_dir_ref){ j->boxes[i], j };
    if (refs == NULL) {
        for (struct commit_job *j = batch; j; j = j->next)
            committer_fail_linked(c, j, ENOMEM);
        return;
    }
    qsort(refs, n, sizeof *refs, committer_dir_ref_cmp);
    for (size_t first = 0, end; first < n; first = end) {
        int err = committer_sync_new_dir(c, refs[first].box) < 0 ? errno : 0;
        for (end = first; end < n; end++) {
            if (strcmp(refs[end].box, refs[first].box) != 0)
                break;
            if (err)
                committer_fail_linked(c, refs[end].job, err);
        }
    }
    free(refs);
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

/* ---- with the journal ---------------------------------------------- */

/* The record's names: the file's name in new/, then each box once. */
static uint32_t committer_names(const struct commit_job *j, char *out,
                                size_t cap)
{
    size_t n = 0;
    if (maildir_msg_final_name(&j->msg, out, cap) < 0)
        return 0;
    n = strlen(out) + 1;
    for (size_t i = 0; i < j->nboxes; i++) {
        size_t len = strlen(j->boxes[i]) + 1;
        if (committer_box_repeated(j, i))
            continue;
        if (n + len > cap)
            return 0;
        memcpy(out + n, j->boxes[i], len);
        n += len;
    }
    return (uint32_t)n;
}

/* The job's record: 0, or -1 when it goes file by file instead (too
 * big, no room until the checkpoint, or the journal is unusable). */
static int committer_record(struct committer *c, struct commit_job *j)
{
    static char names[8192];        /* the committer's thread only */
    uint32_t len = committer_names(j, names, sizeof names);
    if (len == 0)
        return -1;
    return journal_add(c->journal, names, len, j->msg.fd, j->msg.size);
}

/* Moves j to the end of a list (*tail its last next pointer). */
static void committer_append(struct commit_job ***tail, struct commit_job *j)
{
    j->next = NULL;
    **tail = j;
    *tail = &j->next;
}

/* The spool files of finished jobs: closed, and their tmp/ names gone. */
static void committer_release_files(struct commit_job *list)
{
    for (struct commit_job *j = list; j; j = j->next) {
        committer_close_file(j);
        unlink(j->msg.tmp_path);
    }
}

/* Jobs linked, but with no room in the journal: synced file by file. */
static void committer_sync_fallback(struct committer *c, struct commit_job *list)
{
    if (list == NULL)
        return;
    committer_fsync_files(list);
    for (struct commit_job *j = list; j; j = j->next)
        if (j->error)
            committer_unlink_new(c, j, j->nboxes);
    committer_sync_dirs(c, list);
}

/*
 * A batch with the journal: each job's links into new/ and its quota
 * line, its record, then one fdatasync of the journal for all of them;
 * their files are synced later, by the journal's checkpoint. A job the
 * journal has no room for is synced file by file. Jobs that cannot go
 * this way (a file outside root's filesystem, or one bigger than a
 * quarter of the journal) are returned, for commit_steps_files.
 */
struct commit_job *commit_steps_journal(struct committer *c,
                                        struct commit_job *batch)
{
    struct commit_job *rest = NULL, **rtail = &rest;
    struct commit_job *logged = NULL, **ltail = &logged;
    struct commit_job *files = NULL, **ftail = &files;
    for (struct commit_job *j = batch, *next; j; j = next) {
        next = j->next;
        if (committer_prepare(c, j) != 0
            || j->msg.size > journal_record_max(c->journal)) {
            committer_append(&rtail, j);
            continue;
        }
        committer_link_job(c, j);
        committer_count_job(c, j, 0);
        if (j->error || committer_record(c, j) == 0)
            committer_append(&ltail, j);
        else
            committer_append(&ftail, j);
    }
    if (journal_sync(c->journal) < 0) {
        int err = errno;
        for (struct commit_job *j = logged; j; j = j->next)
            committer_fail_linked(c, j, err);
    }
    committer_sync_fallback(c, files);
    committer_release_files(logged);
    committer_release_files(files);
    return rest;
}


/* The four delivery steps (maildir.h) for a whole batch. The tmp/ files go last, so
 * a crash at any point leaves each message either whole in tmp/ (removed
 * by maildir_clean_tmp at the next start) or durable in new/. */
void commit_steps_files(struct committer *c, struct commit_job *batch)
{
    int exact = committer_sync_data(c, batch);
    for (struct commit_job *j = batch; j; j = j->next)
        if (!j->error) {
            committer_link_job(c, j);
            committer_count_job(c, j, exact);
        }
    committer_sync_links(c, batch, exact);
    for (struct commit_job *j = batch; j; j = j->next)
        if (j->msg.tmp_path)
            unlink(j->msg.tmp_path);
}
