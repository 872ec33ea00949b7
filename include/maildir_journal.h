/*
 * maildir_journal.h - the write-ahead journal: what makes a 250 durable
 * by default. The committer (maildir_commit.c) writes each message of a
 * batch as a record (its bytes and the names it gets in new/), links the
 * files into new/ without syncing them, and syncs the journal once: one
 * sequential fdatasync per batch instead of an fsync per file and per
 * directory. A checkpoint thread of the journal's own makes the files
 * and names durable later (every --checkpoint seconds or when the
 * journal is three quarters full; syncfs of root's filesystem, or file
 * by file through descriptors it kept when the disk is busy with other
 * programs' data: maildir_checkpoint.h) and then lets their records'
 * space be used again. Record format:
 * maildir_journal_record.h; replay after a crash: maildir_replay.h.
 *
 * The file is ROOT/.journal/<host>.<n>, n the lowest no running instance
 * holds (flock), made at the first message: 4 MiB of zeros, grown by
 * 4 MiB at a time up to its size limit, then used again from the start.
 */
#ifndef MAILDIR_JOURNAL_H
#define MAILDIR_JOURNAL_H

#include <stdint.h>

#define JOURNAL_STEP          (4ULL << 20)
#define JOURNAL_SIZE_DEFAULT  (64ULL << 20)
#define JOURNAL_SIZE_MIN      (8ULL << 20)
#define JOURNAL_CHECKPOINT_DEFAULT 10

struct journal;

/* What the journal has done since start (for metrics). Read from any
 * thread; the figures are updated with relaxed atomics. */
struct journal_stats {
    uint64_t syncs;             /* fdatasyncs of batches */
    uint64_t records;           /* message records written */
    uint64_t sync_us;           /* their total duration */
    uint64_t sync_buckets[8];   /* <=0.5,1,2,5,10,50,250 ms, more */
    uint64_t checkpoints;
    uint64_t checkpoint_us;     /* their total duration */
    uint64_t checkpoints_files; /* of them, those that went file by file */
    uint64_t full;              /* messages synced per file: no room */
    uint64_t bytes_used;        /* records not yet checkpointed */
};
extern const uint64_t journal_sync_bounds_us[7];

/*
 * A journal for the mailboxes under root (root_fd open on it: the
 * filesystem a checkpoint syncs), of at most size bytes, checkpointed
 * every interval seconds; starts the checkpoint thread. No file is made
 * until the first record. NULL with errno.
 */
struct journal *journal_new(const char *root, int root_fd, uint64_t size,
                            unsigned interval);

/* A last checkpoint (nothing is left to replay after a clean stop),
 * then the thread stops and everything is freed. */
void journal_free(struct journal *j);

/* The largest message that goes into the journal: a quarter of its
 * size. Bigger ones are synced file by file. */
uint64_t journal_record_max(const struct journal *j);

/*
 * The committer's side, on its thread only, one batch at a time:
 * journal_add for each message (names as the record holds them, len
 * bytes; the body is read from fd), then journal_sync. journal_add says
 * -1 with errno: ENOSPC when there is no room until the next checkpoint
 * (that message is synced per file instead), anything else when the
 * journal cannot be used (the same).
 */
int journal_add(struct journal *j, const char *names, uint32_t names_len,
                int fd, uint64_t len);

/* Syncs the batch's records: 0, and every record added since the last
 * journal_sync is durable; or -1 with errno, and none of them will ever
 * be replayed (their space is used again). */
int journal_sync(struct journal *j);

/* A copy of the figures. */
void journal_stats_get(const struct journal *j, struct journal_stats *out);

#endif
