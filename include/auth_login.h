/*
 * login.h - one AUTH attempt from complete credentials to its reply: the
 * per-address throttle, the password check on a worker thread, and the
 * delay before every failure. The session reads nothing while s->login
 * is set.
 */
#ifndef LOGIN_H
#define LOGIN_H

#include <stddef.h>

#include "selector.h"

struct session;

#define LOGIN_FAIL_DELAY_MS 1000

/* Starts the worker threads and watches their results. 0, or -1 with
 * errno. */
int login_init(struct selector *sel);

/* Waits for the checks still running, then stops the threads. */
void login_shutdown(struct selector *sel);

/* True when the address must get 454 now (too many failures). */
int login_refused(const char *ip);

/* Checks user/pass for s: replies 235, 535 (after the delay) or 454, then
 * resumes reading the session's input. */
void login_begin(struct session *s, const char *user, const char *pass);

/* The client left: its attempt goes on but will not touch the session. */
void login_abandon(struct session *s);

#endif
