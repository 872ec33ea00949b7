/*
 * transform_errpipe.h - a child's standard error turned into log lines. The read
 * end of a pipe is watched by the selector; each line the child writes
 * is logged as "PREFIX: line", cut to ERRPIPE_LINE_MAX bytes, with
 * control bytes shown as '?', and at most ERRPIPE_MAX_LINES lines per
 * pipe, so a chatty or hostile program cannot flood the log.
 */
#ifndef TRANSFORM_ERRPIPE_H
#define TRANSFORM_ERRPIPE_H

#include "selector.h"

#define ERRPIPE_LINE_MAX  256
#define ERRPIPE_MAX_LINES 100

/* Makes the pipe and registers its read end. Returns the write end
 * (close-on-exec: dup it onto the child's 2, then close it here), or -1
 * with errno set. The read end closes itself at end of file, that is
 * once every process holding the write end is gone. */
int errpipe_open(struct selector *s, const char *prefix);

#endif
