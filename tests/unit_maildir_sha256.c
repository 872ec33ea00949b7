/*
 * unit_maildir_sha256.c - SHA-256 on the example messages of FIPS 180-4
 * (NIST's published digests) and on the lengths where the padding needs
 * one block or two, by each path; updates split anywhere give the
 * one-call digest; the portable C and the x86 SHA instructions agree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildir_sha256.h"
#include "unit.h"

/* 64 hex digits to 32 bytes */
static void unhex(const char *hex, uint8_t out[SHA256_LEN])
{
    for (int i = 0; i < SHA256_LEN; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static int digest_is(const void *p, size_t n, const char *hex)
{
    uint8_t want[SHA256_LEN], got[SHA256_LEN];
    unhex(hex, want);
    sha256(p, n, got);
    return memcmp(got, want, SHA256_LEN) == 0;
}

/* Whether /proc/cpuinfo lists the SHA extensions, asked apart from the
 * code under test so that the agreement test cannot skip by mistake. */
static int cpuinfo_has_sha_ni(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    int found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strncmp(line, "flags", 5) == 0 && strstr(line, " sha_ni") != NULL;
    fclose(f);
    return found;
}

/* The paths this machine can run: the portable one, and SHA-NI if any. */
static int paths(enum sha256_path out[2])
{
    int n = 0;
    out[n++] = SHA256_PORTABLE;
    if (sha256_set_path(SHA256_SHANI) == 0)
        out[n++] = SHA256_SHANI;
    sha256_set_path(SHA256_AUTO);
    return n;
}

static void test_nist_examples_by_each_path(void)
{
    enum sha256_path p[2];
    int n = paths(p);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(sha256_set_path(p[i]), 0);
        CHECK_EQ_INT(sha256_path(), p[i]);
        CHECK(digest_is("", 0,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        CHECK(digest_is(NULL, 0,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        CHECK(digest_is("abc", 3,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        CHECK_EQ_INT(strlen(m448) * 8, 448);
        CHECK(digest_is(m448, strlen(m448),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
        const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                           "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
        CHECK_EQ_INT(strlen(m896) * 8, 896);
        CHECK(digest_is(m896, strlen(m896),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"));
    }
    sha256_set_path(SHA256_AUTO);
}

/* One million 'a', in one call and in pieces of 1 to 97 bytes. */
static void test_one_million_a(void)
{
    static const char *want =
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    size_t n = 1000000;
    char *a = malloc(n);
    CHECK(a != NULL);
    if (!a)
        return;
    memset(a, 'a', n);
    enum sha256_path p[2];
    int np = paths(p);
    for (int i = 0; i < np; i++) {
        sha256_set_path(p[i]);
        CHECK(digest_is(a, n, want));
        struct sha256 s;
        uint8_t got[SHA256_LEN], exp[SHA256_LEN];
        sha256_init(&s);
        for (size_t off = 0, k = 1; off < n; off += k, k = k % 97 + 1)
            sha256_update(&s, a + off, off + k <= n ? k : n - off);
        sha256_final(&s, got);
        unhex(want, exp);
        CHECK_MEM(got, exp, SHA256_LEN);
    }
    sha256_set_path(SHA256_AUTO);
    free(a);
}

/* 'a' * n around the padding's edges: 55 bytes leave room for the length
 * in the last block, 56 do not; 64 fill it exactly. The digests are
 * sha256sum's: head -c N /dev/zero | tr '\0' a | sha256sum */
static void test_padding_edges(void)
{
    static const struct { size_t n; const char *hex; } v[] = {
        { 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
        { 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
        { 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
        { 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
        { 65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0" },
        { 119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb" },
        { 120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c" },
    };
    char a[128];
    memset(a, 'a', sizeof(a));
    enum sha256_path p[2];
    int np = paths(p);
    for (int i = 0; i < np; i++) {
        sha256_set_path(p[i]);
        for (size_t j = 0; j < sizeof(v) / sizeof(v[0]); j++)
            CHECK(digest_is(a, v[j].n, v[j].hex));
    }
    sha256_set_path(SHA256_AUTO);
}

/* xorshift64: the same bytes every run, so a failure can be repeated */
static uint64_t rng = 0x9e3779b97f4a7c15u;

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        p[i] = (uint8_t)(rng >> 24);
    }
}

/* 200 bytes cut at every i <= j into three updates (empty ones too). */
static void test_updates_split_anywhere(void)
{
    uint8_t in[200], once[SHA256_LEN], got[SHA256_LEN];
    fill_random(in, sizeof(in));
    sha256(in, sizeof(in), once);
    int bad = 0;
    for (size_t i = 0; i <= sizeof(in); i++) {
        for (size_t j = i; j <= sizeof(in); j++) {
            struct sha256 s;
            sha256_init(&s);
            sha256_update(&s, in, i);
            sha256_update(&s, in + i, j - i);
            sha256_update(&s, in + j, sizeof(in) - j);
            sha256_final(&s, got);
            if (memcmp(got, once, SHA256_LEN) != 0 && bad++ < 5)
                fprintf(stderr, "split at %zu and %zu differs\n", i, j);
        }
    }
    CHECK_EQ_INT(bad, 0);
}

/* Every length up to 1100 and a few large ones, starting at every
 * alignment 0..15, in one call and in 1000-byte updates. */
static void test_paths_agree_on_random_inputs(void)
{
    if (cpuinfo_has_sha_ni())
        CHECK_EQ_INT(sha256_set_path(SHA256_SHANI), 0);
    if (sha256_set_path(SHA256_SHANI) != 0) {
        printf("maildir_sha256: no SHA instructions here, one path only\n");
        return;
    }
    static uint8_t buf[300016];
    static const size_t big[] = { 4096, 65536 + 17, 100000, 300000 };
    fill_random(buf, sizeof(buf));
    int bad = 0;
    for (size_t n = 0; n < 1100 + sizeof(big) / sizeof(big[0]); n++) {
        size_t len = n < 1100 ? n : big[n - 1100];
        const uint8_t *p = buf + n % 16;
        uint8_t d[2][SHA256_LEN], u[SHA256_LEN];
        for (int k = 0; k < 2; k++) {
            sha256_set_path(k ? SHA256_SHANI : SHA256_PORTABLE);
            sha256(p, len, d[k]);
        }
        struct sha256 s;                /* SHA-NI, in pieces */
        sha256_init(&s);
        for (size_t off = 0; off < len; off += 1000)
            sha256_update(&s, p + off, len - off < 1000 ? len - off : 1000);
        sha256_final(&s, u);
        if ((memcmp(d[0], d[1], SHA256_LEN) != 0 ||
             memcmp(d[0], u, SHA256_LEN) != 0) && bad++ < 5)
            fprintf(stderr, "paths differ at length %zu\n", len);
    }
    CHECK_EQ_INT(bad, 0);
    sha256_set_path(SHA256_AUTO);
}

/* AUTO takes the instructions where the CPU has them. */
static void test_auto_prefers_sha_ni(void)
{
    sha256_set_path(SHA256_AUTO);
    CHECK_EQ_INT(sha256_path(), cpuinfo_has_sha_ni() ? SHA256_SHANI : SHA256_PORTABLE);
}

UNIT_MAIN("maildir_sha256",
          { "nist_examples_by_each_path", test_nist_examples_by_each_path },
          { "one_million_a", test_one_million_a },
          { "padding_edges", test_padding_edges },
          { "updates_split_anywhere", test_updates_split_anywhere },
          { "paths_agree_on_random_inputs", test_paths_agree_on_random_inputs },
          { "auto_prefers_sha_ni", test_auto_prefers_sha_ni })
