/*
 * smtp_bdat.c - the framing of CHUNKING (RFC 3030): "BDAT n [LAST]" read
 * into a size and a flag, and the count of a chunk's bytes as they come.
 * No I/O and no session: smtp_data.c streams the bytes to the spool file.
 */
#include <strings.h>

#include "smtp_bdat.h"

/* The decimal size: at least one digit, nothing but digits, at most
 * BDAT_SIZE_MAX. Leading zeros are fine ("007" is 7). */
static int bdat_size(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (BDAT_SIZE_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

enum bdat_status bdat_parse(const char *arg, size_t len, struct bdat_header *h)
{
    size_t n = 0;
    h->size = 0;
    h->last = 0;
    while (n < len && arg[n] != ' ')
        n++;
    if (bdat_size(arg, n, &h->size) < 0)
        return BDAT_BAD;
    size_t rest = n;
    while (rest < len && arg[rest] == ' ')
        rest++;
    if (rest < len) {
        if (rest == n || len - rest != 4 || strncasecmp(arg + rest, "LAST", 4) != 0)
            return BDAT_BAD;
        h->last = 1;
    }
    if (h->size == 0 && !h->last)
        return BDAT_EMPTY_CHUNK;
    return BDAT_OK;
}

size_t bdat_take(uint64_t *left, size_t avail)
{
    size_t n = *left < avail ? (size_t)*left : avail;
    *left -= n;
    return n;
}
