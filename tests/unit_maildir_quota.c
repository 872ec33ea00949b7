/*
 * unit_maildir_quota.c - maildir_quota.c: the size, --quota and
 * userdb_quota_rule syntax, the maildirsize limit line, the file kept up
 * to date (created, appended to, recalculated), and the RCPT verdicts
 * from the usage in memory.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "tmpdir.h"
#include "maildir.h"
#include "maildir_quota.h"

#define S(x) x, sizeof(x) - 1

static void test_sizes(void)
{
    uint64_t v = 0;
    CHECK(quota_parse_size(S("123"), 1, &v) == 0 && v == 123);
    CHECK(quota_parse_size(S("2"), 1024, &v) == 0 && v == 2048);
    CHECK(quota_parse_size(S("3k"), 1024, &v) == 0 && v == 3072);
    CHECK(quota_parse_size(S("3K"), 1, &v) == 0 && v == 3072);
    CHECK(quota_parse_size(S("5M"), 1, &v) == 0 && v == 5ULL << 20);
    CHECK(quota_parse_size(S("1G"), 1024, &v) == 0 && v == 1ULL << 30);
    CHECK(quota_parse_size(S(""), 1, &v) < 0);
    CHECK(quota_parse_size(S("k"), 1, &v) < 0);
    CHECK(quota_parse_size(S("1m"), 1, &v) < 0);
    CHECK(quota_parse_size(S("1KB"), 1, &v) < 0);
    CHECK(quota_parse_size(S("-1"), 1, &v) < 0);
    CHECK(quota_parse_size(S("99999999999999999999"), 1, &v) < 0);
    CHECK(quota_parse_size(S("99999999999G"), 1, &v) < 0);
}

static void test_limits(void)
{
    struct quota_limit l;
    CHECK(quota_parse_limit("1M", &l) == 0 && l.bytes == 1 << 20 && l.count == 0);
    CHECK(quota_parse_limit("10k:5", &l) == 0 && l.bytes == 10240 && l.count == 5);
    CHECK(quota_parse_limit("0:5", &l) == 0 && l.bytes == 0 && l.count == 5);
    CHECK(quota_parse_limit("0", &l) < 0);
    CHECK(quota_parse_limit("", &l) < 0);
    CHECK(quota_parse_limit("1M:", &l) < 0);
    CHECK(quota_parse_limit("1M:5k", &l) < 0);
    CHECK(quota_parse_limit("1M:2:3", &l) < 0);
    CHECK(quota_parse_limit("abc", &l) < 0);
}

static void test_rules(void)
{
    struct quota_limit l;
    const char *why = NULL;
    CHECK(quota_parse_rule(S("*:storage=100"), &l, &why) == 0
          && l.bytes == 102400 && l.count == 0);
    CHECK(quota_parse_rule(S("*:storage=2M:messages=10"), &l, &why) == 0
          && l.bytes == 2 << 20 && l.count == 10);
    CHECK(quota_parse_rule(S("*:bytes=1000"), &l, &why) == 0
          && l.bytes == 1000 && l.count == 0);
    CHECK(quota_parse_rule(S("*:messages=7"), &l, &why) == 0
          && l.bytes == 0 && l.count == 7);
    CHECK(quota_parse_rule(S("*"), &l, &why) < 0);
    CHECK(quota_parse_rule(S("*:"), &l, &why) < 0);
    CHECK(quota_parse_rule(S("INBOX:storage=1"), &l, &why) < 0);
    CHECK(quota_parse_rule(S("*:storage=x"), &l, &why) < 0);
    CHECK(quota_parse_rule(S("*:storage=1%"), &l, &why) < 0);
    CHECK(quota_parse_rule(S("*:messages=1k"), &l, &why) < 0);
    CHECK(why != NULL);
}

static void test_limit_line(void)
{
    char b[64];
    struct quota_limit l = { 1048576, 100 };
    CHECK(quota_limit_line(&l, b, sizeof b) == 14 && strcmp(b, "1048576S,100C\n") == 0);
    l.count = 0;
    CHECK(quota_limit_line(&l, b, sizeof b) == 9 && strcmp(b, "1048576S\n") == 0);
    l = (struct quota_limit){ 0, 3 };
    CHECK(quota_limit_line(&l, b, sizeof b) == 3 && strcmp(b, "3C\n") == 0);
    l.count = 0;
    CHECK(quota_limit_line(&l, b, sizeof b) == 0);
}

static size_t slurp(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, size - 1);
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n > 0 ? (size_t)n : 0;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_file(void)
{
    char root[64], p[256], buf[8192];
    struct quota_usage u;
    struct quota_limit l = { 10000, 0 };
    tmpdir_make_named(root, sizeof root, "quota");
    CHECK(maildir_create(root, "al") == 0);
    snprintf(p, sizeof p, "%s/al/maildirsize", root);
    /* missing: created from the files (none, then two) */
    CHECK(quota_file_update(root, "al", &l, 0, false, &u) == 0);
    CHECK(u.bytes == 0 && u.count == 0);
    slurp(p, buf, sizeof buf);
    CHECK(strcmp(buf, "10000S\n0 0\n") == 0);
    char f[256];
    snprintf(f, sizeof f, "%s/al/new/1.a.h,S=300", root);
    put(f, "x");
    CHECK(quota_file_update(root, "al", &l, 300, true, &u) == 0);
    CHECK(u.bytes == 300 && u.count == 1);
    slurp(p, buf, sizeof buf);
    CHECK(strcmp(buf, "10000S\n0 0\n300 1\n") == 0);
    /* a file without S= counts its size; a folder's files count */
    snprintf(f, sizeof f, "%s/al/cur/2.b.h:2,S", root);
    put(f, "12345");
    CHECK(maildir_create(root, "al/.news") == 0 || 1);
    snprintf(f, sizeof f, "%s/al/.news", root);
    mkdir(f, 0700);
    snprintf(f, sizeof f, "%s/al/.news/new", root);
    mkdir(f, 0700);
    snprintf(f, sizeof f, "%s/al/.news/new/3.c.h,S=7", root);
    put(f, "x");
    /* another limit: the file is rewritten from the files */
    l.count = 9;
    CHECK(quota_file_update(root, "al", &l, 0, false, &u) == 0);
    CHECK(u.bytes == 312 && u.count == 3);
    slurp(p, buf, sizeof buf);
    CHECK(strcmp(buf, "10000S,9C\n312 3\n") == 0);
    /* one that would grow past 5120 bytes is rewritten too */
    char big[6000] = "10000S,9C\n312 3\n";
    while (strlen(big) < 5116)
        strcat(big, "0 0\n");
    put(p, big);
    CHECK(quota_file_update(root, "al", &l, 0, false, &u) == 0);
    CHECK(u.bytes == 312 && slurp(p, buf, sizeof buf) > 5000);
    CHECK(quota_file_update(root, "al", &l, 100000, false, &u) == 0);
    slurp(p, buf, sizeof buf);
    CHECK(strcmp(buf, "10000S,9C\n312 3\n") == 0);
    /* a broken line: recalculated */
    put(p, "10000S,9C\nabc\n");
    CHECK(quota_file_update(root, "al", &l, 0, false, &u) == 0);
    slurp(p, buf, sizeof buf);
    CHECK(strcmp(buf, "10000S,9C\n312 3\n") == 0);
    /* a link in its place is not followed */
    unlink(p);
    snprintf(f, sizeof f, "%s/elsewhere", root);
    put(f, "10000S,9C\n0 0\n");
    CHECK(symlink(f, p) == 0);
    CHECK(quota_file_update(root, "al", &l, 5, false, &u) == 0);
    slurp(f, buf, sizeof buf);
    CHECK(strcmp(buf, "10000S,9C\n0 0\n") == 0);
    struct stat st;
    CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode));
    tmpdir_remove(root);
}

static int user_limit(const char *box, struct quota_limit *out)
{
    if (strcmp(box, "big") != 0)
        return 0;
    *out = (struct quota_limit){ 1000000, 0 };
    return 1;
}

static int refreshed, refresh_fails;
static char refreshed_top[64];

static int refresh(const char *top, const struct quota_limit *lim)
{
    if (refresh_fails)
        return -1;
    refreshed++;
    snprintf(refreshed_top, sizeof refreshed_top, "%s", top);
    (void)lim;
    return 0;
}

static int woken;

static void wake(void *data)
{
    woken += *(int *)data;
}

/* quota_hold with no interest in which mailbox to wait for */
static enum quota_verdict hold(char *const *held, size_t nheld,
                               char *const *dests, size_t n, bool has_size,
                               uint64_t size, uint64_t max_size)
{
    char top[64];
    return quota_hold(held, nheld, dests, n, has_size, size, max_size,
                      top, sizeof top);
}

/* From the usage in memory alone (nothing is ever read again). */
static void test_verdicts(void)
{
    struct quota_limit d = { 1000, 3 };
    quota_setup(&d, user_limit, NULL);
    struct quota_usage u = { 500, 1 };
    quota_delivered("al", &u);
    u = (struct quota_usage){ 0, 0 };
    quota_delivered("bo", &u);
    char *al[] = { "al" }, *folder[] = { "al/.news" }, *two[] = { "bo", "al" };
    /* SIZE= counted with what other transactions declared */
    CHECK(hold(NULL, 0, al, 1, true, 501, 100) == QUOTA_FULL);
    CHECK(hold(NULL, 0, al, 1, true, 300, 100) == QUOTA_OK);
    CHECK(hold(NULL, 0, al, 1, true, 201, 100) == QUOTA_FULL);
    /* the same transaction's folder is already held: not judged again */
    CHECK(hold(al, 1, folder, 1, true, 300, 100) == QUOTA_OK);
    /* without SIZE, the room left is what the open SIZE= leave: 200 */
    CHECK(hold(NULL, 0, al, 1, false, 0, 250) == QUOTA_BUSY);
    CHECK(hold(NULL, 0, al, 1, false, 0, 150) == QUOTA_OK);
    quota_release(al, 1, false, 0);
    quota_release(al, 1, true, 300);
    /* without SIZE: one open transaction while within max_size */
    CHECK(hold(NULL, 0, al, 1, false, 0, 600) == QUOTA_OK);
    CHECK(hold(NULL, 0, two, 2, false, 0, 600) == QUOTA_BUSY);
    CHECK(hold(NULL, 0, al, 1, false, 0, 400) == QUOTA_OK);
    quota_release(al, 1, false, 0);
    quota_release(al, 1, false, 0);
    /* at the limit: full, whatever */
    u = (struct quota_usage){ 1000, 1 };
    quota_delivered("al", &u);
    CHECK(hold(NULL, 0, two, 2, false, 0, 1) == QUOTA_FULL);
    u = (struct quota_usage){ 10, 3 };
    quota_delivered("al", &u);
    CHECK(hold(NULL, 0, al, 1, true, 1, 1) == QUOTA_FULL);
    /* a user's own limit; without reads, unknown usage is not judged */
    u = (struct quota_usage){ 5000, 1 };
    quota_delivered("big", &u);
    char *big[] = { "big" }, *new[] = { "new" };
    CHECK(hold(NULL, 0, big, 1, true, 10000, 1) == QUOTA_OK);
    CHECK(hold(NULL, 0, new, 1, true, 10000, 1) == QUOTA_OK);
    quota_free();
}

/* A mailbox not counted yet, or full, is read first; RCPT waits. */
static void test_reads(void)
{
    struct quota_limit d = { 1000, 3 };
    quota_setup(&d, user_limit, refresh);
    char top[64];
    char *al[] = { "al" }, *new[] = { "new" }, *gone[] = { "gone" };
    CHECK(quota_hold(NULL, 0, new, 1, false, 0, 1, top, sizeof top)
          == QUOTA_READ);
    CHECK(strcmp(top, "new") == 0 && refreshed == 1);
    CHECK(hold(NULL, 0, new, 1, false, 0, 1) == QUOTA_READ);   /* same read */
    CHECK(refreshed == 1);
    int one = 1, ten = 10, hundred = 100;
    CHECK(quota_wait("new", wake, &one) != NULL);
    CHECK(quota_wait("al", wake, &ten) != NULL);
    struct quota_wait *w = quota_wait("new", wake, &hundred);
    quota_wait_cancel(w);
    struct quota_usage u = { 2000, 1 };
    quota_read_back("new", &u);
    CHECK(woken == 1);
    /* full now, just read: 552 at once, no other read this second */
    CHECK(hold(NULL, 0, new, 1, false, 0, 1) == QUOTA_FULL);
    CHECK(refreshed == 1);
    /* full from the deliveries: read again, and room was made */
    u = (struct quota_usage){ 1000, 1 };
    quota_delivered("al", &u);
    CHECK(hold(NULL, 0, al, 1, true, 300, 1) == QUOTA_READ);
    CHECK(refreshed == 2 && strcmp(refreshed_top, "al") == 0);
    u = (struct quota_usage){ 100, 1 };
    quota_read_back("al", &u);
    CHECK(woken == 11);
    CHECK(hold(NULL, 0, al, 1, true, 300, 1) == QUOTA_OK);
    quota_release(al, 1, true, 300);
    /* a SIZE= over the limit itself: no read would help */
    CHECK(hold(NULL, 0, new, 1, true, 1001, 1) == QUOTA_FULL);
    CHECK(refreshed == 2);
    /* a read that fails leaves the mailbox unchecked for a second */
    CHECK(hold(NULL, 0, gone, 1, false, 0, 1) == QUOTA_READ);
    quota_read_back("gone", NULL);
    CHECK(hold(NULL, 0, gone, 1, false, 0, 1) == QUOTA_OK);
    quota_release(gone, 1, false, 0);
    /* a read that cannot be asked for: unchecked */
    refresh_fails = 1;
    char *other[] = { "other" };
    CHECK(hold(NULL, 0, other, 1, false, 0, 1) == QUOTA_OK);
    quota_release(other, 1, false, 0);
    refresh_fails = 0;
    /* a wait still there at the end is freed with the rest */
    CHECK(quota_wait("x", wake, &one) != NULL);
    quota_free();
    CHECK(woken == 11);
}

UNIT_MAIN("maildir_quota",
          { "sizes", test_sizes },
          { "limits", test_limits },
          { "rules", test_rules },
          { "limit_line", test_limit_line },
          { "file", test_file },
          { "verdicts", test_verdicts },
          { "reads", test_reads })
