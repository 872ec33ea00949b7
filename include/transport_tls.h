/*
 * transport_tls.h - the server's TLS settings: certificate and key, loaded at start
 * and on SIGHUP, and the TLS transport built on them (transport_tls.c, OpenSSL).
 * Built without TLS (make TLS=0) every function says "not available".
 */
#ifndef TRANSPORT_TLS_H
#define TRANSPORT_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct transport;

#ifdef SMTPD_TLS

#define TLS_BUILT 1

/* Loads cert and key (key NULL: in the cert file) and checks they match.
 * 0, or -1 with a one-line reason in err. Called again (SIGHUP), a failure
 * keeps the settings already loaded. */
int tls_configure(const char *cert, const char *key, char *err, size_t len);
/* A certificate is loaded: STARTTLS and implicit TLS can be offered. */
bool tls_enabled(void);
/* "OpenSSL 3.0.x ..." for smtpd -v. */
const char *tls_library(void);
/* Makes t a TLS transport (server side) in the handshake. 0 or -1. */
int tls_attach(struct transport *t);
/* Frees the loaded settings (at exit). */
void tls_cleanup(void);

#else

#define TLS_BUILT 0

static inline int tls_configure(const char *cert, const char *key, char *err,
                                size_t len)
{
    (void)cert;
    (void)key;
    if (len > 0) {
        const char msg[] = "built without TLS";
        size_t n = sizeof(msg) < len ? sizeof(msg) : len;
        for (size_t i = 0; i < n; i++)
            err[i] = msg[i];
        err[n - 1] = '\0';
    }
    return -1;
}
static inline bool tls_enabled(void) { return false; }
static inline const char *tls_library(void) { return NULL; }
static inline int tls_attach(struct transport *t) { (void)t; return -1; }
static inline void tls_cleanup(void) {}

#endif

#endif
