/*
 * maildir_journal_record.c - the journal's bytes (maildir_journal_record.h):
 * pure, so that every header replay may meet, torn or hostile, can be
 * fed to it by the fuzzer.
 */
#include "maildir_journal_record.h"

#include <string.h>

static const char REC_MAGIC[8] = { 'S', 'M', 'T', 'P', 'D', 'J', 'R', '1' };
static const char SLOT_MAGIC[8] = { 'S', 'M', 'T', 'P', 'D', 'J', 'H', '1' };

#define JOURNAL_BOXES_MAX 100

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

uint64_t jrec_size(uint32_t names_len, uint64_t body_len)
{
    uint64_t n = JOURNAL_REC_HEADER + (uint64_t)names_len + body_len;
    return (n + 7) & ~(uint64_t)7;
}

/*
 * The record's checksum: HMAC-SHA-256 (RFC 2104) under key of its first
 * 64 header bytes, then the names: H((K ^ opad) || H((K ^ ipad) || m)),
 * the 32-byte key padded with zeros to SHA-256's 64-byte block.
 */
static void jrec_sum(const uint8_t key[JOURNAL_KEY_LEN],
                     const uint8_t hdr[JOURNAL_REC_HEADER], const char *names,
                     uint32_t names_len, uint8_t out[SHA256_LEN])
{
    uint8_t pad[64], inner[SHA256_LEN];
    struct sha256 s;
    memset(pad, 0x36, sizeof pad);
    for (size_t i = 0; i < JOURNAL_KEY_LEN; i++)
        pad[i] ^= key[i];
    sha256_init(&s);
    sha256_update(&s, pad, sizeof pad);
    sha256_update(&s, hdr, 64);
    sha256_update(&s, names, names_len);
    sha256_final(&s, inner);
    memset(pad, 0x5c, sizeof pad);
    for (size_t i = 0; i < JOURNAL_KEY_LEN; i++)
        pad[i] ^= key[i];
    sha256_init(&s);
    sha256_update(&s, pad, sizeof pad);
    sha256_update(&s, inner, sizeof inner);
    sha256_final(&s, out);
}

void jrec_encode(struct jrec *r, const uint8_t key[JOURNAL_KEY_LEN],
                 const char *names, uint8_t out[JOURNAL_REC_HEADER])
{
    memcpy(out, REC_MAGIC, 8);
    put32(out + 8, r->type);
    put32(out + 12, r->names_len);
    put64(out + 16, r->seq);
    put64(out + 24, r->body_len);
    memcpy(out + 32, r->body_sha, SHA256_LEN);
    jrec_sum(key, out, names, r->names_len, r->rec_sha);
    memcpy(out + 64, r->rec_sha, SHA256_LEN);
}

int jrec_decode(const uint8_t in[JOURNAL_REC_HEADER], uint64_t want_seq,
                struct jrec *r)
{
    if (memcmp(in, REC_MAGIC, 8) != 0)
        return -1;
    r->type = get32(in + 8);
    r->names_len = get32(in + 12);
    r->seq = get64(in + 16);
    r->body_len = get64(in + 24);
    memcpy(r->body_sha, in + 32, SHA256_LEN);
    memcpy(r->rec_sha, in + 64, SHA256_LEN);
    if (r->seq != want_seq)
        return -1;
    if (r->type == JREC_WRAP)
        return r->names_len == 0 && r->body_len == 0 ? 0 : -1;
    if (r->type != JREC_MESSAGE || r->names_len == 0
        || r->names_len > JOURNAL_NAMES_MAX || r->body_len > (1ULL << 40))
        return -1;
    return 0;
}

const char *jrec_next_name(const char *names, uint32_t len, uint32_t *pos)
{
    if (*pos >= len)
        return NULL;
    const char *name = names + *pos;
    const char *nul = memchr(name, '\0', len - *pos);
    if (nul == NULL)
        return NULL;
    *pos = (uint32_t)(nul - names) + 1;
    return name;
}

/* A mailbox as the committer names it: "name" or "name/.folder"; no
 * empty, "." or ".." part, no leading "/". */
static int jrec_box_ok(const char *box)
{
    if (box[0] == '\0' || box[0] == '/' || box[0] == '.')
        return 0;
    for (const char *p = box; *p; p++)
        if (p[0] == '/' && (p[1] == '\0' || p[1] == '/'
                            || strncmp(p + 1, "..", 2) == 0
                            || strcmp(p + 1, ".") == 0))
            return 0;
    return 1;
}

int jrec_check_names(const struct jrec *r, const uint8_t key[JOURNAL_KEY_LEN],
                     const uint8_t in[JOURNAL_REC_HEADER], const char *names)
{
    uint8_t sum[SHA256_LEN];
    jrec_sum(key, in, names, r->names_len, sum);
    if (memcmp(sum, r->rec_sha, SHA256_LEN) != 0)
        return -1;
    if (r->type == JREC_WRAP)
        return 0;                   /* no names (jrec_decode) */
    if (names[r->names_len - 1] != '\0')
        return -1;
    uint32_t pos = 0, boxes = 0;
    const char *file = jrec_next_name(names, r->names_len, &pos);
    if (file == NULL || file[0] == '\0' || file[0] == '.' || strchr(file, '/'))
        return -1;
    for (const char *b; (b = jrec_next_name(names, r->names_len, &pos)); boxes++)
        if (!jrec_box_ok(b) || boxes == JOURNAL_BOXES_MAX)
            return -1;
    return boxes > 0 ? 0 : -1;
}

void jslot_encode(const struct jslot *s, uint8_t out[JOURNAL_SLOT_BYTES])
{
    memset(out, 0, JOURNAL_SLOT_BYTES);
    memcpy(out, SLOT_MAGIC, 8);
    put64(out + 8, s->generation);
    put64(out + 16, s->tail_off);
    put64(out + 24, s->tail_seq);
    memcpy(out + 32, s->key, JOURNAL_KEY_LEN);
    sha256(out, 64, out + 64);
}

int jslot_decode(const uint8_t in[JOURNAL_SLOT_BYTES], uint64_t file_size,
                 struct jslot *s)
{
    uint8_t sum[SHA256_LEN];
    if (memcmp(in, SLOT_MAGIC, 8) != 0)
        return -1;
    sha256(in, 64, sum);
    if (memcmp(sum, in + 64, SHA256_LEN) != 0)
        return -1;
    s->generation = get64(in + 8);
    s->tail_off = get64(in + 16);
    s->tail_seq = get64(in + 24);
    memcpy(s->key, in + 32, JOURNAL_KEY_LEN);
    if (s->tail_off < JOURNAL_DATA_START || s->tail_off > file_size
        || s->tail_off % 8 != 0)
        return -1;
    return 0;
}

const struct jslot *jslot_pick(const struct jslot *a, const struct jslot *b)
{
    if (a == NULL)
        return b;
    if (b == NULL)
        return a;
    return b->generation > a->generation ? b : a;
}
