/*
 * smtp_bdat.h - CHUNKING (RFC 3030): the argument of "BDAT n [LAST]" and
 * the count of a chunk's bytes. Pure like parser.c: no I/O, no
 * allocation; fuzz/fuzz_bdat.c feeds it anything.
 */
#ifndef SMTP_BDAT_H
#define SMTP_BDAT_H

#include <stddef.h>
#include <stdint.h>

#define BDAT_SIZE_MAX 9223372036854775807ULL     /* 2^63 - 1 */

enum bdat_status {
    BDAT_OK,            /* size and last are set */
    BDAT_EMPTY_CHUNK,   /* "BDAT 0" without LAST: 501 5.5.4, no bytes follow */
    BDAT_BAD,           /* the size does not parse: what follows cannot be
                           told from commands, 521 5.5.4 and close */
};

struct bdat_header {
    uint64_t size;      /* octets of content that follow the command line */
    int last;           /* "LAST": the message ends with this chunk */
};

/* arg[0..len) is what follows "BDAT " (parser_command's argument):
 * 1*DIGIT, then optionally one or more spaces and "LAST" (any case).
 * A size over BDAT_SIZE_MAX, a sign, or any other text is BDAT_BAD. */
enum bdat_status bdat_parse(const char *arg, size_t len, struct bdat_header *h);

/* How many of the avail buffered bytes belong to a chunk that still
 * misses *left bytes; *left goes down by that much. */
size_t bdat_take(uint64_t *left, size_t avail);

#endif
