/*
 * unit_transport.c - the transport layer on a socketpair: the plain one
 * moves and counts bytes; the TLS one (built with TLS) handshakes without
 * blocking, turns "want read" into interest, keeps decrypted input that
 * does not fit the buffer as pending, and refuses a bad certificate pair.
 * The test's own TLS client uses OpenSSL directly.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "selector.h"
#include "stats.h"
#include "transport_tls.h"
#include "transport.h"
#include "unit.h"
#include "tmpdir.h"

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
        perror("socketpair");
        exit(2);
    }
}

static void test_plain_moves_and_counts(void)
{
    int sv[2];
    pair(sv);
    struct transport t;
    transport_init(&t, sv[0]);
    uint8_t mem[64];
    struct buffer b;
    buffer_init(&b, mem, sizeof(mem));
    stats.bytes_transferred = 0;
    size_t n = 99;
    CHECK_EQ_INT(transport_fill(&t, &b, &n), IO_AGAIN);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(write(sv[1], "NOOP\r\n", 6), 6);
    CHECK_EQ_INT(transport_fill(&t, &b, &n), IO_OK);
    CHECK_EQ_INT(n, 6);
    CHECK_EQ_INT(transport_flush(&t, &b, &n), IO_OK);
    CHECK_EQ_INT(n, 6);
    CHECK_EQ_INT(stats.bytes_transferred, 12);
    char back[8];
    CHECK_EQ_INT(read(sv[1], back, sizeof(back)), 6);
    CHECK(!transport_pending(&t));
    CHECK(!t.secure && t.want == 0);
    char desc[32];
    CHECK(transport_describe(&t, desc, sizeof(desc))[0] == '\0');
    close(sv[1]);
    CHECK_EQ_INT(transport_fill(&t, &b, &n), IO_CLOSED);
    transport_close(&t);
    close(sv[0]);
}

#ifdef SMTPD_TLS
#include <openssl/ssl.h>

static char dir[64], cert[128], key[128], other_key[128];

static int make_keys(void)
{
    char cmd[1024];
    tmpdir_make_named(dir, sizeof(dir), "unit_transport");
    snprintf(cert, sizeof(cert), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(other_key, sizeof(other_key), "%s/o.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -keyout %s -out %s -days 1 -subj /CN=localhost "
             ">/dev/null 2>&1 && openssl genpkey -algorithm EC -pkeyopt "
             "ec_paramgen_curve:P-256 -out %s >/dev/null 2>&1",
             key, cert, other_key);
    return dir[0] && system(cmd) == 0 ? 0 : -1;
}

static void test_bad_pairs_refused(void)
{
    char err[512];
    CHECK_EQ_INT(tls_configure("/nonexistent.pem", NULL, err, sizeof(err)), -1);
    CHECK(strstr(err, "/nonexistent.pem") && strstr(err, "No such file"));
    CHECK_EQ_INT(tls_configure(cert, other_key, err, sizeof(err)), -1);
    CHECK(strstr(err, "mismatch") != NULL);
    CHECK(!tls_enabled());
    CHECK_EQ_INT(tls_configure(cert, key, err, sizeof(err)), 0);
    CHECK(tls_enabled());
    /* a bad pair later keeps the good one */
    CHECK_EQ_INT(tls_configure(cert, other_key, err, sizeof(err)), -1);
    CHECK(tls_enabled());
}

/* Steps both sides until the handshake is done; the server is only ever
 * run when the selector would have woken it (what it wants is there). */
static int handshake(struct transport *t, SSL *client)
{
    char why[128];
    int server_done = 0, client_done = 0;
    for (int i = 0; i < 50 && !(server_done && client_done); i++) {
        if (!client_done)
            client_done = SSL_do_handshake(client) == 1;
        if (!server_done) {
            enum transport_step st = transport_handshake(t, why, sizeof(why));
            if (st == TRANSPORT_FAILED)
                return -1;
            server_done = st == TRANSPORT_DONE;
            if (!server_done)
                CHECK(t->want == OP_READ || t->want == OP_WRITE);
        }
    }
    return server_done && client_done ? 0 : -1;
}

static void test_tls_handshake_and_pending(void)
{
    int sv[2];
    pair(sv);
    struct transport t;
    transport_init(&t, sv[0]);
    CHECK_EQ_INT(transport_start_tls(&t), 0);
    CHECK(t.handshaking && t.want == OP_READ);
    char why[128];
    CHECK_EQ_INT(transport_handshake(&t, why, sizeof(why)), TRANSPORT_AGAIN);
    CHECK_EQ_INT(t.want, OP_READ);      /* nothing from the client yet */

    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *client = SSL_new(cctx);
    SSL_set_fd(client, sv[1]);
    SSL_set_connect_state(client);
    stats.bytes_transferred = 0;
    CHECK_EQ_INT(handshake(&t, client), 0);
    CHECK(t.secure && !t.handshaking && t.want == 0);
    CHECK(stats.bytes_transferred > 500);      /* the handshake's bytes */
    char desc[96];
    CHECK(strncmp(transport_describe(&t, desc, sizeof(desc)), "TLSv1.3:", 8) == 0);

    /* 3,000 bytes in one record; the buffer takes 1,024 at a time */
    char batch[3000];
    for (size_t i = 0; i < sizeof(batch); i += 6)
        memcpy(batch + i, "NOOP\r\n", 6);
    CHECK_EQ_INT(SSL_write(client, batch, sizeof(batch)), (int)sizeof(batch));
    uint8_t mem[1024];
    struct buffer b;
    buffer_init(&b, mem, sizeof(mem));
    size_t n, total = 0;
    CHECK_EQ_INT(transport_fill(&t, &b, &n), IO_OK);
    CHECK_EQ_INT(n, 1024);
    CHECK(transport_pending(&t));       /* the selector would not say so */
    while (transport_pending(&t)) {
        total += buffer_readable(&b);
        buffer_reset(&b);
        CHECK_EQ_INT(transport_fill(&t, &b, &n), IO_OK);
    }
    total += buffer_readable(&b);
    CHECK_EQ_INT(total, sizeof(batch));
    CHECK_EQ_INT(transport_fill(&t, &b, &n), IO_AGAIN);

    buffer_reset(&b);
    buffer_append(&b, "250 2.0.0 Ok\r\n", 14);
    CHECK_EQ_INT(transport_flush(&t, &b, &n), IO_OK);
    CHECK_EQ_INT(n, 14);
    char got[32] = "";
    CHECK_EQ_INT(SSL_read(client, got, sizeof(got)), 14);
    CHECK(memcmp(got, "250 2.0.0 Ok\r\n", 14) == 0);

    SSL_shutdown(client);               /* close_notify: read says closed */
    CHECK_EQ_INT(transport_fill(&t, &b, &n), IO_CLOSED);
    transport_close(&t);
    CHECK(t.conn == NULL);
    SSL_free(client);
    SSL_CTX_free(cctx);
    close(sv[0]);
    close(sv[1]);
}

static void test_tls_garbage_fails(void)
{
    int sv[2];
    pair(sv);
    struct transport t;
    transport_init(&t, sv[0]);
    CHECK_EQ_INT(transport_start_tls(&t), 0);
    CHECK_EQ_INT(write(sv[1], "EHLO plain.text\r\n", 17), 17);
    char why[128] = "";
    CHECK_EQ_INT(transport_handshake(&t, why, sizeof(why)), TRANSPORT_FAILED);
    CHECK(why[0] != '\0');
    transport_close(&t);
    close(sv[0]);
    close(sv[1]);
}

static void test_tls_all(void)
{
    if (make_keys() < 0) {
        printf("transport: no openssl command line: TLS cases skipped\n");
        tmpdir_remove(dir);
        return;
    }
    test_bad_pairs_refused();
    test_tls_handshake_and_pending();
    test_tls_garbage_fails();
    tls_cleanup();
    tmpdir_remove(dir);
}
#else
static void test_tls_all(void)
{
    char err[64];
    CHECK_EQ_INT(tls_configure("c.pem", NULL, err, sizeof(err)), -1);
    CHECK(strcmp(err, "built without TLS") == 0);
    struct transport t;
    transport_init(&t, -1);
    CHECK_EQ_INT(transport_start_tls(&t), -1);
}
#endif

UNIT_MAIN("transport",
          { "plain_moves_and_counts", test_plain_moves_and_counts },
          { "tls", test_tls_all })
