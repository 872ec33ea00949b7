/*
 * smtp_accept.c - the listening sockets' handler: accepts at most 64
 * clients per wake-up (the selector's rule), refuses with 421 those over
 * -c, past what the selector can watch or arriving during shutdown, keeps
 * one descriptor in reserve to say 421 even when out of descriptors, and
 * hands every other client to session_start, refusing it too when the
 * session cannot start. The session never calls back here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "smtp_session.h"
#include "stats.h"

/* A refusal that needs no session: one best-effort write, then close.
 * On the implicit-TLS port a plaintext reply would only be noise. */
static void session_refuse(int fd, enum reply_id id, bool tls)
{
    char line[REPLY_LINE_MAX];
    if (id == R_TOO_MANY_CLIENTS)
        stats.refused_max_clients++;
    if (tls) {
        close(fd);
        return;
    }
    size_t n = reply_format(line, sizeof(line), id, 0, session_env.cfg->domain);
    ssize_t w = write(fd, line, n);
    if (w > 0)
        stats.bytes_transferred += (uint64_t)w;
    close(fd);
}

/* Keeps one descriptor in reserve so that, out of descriptors, we can
 * still accept a client just to tell it 421 instead of leaving it hanging
 * in the backlog. */
static int reserve_fd = -1;

static void session_accept_emfile(int lfd, bool tls)
{
    if (reserve_fd < 0)
        return;
    close(reserve_fd);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        session_refuse(fd, R_TOO_MANY_CLIENTS, tls);
    log_warn("out of descriptors: refused a client");
    reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void session_accept(struct selector_key *key, bool tls)
{
    if (reserve_fd < 0)
        reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < 64; i++) {     /* bounded: others get a turn */
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(key->fd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                session_accept_emfile(key->fd, tls);
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
                     && errno != ECONNABORTED)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        if (session_env.shutting_down) {
            session_refuse(fd, R_SHUTDOWN, tls);
        } else if (session_count() >= session_env.cfg->max_clients
                   || fd >= selector_fd_limit(session_env.sel)) {
            log_warn("refused a client: %zu connected, fd %d", session_count(), fd);
            session_refuse(fd, R_TOO_MANY_CLIENTS, tls);
        } else if (session_start(fd, &ss, tls) < 0) {
            session_refuse(fd, errno == EAGAIN ? R_TOO_MANY_CLIENTS
                                               : R_LOCAL_ERROR, tls);
        }
    }
}

void session_on_accept(struct selector_key *key)
{
    session_accept(key, false);
}

void session_on_accept_tls(struct selector_key *key)
{
    session_accept(key, true);
}
