/*
 * maildir_sha256.c - SHA-256 as FIPS 180-4 defines it, for the journal's
 * record and header checksums, so that even a build without OpenSSL has
 * it. Two ways to hash whole 64-byte blocks: portable C, and the x86 SHA
 * instructions (SHA-NI), taken at run time when the CPU has them.
 * Pure: no I/O, no allocation, never fails.
 */
#include <stdatomic.h>
#include <string.h>

#include "maildir_sha256.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SHA256_HAVE_SHANI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
    0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
    0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
    0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* FIPS 180-4 5.3.3: the first 32 bits of the fractional parts of the
 * square roots of the first 8 primes. */
static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

/* Bytes are cast to uint32_t before shifting: a uint8_t is promoted to
 * int, and 0x80 << 24 does not fit in one. */
static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- portable C ------------------------------------------------------ */

/* The functions of FIPS 180-4 4.1.2; CH and MAJ in forms equal to the
 * standard's that take one operation less. */
#define ROTR(x, n) ((x) >> (n) | (x) << (32 - (n)))
#define CH(x, y, z)  ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

/* Schedule word i of the current 16 rounds (6.2.2 step 1), in a ring of
 * 16: in the first 16 rounds the message's own; from round 16 on, W(t)
 * computed in place of W(t-16), from W(t-15), W(t-7) and W(t-2). */
#define W_MESSAGE(i) w[i]
#define W_NEXT(i) (w[i] += SSIG1(w[((i) + 14) & 15]) + w[((i) + 9) & 15] + \
                           SSIG0(w[((i) + 1) & 15]))

/* One round of 6.2.2 step 3, with K[r + i] (r: the first of these 16
 * rounds) and schedule word wi. Instead of moving all eight variables
 * down a place, the caller renames them: round i+1 passes (h, a, ..., g). */
#define ROUND(a, b, c, d, e, f, g, h, i, wi) do { \
        uint32_t t1 = h + BSIG1(e) + CH(e, f, g) + K[r + (i)] + (wi); \
        uint32_t t2 = BSIG0(a) + MAJ(a, b, c); \
        d += t1; \
        h = t1 + t2; \
    } while (0)

#define EIGHT_ROUNDS(j, W) do { \
        ROUND(a, b, c, d, e, f, g, h, (j) + 0, W((j) + 0)); \
        ROUND(h, a, b, c, d, e, f, g, (j) + 1, W((j) + 1)); \
        ROUND(g, h, a, b, c, d, e, f, (j) + 2, W((j) + 2)); \
        ROUND(f, g, h, a, b, c, d, e, (j) + 3, W((j) + 3)); \
        ROUND(e, f, g, h, a, b, c, d, (j) + 4, W((j) + 4)); \
        ROUND(d, e, f, g, h, a, b, c, (j) + 5, W((j) + 5)); \
        ROUND(c, d, e, f, g, h, a, b, (j) + 6, W((j) + 6)); \
        ROUND(b, c, d, e, f, g, h, a, (j) + 7, W((j) + 7)); \
    } while (0)

/* The schedule is worked out round by round, not 16 words ahead: it
 * then runs beside the rounds (about a third faster here). */
static void blocks_portable(uint32_t hv[8], const uint8_t *p, size_t nblocks)
{
    for (; nblocks > 0; nblocks--, p += 64) {
        uint32_t w[16];
        for (int i = 0; i < 16; i++)
            w[i] = load_be32(p + 4 * i);
        uint32_t a = hv[0], b = hv[1], c = hv[2], d = hv[3];
        uint32_t e = hv[4], f = hv[5], g = hv[6], h = hv[7];
        int r = 0;
        EIGHT_ROUNDS(0, W_MESSAGE);
        EIGHT_ROUNDS(8, W_MESSAGE);
        for (r = 16; r < 64; r += 16) {
            EIGHT_ROUNDS(0, W_NEXT);
            EIGHT_ROUNDS(8, W_NEXT);
        }
        hv[0] += a; hv[1] += b; hv[2] += c; hv[3] += d;
        hv[4] += e; hv[5] += f; hv[6] += g; hv[7] += h;
    }
}

/* ---- x86 SHA instructions ------------------------------------------- */
#ifdef SHA256_HAVE_SHANI

/* SHA256RNDS2 does two rounds. It keeps the working variables in two
 * registers, "ABEF" (A in the top lane, F in the lowest) and "CDGH", and
 * takes W+K of the two rounds from the low half of a third; after two
 * rounds the new C, D, G, H are the old A, B, E, F, so it returns only
 * the new ABEF. FOUR_ROUNDS: rounds i..i+3, schedule words w. */
#define FOUR_ROUNDS(w, i) do { \
        __m128i wk_ = _mm_add_epi32((w), \
            _mm_loadu_si128((const __m128i *)(const void *)&K[i])); \
        __m128i next_ = _mm_sha256rnds2_epu32(cdgh, abef, wk_); \
        cdgh = abef; \
        abef = next_; \
        next_ = _mm_sha256rnds2_epu32(cdgh, abef, _mm_shuffle_epi32(wk_, 0x0e)); \
        cdgh = abef; \
        abef = next_; \
    } while (0)

/* Four schedule words W(t..t+3) into x0, which held W(t-16..t-13), from
 * x1, x2, x3 holding the next twelve (lowest lane first): SHA256MSG1
 * gives W(t-16) + SSIG0(W(t-15)) for the four, W(t-7) is added, and
 * SHA256MSG2 adds SSIG1(W(t-2)), taking its own first two results. */
#define SCHEDULE4(x0, x1, x2, x3) \
    x0 = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(x0, x1), \
                                            _mm_alignr_epi8(x3, x2, 4)), x3)

/* The 64 rounds of one block, whose words are in x0..x3. The four
 * registers take turns: each new group of words replaces the oldest. */
__attribute__((target("sha,sse4.1")))
static void rounds_shani(__m128i *abef_io, __m128i *cdgh_io,
                         __m128i x0, __m128i x1, __m128i x2, __m128i x3)
{
    __m128i abef = *abef_io, cdgh = *cdgh_io;
    FOUR_ROUNDS(x0, 0);
    FOUR_ROUNDS(x1, 4);
    FOUR_ROUNDS(x2, 8);
    FOUR_ROUNDS(x3, 12);
    for (int i = 16; i < 64; i += 16) {
        SCHEDULE4(x0, x1, x2, x3);
        FOUR_ROUNDS(x0, i);
        SCHEDULE4(x1, x2, x3, x0);
        FOUR_ROUNDS(x1, i + 4);
        SCHEDULE4(x2, x3, x0, x1);
        FOUR_ROUNDS(x2, i + 8);
        SCHEDULE4(x3, x0, x1, x2);
        FOUR_ROUNDS(x3, i + 12);
    }
    *abef_io = abef;
    *cdgh_io = cdgh;
}

/* Four big-endian words at p, unaligned, W(t) in the lowest lane. */
#define LOAD_WORDS(p, bswap) _mm_shuffle_epi8( \
        _mm_loadu_si128((const __m128i *)(const void *)(p)), (bswap))

__attribute__((target("sha,sse4.1")))
static void blocks_shani(uint32_t hv[8], const uint8_t *p, size_t nblocks)
{
    /* turns each 32-bit lane's bytes around: the words are big-endian */
    const __m128i bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11,
                                       4, 5, 6, 7, 0, 1, 2, 3);
    __m128i abef = _mm_set_epi32((int)hv[0], (int)hv[1], (int)hv[4], (int)hv[5]);
    __m128i cdgh = _mm_set_epi32((int)hv[2], (int)hv[3], (int)hv[6], (int)hv[7]);
    for (; nblocks > 0; nblocks--, p += 64) {
        __m128i abef0 = abef, cdgh0 = cdgh;
        rounds_shani(&abef, &cdgh, LOAD_WORDS(p, bswap), LOAD_WORDS(p + 16, bswap),
                     LOAD_WORDS(p + 32, bswap), LOAD_WORDS(p + 48, bswap));
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    uint32_t v[4];
    _mm_storeu_si128((__m128i *)(void *)v, abef);        /* F, E, B, A */
    hv[0] = v[3]; hv[1] = v[2]; hv[4] = v[1]; hv[5] = v[0];
    _mm_storeu_si128((__m128i *)(void *)v, cdgh);        /* H, G, D, C */
    hv[2] = v[3]; hv[3] = v[2]; hv[6] = v[1]; hv[7] = v[0];
}

/* CPUID: leaf 7 EBX bit 29 is SHA; leaf 1 ECX bits 9 and 19 are SSSE3
 * and SSE4.1, which the byte shuffle and alignr above need. */
static int cpu_has_shani(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!(c & (1u << 9)) || !(c & (1u << 19)))
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (b & (1u << 29)) != 0;
}
#else
static int cpu_has_shani(void)
{
    return 0;
}
#endif

/* ---- choosing the path ---------------------------------------------- */

/* -1 until the first hash asks the CPU; then SHA256_PORTABLE or
 * SHA256_SHANI. Atomic because any thread may be the first: both would
 * find the same answer. CPUID is slow in a virtual machine, so once. */
static _Atomic int chosen = -1;

enum sha256_path sha256_path(void)
{
    int v = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (v < 0) {
        v = cpu_has_shani() ? SHA256_SHANI : SHA256_PORTABLE;
        atomic_store_explicit(&chosen, v, memory_order_relaxed);
    }
    return (enum sha256_path)v;
}

int sha256_set_path(enum sha256_path path)
{
    if (path == SHA256_SHANI && !cpu_has_shani())
        return -1;
    atomic_store_explicit(&chosen, path == SHA256_AUTO ? -1 : (int)path,
                          memory_order_relaxed);
    return 0;
}

static void blocks(uint32_t hv[8], const uint8_t *p, size_t nblocks)
{
#ifdef SHA256_HAVE_SHANI
    if (sha256_path() == SHA256_SHANI) {
        blocks_shani(hv, p, nblocks);
        return;
    }
#endif
    blocks_portable(hv, p, nblocks);
}

/* ---- the interface --------------------------------------------------- */

void sha256_init(struct sha256 *s)
{
    memcpy(s->h, H0, sizeof(s->h));
    s->bytes = 0;
    s->used = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    if (n == 0)
        return;                         /* p may be NULL */
    s->bytes += n;
    if (s->used > 0) {                  /* fill the tail first */
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used < 64)
            return;
        blocks(s->h, s->block, 1);
        s->used = 0;
    }
    if (n >= 64) {                      /* whole blocks, not copied */
        blocks(s->h, p, n / 64);
        p += n - n % 64;
        n %= 64;
    }
    memcpy(s->block, p, n);
    s->used = n;
}

/* 5.1.1: a 1 bit, zeros, and the length in bits as 64 bits big-endian,
 * to a multiple of 512 bits. */
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN])
{
    uint64_t bits = s->bytes * 8;
    s->block[s->used++] = 0x80;
    if (s->used > 56) {
        memset(s->block + s->used, 0, 64 - s->used);
        blocks(s->h, s->block, 1);
        s->used = 0;
    }
    memset(s->block + s->used, 0, 56 - s->used);
    store_be32(s->block + 56, (uint32_t)(bits >> 32));
    store_be32(s->block + 60, (uint32_t)bits);
    blocks(s->h, s->block, 1);
    for (int i = 0; i < 8; i++)
        store_be32(out + 4 * i, s->h[i]);
}

void sha256(const void *p, size_t n, uint8_t out[SHA256_LEN])
{
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, p, n);
    sha256_final(&s, out);
}
