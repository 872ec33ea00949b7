/*
 * auth_login.h - one login attempt from complete credentials to its
 * verdict: the per-address throttle, the password check on a worker
 * thread, and the delay before every failure. Knows no SMTP: the caller
 * hears of the result through a callback, like maildir_spool.h.
 */
#ifndef AUTH_LOGIN_H
#define AUTH_LOGIN_H

#include <stddef.h>

struct login;
struct selector;

#define LOGIN_FAIL_DELAY_MS 1000

/* done(data, user): user is the name that logged in, as given to
 * login_begin (valid during the call only), or NULL after a failure,
 * which comes LOGIN_FAIL_DELAY_MS after login_begin at the earliest.
 * Runs on the loop thread; the attempt is gone when it returns. */
typedef void (*login_done_fn)(void *data, const char *user);

/* Starts the worker threads, attached to sel (worker_attach). 0, or -1
 * with errno. */
int login_init(struct selector *sel);

/* Waits for the checks still running, then stops the threads. */
void login_shutdown(void);

/* True when the address must get 454 now (too many failures). */
int login_refused(const char *ip);

/* Checks user/pass for the client at ip; done() follows. NULL with errno
 * EAGAIN when the address or the account is throttled (logged), ENOMEM
 * when out of memory; done() then never runs. */
struct login *login_begin(const char *ip, const char *user, const char *pass,
                          login_done_fn done, void *data);

/* The caller goes away: done() will not run; a failure is still logged. */
void login_cancel(struct login *l);

#endif
