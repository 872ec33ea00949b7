/*
 * transform.h - runs the -t program over one message without blocking the
 * loop: the spool file is the child's stdin, a second spool file its
 * stdout, so the loop only waits for the exit (SIGCHLD through the
 * self-pipe, see transform_reap) or the -T deadline.
 */
#ifndef TRANSFORM_H
#define TRANSFORM_H

#include <stdbool.h>
#include <stdint.h>
#include "selector.h"

struct transform;

/* Called on the loop's thread once the program is over. ok: it exited 0
 * in time; otherwise reason says why ("exit 3", "signal 9", "timeout",
 * "spawn failed: ..."). */
typedef void (*transform_done_fn)(void *data, bool ok, const char *reason);

/* Sets the command (NULL: none). Transformations start ON when there is
 * one. */
void transform_configure(const char *cmd, unsigned timeout_s);
/* What a filter may add to a message (headers): its output may be -z plus
 * this; a larger one fails the message. */
#define TRANSFORM_HEADROOM (64 * 1024)

/* Largest file a filter may write (RLIMIT_FSIZE on the child); 0: none. */
void transform_limit_output(uint64_t bytes);
bool transform_enabled(void);
/* Switches for messages whose DATA ends afterwards. Returns -1 (and stays
 * OFF) when asked ON with no command configured, else 0. */
int transform_set_enabled(bool on);

/* One message for the program. */
struct transform_job {
    int in_fd;                  /* the message, read from offset 0 */
    int out_fd;                 /* emptied, then the program's stdout */
    const char *id;             /* queue ID: prefixes its stderr lines */
    const char *sender;         /* SMTPD_SENDER */
    const char *recipients;     /* SMTPD_RECIPIENTS */
    const char *client;         /* SMTPD_CLIENT */
};

/*
 * Starts /bin/sh -c CMD in a process group of its own over job, with
 * SMTPD_SENDER, SMTPD_RECIPIENTS and SMTPD_CLIENT added to the
 * environment; its stderr goes to the log, a line at a time, as
 * "transform ID: line" (transform_errpipe.h). Returns the handle, or NULL with
 * errno set (then done is never called).
 */
struct transform *transform_start(struct selector *s,
                                  const struct transform_job *job,
                                  transform_done_fn done, void *data);

/* The session went away: kill the group; done will not be called. */
void transform_cancel(struct transform *t);

/* Reaps every exited child (waitpid WNOHANG) and finishes their jobs.
 * Call after SIGCHLD. */
void transform_reap(void);

/* Children still running (to wait for them at shutdown). */
unsigned transform_running(void);

#endif
