/*
 * log.h - one line per event, to standard error or a file (-l), filtered
 * by level (-L). The file is reopened on SIGHUP (log_reopen).
 */
#ifndef LOG_H
#define LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR };

/* path NULL: standard error. 0, or -1 with errno (file not writable). */
int log_open(const char *path, enum log_level level);
/* Reopens the same file (after rotation). 0 or -1. */
int log_reopen(void);
void log_close(void);
/* "debug", "info", "warning", "error": 0 and *level set, or -1. */
int log_level_parse(const char *name, enum log_level *level);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Copies s into dst (size dstlen, always NUL-terminated), replacing every
 * byte outside printable ASCII, and '\\', with \xHH, so client text can
 * never forge a log line or a header. Returns dst. */
char *log_escape(char *dst, size_t dstlen, const char *s);

#endif
