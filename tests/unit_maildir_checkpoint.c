/*
 * unit_maildir_checkpoint.c - what a journal checkpoint keeps and how it
 * syncs: descriptors kept past their file's rename into cur/, a set that
 * overflows (and then only syncfs will do), the choice between the two
 * ways, a file-by-file sync over mailboxes one of which was removed, and
 * how long descriptors are kept after the machine was last busy.
 */
#include "maildir.h"
#include "maildir_checkpoint.h"
#include "tmpdir.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A file root/box/new/name holding text; its descriptor, or -1. */
static int make_file(const char *root, const char *box, const char *name,
                     const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/new/%s", root, box, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0 && write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Descriptors are open until the set is cleared, and a move past the
 * limit closes the rest and overflows the set it goes to. */
static void test_keep_move_clear(void)
{
    struct ckpt_set batch = { 0 }, kept = { 0 };
    static const char names[] = "1.Mx.h,S=2\0bob";
    int fd = open("/dev/null", O_RDONLY);
    for (int i = 0; i < 3; i++)
        ckpt_keep(&batch, fd, names, sizeof names, 100);
    close(fd);
    CHECK_EQ_INT(batch.n, 3);
    CHECK_EQ_INT(batch.bytes, 300);
    CHECK(!batch.overflow);
    CHECK(fcntl(batch.v[2].fd, F_GETFD) >= 0);     /* still open */
    CHECK(memcmp(batch.v[1].names, names, sizeof names) == 0);

    CHECK(!ckpt_move(&kept, &batch, 3));            /* room for all three */
    CHECK_EQ_INT(kept.n, 3);
    CHECK_EQ_INT(batch.n, 0);
    CHECK_EQ_INT(batch.bytes, 0);
    int kept_fd = kept.v[0].fd;
    ckpt_clear(&kept);
    CHECK_EQ_INT(kept.n, 0);
    CHECK(!kept.overflow);
    errno = 0;
    CHECK(fcntl(kept_fd, F_GETFD) < 0 && errno == EBADF);

    /* past the limit only syncfs will do: every descriptor closed */
    fd = open("/dev/null", O_RDONLY);
    for (int i = 0; i < 3; i++)
        ckpt_keep(&batch, fd, names, sizeof names, 100);
    ckpt_keep(&kept, fd, names, sizeof names, 100);
    close(fd);
    kept_fd = kept.v[0].fd;
    CHECK(ckpt_move(&kept, &batch, 3));
    CHECK_EQ_INT(kept.n, 0);
    CHECK_EQ_INT(kept.bytes, 400);
    CHECK(kept.overflow);
    errno = 0;
    CHECK(fcntl(kept_fd, F_GETFD) < 0 && errno == EBADF);
    CHECK(!ckpt_move(&kept, &batch, 3));            /* no longer "full" */
    ckpt_clear(&kept);

    ckpt_keep(&batch, -1, names, sizeof names, 1);  /* dup fails */
    CHECK(batch.overflow);
    CHECK_EQ_INT(batch.n, 0);
    ckpt_move(&kept, &batch, 100);                  /* and so does kept */
    CHECK(kept.overflow);
    ckpt_without(&batch, 5);
    CHECK(batch.overflow);
    CHECK_EQ_INT(batch.bytes, 5);
    ckpt_clear(&batch);
    ckpt_clear(&kept);
}

/* File by file only when every file is kept and someone else's
 * unwritten data passes 32 MiB. */
static void test_choose(void)
{
    struct ckpt_set s = { 0 };
    CHECK_EQ_INT(ckpt_choose(&s, 1ULL << 30), CKPT_FILESYSTEM);    /* empty */
    static const char names[] = "1.Mx.h,S=2\0bob";
    int fd = open("/dev/null", O_RDONLY);
    ckpt_keep(&s, fd, names, sizeof names, 20ULL << 20);
    close(fd);
    CHECK_EQ_INT(ckpt_choose(&s, 0), CKPT_FILESYSTEM);
    CHECK_EQ_INT(ckpt_choose(&s, 40ULL << 20), CKPT_FILESYSTEM);  /* ours */
    CHECK_EQ_INT(ckpt_choose(&s, 60ULL << 20), CKPT_FILES);
    s.overflow = true;
    CHECK_EQ_INT(ckpt_choose(&s, 1ULL << 30), CKPT_FILESYSTEM);
    ckpt_clear(&s);
}

/* A file a reader moved into cur/ is still synced through its
 * descriptor; a mailbox removed since is no error; a mailbox whose
 * new/ became a file makes it sync the whole filesystem instead. */
static void test_sync_by_files(void)
{
    char root[64], path[PATH_MAX], to[PATH_MAX];
    tmpdir_make_named(root, sizeof root, "unit_ckpt");
    CHECK_EQ_INT(maildir_create(root, "bob"), 0);
    CHECK_EQ_INT(maildir_create(root, "carol"), 0);
    int rfd = open(root, O_RDONLY | O_DIRECTORY);
    struct ckpt_set s = { 0 };
    static const char n1[] = "1.M1.h,S=3\0bob\0carol", n2[] = "2.M2.h,S=3\0bob";
    int f1 = make_file(root, "bob", "1.M1.h,S=3", "one");
    int f2 = make_file(root, "bob", "2.M2.h,S=3", "two");
    CHECK(f1 >= 0 && f2 >= 0);
    ckpt_keep(&s, f1, n1, sizeof n1, 3);
    ckpt_keep(&s, f2, n2, sizeof n2, 3);
    close(f1);
    close(f2);
    snprintf(path, sizeof path, "%s/bob/new/1.M1.h,S=3", root);
    snprintf(to, sizeof to, "%s/bob/cur/1.M1.h,S=3:2,S", root);
    CHECK_EQ_INT(rename(path, to), 0);              /* a reader saw it */
    snprintf(path, sizeof path, "rm -rf %s/carol", root);
    CHECK_EQ_INT(system(path), 0);                  /* carol is gone */
    enum ckpt_way way = CKPT_FILES;
    CHECK_EQ_INT(ckpt_sync(root, rfd, &s, &way), 0);
    CHECK_EQ_INT(way, CKPT_FILES);
    way = CKPT_FILESYSTEM;
    CHECK_EQ_INT(ckpt_sync(root, rfd, &s, &way), 0);

    snprintf(path, sizeof path, "rm -rf %s/bob/new && touch %s/bob/new",
             root, root);
    CHECK_EQ_INT(system(path), 0);                  /* not a directory */
    way = CKPT_FILES;                               /* falls back to syncfs */
    CHECK_EQ_INT(ckpt_sync(root, rfd, &s, &way), 0);
    CHECK_EQ_INT(way, CKPT_FILESYSTEM);
    ckpt_clear(&s);
    close(rfd);
    tmpdir_remove(root);
}

/* Once the machine was seen busy, descriptors are kept for 10 s. ("ours"
 * so large that the machine never looks busy beyond it here.) */
static void test_keeping_lasts_10s(void)
{
    struct ckpt_watch w = { 0 };
    const uint64_t never = UINT64_MAX / 2;
    CHECK(!ckpt_keeping(&w, 1000000, never));
    w.busy_at_us = 2000000;                         /* busy at 2 s */
    CHECK(ckpt_keeping(&w, 2050000, never));
    CHECK(ckpt_keeping(&w, 11900000, never));
    CHECK(!ckpt_keeping(&w, 12000000, never));
}

UNIT_MAIN("maildir_checkpoint",
          { "keep_move_clear", test_keep_move_clear },
          { "choose", test_choose },
          { "sync_by_files", test_sync_by_files },
          { "keeping_lasts_10s", test_keeping_lasts_10s })
