/*
 * maildir_checkpoint.c - what a journal checkpoint syncs, and how
 * (maildir_checkpoint.h).
 *
 * Why two ways: syncfs writes back every dirty page of the filesystem,
 * other programs' too. On a quiet disk that is exactly our files, in one
 * pass; next to a program streaming gigabytes it is mostly theirs, and a
 * checkpoint took half a second while the journal filled behind it
 * (docs/benchmarks.md, "The write-ahead journal"). File by file, the
 * write-back of all our files is started first, so the disk works on
 * them together; the first fsync's commit of the filesystem's own
 * journal then usually covers the others' inodes as well.
 */
#include "maildir_checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"
#include "maildir_journal_record.h"

/* Unwritten data beyond our own above which syncfs is left alone: the
 * same mark the per-file committer uses (maildir_commit_steps.c). */
#define CKPT_BUSY_BYTES (32ULL << 20)

unsigned long long maildir_unwritten_bytes(void)
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

/* ---- the set ------------------------------------------------------------ */

static int ckpt_grow(struct ckpt_set *s, size_t want)
{
    if (want <= s->alloc)
        return 0;
    size_t alloc = s->alloc ? s->alloc : 64;
    while (alloc < want)
        alloc *= 2;
    struct ckpt_file *v = realloc(s->v, alloc * sizeof *v);
    if (v == NULL)
        return -1;
    s->v = v;
    s->alloc = alloc;
    return 0;
}

static void ckpt_file_free(struct ckpt_file *f)
{
    close(f->fd);
    free(f->names);
}

/* Only syncfs will cover s now: its descriptors are of no use any more. */
static void ckpt_give_up(struct ckpt_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        ckpt_file_free(&s->v[i]);
    s->n = 0;
    s->overflow = true;
}

void ckpt_keep(struct ckpt_set *s, int fd, const char *names,
               uint32_t names_len, uint64_t len)
{
    s->bytes += len;
    if (s->overflow || ckpt_grow(s, s->n + 1) < 0) {
        ckpt_give_up(s);
        return;
    }
    char *copy = malloc(names_len);
    int dup_fd = copy ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (dup_fd < 0) {
        free(copy);
        ckpt_give_up(s);
        return;
    }
    memcpy(copy, names, names_len);
    s->v[s->n++] = (struct ckpt_file){ dup_fd, names_len, copy };
}

void ckpt_without(struct ckpt_set *s, uint64_t len)
{
    s->bytes += len;
    ckpt_give_up(s);
}

bool ckpt_move(struct ckpt_set *to, struct ckpt_set *from, size_t max)
{
    bool full = !to->overflow && !from->overflow && to->n + from->n > max;
    if (to->overflow || from->overflow || full
        || ckpt_grow(to, to->n + from->n) < 0)
        ckpt_give_up(to);
    for (size_t i = 0; i < from->n; i++) {
        if (to->overflow)
            ckpt_file_free(&from->v[i]);
        else
            to->v[to->n++] = from->v[i];
    }
    to->bytes += from->bytes;
    from->n = 0;
    from->bytes = 0;
    from->overflow = false;
    return full;
}

void ckpt_clear(struct ckpt_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        ckpt_file_free(&s->v[i]);
    free(s->v);
    *s = (struct ckpt_set){ 0 };
}

/* ---- the sync ----------------------------------------------------------- */

bool ckpt_busy(unsigned long long unwritten, uint64_t ours)
{
    return unwritten > ours && unwritten - ours > CKPT_BUSY_BYTES;
}

enum ckpt_way ckpt_choose(const struct ckpt_set *s,
                          unsigned long long unwritten)
{
    if (s->overflow || s->n == 0 || !ckpt_busy(unwritten, s->bytes))
        return CKPT_FILESYSTEM;
    return CKPT_FILES;
}

static int ckpt_cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One mailbox's new/ and cur/: where the file is named now, unless a
 * reader has moved it further (then its own rename is its to sync). */
static int ckpt_sync_box(const char *root, const char *box)
{
    static const char *const subs[] = { "new", "cur" };
    for (size_t i = 0; i < 2; i++) {
        int dir = maildir_open_dir(root, box, subs[i]);
        if (dir < 0) {
            if (errno == ENOENT)
                continue;           /* the mailbox was removed */
            return -1;
        }
        int rc = fsync(dir);
        int saved = errno;
        close(dir);
        if (rc < 0)
            return errno = saved, -1;
    }
    return 0;
}

/* Every mailbox the set's records name, each once. */
static int ckpt_sync_boxes(const char *root, const struct ckpt_set *s)
{
    size_t n = 0, alloc = s->n + 16;
    const char **boxes = malloc(alloc * sizeof *boxes);
    for (size_t i = 0; boxes && i < s->n; i++) {
        uint32_t pos = 0;
        const struct ckpt_file *f = &s->v[i];
        jrec_next_name(f->names, f->names_len, &pos);       /* the file */
        for (const char *box; (box = jrec_next_name(f->names, f->names_len,
                                                    &pos));) {
            if (n == alloc) {
                const char **b = realloc(boxes, 2 * alloc * sizeof *b);
                if (b == NULL) {
                    free(boxes);
                    return -1;
                }
                boxes = b;
                alloc *= 2;
            }
            boxes[n++] = box;
        }
    }
    if (boxes == NULL)
        return -1;
    qsort(boxes, n, sizeof *boxes, ckpt_cmp_names);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (i == 0 || strcmp(boxes[i], boxes[i - 1]) != 0)
            rc = ckpt_sync_box(root, boxes[i]);
    free(boxes);
    return rc;
}

static int ckpt_sync_files(const char *root, const struct ckpt_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        sync_file_range(s->v[i].fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    for (size_t i = 0; i < s->n; i++)
        if (fsync(s->v[i].fd) < 0)
            return -1;
    return ckpt_sync_boxes(root, s);
}

int ckpt_sync(const char *root, int root_fd, const struct ckpt_set *s,
              enum ckpt_way *way)
{
    if (*way == CKPT_FILES) {
        if (ckpt_sync_files(root, s) == 0)
            return 0;
        log_error("checkpoint file by file: %s (syncing the filesystem "
                  "instead)", strerror(errno));
        *way = CKPT_FILESYSTEM;
    }
    return syncfs(root_fd);
}

/* ---- whether to keep descriptors at all --------------------------------- */

/* Looked at most this often; kept this long after the machine was last
 * seen busy. */
#define CKPT_CHECK_US 100000ULL
#define CKPT_CALM_US (10 * 1000000ULL)

bool ckpt_keeping(struct ckpt_watch *w, uint64_t now_us, uint64_t ours)
{
    if (now_us - w->checked_us >= CKPT_CHECK_US) {
        w->checked_us = now_us;
        if (ckpt_busy(maildir_unwritten_bytes(), ours))
            w->busy_at_us = now_us;
    }
    return w->busy_at_us != 0 && now_us - w->busy_at_us < CKPT_CALM_US;
}
