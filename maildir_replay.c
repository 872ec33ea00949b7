/*
 * maildir_replay.c - a journal read back (maildir_replay.h). The records
 * after the last checkpoint are the messages whose files may not be on
 * the disk yet: the process was killed (the files are in new/, nothing to
 * do) or the machine lost power (a file or its name may be missing, or
 * shorter than it was). Each is compared, by length and SHA-256, with
 * the file of that name in new/ or, if a reader has moved it, in cur/
 * (where it ends in ":2,flags"); what is missing or differs is written
 * again, as a new file renamed over the old name, never twice: the
 * checkpoint written at the end says those records are done.
 *
 * The maildirsize of each mailbox a replayed record names is removed, to
 * be counted again from the files.
 *
 * A message a reader deleted between its 250 and the next checkpoint
 * (at most --checkpoint seconds) comes back after a crash: the journal
 * cannot tell "deleted" from "lost" (docs/reliability.md).
 */
#include "maildir_replay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"

/* ---- slots ------------------------------------------------------------ */

int journal_slot_read(int fd, uint64_t size, struct jslot *slot)
{
    struct jslot s[2];
    const struct jslot *ok[2] = { NULL, NULL };
    uint8_t buf[JOURNAL_SLOT_BYTES];
    for (int i = 0; i < 2; i++)
        if (pread(fd, buf, sizeof buf, (off_t)i * JOURNAL_SLOT_SIZE)
                == (ssize_t)sizeof buf
            && jslot_decode(buf, size, &s[i]) == 0)
            ok[i] = &s[i];
    const struct jslot *best = jslot_pick(ok[0], ok[1]);
    if (best == NULL)
        return -1;
    *slot = *best;
    return 0;
}

int journal_slot_write(int fd, const struct jslot *slot)
{
    uint8_t buf[JOURNAL_SLOT_BYTES];
    jslot_encode(slot, buf);
    off_t at = (off_t)(slot->generation % 2) * JOURNAL_SLOT_SIZE;
    ssize_t n = pwrite(fd, buf, sizeof buf, at);
    if (n != (ssize_t)sizeof buf) {
        if (n >= 0)
            errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

/* ---- one file checked and, if need be, written again ------------------- */

/* 1 when dir/name is a regular file of len bytes whose SHA-256 is sha. */
static int replay_same(int dir, const char *name, uint64_t len,
                       const uint8_t sha[SHA256_LEN])
{
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return 0;
    int same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
               && (uint64_t)st.st_size == len;
    if (same) {
        struct sha256 s;
        uint8_t buf[65536], got[SHA256_LEN];
        ssize_t n;
        sha256_init(&s);
        while ((n = read(fd, buf, sizeof buf)) > 0)
            sha256_update(&s, buf, (size_t)n);
        sha256_final(&s, got);
        same = n == 0 && memcmp(got, sha, SHA256_LEN) == 0;
    }
    close(fd);
    return same;
}

/* The entry of cur/ for the file name (exactly, or followed by ':'), in
 * found; 1 if there is one. */
static int replay_find_cur(int cur, const char *name, char found[NAME_MAX + 1])
{
    int fd = dup(cur);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    size_t len = strlen(name);
    int hit = 0;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    for (struct dirent *e; !hit && (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, name, len) == 0
            && (e->d_name[len] == '\0' || e->d_name[len] == ':')) {
            snprintf(found, NAME_MAX + 1, "%s", e->d_name);
            hit = 1;
        }
    closedir(d);
    return hit;
}

/* Writes body into tmp/ and renames it to new/name: 0, or -1 with errno. */
static int replay_write(int tmp, int new, const char *name,
                        const uint8_t *body, uint64_t len)
{
    char tname[NAME_MAX + 1];
    if (snprintf(tname, sizeof tname, "%.200s.replay", name)
            >= (int)sizeof tname) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = openat(tmp, tname, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW
                    | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    for (uint64_t done = 0; done < len;) {
        ssize_t n = write(fd, body + done, len - done);
        if (n < 0) {
            int saved = errno;
            close(fd);
            unlinkat(tmp, tname, 0);
            errno = saved;
            return -1;
        }
        done += (uint64_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0
        || renameat(tmp, tname, new, name) < 0) {
        int saved = errno;
        unlinkat(tmp, tname, 0);
        errno = saved;
        return -1;
    }
    return fsync(new);
}

struct replay_dirs { int new, cur, tmp; };

static void replay_dirs_close(struct replay_dirs *d)
{
    if (d->new >= 0)
        close(d->new);
    if (d->cur >= 0)
        close(d->cur);
    if (d->tmp >= 0)
        close(d->tmp);
}

/* One mailbox's copy of a record: 1 written again, 0 whole already (or
 * the mailbox is gone: *gone set), -1 with errno. */
static int replay_box(const char *root, const char *box, const char *name,
                      const uint8_t *body, const struct jrec *r, int *gone)
{
    struct replay_dirs d = { maildir_open_dir(root, box, "new"),
                             maildir_open_dir(root, box, "cur"),
                             maildir_open_dir(root, box, "tmp") };
    char old[NAME_MAX + 1];
    int rc = 0, in_cur = 0;
    if (d.new < 0 || d.cur < 0 || d.tmp < 0)
        *gone = 1;
    else if (!replay_same(d.new, name, r->body_len, r->body_sha)) {
        in_cur = replay_find_cur(d.cur, name, old);
        if (!in_cur || !replay_same(d.cur, old, r->body_len, r->body_sha)) {
            rc = replay_write(d.tmp, d.new, name, body, r->body_len) < 0 ? -1 : 1;
            if (rc == 1 && in_cur && unlinkat(d.cur, old, 0) == 0)
                fsync(d.cur);
        }
    }
    int saved = errno;
    replay_dirs_close(&d);
    errno = saved;
    return rc;
}

/*
 * The mailbox's maildirsize is removed, to be counted again from its
 * files (at start, by maildir_quota.c, or by Dovecot): the line the
 * committer appended for this message was not synced before its 250, so
 * after a power cut it may be missing while the message is back.
 */
static void replay_forget_quota(const char *root, const char *box)
{
    char top[MAILDIR_NAME_MAX + 1];
    size_t len = strcspn(box, "/");
    if (len >= sizeof top)
        return;
    memcpy(top, box, len);
    top[len] = '\0';
    int dir = maildir_open_dir(root, top, NULL);
    if (dir < 0)
        return;
    if (unlinkat(dir, "maildirsize", 0) == 0)
        fsync(dir);
    close(dir);
}

/* ---- the walk --------------------------------------------------------- */

/* Reads len bytes at off: 0, or -1 (short: the record is torn). */
static int replay_read(int fd, void *p, uint64_t len, uint64_t off)
{
    for (uint64_t done = 0; done < len;) {
        ssize_t n = pread(fd, (uint8_t *)p + done, len - done,
                          (off_t)(off + done));
        if (n <= 0)
            return -1;
        done += (uint64_t)n;
    }
    return 0;
}

/* The record at off with sequence seq, whole and checked, into *names and
 * *body (malloc'd); 0, or -1 when it is not there (the end). */
static int replay_load(int fd, uint64_t size, const struct jslot *at,
                       struct jrec *r, char **names, uint8_t **body)
{
    uint8_t hdr[JOURNAL_REC_HEADER], sum[SHA256_LEN];
    *names = NULL;
    *body = NULL;
    uint64_t off = at->tail_off;
    if (replay_read(fd, hdr, sizeof hdr, off) < 0
        || jrec_decode(hdr, at->tail_seq, r) < 0)
        return -1;
    if (r->type == JREC_WRAP)
        return jrec_check_names(r, at->key, hdr, "");
    if (off + jrec_size(r->names_len, r->body_len) > size)
        return -1;
    *names = malloc(r->names_len);
    *body = malloc(r->body_len ? r->body_len : 1);
    if (*names && *body
        && replay_read(fd, *names, r->names_len, off + sizeof hdr) == 0
        && jrec_check_names(r, at->key, hdr, *names) == 0
        && replay_read(fd, *body, r->body_len,
                       off + sizeof hdr + r->names_len) == 0) {
        sha256(*body, r->body_len, sum);
        if (memcmp(sum, r->body_sha, SHA256_LEN) == 0)
            return 0;
    }
    free(*names);
    free(*body);
    *names = NULL;
    *body = NULL;
    return -1;
}

/* Every mailbox of one record: -1 with errno when a file could not be
 * written again (replay stops: the journal stays as it is). */
static int replay_record(const char *root, const struct jrec *r,
                         const char *names, const uint8_t *body,
                         struct replay_result *res)
{
    uint32_t pos = 0;
    const char *name = jrec_next_name(names, r->names_len, &pos);
    for (const char *box; (box = jrec_next_name(names, r->names_len, &pos));) {
        int gone = 0;
        int rc = replay_box(root, box, name, body, r, &gone);
        if (rc < 0) {
            log_error("journal: cannot write %s/%s/new/%s again: %s",
                      root, box, name, strerror(errno));
            return -1;
        }
        res->restored += (unsigned)rc;
        res->skipped += (unsigned)gone;
        if (!gone)
            replay_forget_quota(root, box);
    }
    res->records++;
    return 0;
}

/* Walks the chain from the checkpoint; *at ends where the next record
 * goes. 0, or -1 with errno (a file that could not be written). */
static int replay_walk(const char *root, int fd, uint64_t size,
                       struct jslot *at, struct replay_result *res)
{
    /* every record is at least 96 bytes: a bound on the walk */
    for (uint64_t steps = size / JOURNAL_REC_HEADER + 2; steps > 0; steps--) {
        struct jrec r;
        char *names;
        uint8_t *body;
        if (at->tail_off + JOURNAL_REC_HEADER > size) {
            at->tail_off = JOURNAL_DATA_START;
            continue;
        }
        if (replay_load(fd, size, at, &r, &names, &body) < 0)
            return 0;
        int rc = r.type == JREC_WRAP ? 0
                 : replay_record(root, &r, names, body, res);
        free(names);
        free(body);
        if (rc < 0)
            return -1;
        at->tail_seq++;
        at->tail_off = r.type == JREC_WRAP ? JOURNAL_DATA_START
                       : at->tail_off + jrec_size(r.names_len, r.body_len);
    }
    return 0;
}

int journal_replay(const char *root, int fd, struct jslot *end,
                   struct replay_result *res)
{
    struct stat st;
    memset(res, 0, sizeof *res);
    *end = (struct jslot){ .tail_off = JOURNAL_DATA_START, .tail_seq = 1 };
    if (fstat(fd, &st) < 0)
        return -1;
    if (journal_slot_read(fd, (uint64_t)st.st_size, end) < 0) {
        *end = (struct jslot){ .tail_off = JOURNAL_DATA_START, .tail_seq = 1 };
        return 0;
    }
    if (replay_walk(root, fd, (uint64_t)st.st_size, end, res) < 0)
        return -1;
    if (res->records == 0)
        return 0;           /* nothing after the checkpoint: it stands */
    int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return -1;
    int rc = syncfs(root_fd);
    close(root_fd);
    end->generation++;
    return rc < 0 ? -1 : journal_slot_write(fd, end);
}

/* ---- at start --------------------------------------------------------- */

/* One journal found at start: replayed when no running instance holds it. */
static int replay_one(const char *root, int dir, const char *file)
{
    struct jslot end;
    struct replay_result res;
    int fd = openat(dir, file, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        log_info("journal %s/.journal/%s: in use by a running instance",
                 root, file);
        close(fd);
        return 0;
    }
    int rc = journal_replay(root, fd, &end, &res);
    int saved = errno;
    close(fd);
    if (rc < 0) {
        log_error("journal %s/.journal/%s: replay failed: %s", root, file,
                  strerror(saved));
        errno = saved;
        return -1;
    }
    if (res.records)
        log_info("journal %s/.journal/%s: %u records after the checkpoint, "
                 "%u files written again, %u to mailboxes that are gone",
                 root, file, res.records, res.restored, res.skipped);
    return (int)res.restored;
}

int journal_recover(const char *root)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/.journal", root);
    int dir = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0)
        return errno == ENOENT ? 0 : -1;
    int fd = dup(dir);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        close(dir);
        errno = saved;
        return -1;
    }
    int restored = 0, rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        int n = replay_one(root, dir, e->d_name);
        if (n < 0)
            rc = -1;
        else
            restored += n;
    }
    int saved = errno;
    closedir(d);
    close(dir);
    errno = saved;
    return rc < 0 ? -1 : restored;
}
