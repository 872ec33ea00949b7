/*
 * unit.h - the smallest test harness that works: CHECK records a failure
 * and goes on; UNIT_MAIN runs the listed tests and prints the closing
 * line "N passed, N failed" that CI reads.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_checks_failed;

#define CHECK(cond) do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            unit_checks_failed++; \
        } \
    } while (0)

#define CHECK_EQ_INT(a, b) do { \
        long long unit_a = (long long)(a), unit_b = (long long)(b); \
        if (unit_a != unit_b) { \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
                    __FILE__, __LINE__, #a, #b, unit_a, unit_b); \
            unit_checks_failed++; \
        } \
    } while (0)

#define CHECK_MEM(p, q, n) CHECK(memcmp((p), (q), (n)) == 0)

struct unit_test {
    const char *name;
    void (*fn)(void);
};

static inline int unit_run(const char *suite, const struct unit_test *tests)
{
    int passed = 0, failed = 0;
    for (const struct unit_test *t = tests; t->name; t++) {
        int before = unit_checks_failed;
        t->fn();
        if (unit_checks_failed == before) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAIL %s.%s\n", suite, t->name);
        }
    }
    printf("%s: %d passed, %d failed\n", suite, passed, failed);
    return failed ? 1 : 0;
}

#define UNIT_MAIN(suite, ...) \
    int main(void) { \
        static const struct unit_test unit_tests[] = { __VA_ARGS__, { NULL, NULL } }; \
        return unit_run(suite, unit_tests); \
    }

#endif
