/*
 * maildir_checkpoint.h - what a journal checkpoint makes durable: the
 * files of every record synced since the last checkpoint, and the new/
 * entries that name them (maildir_journal.h).
 *
 * The journal keeps a descriptor of each such file and the names of its
 * mailboxes: a reader may have renamed the file into cur/ meanwhile, and
 * the descriptor still reaches it. A checkpoint then syncs in one of two
 * ways:
 *
 *   - the whole filesystem (syncfs): one pass, one journal commit of the
 *     filesystem's own, one cache flush; the cheapest way while the
 *     unwritten data on the machine is (nearly all) ours;
 *   - file by file through the kept descriptors (their write-back all
 *     started first), then each mailbox's new/ and cur/: next to a
 *     program that keeps the disk dirty, syncfs would also wait for all
 *     of that program's data, which can take seconds.
 *
 * Descriptors are kept only while the machine is busy that way (on a
 * quiet machine the first way is the one taken, and a server holding a
 * descriptor per message for seconds would only look like a leak). A
 * set that lacks one for any of its files (kept while quiet, more files
 * than it may hold open, a dup that failed) is synced the first way,
 * and closes the descriptors it has at once.
 */
#ifndef MAILDIR_CHECKPOINT_H
#define MAILDIR_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Descriptors one set holds at most (fewer when the process may open
 * few: an eighth of its limit). */
#define CKPT_KEEP_MAX 4096

struct ckpt_file {
    int fd;
    uint32_t names_len;
    char *names;                /* as in the record: file name, then boxes */
};

struct ckpt_set {
    struct ckpt_file *v;
    size_t n, alloc;
    uint64_t bytes;             /* the files' sizes, summed */
    bool overflow;              /* a file without a descriptor is covered */
};

enum ckpt_way { CKPT_FILESYSTEM, CKPT_FILES };

/* Keeps a duplicate of fd (a file of len bytes) and a copy of its
 * record's names. When that fails the set overflows: it can still be
 * checkpointed, by syncfs. */
void ckpt_keep(struct ckpt_set *s, int fd, const char *names,
               uint32_t names_len, uint64_t len);

/* A file of len bytes the set covers without a descriptor: it
 * overflows. */
void ckpt_without(struct ckpt_set *s, uint64_t len);

/* Moves every file of from to the end of to, which keeps at most max
 * descriptors (past that, or when from overflowed, to overflows); from
 * is empty after. True when it was max that made to overflow. */
bool ckpt_move(struct ckpt_set *to, struct ckpt_set *from, size_t max);

/* Closes every descriptor and frees the names: the set is empty, not
 * overflowed, and can be used again. */
void ckpt_clear(struct ckpt_set *s);

/* Whether unwritten bytes on the machine (maildir_unwritten_bytes) are
 * more than 32 MiB beyond ours: another program is writing. */
bool ckpt_busy(unsigned long long unwritten, uint64_t ours);

/* The way for s: file by file only when every file is kept and the
 * machine is busy (ckpt_busy, ours the files' sizes). */
enum ckpt_way ckpt_choose(const struct ckpt_set *s,
                          unsigned long long unwritten);

/* Syncs s the way *way says (its files under root; root_fd open on
 * root): 0, or -1 with errno. A mailbox removed since is not an error.
 * When file by file fails, that is logged and the filesystem is synced
 * instead (*way says so). */
int ckpt_sync(const char *root, int root_fd, const struct ckpt_set *s,
              enum ckpt_way *way);

/*
 * Whether the journal should keep a descriptor for each new record: while
 * the machine is busy (ckpt_busy; ours, the bytes of the records not yet
 * checkpointed), looked up at most every 100 ms, and for 10 s after. A
 * writer's unwritten data comes and goes (a dd loop's drops each time it
 * deletes its file), and one record made in such a lull, without a
 * descriptor, would send the whole checkpoint to syncfs.
 */
struct ckpt_watch {
    uint64_t busy_at_us, checked_us;    /* CLOCK_MONOTONIC; 0: never */
};
bool ckpt_keeping(struct ckpt_watch *w, uint64_t now_us, uint64_t ours);

/* Bytes the whole machine has not yet written to its disks (Dirty plus
 * Writeback in /proc/meminfo); 0 when that cannot be read. */
unsigned long long maildir_unwritten_bytes(void);

#endif
