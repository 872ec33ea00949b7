/*
 * maildir_journal.c - the write-ahead journal (maildir_journal.h).
 *
 * The file is a ring of records between a tail (the oldest record whose
 * files are not known durable: where replay would start) and a head
 * (where the next record goes):
 *
 *     8192            tail                 head                 size
 *      |   free        |##### live records ##|      free          |
 *
 * or, once the head has wrapped, the live records run from the tail to
 * the end and on from 8192 to the head. Two threads share it:
 *
 *   - the committer's thread writes records at the head and syncs them,
 *     then publishes the head as "synced";
 *   - the checkpoint thread takes the synced position and the files of
 *     the records before it (maildir_checkpoint.h), syncs them, writes
 *     the position into a header slot, syncs that, and moves the tail
 *     there.
 *
 * Records are never written over the live part: when a record does not
 * fit, the file grows by 4 MiB (up to its limit), or the head wraps, or
 * the message is synced file by file while the checkpoint makes room.
 */
#include "maildir_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"
#include "maildir_checkpoint.h"
#include "maildir_journal_record.h"
#include "maildir_replay.h"

/* A journal that could not be made (a full disk, a root not writable) is
 * tried again this long after, its messages synced file by file meanwhile. */
#define JOURNAL_RETRY_US (10 * 1000000ULL)

const uint64_t journal_sync_bounds_us[7] = { 500, 1000, 2000, 5000, 10000,
                                             50000, 250000 };

struct journal {
    char *root;
    int root_fd;                /* the filesystem a checkpoint syncs */
    size_t keep_max;            /* descriptors kept for a checkpoint */
    uint64_t max_size;
    unsigned interval;          /* seconds between checkpoints */

    /* the committer's thread only */
    int fd;                     /* -1 until the first record */
    char *path;
    uint64_t size;              /* the file's size now */
    uint64_t head_off, head_seq;
    uint64_t batch_off, batch_seq;  /* the head when the batch began */
    uint64_t batch_first;       /* where the batch's first header went */
    unsigned batch_records;
    uint8_t key[JOURNAL_KEY_LEN];   /* the records' checksum key (set
                                       before shared_fd, then constant) */
    struct ckpt_watch watch;    /* whether descriptors are worth keeping */
    uint64_t retry_at_us;       /* the file could not be made: per file
                                   until then (CLOCK_MONOTONIC) */
    struct ckpt_set batch;      /* the batch's files, until it is synced */
    uint8_t *body;              /* a message read back, to be written */
    size_t body_cap;

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int shared_fd;              /* fd, once made */
    uint64_t shared_size;       /* size, as the checkpoint sees it */
    uint64_t synced_off, synced_seq;    /* the head after the last sync */
    uint64_t tail_off, tail_seq;        /* the last checkpoint */
    uint64_t generation;
    struct ckpt_set kept;       /* the files of records up to synced_seq */
    bool by_files;              /* the last checkpoint went file by file */
    bool kick, stop;
    pthread_t thread;

    struct {                    /* journal_stats, each _Atomic */
        _Atomic uint64_t syncs, records, sync_us, checkpoints,
                         checkpoint_us, checkpoints_files, full, bytes_used;
        _Atomic uint64_t sync_buckets[8];
    } st;
};

static uint64_t journal_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- the file --------------------------------------------------------- */

/* Writes all len bytes of p at off: 0, or -1 with errno. */
static int journal_pwrite(int fd, const void *p, size_t len, uint64_t off)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = pwrite(fd, (const uint8_t *)p + done, len - done,
                           (off_t)(off + done));
        if (n < 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* Zeros from off up to to, then an fsync (the size changed). */
static int journal_zero_fill(int fd, uint64_t off, uint64_t to)
{
    static const uint8_t zeros[65536];
    for (; off < to; off += sizeof zeros) {
        size_t n = to - off < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
        if (journal_pwrite(fd, zeros, n, off) < 0)
            return -1;
    }
    return fsync(fd);
}

/* ROOT/.journal, made (0700) and synced into root if missing. */
static int journal_dir(const struct journal *j)
{
    if (mkdirat(j->root_fd, ".journal", 0700) == 0) {
        if (fsync(j->root_fd) < 0)
            return -1;
    } else if (errno != EEXIST) {
        return -1;
    }
    return openat(j->root_fd, ".journal",
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Opens and locks <host>.<n>, the lowest n free; its path in j->path. */
static int journal_lock_file(struct journal *j, int dir)
{
    char name[NAME_MAX + 1];
    for (unsigned n = 0; n < 1000; n++) {
        snprintf(name, sizeof name, "%.200s.%u", maildir_hostname(), n);
        int fd = openat(dir, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                        0600);
        if (fd < 0)
            return -1;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            if (asprintf(&j->path, "%s/.journal/%s", j->root, name) < 0)
                j->path = NULL;
            return fd;
        }
        close(fd);
        if (errno != EWOULDBLOCK)
            return -1;
    }
    errno = EAGAIN;
    return -1;
}

/*
 * The file, at the first record: a journal left by an instance that is
 * gone is replayed first (its records may not be durable yet) and used
 * on from its checkpoint; a new one (or one never finished) is filled
 * with zeros and given its first slot.
 */
static int journal_make(struct journal *j)
{
    struct jslot end;
    struct replay_result res;
    struct stat st;
    int dir = journal_dir(j);
    int fd = dir < 0 ? -1 : journal_lock_file(j, dir);
    if (fd < 0 || journal_replay(j->root, fd, &end, &res) < 0
        || fstat(fd, &st) < 0)
        goto fail;
    if (res.records)
        log_info("journal %s: taken over, %u records replayed, %u files "
                 "written again", j->path, res.records, res.restored);
    j->size = (uint64_t)st.st_size;
    if (end.generation == 0 || j->size < JOURNAL_STEP) {
        j->size = j->size < JOURNAL_STEP ? JOURNAL_STEP : j->size;
        end = (struct jslot){ .tail_off = JOURNAL_DATA_START, .tail_seq = 1 };
        if (journal_zero_fill(fd, 0, j->size) < 0 || fsync(dir) < 0)
            goto fail;
    }
    /* a key of our own: records of earlier owners never pass again */
    end.generation++;
    if (getrandom(end.key, sizeof end.key, 0) != (ssize_t)sizeof end.key
        || journal_slot_write(fd, &end) < 0)
        goto fail;
    memcpy(j->key, end.key, sizeof j->key);
    close(dir);
    j->fd = fd;
    j->head_off = j->batch_off = end.tail_off;
    j->head_seq = j->batch_seq = end.tail_seq;
    pthread_mutex_lock(&j->mu);
    j->shared_fd = fd;
    j->shared_size = j->size;
    j->synced_off = j->tail_off = end.tail_off;
    j->synced_seq = j->tail_seq = end.tail_seq;
    j->generation = end.generation;
    pthread_mutex_unlock(&j->mu);
    return 0;

fail:
    log_error("journal %s/.journal: %s; messages are synced file by file",
              j->root, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (dir >= 0)
        close(dir);
    return -1;
}

/* ---- room for a record ------------------------------------------------ */

/* Grows the file by one step if its limit allows: 0, or -1. */
static int journal_grow(struct journal *j)
{
    if (j->size + JOURNAL_STEP > j->max_size)
        return -1;
    if (journal_zero_fill(j->fd, j->size, j->size + JOURNAL_STEP) < 0)
        return -1;
    j->size += JOURNAL_STEP;
    pthread_mutex_lock(&j->mu);
    j->shared_size = j->size;
    pthread_mutex_unlock(&j->mu);
    return 0;
}

/* A WRAP record at the head (when a header fits there), and the head
 * moves to the start. 0, or -1 with errno. */
static int journal_wrap(struct journal *j)
{
    if (j->head_off + JOURNAL_REC_HEADER <= j->size) {
        uint8_t hdr[JOURNAL_REC_HEADER];
        struct jrec r = { .type = JREC_WRAP, .seq = j->head_seq };
        jrec_encode(&r, j->key, "", hdr);
        if (journal_pwrite(j->fd, hdr, sizeof hdr, j->head_off) < 0)
            return -1;
        if (j->batch_records++ == 0)
            j->batch_first = j->head_off;
        j->head_seq++;
    }
    j->head_off = JOURNAL_DATA_START;
    return 0;
}

/*
 * Makes room for len bytes at the head without touching the live
 * records: grows the file, or wraps. 0, or -1 with errno ENOSPC (not
 * until a checkpoint moves the tail) or another errno. A record never
 * ends exactly at the tail, so that head == tail means "empty" only.
 */
static int journal_room(struct journal *j, uint64_t len)
{
    pthread_mutex_lock(&j->mu);
    uint64_t tail = j->tail_off;
    bool empty = j->tail_seq == j->head_seq;
    pthread_mutex_unlock(&j->mu);
    if (empty)
        tail = j->head_off;
    else if (j->head_off < tail)                    /* wrapped */
        return j->head_off + len < tail ? 0 : (errno = ENOSPC, -1);
    while (j->head_off + len > j->size)
        if (journal_grow(j) < 0) {
            if (JOURNAL_DATA_START + len >= tail)
                return errno = ENOSPC, -1;
            return journal_wrap(j);
        }
    return 0;
}

/* ---- records ------------------------------------------------------------ */

/* The message's bytes, read back from its file into j->body. */
static int journal_read_body(struct journal *j, int fd, uint64_t len)
{
    if (len > j->body_cap) {
        uint8_t *p = realloc(j->body, len);
        if (p == NULL)
            return -1;
        j->body = p;
        j->body_cap = len;
    }
    for (uint64_t done = 0; done < len;) {
        ssize_t n = pread(fd, j->body + done, len - done, (off_t)done);
        if (n <= 0) {
            if (n == 0)
                errno = EIO;        /* shorter than it was said to be */
            return -1;
        }
        done += (uint64_t)n;
    }
    return 0;
}

/* No room for a record: the checkpoint is asked for now. */
static void journal_kick_full(struct journal *j)
{
    int saved = errno;
    atomic_fetch_add_explicit(&j->st.full, 1, memory_order_relaxed);
    pthread_mutex_lock(&j->mu);
    j->kick = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    errno = saved;
}

int journal_add(struct journal *j, const char *names, uint32_t names_len,
                int fd, uint64_t len)
{
    static const uint8_t pad[8];
    uint8_t hdr[JOURNAL_REC_HEADER];
    uint64_t size = jrec_size(names_len, len);
    if (j->fd < 0) {
        if (journal_now_us() < j->retry_at_us || journal_make(j) < 0) {
            if (journal_now_us() >= j->retry_at_us)
                j->retry_at_us = journal_now_us() + JOURNAL_RETRY_US;
            errno = EIO;
            return -1;
        }
    }
    if (len > journal_record_max(j) || names_len > JOURNAL_NAMES_MAX) {
        errno = EFBIG;
        return -1;
    }
    if (journal_room(j, size) < 0) {
        if (errno == ENOSPC)
            journal_kick_full(j);
        return -1;
    }
    if (journal_read_body(j, fd, len) < 0)
        return -1;
    struct jrec r = { .type = JREC_MESSAGE, .names_len = names_len,
                      .seq = j->head_seq, .body_len = len };
    sha256(j->body, len, r.body_sha);
    jrec_encode(&r, j->key, names, hdr);
    struct iovec iov[4] = {
        { hdr, sizeof hdr }, { (void *)names, names_len },
        { j->body, len }, { (void *)pad, size - sizeof hdr - names_len - len },
    };
    ssize_t want = (ssize_t)size, n = pwritev(j->fd, iov, 4, (off_t)j->head_off);
    if (n != want) {
        if (n >= 0)
            errno = EIO;
        return -1;
    }
    if (j->batch_records++ == 0)
        j->batch_first = j->head_off;
    j->head_off += size;
    j->head_seq++;
    if (ckpt_keeping(&j->watch, journal_now_us(),
                     atomic_load_explicit(&j->st.bytes_used,
                                          memory_order_relaxed)))
        ckpt_keep(&j->batch, fd, names, names_len, len);
    else
        ckpt_without(&j->batch, len);
    atomic_fetch_add_explicit(&j->st.records, 1, memory_order_relaxed);
    return 0;
}

static void journal_count_sync(struct journal *j, uint64_t us)
{
    size_t b = 0;
    while (b < 7 && us > journal_sync_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&j->st.sync_buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&j->st.syncs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&j->st.sync_us, us, memory_order_relaxed);
}

/* Bytes of live records from the tail to the synced head (mu held). */
static uint64_t journal_used(const struct journal *j)
{
    if (j->synced_off >= j->tail_off)
        return j->synced_off - j->tail_off;
    return (j->shared_size - j->tail_off) + (j->synced_off - JOURNAL_DATA_START);
}

/*
 * A failed sync: every byte the batch wrote is zeroed, so replay ends
 * before it, and the head goes back for the next batch to use. Zeroing
 * the first header alone is not enough: the next batch reuses the same
 * sequence numbers from the same place, and when its records end exactly
 * where one of the failed batch's began (messages of the same size), that
 * stale record would pass for the next one and be replayed.
 */
static void journal_undo_batch(struct journal *j)
{
    bool wrapped = j->head_off < j->batch_first;
    if (journal_zero_fill(j->fd, j->batch_first,
                          wrapped ? j->size : j->head_off) == 0 && wrapped)
        journal_zero_fill(j->fd, JOURNAL_DATA_START, j->head_off);
    j->head_off = j->batch_off;
    j->head_seq = j->batch_seq;
}

int journal_sync(struct journal *j)
{
    int rc = 0;
    if (j->batch_records > 0) {
        uint64_t t0 = journal_now_us();
        rc = fdatasync(j->fd);
        if (rc < 0) {
            int saved = errno;
            log_error("journal %s: fdatasync: %s", j->path, strerror(saved));
            journal_undo_batch(j);
            ckpt_clear(&j->batch);
            errno = saved;
        } else {
            journal_count_sync(j, journal_now_us() - t0);
            pthread_mutex_lock(&j->mu);
            j->synced_off = j->head_off;
            j->synced_seq = j->head_seq;
            bool no_room = ckpt_move(&j->kept, &j->batch, j->keep_max);
            uint64_t used = journal_used(j);
            atomic_store_explicit(&j->st.bytes_used, used, memory_order_relaxed);
            /* going file by file, descriptors ran out: a checkpoint now,
             * before more files that only syncfs will cover pile up */
            if (used >= j->max_size / 4 * 3 || (j->by_files && no_room)) {
                j->kick = true;
                pthread_cond_signal(&j->cv);
            }
            pthread_mutex_unlock(&j->mu);
        }
    }
    j->batch_off = j->head_off;
    j->batch_seq = j->head_seq;
    j->batch_records = 0;
    return rc;
}

/* ---- the checkpoint ------------------------------------------------------ */

/*
 * Makes every record up to the synced position durable in the mailboxes
 * (files: their descriptors and names, maildir_checkpoint.h) and says so
 * in a slot. syncfs covers what file by file could not: every message
 * journalled lives on root's filesystem (one whose file does not is
 * synced file by file instead). Runs on the checkpoint thread, mu not
 * held: the way it went, or -1 when it failed (to be tried again).
 */
static int journal_checkpoint(struct journal *j, int fd, struct jslot *to,
                              const struct ckpt_set *files)
{
    uint64_t t0 = journal_now_us();
    enum ckpt_way way = ckpt_choose(files, maildir_unwritten_bytes());
    if (ckpt_sync(j->root, j->root_fd, files, &way) < 0
        || journal_slot_write(fd, to) < 0) {
        log_error("journal %s: checkpoint: %s (tried again in %u s)",
                  j->path, strerror(errno), j->interval);
        return -1;
    }
    atomic_fetch_add_explicit(&j->st.checkpoints, 1, memory_order_relaxed);
    if (way == CKPT_FILES)
        atomic_fetch_add_explicit(&j->st.checkpoints_files, 1,
                                  memory_order_relaxed);
    atomic_fetch_add_explicit(&j->st.checkpoint_us, journal_now_us() - t0,
                              memory_order_relaxed);
    return (int)way;
}

/* Waits for the next checkpoint's time (or a kick), mu held; true when
 * it is time to stop. */
static bool journal_wait(struct journal *j)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += j->interval;
    while (!j->kick && !j->stop)
        if (pthread_cond_timedwait(&j->cv, &j->mu, &until) == ETIMEDOUT)
            break;
    j->kick = false;
    return j->stop;
}

/* One checkpoint of what is synced, if anything is; mu held (released
 * while it works). */
static void journal_checkpoint_once(struct journal *j)
{
    if (j->shared_fd < 0 || j->synced_seq == j->tail_seq)
        return;
    struct jslot to = { j->generation + 1, j->synced_off, j->synced_seq, {0} };
    memcpy(to.key, j->key, sizeof to.key);
    int fd = j->shared_fd;
    struct ckpt_set files = j->kept;
    j->kept = (struct ckpt_set){ 0 };
    pthread_mutex_unlock(&j->mu);
    int way = journal_checkpoint(j, fd, &to, &files);
    ckpt_clear(&files);
    pthread_mutex_lock(&j->mu);
    if (way < 0) {
        /* those records' descriptors are gone: only syncfs covers them */
        ckpt_without(&j->kept, 0);
        return;
    }
    j->by_files = way == CKPT_FILES;
    j->generation = to.generation;
    j->tail_off = to.tail_off;
    j->tail_seq = to.tail_seq;
    atomic_store_explicit(&j->st.bytes_used, journal_used(j),
                          memory_order_relaxed);
}

static void *journal_thread(void *arg)
{
    struct journal *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!journal_wait(j))
        journal_checkpoint_once(j);
    journal_checkpoint_once(j);         /* the last, at a clean stop */
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ---- public ------------------------------------------------------------ */

struct journal *journal_new(const char *root, int root_fd, uint64_t size,
                            unsigned interval)
{
    struct journal *j = calloc(1, sizeof *j);
    if (j == NULL || (j->root = strdup(root)) == NULL) {
        free(j);
        return NULL;
    }
    j->root_fd = root_fd;
    j->max_size = size;
    j->interval = interval;
    j->fd = j->shared_fd = -1;
    struct rlimit rl;
    j->keep_max = CKPT_KEEP_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
        && rl.rlim_cur / 8 < j->keep_max)
        j->keep_max = (size_t)rl.rlim_cur / 8;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&j->thread, NULL, journal_thread, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&j->cv);
        pthread_mutex_destroy(&j->mu);
        free(j->root);
        free(j);
        errno = rc;
        return NULL;
    }
    return j;
}

void journal_free(struct journal *j)
{
    if (j == NULL)
        return;
    pthread_mutex_lock(&j->mu);
    j->stop = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->thread, NULL);
    if (j->fd >= 0)
        close(j->fd);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    ckpt_clear(&j->batch);
    ckpt_clear(&j->kept);
    free(j->body);
    free(j->path);
    free(j->root);
    free(j);
}

uint64_t journal_record_max(const struct journal *j)
{
    return j->max_size / 4;
}

void journal_stats_get(const struct journal *j, struct journal_stats *out)
{
#define JLOAD(f) atomic_load_explicit(&j->st.f, memory_order_relaxed)
    out->syncs = JLOAD(syncs);
    out->records = JLOAD(records);
    out->sync_us = JLOAD(sync_us);
    out->checkpoints = JLOAD(checkpoints);
    out->checkpoint_us = JLOAD(checkpoint_us);
    out->checkpoints_files = JLOAD(checkpoints_files);
    out->full = JLOAD(full);
    out->bytes_used = JLOAD(bytes_used);
    for (size_t i = 0; i < 8; i++)
        out->sync_buckets[i] = JLOAD(sync_buckets[i]);
#undef JLOAD
}
