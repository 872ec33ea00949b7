/*
 * fuzz_journal.c - libFuzzer harness for maildir_journal_record.c, as
 * replay uses it: the input is a whole journal image (its two slots, then
 * records). The harness walks it exactly as maildir_replay.c does, from
 * the slot it trusts, wrapping at the end, and stops at the first record
 * that does not decode. Traps when an accepted record reaches outside
 * the image, when its names are not what jrec_check_names promises
 * (NUL-ended, a file name without '/', each mailbox free of "..", "."
 * and empty parts), or when the walk does not end within its bound.
 * The first bytes of the input are also taken as a record to encode:
 * what jrec_encode writes must decode back to the same fields, and its
 * checksum must fail under another key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "maildir_journal_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static void fuzz_check_names(const char *names, uint32_t len)
{
    uint32_t pos = 0;
    const char *file = jrec_next_name(names, len, &pos);
    FUZZ_ASSERT(file && file[0] && !strchr(file, '/') && file[0] != '.');
    unsigned boxes = 0;
    for (const char *b; (b = jrec_next_name(names, len, &pos)); boxes++) {
        FUZZ_ASSERT(b[0] != '\0' && b[0] != '/' && b[0] != '.');
        FUZZ_ASSERT(strstr(b, "/..") == NULL && strstr(b, "//") == NULL);
    }
    FUZZ_ASSERT(boxes >= 1 && boxes <= 100);
}

/* The walk replay makes over an image of size bytes. */
static void fuzz_walk(const uint8_t *img, uint64_t size, struct jslot at)
{
    uint64_t steps = size / JOURNAL_REC_HEADER + 2;
    for (; steps > 0; steps--) {
        struct jrec r;
        if (at.tail_off + JOURNAL_REC_HEADER > size) {
            at.tail_off = JOURNAL_DATA_START;
            continue;
        }
        const uint8_t *hdr = img + at.tail_off;
        if (jrec_decode(hdr, at.tail_seq, &r) < 0)
            return;
        if (r.type == JREC_MESSAGE) {
            uint64_t len = jrec_size(r.names_len, r.body_len);
            if (at.tail_off + len > size)
                return;
            const char *names = (const char *)hdr + JOURNAL_REC_HEADER;
            if (jrec_check_names(&r, at.key, hdr, names) < 0)
                return;
            fuzz_check_names(names, r.names_len);
            uint8_t sum[SHA256_LEN];
            sha256(hdr + JOURNAL_REC_HEADER + r.names_len, r.body_len, sum);
            if (memcmp(sum, r.body_sha, SHA256_LEN) != 0)
                return;
            at.tail_off += len;
        } else {
            if (jrec_check_names(&r, at.key, hdr, "") < 0)
                return;
            at.tail_off = JOURNAL_DATA_START;
        }
        at.tail_seq++;
    }
}

/* Fields from the input, encoded, must decode to themselves. */
static void fuzz_round_trip(const uint8_t *data, size_t size)
{
    if (size < 24)
        return;
    struct jrec r = { .type = JREC_MESSAGE, .seq = 0, .body_len = 0 };
    memcpy(&r.seq, data, 8);
    memcpy(&r.body_len, data + 8, 8);
    r.body_len &= (1ULL << 40) - 1;
    r.names_len = (uint32_t)(size - 16 > 8192 ? 8192 : size - 16);
    memcpy(r.body_sha, data, 16);
    uint8_t hdr[JOURNAL_REC_HEADER];
    struct jrec back;
    uint8_t key[JOURNAL_KEY_LEN] = { 0 };
    memcpy(key, data + 8, 16);
    jrec_encode(&r, key, (const char *)data + 16, hdr);
    FUZZ_ASSERT(jrec_decode(hdr, r.seq, &back) == 0);
    FUZZ_ASSERT(back.seq == r.seq && back.body_len == r.body_len
                && back.names_len == r.names_len);
    FUZZ_ASSERT(memcmp(back.rec_sha, r.rec_sha, SHA256_LEN) == 0);
    key[0] ^= 1;            /* under any other key it never passes */
    FUZZ_ASSERT(jrec_check_names(&back, key, hdr, (const char *)data + 16) < 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_round_trip(data, size);
    /* the image: the input placed after two empty slots' room unless it
     * is long enough to carry its own */
    uint64_t img_size = size < JOURNAL_DATA_START ? JOURNAL_DATA_START + size : size;
    uint8_t *img = calloc(1, img_size);
    if (img == NULL)
        return 0;
    memcpy(img + (img_size - size), data, size);
    struct jslot s[2];
    const struct jslot *ok[2] = { NULL, NULL };
    for (int i = 0; i < 2; i++)
        if (jslot_decode(img + i * JOURNAL_SLOT_SIZE, img_size, &s[i]) == 0)
            ok[i] = &s[i];
    const struct jslot *best = jslot_pick(ok[0], ok[1]);
    struct jslot start = { .tail_off = JOURNAL_DATA_START, .tail_seq = 1 };
    if (best) {
        FUZZ_ASSERT(best->tail_off >= JOURNAL_DATA_START
                    && best->tail_off <= img_size);
        start = *best;
    } else if (size >= 8) {
        memcpy(&start.tail_seq, data, 8);   /* a walk from the start */
    }
    fuzz_walk(img, img_size, start);
    free(img);
    return 0;
}
