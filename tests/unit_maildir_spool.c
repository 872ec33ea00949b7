/*
 * unit_maildir_spool.c - spool files made on the worker thread: done() gets an
 * open file in the right tmp/ (or a copy sharing the original's queue
 * ID), an error comes back as an errno with nothing left, and a
 * cancelled open leaves no file once the worker hands it back.
 */
#include "maildir_spool.h"
#include "selector.h"
#include "tmpdir.h"
#include "unit.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

struct seen {
    int calls;
    int error;
    struct maildir_msg msg;         /* moved out of done()'s */
};

static void on_done(void *data, struct maildir_msg *msg, int error)
{
    struct seen *r = data;
    r->calls++;
    r->error = error;
    r->msg = *msg;
    msg->fd = -1;
    msg->tmp_path = NULL;
}

/* Runs the loop until done() was called `want` times (or 5 s). */
static void run_until(struct selector *sel, const int *calls, int want)
{
    for (int i = 0; i < 100 && *calls < want; i++)
        selector_select(sel, 50);
}

static int count_tmp(const char *root, const char *box)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/tmp", root, box);
    return dir_count(path, NULL, 0);
}

static void test_open_and_copy(void)
{
    char dir[64];
    struct seen a = { 0 }, b = { 0 };
    tmpdir_make_named(dir, sizeof dir, "unit_spool");
    CHECK_EQ_INT(maildir_create(dir, "alice"), 0);
    struct selector *sel = selector_new(64);
    CHECK_EQ_INT(spool_init(sel), 0);
    CHECK(spool_open_start(dir, "alice", NULL, on_done, &a) != NULL);
    run_until(sel, &a.calls, 1);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(a.error, 0);
    CHECK(a.msg.fd >= 0);
    CHECK(a.msg.tmp_path && strstr(a.msg.tmp_path, "/alice/tmp/") != NULL);
    CHECK(spool_open_start(dir, "alice", &a.msg, on_done, &b) != NULL);
    run_until(sel, &b.calls, 1);
    CHECK_EQ_INT(b.error, 0);
    CHECK(strcmp(a.msg.id, b.msg.id) == 0 && a.msg.sec == b.msg.sec);
    CHECK(strcmp(a.msg.tmp_path, b.msg.tmp_path) != 0);
    CHECK_EQ_INT(count_tmp(dir, "alice"), 2);
    maildir_msg_abort(&a.msg);
    maildir_msg_abort(&b.msg);
    CHECK_EQ_INT(count_tmp(dir, "alice"), 0);
    spool_shutdown();
    selector_destroy(sel);
    tmpdir_remove(dir);
}

/* No such mailbox: ENOENT, nothing open. */
static void test_error(void)
{
    char dir[64];
    struct seen r = { 0 };
    tmpdir_make_named(dir, sizeof dir, "unit_spool");
    struct selector *sel = selector_new(64);
    CHECK_EQ_INT(spool_init(sel), 0);
    CHECK(spool_open_start(dir, "nobody", NULL, on_done, &r) != NULL);
    run_until(sel, &r.calls, 1);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(r.error, ENOENT);
    CHECK_EQ_INT(r.msg.fd, -1);
    CHECK(r.msg.tmp_path == NULL);
    spool_shutdown();
    selector_destroy(sel);
    tmpdir_remove(dir);
}

/* Cancelled at once: done() never runs, and the file the worker made is
 * gone by the time shutdown returns. */
static void test_cancel(void)
{
    char dir[64];
    struct seen r = { 0 };
    tmpdir_make_named(dir, sizeof dir, "unit_spool");
    CHECK_EQ_INT(maildir_create(dir, "alice"), 0);
    struct selector *sel = selector_new(64);
    CHECK_EQ_INT(spool_init(sel), 0);
    for (int i = 0; i < 20; i++)
        spool_open_cancel(spool_open_start(dir, "alice", NULL, on_done, &r));
    spool_shutdown();
    CHECK_EQ_INT(r.calls, 0);
    CHECK_EQ_INT(count_tmp(dir, "alice"), 0);
    selector_destroy(sel);
    tmpdir_remove(dir);
}

UNIT_MAIN("spool",
          { "open_and_copy", test_open_and_copy },
          { "error", test_error },
          { "cancel", test_cancel })
