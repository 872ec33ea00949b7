/*
 * unit_maildir_journal.c - the write-ahead journal on a real file system:
 * records made and read back (and refused when torn), the checkpoint
 * slots, a journal replayed into mailboxes that lost their files, and a
 * small journal wrapping around many times while its checkpoint frees
 * room.
 */
#include "maildir.h"
#include "maildir_journal.h"
#include "maildir_journal_record.h"
#include "maildir_replay.h"
#include "tmpdir.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- records and slots (pure) ------------------------------------------ */

static const char NAMES[] = "1.Mx.host,S=5\0bob\0alice/.news";   /* + NUL */
#define NAMES_LEN ((uint32_t)sizeof NAMES)
static const uint8_t KEY[JOURNAL_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8 };

static void make_record(uint8_t hdr[JOURNAL_REC_HEADER], uint64_t seq)
{
    struct jrec r = { .type = JREC_MESSAGE, .names_len = NAMES_LEN,
                      .seq = seq, .body_len = 5 };
    sha256("hello", 5, r.body_sha);
    jrec_encode(&r, KEY, NAMES, hdr);
}

static void test_record_round_trip(void)
{
    uint8_t hdr[JOURNAL_REC_HEADER];
    struct jrec r;
    make_record(hdr, 7);
    CHECK_EQ_INT(jrec_decode(hdr, 7, &r), 0);
    CHECK_EQ_INT(r.type, JREC_MESSAGE);
    CHECK_EQ_INT(r.body_len, 5);
    CHECK_EQ_INT(jrec_check_names(&r, KEY, hdr, NAMES), 0);
    static const uint8_t other[JOURNAL_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 9 };
    CHECK_EQ_INT(jrec_check_names(&r, other, hdr, NAMES), -1);  /* a forgery */
    CHECK_EQ_INT(jrec_size(NAMES_LEN, 5), (96 + NAMES_LEN + 5 + 7) / 8 * 8);
    uint32_t pos = 0;
    CHECK(strcmp(jrec_next_name(NAMES, NAMES_LEN, &pos), "1.Mx.host,S=5") == 0);
    CHECK(strcmp(jrec_next_name(NAMES, NAMES_LEN, &pos), "bob") == 0);
    CHECK(strcmp(jrec_next_name(NAMES, NAMES_LEN, &pos), "alice/.news") == 0);
    CHECK(jrec_next_name(NAMES, NAMES_LEN, &pos) == NULL);
}

/* Each thing replay must not trust: another sequence, a torn header,
 * names that do not match the checksum or lead out of the root. */
static void test_record_refused(void)
{
    uint8_t hdr[JOURNAL_REC_HEADER];
    struct jrec r;
    make_record(hdr, 7);
    CHECK_EQ_INT(jrec_decode(hdr, 8, &r), -1);          /* an older lap */
    hdr[3] ^= 1;
    CHECK_EQ_INT(jrec_decode(hdr, 7, &r), -1);          /* magic */
    make_record(hdr, 7);
    CHECK_EQ_INT(jrec_decode(hdr, 7, &r), 0);
    char names[sizeof NAMES];
    memcpy(names, NAMES, sizeof names);
    names[0] = '2';
    CHECK_EQ_INT(jrec_check_names(&r, KEY, hdr, names), -1); /* checksum */
    hdr[24] = 6;                                         /* body length */
    CHECK_EQ_INT(jrec_decode(hdr, 7, &r), 0);
    CHECK_EQ_INT(jrec_check_names(&r, KEY, hdr, NAMES), -1);
#define NAMED(lit) { lit, (uint32_t)sizeof lit }
    static const struct { const char *p; uint32_t len; } bad[] = {
        NAMED("f"), NAMED("f/x\0bob"), NAMED("f\0../etc"), NAMED("f\0bob/.."),
        NAMED("f\0/bob"), NAMED("f\0bob//x"), NAMED(".f\0bob"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct jrec b = { .type = JREC_MESSAGE, .names_len = bad[i].len,
                          .seq = 1 };
        jrec_encode(&b, KEY, bad[i].p, hdr);
        CHECK_EQ_INT(jrec_decode(hdr, 1, &b), 0);
        CHECK_EQ_INT(jrec_check_names(&b, KEY, hdr, bad[i].p), -1);
    }
}

static void test_slots(void)
{
    uint8_t a[JOURNAL_SLOT_BYTES], b[JOURNAL_SLOT_BYTES];
    struct jslot s1 = { 4, 8192, 10, { 7 } }, s2 = { 5, 16384, 12, { 9 } }, x, y;
    jslot_encode(&s1, a);
    jslot_encode(&s2, b);
    CHECK_EQ_INT(jslot_decode(a, 1 << 20, &x), 0);
    CHECK_EQ_INT(jslot_decode(b, 1 << 20, &y), 0);
    CHECK_EQ_INT(jslot_pick(&x, &y)->tail_seq, 12);
    CHECK_EQ_INT(jslot_pick(&x, &y)->key[0], 9);
    CHECK_EQ_INT(jslot_pick(NULL, &x)->tail_seq, 10);
    CHECK(jslot_pick(NULL, NULL) == NULL);
    CHECK_EQ_INT(jslot_decode(b, 16000, &y), -1);       /* tail past the end */
    b[20] ^= 0x40;
    CHECK_EQ_INT(jslot_decode(b, 1 << 20, &y), -1);     /* checksum */
}

/* ---- on disk ------------------------------------------------------------- */

static int write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    if (write(fd, p, n) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when path holds exactly n bytes equal to p. */
static int file_is(const char *path, const void *p, size_t n)
{
    char buf[4096];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t got = read(fd, buf, sizeof buf);
    close(fd);
    return got == (ssize_t)n && memcmp(buf, p, n) == 0;
}

static int journal_fd(const char *root)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/.journal/%s.0", root, maildir_hostname());
    return open(path, O_RDWR);
}

/* A record per box list; then new/ loses one file and another is cut
 * short: replay writes both again, once, and drops bob's maildirsize,
 * whose lines for them may have been lost with them. */
static void test_replay_restores(void)
{
    char root[64], path[PATH_MAX], src[PATH_MAX];
    tmpdir_make_named(root, sizeof root, "unit_journal");
    CHECK_EQ_INT(maildir_create(root, "bob"), 0);
    CHECK_EQ_INT(maildir_create(root, "alice"), 0);
    int rfd = open(root, O_RDONLY | O_DIRECTORY);
    struct journal *j = journal_new(root, rfd, 8 << 20, 3600);
    CHECK(j != NULL);
    snprintf(src, sizeof src, "%s/bob/tmp/src", root);
    int fd = write_file(src, "hello", 5);
    static const char n1[] = "1.Ma.h,S=5\0bob\0alice", n2[] = "2.Mb.h,S=5\0bob";
    CHECK_EQ_INT(journal_add(j, n1, sizeof n1, fd, 5), 0);
    CHECK_EQ_INT(journal_add(j, n2, sizeof n2, fd, 5), 0);
    CHECK_EQ_INT(journal_sync(j), 0);
    close(fd);
    snprintf(path, sizeof path, "%s/alice/new/1.Ma.h,S=5", root);
    CHECK(write_file(path, "hel", 3) >= 0);             /* short */
    snprintf(path, sizeof path, "%s/bob/cur/2.Mb.h,S=5:2,S", root);
    CHECK(write_file(path, "hello", 5) >= 0);           /* whole, in cur/ */

    snprintf(path, sizeof path, "%s/bob/maildirsize", root);
    CHECK(write_file(path, "1000S\n5 1\n", 10) >= 0);

    int jfd = journal_fd(root);
    struct jslot end;
    struct replay_result res;
    CHECK_EQ_INT(journal_replay(root, jfd, &end, &res), 0);
    CHECK_EQ_INT(res.records, 2);
    CHECK(access(path, F_OK) < 0);      /* to be counted again */
    CHECK_EQ_INT(res.restored, 2);      /* bob's first (missing), alice's */
    snprintf(path, sizeof path, "%s/bob/new/1.Ma.h,S=5", root);
    CHECK(file_is(path, "hello", 5));
    snprintf(path, sizeof path, "%s/alice/new/1.Ma.h,S=5", root);
    CHECK(file_is(path, "hello", 5));
    snprintf(path, sizeof path, "%s/bob/new/2.Mb.h,S=5", root);
    CHECK(!file_is(path, "hello", 5));  /* it was whole in cur/ */
    CHECK_EQ_INT(journal_replay(root, jfd, &end, &res), 0);
    CHECK_EQ_INT(res.records, 0);       /* never twice */
    close(jfd);
    journal_free(j);
    close(rfd);
    tmpdir_remove(root);
}

/* Where replay looks for the next record lie bytes a client chose (an
 * old message body, once the ring has wrapped): a record forged there,
 * well formed and with the right sequence number but made without the
 * journal's key, is not replayed. */
static void test_forged_record_is_not_replayed(void)
{
    char root[64], path[PATH_MAX], src[PATH_MAX];
    tmpdir_make_named(root, sizeof root, "unit_journal");
    CHECK_EQ_INT(maildir_create(root, "bob"), 0);
    int rfd = open(root, O_RDONLY | O_DIRECTORY);
    struct journal *j = journal_new(root, rfd, 8 << 20, 3600);
    snprintf(src, sizeof src, "%s/bob/tmp/src", root);
    int fd = write_file(src, "hello", 5);
    static const char n1[] = "1.Ma.h,S=5\0bob";
    CHECK_EQ_INT(journal_add(j, n1, sizeof n1, fd, 5), 0);
    CHECK_EQ_INT(journal_sync(j), 0);

    static const char forged_names[] = "9.Mevil.h,S=4\0bob";
    uint8_t rec[256] = { 0 }, hdr[JOURNAL_REC_HEADER];
    struct jrec r = { .type = JREC_MESSAGE, .names_len = sizeof forged_names,
                      .seq = 2, .body_len = 4 };
    sha256("evil", 4, r.body_sha);
    jrec_encode(&r, KEY, forged_names, hdr);
    memcpy(rec, hdr, sizeof hdr);
    memcpy(rec + sizeof hdr, forged_names, sizeof forged_names);
    memcpy(rec + sizeof hdr + sizeof forged_names, "evil", 4);
    int jfd = journal_fd(root);
    off_t next = JOURNAL_DATA_START + (off_t)jrec_size(sizeof n1, 5);
    CHECK_EQ_INT(pwrite(jfd, rec, jrec_size(sizeof forged_names, 4), next),
                 (ssize_t)jrec_size(sizeof forged_names, 4));

    struct jslot end;
    struct replay_result res;
    CHECK_EQ_INT(journal_replay(root, jfd, &end, &res), 0);
    CHECK_EQ_INT(res.records, 1);
    snprintf(path, sizeof path, "%s/bob/new/9.Mevil.h,S=4", root);
    CHECK(access(path, F_OK) < 0);
    close(jfd);
    close(fd);
    journal_free(j);
    close(rfd);
    tmpdir_remove(root);
}

/* Waits (bounded) while the journal has no room; the checkpoint frees it. */
static int add_waiting(struct journal *j, const char *names, uint32_t len,
                       int fd, uint64_t size)
{
    for (int tries = 0; tries < 3000; tries++) {
        if (journal_add(j, names, len, fd, size) == 0)
            return 0;
        if (errno != ENOSPC)
            return -1;
        poll(NULL, 0, 10);
    }
    return -1;
}

/* 24 records of 1 MiB through an 8 MiB journal: it wraps; every record
 * still goes in; what a replay finds after the last checkpoint is whole;
 * after a clean stop nothing is left to replay. */
static void test_wraps_and_checkpoints(void)
{
    char root[64], src[PATH_MAX], names[64];
    tmpdir_make_named(root, sizeof root, "unit_journal");
    CHECK_EQ_INT(maildir_create(root, "bob"), 0);
    int rfd = open(root, O_RDONLY | O_DIRECTORY);
    struct journal *j = journal_new(root, rfd, 8 << 20, 3600);
    size_t big = 1 << 20;
    char *body = malloc(big);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)('a' + i % 26);
    snprintf(src, sizeof src, "%s/bob/tmp/src", root);
    int fd = write_file(src, body, big);
    for (int i = 0; i < 24; i++) {
        int n = snprintf(names, sizeof names, "%d.Mw.h,S=%zu%cbob", i, big, 0);
        CHECK_EQ_INT(add_waiting(j, names, (uint32_t)n + 1, fd, big), 0);
        CHECK_EQ_INT(journal_sync(j), 0);
    }
    struct journal_stats st;
    journal_stats_get(j, &st);
    CHECK_EQ_INT(st.records, 24);
    CHECK(st.checkpoints >= 2);
    journal_free(j);                    /* the last checkpoint */
    struct jslot end;
    struct replay_result res;
    int jfd = journal_fd(root);
    struct stat js;
    CHECK_EQ_INT(fstat(jfd, &js), 0);
    CHECK_EQ_INT(js.st_size, 8 << 20);  /* grown to its limit, no more */
    CHECK_EQ_INT(journal_replay(root, jfd, &end, &res), 0);
    CHECK_EQ_INT(res.records, 0);
    close(jfd);
    close(fd);
    free(body);
    close(rfd);
    tmpdir_remove(root);
}

/* Bigger than a quarter of the journal: refused, for per-file syncing. */
static void test_too_big_for_the_journal(void)
{
    char root[64];
    tmpdir_make_named(root, sizeof root, "unit_journal");
    CHECK_EQ_INT(maildir_create(root, "bob"), 0);
    int rfd = open(root, O_RDONLY | O_DIRECTORY);
    struct journal *j = journal_new(root, rfd, 8 << 20, 3600);
    CHECK_EQ_INT(journal_record_max(j), 2 << 20);
    static const char n[] = "1.Mb.h,S=1\0bob";
    errno = 0;
    CHECK_EQ_INT(journal_add(j, n, sizeof n, -1, (2 << 20) + 1), -1);
    CHECK_EQ_INT(errno, EFBIG);
    CHECK_EQ_INT(journal_sync(j), 0);   /* an empty batch */
    journal_free(j);
    close(rfd);
    tmpdir_remove(root);
}

UNIT_MAIN("maildir_journal",
          { "record_round_trip", test_record_round_trip },
          { "record_refused", test_record_refused },
          { "slots", test_slots },
          { "replay_restores", test_replay_restores },
          { "wraps_and_checkpoints", test_wraps_and_checkpoints },
          { "too_big_for_the_journal", test_too_big_for_the_journal },
          { "forged_record_is_not_replayed", test_forged_record_is_not_replayed })
