/*
 * tmpdir.h - a scratch directory for unit tests that touch real files:
 * made under /tmp, removed with everything in it.
 */
#ifndef TMPDIR_H
#define TMPDIR_H

#include <dirent.h>
#include <ftw.h>
#include <string.h>
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

/* Entries in dir other than . and ..; the last one seen goes to name
 * (if not NULL). -1 when dir cannot be opened. */
static inline int dir_count(const char *dir, char *name, size_t len)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (name)
            snprintf(name, len, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

#endif
