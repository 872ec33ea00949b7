/*
 * unit_auth_sasl.c - auth_sasl.c: RFC 4648 base64 vectors and strictness, RFC 4616
 * PLAIN message splitting, and password checks against a config.
 */
#include <stdint.h>

#include "auth_sasl.h"
#include "unit.h"

#define S(x) x, sizeof(x) - 1

/* RFC 4648 section 10. */
static const struct { const char *plain, *b64; } b64_vectors[] = {
    { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
};

static void test_base64_vectors(void)
{
    for (size_t i = 0; i < sizeof(b64_vectors) / sizeof(b64_vectors[0]); i++) {
        const char *p = b64_vectors[i].plain, *b = b64_vectors[i].b64;
        uint8_t dec[16];
        char enc[16];
        size_t dlen = 99;

        CHECK_EQ_INT(auth_base64_decode(b, strlen(b), dec, sizeof(dec), &dlen), 0);
        CHECK_EQ_INT(dlen, strlen(p));
        CHECK_MEM(dec, p, dlen);
        CHECK_EQ_INT(auth_base64_encode((const uint8_t *)p, strlen(p), enc,
                                        sizeof(enc)), strlen(b));
        CHECK(strcmp(enc, b) == 0);
    }
}

static const struct { const char *in; size_t len; } b64_bad[] = {
    { S("Zg=") }, { S("Zg") }, { S("Z") }, { S("Zm9v\n") }, { S("Zm9v\r\n") },
    { S("Zm 9v") }, { S(" Zm9v") }, { S("Zm9vYg=\0") }, { S("Zm9\0") },
    { S("Z===") }, { S("====") }, { S("==") }, { S("Zg==Zg==") },
    { S("Zg=a") }, { S("Z=g=") }, { S("Zh==") }, { S("Zm9=") },
    { S("Zm-v") }, { S("Zm9_") }, { S("Zm9v\xff") }, { S("Zm9v====") },
};

static void test_base64_strict(void)
{
    uint8_t dec[32];
    size_t dlen;

    for (size_t i = 0; i < sizeof(b64_bad) / sizeof(b64_bad[0]); i++) {
        int rc = auth_base64_decode(b64_bad[i].in, b64_bad[i].len, dec,
                                    sizeof(dec), &dlen);
        if (rc != -1)
            fprintf(stderr, "bad base64 case %zu accepted\n", i);
        CHECK_EQ_INT(rc, -1);
    }
    /* RFC 4954: "=" is the empty response. */
    dlen = 99;
    CHECK_EQ_INT(auth_base64_decode("=", 1, dec, sizeof(dec), &dlen), 0);
    CHECK_EQ_INT(dlen, 0);
    /* Too long for the output buffer. */
    CHECK_EQ_INT(auth_base64_decode("Zm9vYmFy", 8, dec, 5, &dlen), -1);
    CHECK_EQ_INT(auth_base64_decode("Zm9vYmFy", 8, dec, 6, &dlen), 0);
    CHECK_EQ_INT(auth_base64_decode("Zm9vYg==", 8, dec, 3, &dlen), -1);
    CHECK_EQ_INT(auth_base64_decode("Zm9vYg==", 8, dec, 4, &dlen), 0);
}

/* Every length 0..40 of varied bytes survives encode then decode. */
static void test_base64_roundtrip(void)
{
    uint8_t in[40], dec[40];
    char enc[64];

    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 37 + 200);
    for (size_t n = 0; n <= sizeof(in); n++) {
        size_t dlen = 99, elen = auth_base64_encode(in, n, enc, sizeof(enc));
        CHECK_EQ_INT(elen, 4 * ((n + 2) / 3));
        CHECK_EQ_INT(auth_base64_decode(enc, elen, dec, sizeof(dec), &dlen), 0);
        CHECK_EQ_INT(dlen, n);
        CHECK_MEM(dec, in, n);
    }
    /* An output buffer too small gets an empty string, not a partial one. */
    CHECK_EQ_INT(auth_base64_encode(in, 3, enc, 4), 0);
    CHECK_EQ_INT(enc[0], '\0');
    CHECK_EQ_INT(auth_base64_encode(in, 3, enc, 5), 4);
}

struct plain_case {
    const char *msg;
    size_t len;
    size_t ucap, pcap;
    int want;
    const char *user, *pass;
};

static const struct plain_case plain_cases[] = {
    { S("\0tim\0tanstaaftanstaaf"), 64, 64, 0, "tim", "tanstaaftanstaaf" },
    { S("tim\0tim\0secret"), 64, 64, 0, "tim", "secret" },
    { S("TIM\0tim\0secret"), 64, 64, 0, "tim", "secret" },
    { S("admin\0tim\0secret"), 64, 64, -1, 0, 0 },     /* other authzid */
    { S("timx\0tim\0secret"), 64, 64, -1, 0, 0 },
    { S("tim\0secret"), 64, 64, -1, 0, 0 },            /* one NUL */
    { S("timsecret"), 64, 64, -1, 0, 0 },              /* no NUL */
    { S(""), 64, 64, -1, 0, 0 },
    { S("\0\0secret"), 64, 64, -1, 0, 0 },             /* empty authcid */
    { S("\0tim\0"), 64, 64, -1, 0, 0 },                /* empty password */
    { S("\0tim\0sec\0ret"), 64, 64, -1, 0, 0 },        /* NUL in password */
    { S("\0\0"), 64, 64, -1, 0, 0 },
    { S("\0abc\0pw"), 4, 3, 0, "abc", "pw" },          /* exactly fits */
    { S("\0abcd\0pw"), 4, 3, -1, 0, 0 },               /* user too long */
    { S("\0abc\0pwd"), 4, 3, -1, 0, 0 },               /* password too long */
};

static void test_plain_split(void)
{
    for (size_t i = 0; i < sizeof(plain_cases) / sizeof(plain_cases[0]); i++) {
        const struct plain_case *c = &plain_cases[i];
        char user[64], pass[64];
        int rc = auth_plain_split((const uint8_t *)c->msg, c->len, user,
                                  c->ucap, pass, c->pcap);
        CHECK_EQ_INT(rc, c->want);
        if (rc == 0 && c->want == 0) {
            CHECK(strcmp(user, c->user) == 0);
            CHECK(strcmp(pass, c->pass) == 0);
        }
    }
}

/* RFC 4616 section 4 example, the whole way from the wire. */
static void test_plain_from_base64(void)
{
    const char *b64 = "AHRpbQB0YW5zdGFhZnRhbnN0YWFm";
    uint8_t msg[64];
    char user[64], pass[64];
    size_t len;

    CHECK_EQ_INT(auth_base64_decode(b64, strlen(b64), msg, sizeof(msg), &len), 0);
    CHECK_EQ_INT(auth_plain_split(msg, len, user, sizeof(user), pass,
                                  sizeof(pass)), 0);
    CHECK(strcmp(user, "tim") == 0);
    CHECK(strcmp(pass, "tanstaaftanstaaf") == 0);
}

static void test_password_equal(void)
{
    CHECK_EQ_INT(auth_password_equal("demo", "demo"), 1);
    CHECK_EQ_INT(auth_password_equal("s3cret pass", "s3cret pass"), 1);
    CHECK_EQ_INT(auth_password_equal("", ""), 1);
    CHECK_EQ_INT(auth_password_equal("demo", "Demo"), 0);
    CHECK_EQ_INT(auth_password_equal("demo", "demo2"), 0);
    CHECK_EQ_INT(auth_password_equal("demo", "dem"), 0);
    CHECK_EQ_INT(auth_password_equal("demo", ""), 0);
    CHECK_EQ_INT(auth_password_equal("", "demo"), 0);
    CHECK_EQ_INT(auth_password_equal("demo", "s3cret pass"), 0);
}

UNIT_MAIN("auth",
          { "base64_vectors", test_base64_vectors },
          { "base64_strict", test_base64_strict },
          { "base64_roundtrip", test_base64_roundtrip },
          { "plain_split", test_plain_split },
          { "plain_from_base64", test_plain_from_base64 },
          { "password_equal", test_password_equal })
