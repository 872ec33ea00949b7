/*
 * transform_errpipe.c - a child's stderr into the log, a line at a time, bounded
 * in line length, line count and work per wake-up. Knows nothing of
 * SMTP or of which child it serves: the prefix says that.
 */
#include "transform_errpipe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define ERRPIPE_PREFIX_MAX 64

struct errpipe {
    char prefix[ERRPIPE_PREFIX_MAX];
    char line[ERRPIPE_LINE_MAX + 1];
    size_t len;                     /* bytes in line */
    bool cut;                       /* line was full: skip to its end */
    unsigned lines;                 /* logged so far */
};

static void errpipe_on_read(struct selector_key *key);
static void errpipe_on_close(struct selector_key *key);

static const struct fd_handler errpipe_handler = {
    .on_read = errpipe_on_read,
    .on_close = errpipe_on_close,
};

/* Logs the line held, if any; the limit's notice comes once, in place of
 * the first line over it. */
static void errpipe_emit(struct errpipe *ep)
{
    if (ep->len == 0 && !ep->cut)
        return;
    ep->line[ep->len] = '\0';
    if (ep->lines < ERRPIPE_MAX_LINES)
        log_warn("%s: %s%s", ep->prefix, ep->line, ep->cut ? " [...]" : "");
    else if (ep->lines == ERRPIPE_MAX_LINES)
        log_warn("%s: more than %d lines on stderr, the rest not logged",
                 ep->prefix, ERRPIPE_MAX_LINES);
    if (ep->lines <= ERRPIPE_MAX_LINES)
        ep->lines++;
    ep->len = 0;
    ep->cut = false;
}

/* Adds one byte of output: a newline ends the line, a full line is
 * logged at once and the rest of it skipped. */
static void errpipe_byte(struct errpipe *ep, unsigned char c)
{
    if (c == '\n') {
        errpipe_emit(ep);
        return;
    }
    if (ep->cut)
        return;
    if (ep->len == ERRPIPE_LINE_MAX) {
        ep->cut = true;
        return;
    }
    if (c == '\r' && ep->len == 0)
        return;
    ep->line[ep->len++] = c >= 0x20 && c != 0x7F ? (char)c : '?';
}

/* One read() per wake-up, as the selector asks of every handler. */
static void errpipe_on_read(struct selector_key *key)
{
    struct errpipe *ep = key->data;
    unsigned char buf[1024];
    ssize_t n = read(key->fd, buf, sizeof buf);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        errpipe_emit(ep);           /* a last line without newline */
        selector_unregister(key->s, key->fd);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        errpipe_byte(ep, buf[i]);
}

static void errpipe_on_close(struct selector_key *key)
{
    free(key->data);
    close(key->fd);
}

int errpipe_open(struct selector *s, const char *prefix)
{
    int fds[2];
    struct errpipe *ep = calloc(1, sizeof *ep);

    if (ep == NULL)
        return -1;
    if (pipe2(fds, O_CLOEXEC) < 0) {
        free(ep);
        return -1;
    }
    snprintf(ep->prefix, sizeof ep->prefix, "%s", prefix);
    if (fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0
        || selector_register(s, fds[0], &errpipe_handler, OP_READ, ep) < 0) {
        int err = errno;
        close(fds[0]);
        close(fds[1]);
        free(ep);
        errno = err;
        return -1;
    }
    return fds[1];
}
