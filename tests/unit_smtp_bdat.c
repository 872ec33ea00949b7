/*
 * unit_smtp_bdat.c - smtp_bdat.c: "BDAT n [LAST]" arguments, sizes at
 * and past 2^63-1, what does not parse, BDAT 0, and a chunk's bytes
 * counted across buffers of every size.
 */
#include <stdint.h>
#include <string.h>

#include "smtp_bdat.h"
#include "unit.h"

static enum bdat_status parse(const char *arg, struct bdat_header *h)
{
    return bdat_parse(arg, strlen(arg), h);
}

static void test_sizes(void)
{
    struct bdat_header h;
    CHECK_EQ_INT(parse("1", &h), BDAT_OK);
    CHECK(h.size == 1 && !h.last);
    CHECK_EQ_INT(parse("007 last", &h), BDAT_OK);
    CHECK(h.size == 7 && h.last);
    CHECK_EQ_INT(parse("0 LAST", &h), BDAT_OK);
    CHECK(h.size == 0 && h.last);
    CHECK_EQ_INT(parse("12   LaSt", &h), BDAT_OK);
    CHECK(h.size == 12 && h.last);
    CHECK_EQ_INT(parse("9223372036854775807", &h), BDAT_OK);
    CHECK(h.size == BDAT_SIZE_MAX);
    CHECK_EQ_INT(parse("09223372036854775807 LAST", &h), BDAT_OK);
    CHECK(h.size == BDAT_SIZE_MAX && h.last);
}

static void test_what_does_not_parse(void)
{
    static const char *const bad[] = {
        "", " ", "x", "-1", "+1", "1x", "1 X", "1 LASTX", "1 LAS", "1LAST",
        "1 LAST LAST", "9223372036854775808", "18446744073709551615",
        "18446744073709551616", "99999999999999999999999999", "0x10", "1.0",
        "LAST", " 1",
    };
    struct bdat_header h;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &h) != BDAT_BAD)
            fprintf(stderr, "parsed: \"%s\"\n", bad[i]);
        CHECK_EQ_INT(parse(bad[i], &h), BDAT_BAD);
    }
    CHECK_EQ_INT(bdat_parse("1\0 LAST", 7, &h), BDAT_BAD);
}

static void test_empty_chunk_needs_last(void)
{
    struct bdat_header h;
    CHECK_EQ_INT(parse("0", &h), BDAT_EMPTY_CHUNK);
    CHECK_EQ_INT(parse("000", &h), BDAT_EMPTY_CHUNK);
}

static void test_take_across_buffers(void)
{
    for (size_t step = 1; step <= 40; step++) {
        uint64_t left = 100;
        size_t total = 0, rounds = 0;
        while (left > 0) {
            size_t got = bdat_take(&left, step);
            CHECK(got <= step);
            total += got;
            rounds++;
        }
        CHECK_EQ_INT(total, 100);
        CHECK_EQ_INT(rounds, (100 + step - 1) / step);
        CHECK_EQ_INT(bdat_take(&left, step), 0);
    }
    uint64_t huge = BDAT_SIZE_MAX;
    CHECK_EQ_INT(bdat_take(&huge, 16384), 16384);
    CHECK(huge == BDAT_SIZE_MAX - 16384);
}

UNIT_MAIN("smtp_bdat",
          { "sizes", test_sizes },
          { "what_does_not_parse", test_what_does_not_parse },
          { "empty_chunk_needs_last", test_empty_chunk_needs_last },
          { "take_across_buffers", test_take_across_buffers })
