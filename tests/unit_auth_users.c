/*
 * unit_auth_users.c - auth_users.c: passwd-file lines (good, skipped, each
 * kind of bad one), whole files, the sorted table, its lookups and its
 * dearest entry (tests/unit_auth_throttle.c has the throttle).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "unit.h"
#include "auth_users.h"

#define S(x) x, sizeof(x) - 1

#define H6 "$6$Yb9KkUVKgMjzIIyJ$KfA0E6ZA2WIlbIRNv1M3LPA1Rhne.RLOX.FmihAdRSrKO5c9I1pkImZ7yWUzZEnYzdn2tJxFO06BW27y5CILC0"
#define HY "$y$j9T$XPQnG2PVNATkq6MJBHh.z1$0hmvWOx9oFcN80uXzcuSSjS3qvvx2KG6j5InpV4NZr/"
#define H5 "$5$rounds=5000$abcdefgh$0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
#define HB "$2b$05$abcdefghijklmnopqrstuu0123456789abcdefghijklmnopqrstu"

static enum users_result parse(const char *line, struct users_line *l,
                               const char **why)
{
    *why = NULL;
    return users_parse_line(line, strlen(line), l, why);
}

static void test_good_lines(void)
{
    static const struct { const char *line, *hash; int plain; } ok[] = {
        { "alice:{SHA512-CRYPT}" H6, H6, 0 },
        { "alice:{sha512-crypt}" H6 ":1000:1000::/home/a::", H6, 0 },
        { "bob:" HY, HY, 0 },
        { "bob:{CRYPT}" HY "::", HY, 0 },
        { "c.d:{SHA256-CRYPT}" H5, H5, 0 },
        { "e+f:{BLF-CRYPT}" HB, HB, 0 },
        { "g_h:{CRYPT}abcdefghijklm", "abcdefghijklm", 0 },
        { "Dave:{PLAIN}a b{c}", "a b{c}", 1 },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct users_line l;
        const char *why;
        CHECK_EQ_INT(parse(ok[i].line, &l, &why), USERS_LINE_USER);
        CHECK(l.hash_len == strlen(ok[i].hash)
              && memcmp(l.hash, ok[i].hash, l.hash_len) == 0);
        CHECK_EQ_INT(l.scheme, ok[i].plain ? USERS_PLAIN : USERS_CRYPT);
        if (why)
            fprintf(stderr, "  %s: %s\n", ok[i].line, why);
    }
}

static void test_skipped_lines(void)
{
    struct users_line l;
    const char *why;
    CHECK_EQ_INT(parse("", &l, &why), USERS_LINE_SKIP);
    CHECK_EQ_INT(parse("   \t", &l, &why), USERS_LINE_SKIP);
    CHECK_EQ_INT(parse("# alice:" H6, &l, &why), USERS_LINE_SKIP);
}

static void test_bad_lines(void)
{
    static const char *const bad[] = {
        "alice", "alice " H6, ":" H6, ".alice:" H6, "a..b:" H6, "a/b:" H6,
        "al ice:" H6, "alice@example.org:" H6,
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:" H6,
        "alice:{MD5}$1$abc$def", "alice:{SHA512-CRYPT" H6, "alice:{}" H6,
        "alice:{SHA512-CRYPT}$6$Yb9KkUVKgMjzIIyJ$KfA0E6ZA2WIlbI",
        "alice:{SHA512-CRYPT}" HY, "alice:{SHA256-CRYPT}" H6,
        "alice:{BLF-CRYPT}$2b$05$abc", "alice:{BLF-CRYPT}$2b$99$abcdefghijklmnopqrstuu0123456789abcdefghijklmnopqrstu",
        "alice:$y$j9T$salt$short", "alice:secret", "alice:", "alice:{PLAIN}",
        "alice:" H6 "\r", "alice:{CRYPT}$6$$", "alice:$x$",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct users_line l;
        const char *why;
        if (parse(bad[i], &l, &why) != USERS_LINE_BAD) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
            CHECK(0);
        }
        CHECK(why != NULL);
    }
    struct users_line l;
    const char *why;
    CHECK_EQ_INT(users_parse_line(S("al\0ce:" H6), &l, &why), USERS_LINE_BAD);
    CHECK_EQ_INT(users_parse_line(S("alice:{PLAIN}a\0b"), &l, &why), USERS_LINE_BAD);
}

static void test_whole_file(void)
{
    static const char text[] = "# users\n\nalice:{PLAIN}one\r\nBob:" HY "\ncarol:{PLAIN}x";
    struct userdb *db = userdb_new();
    size_t line;
    const char *why, *dup;
    /* the CR makes line 3's password "one\r": PLAIN takes it as it is */
    CHECK_EQ_INT(userdb_parse_text(db, S(text), &line, &why), 0);
    CHECK_EQ_INT(db->n, 3);
    CHECK_EQ_INT(db->n_plain, 2);
    CHECK_EQ_INT(userdb_finish(db, &dup), 0);
    CHECK(userdb_find(db, "BOB") && strcmp(userdb_find(db, "bob")->hash, HY) == 0);
    CHECK(userdb_find(db, "carol") && strcmp(userdb_find(db, "carol")->hash, "x") == 0);
    CHECK(userdb_find(db, "dave") == NULL);
    CHECK(userdb_find(db, "") == NULL);
    userdb_free(db);

    db = userdb_new();
    CHECK_EQ_INT(userdb_parse_text(db, S("a:{PLAIN}1\n\nb:{FOO}x\n"), &line, &why), -1);
    CHECK_EQ_INT(line, 3);
    userdb_free(db);

    db = userdb_new();
    CHECK_EQ_INT(userdb_parse_text(db, S("a:{PLAIN}1\nA:{PLAIN}2\n"), &line, &why), 0);
    CHECK_EQ_INT(userdb_finish(db, &dup), -1);
    CHECK(strcmp(dup, "a") == 0);
    userdb_free(db);
}

/* ---- the dearest entry ---------------------------------------------- */

#define HB12 "$2b$12$abcdefghijklmnopqrstuu" "1234567890123456789012345678901"
#define HB10 "$2b$10$abcdefghijklmnopqrstuu" "1234567890123456789012345678901"

static void test_costliest(void)
{
    size_t line;
    const char *why, *dup;
    /* the model's order: SHA-crypt < yescrypt j9T < bcrypt 10 < 12 */
    CHECK(users_hash_cost(H6) < users_hash_cost(HY));
    CHECK(users_hash_cost(HY) < users_hash_cost(HB10));
    CHECK(users_hash_cost(HB10) < users_hash_cost(HB12));
    CHECK(users_hash_cost("$6$rounds=500000$x$") > users_hash_cost(H6));
    CHECK_EQ_INT(users_hash_cost("$2b$x"), 1000000);

    struct userdb *db = userdb_new();
    CHECK_EQ_INT(userdb_parse_text(db, S("a:" H6 "\nb:{PLAIN}x\nc:" HB12
                                         "\nd:" HY "\ne:" HB10 "\n"),
                                   &line, &why), 0);
    CHECK_EQ_INT(userdb_finish(db, &dup), 0);
    CHECK(db->costliest && strcmp(db->costliest->name, "c") == 0);
    userdb_free(db);

    db = userdb_new();      /* only plain passwords: nothing to copy */
    CHECK_EQ_INT(userdb_parse_text(db, S("a:{PLAIN}x\n"), &line, &why), 0);
    CHECK_EQ_INT(userdb_finish(db, &dup), 0);
    CHECK(db->costliest == NULL);
    userdb_free(db);
}

static void test_quota_rule(void)
{
    struct users_line l;
    const char *why;
    CHECK(parse("a:{PLAIN}x", &l, &why) == USERS_LINE_USER && !l.has_quota);
    CHECK(parse("a:{PLAIN}x:1:2:g:/h:/s:userdb_quota_rule=*:storage=10 x=y",
                &l, &why) == USERS_LINE_USER);
    CHECK(l.has_quota && l.quota.bytes == 10240 && l.quota.count == 0);
    CHECK(l.hash_len == 1);
    CHECK(parse("a:{PLAIN}x::::::other=1 userdb_quota_rule=*:bytes=5:messages=2",
                &l, &why) == USERS_LINE_USER);
    CHECK(l.has_quota && l.quota.bytes == 5 && l.quota.count == 2);
    /* before the seventh colon it is not an extra field */
    CHECK(parse("a:{PLAIN}x:userdb_quota_rule=*:storage=1", &l, &why)
          == USERS_LINE_USER && !l.has_quota);
    CHECK(parse("a:{PLAIN}x::::::userdb_quota_rule=*:storage=1X", &l, &why)
          == USERS_LINE_BAD && why != NULL);
    struct userdb *db = userdb_new();
    size_t line;
    static const char text[] =
        "a:{PLAIN}x::::::userdb_quota_rule=*:storage=1M\nb:{PLAIN}y\n";
    CHECK(userdb_parse_text(db, text, sizeof text - 1, &line, &why) == 0);
    CHECK(userdb_finish(db, &why) == 0);
    const struct users_entry *e = userdb_find(db, "a");
    CHECK(e && e->has_quota && e->quota.bytes == 1 << 20);
    e = userdb_find(db, "b");
    CHECK(e && !e->has_quota);
    userdb_free(db);
}

UNIT_MAIN("users",
          { "quota_rule", test_quota_rule },
          { "good_lines", test_good_lines },
          { "skipped_lines", test_skipped_lines },
          { "bad_lines", test_bad_lines },
          { "whole_file", test_whole_file },
          { "costliest", test_costliest })
