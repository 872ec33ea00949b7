/*
 * unit_addr_aliases.c - addr_aliases.c: good files (comments, continuation
 * lines, case, the catch-all, chains), UTF-8 names and targets, each kind
 * of error with its line, and the mailboxes an alias reaches.
 */
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "addr_aliases.h"

#define S(x) x, sizeof(x) - 1

/* Mailboxes in these tests: every name starting with 'm', and postmaster. */
static int is_mailbox(const char *name, void *arg)
{
    (void)arg;
    return name[0] == 'm' || strcmp(name, "postmaster") == 0;
}

static struct aliases *parse(const char *text, size_t *line, char *why)
{
    return aliases_parse(text, strlen(text), is_mailbox, NULL, line, why,
                         ALIASES_ERR_MAX);
}

static void test_good_file(void)
{
    size_t line = 99;
    char why[ALIASES_ERR_MAX] = "";
    struct aliases *a = parse(
        "# the team\n"
        "\n"
        "Sales: mia, max,\n"
        "   sales2\r\n"
        "sales2 :\tmo , mia\n"
        "abuse: postmaster\n"
        "*: mia\n", &line, why);
    CHECK(a != NULL);
    if (a == NULL) {
        fprintf(stderr, "line %zu: %s\n", line, why);
        return;
    }
    CHECK_EQ_INT(a->n, 4);
    const struct alias *s = aliases_find(a, "SALES");
    CHECK(s != NULL && s->line == 3);
    CHECK(s != NULL && s->nboxes == 3);
    if (s && s->nboxes == 3) {
        CHECK(strcmp(s->boxes[0], "mia") == 0);
        CHECK(strcmp(s->boxes[1], "max") == 0);
        CHECK(strcmp(s->boxes[2], "mo") == 0);
    }
    const struct alias *c = aliases_find(a, "*");
    CHECK(c != NULL && c->nboxes == 1 && strcmp(c->boxes[0], "mia") == 0);
    const struct alias *ab = aliases_find(a, "abuse");
    CHECK(ab && ab->nboxes == 1 && strcmp(ab->boxes[0], "postmaster") == 0);
    CHECK(aliases_find(a, "mia") == NULL);
    CHECK(aliases_find(a, "sale") == NULL);
    aliases_free(a);
}

static void test_postmaster_alias_first(void)
{
    size_t line;
    char why[ALIASES_ERR_MAX];
    struct aliases *a = parse("postmaster: mia\nabuse: postmaster\n", &line, why);
    CHECK(a != NULL);
    const struct alias *ab = a ? aliases_find(a, "abuse") : NULL;
    CHECK(ab && ab->nboxes == 1 && strcmp(ab->boxes[0], "mia") == 0);
    aliases_free(a);
}

static void test_depth(void)
{
    size_t line;
    char why[ALIASES_ERR_MAX];
    /* a1 -> a2 -> ... -> a8 -> mailbox: eight deep, accepted */
    const char *eight = "a1: a2\na2: a3\na3: a4\na4: a5\na5: a6\na6: a7\na7: a8\na8: mia\n";
    struct aliases *a = parse(eight, &line, why);
    CHECK(a != NULL);
    const struct alias *a1 = a ? aliases_find(a, "a1") : NULL;
    CHECK(a1 && a1->nboxes == 1 && strcmp(a1->boxes[0], "mia") == 0);
    aliases_free(a);
    const char *nine = "a0: a1\na1: a2\na2: a3\na3: a4\na4: a5\na5: a6\na6: a7\na7: a8\na8: mia\n";
    CHECK(parse(nine, &line, why) == NULL);
    CHECK_EQ_INT(line, 1);
    CHECK(strstr(why, "deeper than 8") != NULL);
}

static void test_errors(void)
{
    static const struct { const char *text; size_t line; const char *why; } bad[] = {
        { "mia\n", 1, "malformed line" },
        { "# c\n  mia\n", 2, "malformed line" },
        { "a: mia\nb c: mia\n", 2, "malformed line" },
        { "a: mia\n.a: mia\n", 2, "malformed line" },
        { "a: mia\nA: max\n", 2, "defined twice" },
        { "a: mia\nb: mo\na: max\n", 3, "defined twice" },
        { "a: mia,\n  bob\n", 2, "unknown target" },
        { "a: |/bin/sh\n", 1, "command" },
        { "a: /tmp/x\n", 1, "file" },
        { "a: mia@example.org\n", 1, "domain" },
        { "a: mia, \"x y\"\n", 1, "bad target" },
        { "a: *\n", 1, "bad target" },
        { "a: b\nb: a\n", 2, "loop" },
        { "a: a\n", 1, "loop" },
        { "a:\n", 1, "no target" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t line = 0;
        char why[ALIASES_ERR_MAX] = "";
        struct aliases *a = parse(bad[i].text, &line, why);
        CHECK(a == NULL);
        aliases_free(a);
        if (line != bad[i].line || strstr(why, bad[i].why) == NULL) {
            fprintf(stderr, "case %zu: line %zu: %s\n", i, line, why);
            CHECK(0);
        }
    }
    size_t line = 0;
    char why[ALIASES_ERR_MAX];
    CHECK(aliases_parse(S("a: mia\nb: m\0x\n"), is_mailbox, NULL, &line, why,
                        sizeof why) == NULL);
    CHECK_EQ_INT(line, 2);
}

/* UTF-8 local-parts: ASCII letters fold, other bytes compared as they are. */
static void test_utf8(void)
{
    size_t line = 99;
    char why[ALIASES_ERR_MAX] = "";
    struct aliases *a = parse(
        "J\xC3\xB6rg: M\xC3\xB6ller, mia\n"
        "\xE5\xB1\xB1\xE7\x94\xB0: j\xC3\xB6rg\n"
        "\xF0\x9F\x93\xAE: m\xC2\xA0x\n", &line, why);
    CHECK(a != NULL);
    if (a == NULL) {
        fprintf(stderr, "line %zu: %s\n", line, why);
        return;
    }
    const struct alias *j = aliases_find(a, "J\xC3\xB6RG");
    CHECK(j != NULL && j->line == 1 && j->nboxes == 2);
    if (j && j->nboxes == 2) {
        CHECK(strcmp(j->boxes[0], "m\xC3\xB6ller") == 0);
        CHECK(strcmp(j->boxes[1], "mia") == 0);
    }
    CHECK(aliases_find(a, "j\xC3\x96rg") == NULL);     /* Ö is not folded */
    const struct alias *y = aliases_find(a, "\xE5\xB1\xB1\xE7\x94\xB0");
    CHECK(y != NULL && y->nboxes == 2);
    const struct alias *e = aliases_find(a, "\xF0\x9F\x93\xAE");
    CHECK(e && e->nboxes == 1 && strcmp(e->boxes[0], "m\xC2\xA0x") == 0);
    aliases_free(a);

    char name64[200] = "", name66[200] = "";
    for (int i = 0; i < 32; i++)
        strcat(name64, "\xC3\xB6");
    strcat(strcpy(name66, name64), "\xC3\xB6");
    strcat(name64, ": mia\n");
    strcat(name66, ": mia\n");
    a = parse(name64, &line, why);
    CHECK(a != NULL && a->n == 1);
    aliases_free(a);
    CHECK(parse(name66, &line, why) == NULL);
    CHECK_EQ_INT(line, 1);
    CHECK(strstr(why, "bad alias name") != NULL);

    static const struct { const char *text; size_t line; const char *why; } bad[] = {
        { "a: mia\nj\xC3: mia\n", 2, "invalid UTF-8" },          /* cut short */
        { "a: mia\nj\xC3x: mia\n", 2, "invalid UTF-8" },         /* no continuation */
        { "\xC0\xAF: mia\n", 1, "invalid UTF-8" },               /* overlong '/' */
        { "\xE0\x80\xAE\xE0\x80\xAE: mia\n", 1, "invalid UTF-8" }, /* overlong ".." */
        { "\xED\xA0\x80: mia\n", 1, "invalid UTF-8" },           /* a surrogate */
        { "\xF4\x90\x80\x80: mia\n", 1, "invalid UTF-8" },       /* past U+10FFFF */
        { "\x80x: mia\n", 1, "invalid UTF-8" },                  /* a lone continuation */
        { "j\xC2\x85: mia\n", 1, "invalid UTF-8" },              /* C1 control U+0085 */
        { "a: mia, m\xC3\n", 1, "bad target: invalid UTF-8" },
        { "a: mia,\n  m\xC1\xBF\n", 2, "bad target: invalid UTF-8" },
        { "a: m\xC2\x9F\n", 1, "bad target: invalid UTF-8" },
        { "a: J\xC3\xB6rg\n", 1, "unknown target" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        line = 0;
        why[0] = '\0';
        a = parse(bad[i].text, &line, why);
        CHECK(a == NULL);
        aliases_free(a);
        if (line != bad[i].line || strstr(why, bad[i].why) == NULL) {
            fprintf(stderr, "utf8 case %zu: line %zu: %s\n", i, line, why);
            CHECK(0);
        }
    }
}

static void test_empty(void)
{
    size_t line;
    char why[ALIASES_ERR_MAX];
    struct aliases *a = parse("# nothing\n\n", &line, why);
    CHECK(a != NULL && a->n == 0);
    CHECK(a == NULL || aliases_find(a, "x") == NULL);
    aliases_free(a);
    CHECK(aliases_find(NULL, "x") == NULL);
}

UNIT_MAIN("aliases",
          { "good_file", test_good_file },
          { "postmaster_alias_first", test_postmaster_alias_first },
          { "depth", test_depth },
          { "errors", test_errors },
          { "utf8", test_utf8 },
          { "empty", test_empty })
