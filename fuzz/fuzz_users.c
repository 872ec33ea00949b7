/*
 * fuzz_users.c - libFuzzer harness for auth_users.c: the input is a password
 * file. Every line is parsed alone, the whole text into a table, and the
 * results must agree: a line accepted alone names a valid local-part and
 * lies inside the line; a table built without error finds each of its
 * users. Any broken invariant traps; see fuzz/README.md.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"
#include "auth_users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static void fuzz_line(const char *line, size_t len)
{
    struct users_line l;
    const char *why = NULL;
    switch (users_parse_line(line, len, &l, &why)) {
    case USERS_LINE_SKIP:
        break;
    case USERS_LINE_BAD:
        FUZZ_ASSERT(why != NULL && why[0] != '\0');
        break;
    case USERS_LINE_USER:
        FUZZ_ASSERT(l.name == line);
        FUZZ_ASSERT(parser_local_part_ok(l.name, l.name_len));
        FUZZ_ASSERT(l.hash > line && l.hash + l.hash_len <= line + len);
        FUZZ_ASSERT(l.hash_len > 0 && !memchr(l.hash, ':', l.hash_len));
        FUZZ_ASSERT(!memchr(line, '\0', len));
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t pos = 0;
    while (pos < size) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - text - pos) : size - pos;
        fuzz_line(text + pos, len);
        pos += len + 1;
    }

    struct userdb *db = userdb_new();
    size_t line = 0;
    const char *why = NULL, *dup = NULL;
    if (db == NULL)
        return 0;
    if (userdb_parse_text(db, text, size, &line, &why) < 0) {
        FUZZ_ASSERT(why != NULL && line >= 1);
    } else if (userdb_finish(db, &dup) == 0) {
        for (size_t i = 0; i < db->n; i++)
            FUZZ_ASSERT(userdb_find(db, db->v[i].name) == &db->v[i]);
    } else {
        FUZZ_ASSERT(dup != NULL);
    }
    userdb_free(db);
    return 0;
}
