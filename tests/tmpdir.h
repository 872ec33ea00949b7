/*
 * tmpdir.h - a scratch directory for unit tests that touch real files:
 * made under /tmp, removed with everything in it.
 */
#ifndef TMPDIR_H
#define TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int tmpdir_rm_entry(const char *path, const struct stat *st, int flag,
                           struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

/* dir gets "/tmp/<prefix>.XXXXXX" made anew, or "" on failure. */
static inline void tmpdir_make_named(char *dir, size_t len, const char *prefix)
{
    snprintf(dir, len, "/tmp/%s.XXXXXX", prefix);
    if (!mkdtemp(dir))
        dir[0] = '\0';
}

static inline void tmpdir_remove(const char *dir)
{
    if (dir[0])
        nftw(dir, tmpdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
