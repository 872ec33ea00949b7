/*
 * unit_maildir_commit.c - group commit on a real file system: messages land in
 * every new/ with the right name and bytes, batches form, failures leave
 * nothing behind. The loop is a real selector the committer is attached to.
 */
#include "maildir.h"
#include "selector.h"
#include "tmpdir.h"
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* What done() saw, one per job. */
struct result {
    int called;
    int error;
    char id[MAILDIR_ID_MAX + 1];
    uint64_t size;
    time_t sec;
};

static int done_calls;

static void on_done(struct commit_job *job)
{
    struct result *r = job->data;
    done_calls++;
    if (!r)
        return;
    r->called++;
    r->error = job->error;
    memcpy(r->id, job->msg.id, sizeof r->id);
    r->size = job->msg.size;
    r->sec = job->msg.sec;
}

/* ---- file system helpers ---------------------------------------------- */

static void tmpdir_make(char *dir, size_t len)
{
    tmpdir_make_named(dir, len, "unit_committer");
}

/* Entries of root/box/sub other than . and ..; the last one goes to name. */
static int box_count(const char *root, const char *box, const char *sub,
                     char *name, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/%s", root, box, sub);
    return dir_count(path, name, len);
}

static void host_escaped(char *dst, size_t len)
{
    char raw[256] = "";
    size_t o = 0;
    gethostname(raw, sizeof raw - 1);
    for (const char *p = raw; *p && o + 5 < len; p++) {
        if (*p == '/' || *p == ':')
            o += (size_t)snprintf(dst + o, len - o, "\\%03o", (unsigned)*p);
        else
            dst[o++] = *p;
    }
    dst[o] = '\0';
}

/* ---- jobs ------------------------------------------------------------- */

/* A finished message to boxes[0..n), spooled in the first box's tmp/. */
static struct commit_job *make_job(const char *root, const char *const *boxes,
                                   size_t n, const char *body, struct result *r)
{
    struct commit_job *job = calloc(1, sizeof *job);
    if (!job || maildir_msg_open(&job->msg, root, boxes[0]) < 0 ||
        maildir_msg_write(&job->msg, body, strlen(body)) < 0) {
        free(job);
        return NULL;
    }
    job->boxes = calloc(n, sizeof *job->boxes);
    for (size_t i = 0; i < n; i++)
        job->boxes[i] = strdup(boxes[i]);
    job->nboxes = n;
    job->done = on_done;
    job->data = r;
    return job;
}

static struct selector *loop;

/* A committer attached to the test's loop. */
static struct committer *committer_start(const char *dir)
{
    if (loop == NULL)
        loop = selector_new(1024);
    struct committer *c = committer_new(dir);
    if (c && committer_attach(c, loop) < 0) {
        committer_free(c);
        c = NULL;
    }
    return c;
}

/* Loop turns until some done() ran: how many, or -1 after 10 s. */
static int loop_turn(struct committer *c)
{
    int before = done_calls;
    committer_flush(c);
    for (int i = 0; i < 100 && done_calls == before; i++)
        if (selector_select(loop, 100) < 0)
            return -1;
    return done_calls == before ? -1 : done_calls - before;
}

/* The eventfd the committer's worker made, or -1. */
static int eventfd_opened(void)
{
    char path[64], target[64];
    for (int fd = 3; fd < 1024; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n > 0 && (target[n] = '\0', strstr(target, "eventfd")))
            return fd;
    }
    return -1;
}

static void drain(struct committer *c)
{
    for (int i = 0; i < 1000 && committer_pending(c) > 0; i++)
        if (loop_turn(c) < 0)
            break;
}

static void file_check(const char *root, const char *box, const char *name,
                       const char *body, struct stat *st)
{
    char path[PATH_MAX], buf[256];
    snprintf(path, sizeof path, "%s/%s/new/%s", root, box, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf);
    CHECK_EQ_INT(n, strlen(body));
    CHECK(n >= 0 && memcmp(buf, body, (size_t)n) == 0);
    fstat(fd, st);
    close(fd);
}

/* ---- tests ------------------------------------------------------------ */

static void test_one_job_three_boxes(void)
{
    static const char *const boxes[] = { "alice", "bob", "carol" };
    static const char body[] = "Subject: hi\r\n\r\nthree copies\r\n";
    char dir[64], host[300], want[512], name[512];
    struct result r = { 0 };
    struct stat st[3];
    tmpdir_make(dir, sizeof dir);
    for (int i = 0; i < 3; i++)
        maildir_create(dir, boxes[i]);
    struct committer *c = committer_start(dir);
    CHECK(c != NULL);
    int fd = eventfd_opened();
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);

    struct commit_job *job = make_job(dir, boxes, 3, body, &r);
    CHECK(job != NULL);
    committer_submit(c, job);
    CHECK_EQ_INT(committer_pending(c), 1);
    CHECK_EQ_INT(loop_turn(c), 1);
    CHECK_EQ_INT(committer_pending(c), 0);
    CHECK_EQ_INT(r.called, 1);
    CHECK_EQ_INT(r.error, 0);
    CHECK_EQ_INT(r.size, strlen(body));

    host_escaped(host, sizeof host);
    snprintf(want, sizeof want, "%lld.%s.%s,S=%zu", (long long)r.sec, r.id,
             host, strlen(body));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(box_count(dir, boxes[i], "new", name, sizeof name), 1);
        CHECK(strcmp(name, want) == 0);
        file_check(dir, boxes[i], want, body, &st[i]);
        CHECK_EQ_INT(box_count(dir, boxes[i], "tmp", NULL, 0), 0);
    }
    CHECK(st[0].st_ino == st[1].st_ino && st[1].st_ino == st[2].st_ino);
    CHECK_EQ_INT(st[0].st_nlink, 3);
    committer_free(c);
    tmpdir_remove(dir);
}

/* 200 jobs handed over in one loop turn go as one batch: the first
 * collect already sees more than one of them. */
static void test_many_jobs_batched(void)
{
    enum { N = 200 };
    static const char *const boxes[] = { "alice", "bob" };
    static struct result r[N];
    char dir[64];
    memset(r, 0, sizeof r);
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    maildir_create(dir, "bob");
    struct committer *c = committer_start(dir);
    /* One job first: once its result is back, the thread is waiting (it
     * holds the lock from its notification until it waits again), so the
     * 200 below cannot be picked up one by one as they are submitted. */
    static const char *const warm[] = { "carol" };
    static struct result warm_r;
    maildir_create(dir, "carol");
    committer_submit(c, make_job(dir, warm, 1, "w\r\n", &warm_r));
    CHECK_EQ_INT(loop_turn(c), 1);
    for (int i = 0; i < N; i++) {
        struct commit_job *job = make_job(dir, boxes + (i % 2), 1, "x\r\n", &r[i]);
        CHECK(job != NULL);
        if (job)
            committer_submit(c, job);
    }
    CHECK_EQ_INT(committer_pending(c), N);
    int first = loop_turn(c);
    CHECK(first > 1);
    drain(c);
    CHECK_EQ_INT(committer_pending(c), 0);
    int ok = 0;
    for (int i = 0; i < N; i++)
        ok += r[i].called == 1 && r[i].error == 0;
    CHECK_EQ_INT(ok, N);
    CHECK_EQ_INT(box_count(dir, "alice", "new", NULL, 0), N / 2);
    CHECK_EQ_INT(box_count(dir, "bob", "new", NULL, 0), N / 2);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "bob", "tmp", NULL, 0), 0);
    committer_free(c);
    tmpdir_remove(dir);
}

/* As the loop does it: submit a few, flush, go on while the thread works. */
static void test_jobs_while_busy(void)
{
    enum { N = 150 };
    static const char *const box[] = { "alice" };
    char dir[64];
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    struct committer *c = committer_start(dir);
    int before = done_calls;
    for (int i = 0; i < N; i++) {
        struct commit_job *job = make_job(dir, box, 1, "y\r\n", NULL);
        if (job)
            committer_submit(c, job);
        committer_flush(c);
        selector_select(loop, 0);
    }
    drain(c);
    CHECK_EQ_INT(done_calls - before, N);
    CHECK_EQ_INT(box_count(dir, "alice", "new", NULL, 0), N);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 0);
    committer_free(c);
    tmpdir_remove(dir);
}

/* carol's new/ is gone: the job fails with an errno and leaves nothing in
 * alice's or bob's new/, nor in tmp/; a good job of the same batch lands. */
static void test_failure_leaves_nothing(void)
{
    static const char *const boxes[] = { "alice", "bob", "carol" };
    static const char *const good[] = { "dave" };
    char dir[64], path[PATH_MAX];
    struct result bad = { 0 }, fine = { 0 };
    tmpdir_make(dir, sizeof dir);
    for (int i = 0; i < 3; i++)
        maildir_create(dir, boxes[i]);
    maildir_create(dir, "dave");
    snprintf(path, sizeof path, "%s/carol/new", dir);
    CHECK_EQ_INT(rmdir(path), 0);
    struct committer *c = committer_start(dir);
    committer_submit(c, make_job(dir, boxes, 3, "lost\r\n", &bad));
    committer_submit(c, make_job(dir, good, 1, "kept\r\n", &fine));
    drain(c);
    CHECK_EQ_INT(bad.called, 1);
    CHECK_EQ_INT(bad.error, ENOENT);
    CHECK_EQ_INT(fine.called, 1);
    CHECK_EQ_INT(fine.error, 0);
    CHECK_EQ_INT(box_count(dir, "alice", "new", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "bob", "new", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "dave", "new", NULL, 0), 1);
    CHECK_EQ_INT(box_count(dir, "dave", "tmp", NULL, 0), 0);
    committer_free(c);
    tmpdir_remove(dir);
}

static void test_bad_box_name(void)
{
    static const char *const boxes[] = { "alice", "../alice" };
    char dir[64];
    struct result r = { 0 };
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    struct committer *c = committer_start(dir);
    committer_submit(c, make_job(dir, boxes, 2, "z\r\n", &r));
    drain(c);
    CHECK_EQ_INT(r.error, EINVAL);
    CHECK_EQ_INT(box_count(dir, "alice", "new", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 0);
    committer_free(c);
    tmpdir_remove(dir);
}

/* The same recipient twice is one delivery, not an EEXIST failure. */
static void test_repeated_box(void)
{
    static const char *const boxes[] = { "alice", "bob", "alice" };
    char dir[64];
    struct result r = { 0 };
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    maildir_create(dir, "bob");
    struct committer *c = committer_start(dir);
    committer_submit(c, make_job(dir, boxes, 3, "twice\r\n", &r));
    drain(c);
    CHECK_EQ_INT(r.error, 0);
    CHECK_EQ_INT(box_count(dir, "alice", "new", NULL, 0), 1);
    CHECK_EQ_INT(box_count(dir, "bob", "new", NULL, 0), 1);
    committer_free(c);
    tmpdir_remove(dir);
}

/* A transformed copy is delivered under the original's ID; its size in
 * the name is the copy's, even when written behind maildir's back. */
static void test_copy_delivered(void)
{
    static const char *const box[] = { "alice" };
    char dir[64], name[512], tail[64];
    struct result r = { 0 };
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    struct committer *c = committer_start(dir);
    struct commit_job *job = make_job(dir, box, 1, "original\r\n", NULL);
    struct commit_job *copy = calloc(1, sizeof *copy);
    CHECK_EQ_INT(maildir_msg_open_copy(&copy->msg, &job->msg, dir, "alice"), 0);
    CHECK_EQ_INT(write(copy->msg.fd, "transformed\r\n", 13), 13);
    copy->boxes = job->boxes;
    copy->nboxes = job->nboxes;
    job->boxes = NULL;
    job->nboxes = 0;
    copy->done = on_done;
    copy->data = &r;
    commit_job_free(job);
    committer_submit(c, copy);
    drain(c);
    CHECK_EQ_INT(r.error, 0);
    CHECK_EQ_INT(r.size, 13);
    CHECK_EQ_INT(box_count(dir, "alice", "new", name, sizeof name), 1);
    CHECK(strstr(name, r.id) != NULL);
    size_t n = strlen(name);
    snprintf(tail, sizeof tail, ",S=13");
    CHECK(n > 5 && strcmp(name + n - 5, tail) == 0);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 0);
    committer_free(c);
    tmpdir_remove(dir);
}

static void test_job_free_unsubmitted(void)
{
    static const char *const box[] = { "alice" };
    char dir[64];
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    struct commit_job *job = make_job(dir, box, 1, "never\r\n", NULL);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 1);
    commit_job_free(job);
    commit_job_free(NULL);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "alice", "new", NULL, 0), 0);
    tmpdir_remove(dir);
}

/* committer_free finishes what was submitted, even without a flush. */
static void test_free_finishes_work(void)
{
    static const char *const box[] = { "alice" };
    char dir[64];
    struct result r[5];
    memset(r, 0, sizeof r);
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    struct committer *c = committer_start(dir);
    for (int i = 0; i < 5; i++)
        committer_submit(c, make_job(dir, box, 1, "late\r\n", &r[i]));
    committer_free(c);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(r[i].called, 1);
        CHECK_EQ_INT(r[i].error, 0);
    }
    CHECK_EQ_INT(box_count(dir, "alice", "new", NULL, 0), 5);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 0);
    committer_free(NULL);
    tmpdir_remove(dir);
}

/* Links below root are never followed: a recipient whose mailbox is a
 * link, or whose new/ is one, fails the job (ELOOP), and nothing lands in
 * the directory the link points at, nor in the other recipients' new/. */
static void test_links_refused(void)
{
    static const char *const via_box[] = { "alice", "far" };
    static const char *const via_new[] = { "bob" };
    char dir[64], other[64], path[PATH_MAX], target[PATH_MAX];
    struct result r1 = { 0 }, r2 = { 0 };
    tmpdir_make(dir, sizeof dir);
    tmpdir_make(other, sizeof other);
    maildir_create(dir, "alice");
    maildir_create(dir, "bob");
    maildir_create(other, "far");
    snprintf(target, sizeof target, "%s/far", other);
    snprintf(path, sizeof path, "%s/far", dir);
    CHECK_EQ_INT(symlink(target, path), 0);
    snprintf(path, sizeof path, "%s/bob/new", dir);
    CHECK_EQ_INT(rmdir(path), 0);
    snprintf(target, sizeof target, "%s/far/new", other);
    CHECK_EQ_INT(symlink(target, path), 0);
    struct committer *c = committer_start(dir);
    committer_submit(c, make_job(dir, via_box, 2, "via a box\r\n", &r1));
    committer_submit(c, make_job(dir, via_new, 1, "via new\r\n", &r2));
    drain(c);
    CHECK_EQ_INT(r1.error, ELOOP);
    CHECK_EQ_INT(r2.error, ELOOP);
    CHECK_EQ_INT(box_count(other, "far", "new", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "alice", "new", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "bob", "tmp", NULL, 0), 0);
    committer_free(c);
    tmpdir_remove(dir);
    tmpdir_remove(other);
}

/* The flush strategy: syncfs only for a batch of several messages (or one
 * to three mailboxes or more) on root's filesystem, after two calm
 * seconds; file by file otherwise. */
static void test_flush_choice(void)
{
    const enum commit_flush files = COMMIT_FLUSH_FILES;
    const enum commit_flush fs = COMMIT_FLUSH_FILESYSTEM;
    CHECK_EQ_INT(commit_flush_choose(16, 16, 0, 60.0), fs);
    CHECK_EQ_INT(commit_flush_choose(2, 2, 0, 60.0), fs);
    CHECK_EQ_INT(commit_flush_choose(1, 3, 0, 60.0), fs);
    /* a lone message to one or two mailboxes */
    CHECK_EQ_INT(commit_flush_choose(1, 1, 0, 60.0), files);
    CHECK_EQ_INT(commit_flush_choose(1, 2, 0, 60.0), files);
    /* a file on another filesystem, whatever else holds */
    CHECK_EQ_INT(commit_flush_choose(16, 16, 1, 60.0), files);
    /* another writer lately: busy now, or less than two seconds ago */
    CHECK_EQ_INT(commit_flush_choose(16, 16, 0, 0.0), files);
    CHECK_EQ_INT(commit_flush_choose(64, 640, 0, 1.9), files);
    CHECK_EQ_INT(commit_flush_choose(64, 640, 0, 2.1), fs);
}

/* Twelve messages to three mailboxes in every mix, one batch: each lands
 * once in each of its boxes (each new/ is synced once for all of them). */
static void test_shared_directories(void)
{
    static const char *const sets[][3] = {
        { "alice" }, { "bob" }, { "alice", "bob" }, { "carol", "alice", "bob" },
    };
    static const size_t sizes[] = { 1, 1, 2, 3 };
    static struct result r[12];
    char dir[64];
    memset(r, 0, sizeof r);
    tmpdir_make(dir, sizeof dir);
    maildir_create(dir, "alice");
    maildir_create(dir, "bob");
    maildir_create(dir, "carol");
    struct committer *c = committer_start(dir);
    for (int i = 0; i < 12; i++)
        committer_submit(c, make_job(dir, sets[i % 4], sizes[i % 4],
                                     "s\r\n", &r[i]));
    drain(c);
    for (int i = 0; i < 12; i++)
        CHECK(r[i].called == 1 && r[i].error == 0);
    CHECK_EQ_INT(box_count(dir, "alice", "new", NULL, 0), 9);
    CHECK_EQ_INT(box_count(dir, "bob", "new", NULL, 0), 9);
    CHECK_EQ_INT(box_count(dir, "carol", "new", NULL, 0), 3);
    CHECK_EQ_INT(box_count(dir, "alice", "tmp", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "bob", "tmp", NULL, 0), 0);
    CHECK_EQ_INT(box_count(dir, "carol", "tmp", NULL, 0), 0);
    committer_free(c);
    tmpdir_remove(dir);
}

static void test_new_fails_on_missing_root(void)
{
    errno = 0;
    CHECK(committer_new("/tmp/unit_committer.does-not-exist/x") == NULL);
    CHECK_EQ_INT(errno, ENOENT);
}

UNIT_MAIN("committer",
          { "one_job_three_boxes", test_one_job_three_boxes },
          { "many_jobs_batched", test_many_jobs_batched },
          { "jobs_while_busy", test_jobs_while_busy },
          { "failure_leaves_nothing", test_failure_leaves_nothing },
          { "bad_box_name", test_bad_box_name },
          { "repeated_box", test_repeated_box },
          { "copy_delivered", test_copy_delivered },
          { "job_free_unsubmitted", test_job_free_unsubmitted },
          { "free_finishes_work", test_free_finishes_work },
          { "links_refused", test_links_refused },
          { "new_fails_on_missing_root", test_new_fails_on_missing_root },
          { "flush_choice", test_flush_choice },
          { "shared_directories", test_shared_directories })
