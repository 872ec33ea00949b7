/*
 * fuzz_aliases.c - libFuzzer harness for addr_aliases.c: the input is an
 * aliases file, in which every name starting with 'm' is a mailbox. A
 * table built without error finds each of its aliases by name, and every
 * alias reaches at least one mailbox, each once, none of them an alias
 * that is not also a mailbox; an error has a line inside the file and a
 * reason. Any broken invariant traps; see fuzz/README.md.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr_aliases.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static int is_mailbox(const char *name, void *arg)
{
    (void)arg;
    return name[0] == 'm';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t line = 0, lines = 1;
    char why[ALIASES_ERR_MAX] = "";
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    struct aliases *a = aliases_parse((const char *)data, size, is_mailbox,
                                      NULL, &line, why, sizeof why);
    if (a == NULL) {
        FUZZ_ASSERT(why[0] != '\0' && line <= lines);
        return 0;
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct alias *al = &a->v[i];
        FUZZ_ASSERT(aliases_find(a, al->name) == al);
        FUZZ_ASSERT(al->nboxes >= 1 && al->line >= 1 && al->line <= lines);
        for (size_t k = 0; k < al->nboxes; k++) {
            FUZZ_ASSERT(is_mailbox(al->boxes[k], NULL)
                        || strcmp(al->boxes[k], "postmaster") == 0);
            for (size_t j = 0; j < k; j++)
                FUZZ_ASSERT(strcmp(al->boxes[j], al->boxes[k]) != 0);
        }
    }
    aliases_free(a);
    return 0;
}
