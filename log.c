/*
 * log.c - one line per event, written with a single write() so lines from
 * one process never interleave. Owns the log descriptor: standard error
 * or the -l file, reopened on SIGHUP.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 2048

static int log_fd = STDERR_FILENO;
static const char *log_path;
static enum log_level log_threshold = LOG_INFO;

static const char *const level_names[] = {
    [LOG_DEBUG] = "debug", [LOG_INFO] = "info",
    [LOG_WARNING] = "warning", [LOG_ERROR] = "error",
};

static int log_open_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_open(const char *path, enum log_level level)
{
    log_threshold = level;
    log_path = path;
    if (path == NULL)
        return 0;
    int fd = log_open_file(path);
    if (fd < 0)
        return -1;
    log_fd = fd;
    return 0;
}

int log_reopen(void)
{
    if (log_path == NULL)
        return 0;
    int fd = log_open_file(log_path);
    if (fd < 0)
        return -1;
    /* dup2 keeps the descriptor number, so nothing else needs to know. */
    if (dup3(fd, log_fd, O_CLOEXEC) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    close(fd);
    return 0;
}

void log_close(void)
{
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = STDERR_FILENO;
    log_path = NULL;
}

int log_level_parse(const char *name, enum log_level *level)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

static size_t log_timestamp(char *buf, size_t len)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, len - n, ".%03ld", (long)(tv.tv_usec / 1000));
    return n;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < log_threshold)
        return;
    char line[LOG_LINE_MAX];
    size_t n = log_timestamp(line, sizeof(line));
    n += (size_t)snprintf(line + n, sizeof(line) - n, " smtpd[%ld] %s: ",
                          (long)getpid(), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;   /* truncated: still one whole line */
    line[n++] = '\n';
    ssize_t w;
    do {
        w = write(log_fd, line, n);
    } while (w < 0 && errno == EINTR);
}

char *log_escape(char *dst, size_t dstlen, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (; *s && o + 5 < dstlen; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    if (dstlen)
        dst[o < dstlen ? o : dstlen - 1] = '\0';
    return dst;
}
