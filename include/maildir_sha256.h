/*
 * maildir_sha256.h - SHA-256 (FIPS 180-4) for the journal's checksums
 * (maildir_sha256.c), in every build, with or without OpenSSL. Pure: no
 * I/O, no allocation; one struct sha256 per thread at a time.
 */
#ifndef MAILDIR_SHA256_H
#define MAILDIR_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

/* A hash being computed: the chaining value, the bytes seen so far, and
 * the tail (used bytes, < 64) that does not yet fill a 64-byte block. */
struct sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
};

void sha256_init(struct sha256 *s);
/* Adds p[0..n); p may be NULL when n is 0. Whole blocks are hashed
 * straight from p, only a tail is copied into s. */
void sha256_update(struct sha256 *s, const void *p, size_t n);
/* Writes the digest; s must be initialised again before it is reused. */
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN]);
/* The digest of p[0..n) in one call. */
void sha256(const void *p, size_t n, uint8_t out[SHA256_LEN]);

/*
 * Which code hashes the blocks. SHA256_AUTO, the default, takes the x86
 * SHA instructions when the CPU has them, else the portable C. For the
 * unit test and the benchmark, which compare the two: it applies to the
 * whole process, so set it before any other thread hashes.
 */
enum sha256_path { SHA256_AUTO, SHA256_PORTABLE, SHA256_SHANI };

/* 0, or -1 (nothing changed) for SHA256_SHANI on a CPU without it. */
int sha256_set_path(enum sha256_path path);
/* The path the calls take now: SHA256_PORTABLE or SHA256_SHANI. */
enum sha256_path sha256_path(void);

#endif
