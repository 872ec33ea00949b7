/*
 * addr_resolve.c - a recipient's local-part to the Maildir folders it
 * reaches, in the order README.md ("Addresses") gives: postmaster, the
 * mailbox, the alias, the part before the delimiter with its tag's
 * folder, the catch-all. Aliases are looked up in memory; only whether a
 * mailbox or folder exists is asked of the mailbox root (maildir.c).
 */
#include "addr.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildir.h"

static bool addr_is_mailbox(const char *root, const char *name)
{
    return strcmp(name, "postmaster") == 0 || maildir_exists(root, name);
}

static int addr_add(struct addr_dests *out, const char *dest)
{
    for (size_t i = 0; i < out->n; i++)
        if (strcmp(out->v[i], dest) == 0)
            return 0;
    char **v = realloc(out->v, (out->n + 1) * sizeof *v);
    if (v == NULL)
        return -1;
    out->v = v;
    if ((v[out->n] = strdup(dest)) == NULL)
        return -1;
    out->n++;
    return 0;
}

static enum addr_status addr_add_alias(struct addr_dests *out,
                                       const struct alias *a)
{
    for (size_t i = 0; i < a->nboxes; i++)
        if (addr_add(out, a->boxes[i]) < 0)
            return ADDR_NO_MEMORY;
    return ADDR_FOUND;
}

static enum addr_status addr_add_one(struct addr_dests *out, const char *d)
{
    return addr_add(out, d) < 0 ? ADDR_NO_MEMORY : ADDR_FOUND;
}

static bool addr_tag_ok(const char *tag)
{
    if (tag[0] == '\0' || strlen(tag) > MAILDIR_NAME_MAX)
        return false;
    for (; *tag; tag++)
        if (!isalnum((unsigned char)*tag) && *tag != '_' && *tag != '-')
            return false;
    return true;
}

/* Step (3): base is the lowercase part before the delimiter, tag what
 * follows it as the client wrote it. */
static enum addr_status addr_subaddress(const char *root,
                                        const struct aliases *aliases,
                                        const char *base, const char *tag,
                                        struct addr_dests *out)
{
    if (addr_is_mailbox(root, base)) {
        char folder[MAILDIR_NAME_MAX + 2], dest[2 * MAILDIR_NAME_MAX + 4];
        if (addr_tag_ok(tag)) {
            snprintf(folder, sizeof folder, ".%s", tag);
            if (maildir_folder_exists(root, base, folder)) {
                snprintf(dest, sizeof dest, "%s/%s", base, folder);
                return addr_add_one(out, dest);
            }
        }
        return addr_add_one(out, base);
    }
    const struct alias *a = aliases_find(aliases, base);
    return a ? addr_add_alias(out, a) : ADDR_UNKNOWN;
}

enum addr_status addr_resolve(const char *root, const char *delims,
                              const struct aliases *aliases,
                              const char *local, struct addr_dests *out)
{
    char low[MAILDIR_NAME_MAX + 1];
    size_t len = strlen(local);
    if (len == 0 || len > MAILDIR_NAME_MAX)
        return ADDR_UNKNOWN;
    for (size_t i = 0; i <= len; i++)
        low[i] = (char)tolower((unsigned char)local[i]);
    const struct alias *a;
    if (strcmp(low, "postmaster") == 0) {
        a = aliases_find(aliases, low);
        return a ? addr_add_alias(out, a) : addr_add_one(out, low);
    }
    if (addr_is_mailbox(root, low))
        return addr_add_one(out, low);
    if ((a = aliases_find(aliases, low)) != NULL)
        return addr_add_alias(out, a);
    size_t cut = delims && delims[0] ? strcspn(local, delims) : len;
    if (cut > 0 && cut < len) {
        low[cut] = '\0';
        enum addr_status st = addr_subaddress(root, aliases, low,
                                              local + cut + 1, out);
        if (st != ADDR_UNKNOWN)
            return st;
    }
    if ((a = aliases_find(aliases, "*")) != NULL)
        return addr_add_alias(out, a);
    return ADDR_UNKNOWN;
}

void addr_dests_free(struct addr_dests *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i]);
    free(d->v);
    d->v = NULL;
    d->n = 0;
}
