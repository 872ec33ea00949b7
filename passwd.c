/*
 * passwd.c - reading the --passwd-file files (users.c parses them) and
 * the -u users into the one table AUTH looks in; rereading on SIGHUP;
 * making every user's mailbox. At start an error exits 2; on a reload it
 * is logged and the old table stays.
 */
#include "passwd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "maildir.h"

#define PASSWD_FILE_MAX (256u << 20)    /* a sanity bound, ~2 million users */
#define PASSWD_ERR_MAX 512

static const struct config *passwd_cfg;
static struct userdb *passwd_db;        /* the users now */

/* ---- one file --------------------------------------------------------- */

static int passwd_fail(char *err, const char *path, const char *why)
{
    snprintf(err, PASSWD_ERR_MAX, "%s: %s", path, why);
    return -1;
}

/* Reads the whole file; NULL with err set. Warns about a file that
 * group or others may read. */
static char *passwd_slurp(const char *path, size_t *len, char *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        passwd_fail(err, path, strerror(errno));
        goto undo_fd;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > PASSWD_FILE_MAX) {
        passwd_fail(err, path, S_ISREG(st.st_mode) ? "file too large"
                                                   : "not a regular file");
        goto undo_fd;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH))
        log_warn("%s: readable by group or others (chmod 600 or 640 with "
                 "a trusted group)", path);
    char *text = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    ssize_t n = 1;
    while (text && got < (size_t)st.st_size
           && ((n = read(fd, text + got, (size_t)st.st_size - got)) > 0
               || (n < 0 && errno == EINTR)))
        got += n > 0 ? (size_t)n : 0;
    if (text == NULL || n < 0) {
        passwd_fail(err, path, text ? strerror(errno) : "out of memory");
        free(text);
        goto undo_fd;
    }
    close(fd);
    *len = got;
    return text;

undo_fd:
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int passwd_load_file(struct userdb *db, const char *path, char *err)
{
    size_t len, line = 0;
    const char *why = NULL;
    char *text = passwd_slurp(path, &len, err);
    if (text == NULL)
        return -1;
    size_t plain = db->n_plain;
    int rc = userdb_parse_text(db, text, len, &line, &why);
    explicit_bzero(text, len);
    free(text);
    if (rc < 0) {
        snprintf(err, PASSWD_ERR_MAX, "%s:%zu: %s", path, line, why);
        return -1;
    }
    if (db->n_plain > plain)
        log_warn("%s: %zu users with {PLAIN} passwords; a hash is safer "
                 "(doveadm pw -s SHA512-CRYPT)", path, db->n_plain - plain);
    return 0;
}

/* ---- the whole table -------------------------------------------------- */

static struct userdb *passwd_load(const struct config *cfg, char *err)
{
    struct userdb *db = userdb_new();
    const char *dup = NULL;
    if (db == NULL) {
        snprintf(err, PASSWD_ERR_MAX, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_users; i++) {
        const struct user *u = &cfg->users[i];
        if (userdb_add(db, u->name, strlen(u->name), u->pass,
                       strlen(u->pass), USERS_PLAIN) < 0) {
            snprintf(err, PASSWD_ERR_MAX, "out of memory");
            goto undo_db;
        }
    }
    db->n_plain = 0;            /* -u passwords are documented as plain */
    for (size_t i = 0; i < cfg->n_passwd_files; i++)
        if (passwd_load_file(db, cfg->passwd_files[i], err) < 0)
            goto undo_db;
    if (userdb_finish(db, &dup) < 0) {
        snprintf(err, PASSWD_ERR_MAX, "user '%s' is listed twice (password "
                 "files and -u together)", dup);
        goto undo_db;
    }
    return db;

undo_db:
    userdb_free(db);
    return NULL;
}

/* Makes the mailboxes of the users not in old (all of them when old is
 * NULL), then one syncfs for all of them. 0, or -1 with err set. */
static int passwd_make_mailboxes(const struct userdb *db,
                                 const struct userdb *old, char *err)
{
    const char *root = passwd_cfg->root;
    int created = 0;
    for (size_t i = 0; i < db->n; i++) {
        const char *name = db->v[i].name;
        if (old && userdb_find(old, name))
            continue;
        if (maildir_create_unsynced(root, name, &created) < 0) {
            snprintf(err, PASSWD_ERR_MAX, "cannot create mailbox %s/%s: %s",
                     root, name, strerror(errno));
            return -1;
        }
    }
    int fd = created ? open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (created && (fd < 0 || syncfs(fd) < 0)) {
        snprintf(err, PASSWD_ERR_MAX, "cannot sync mailboxes under %s: %s",
                 root, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (fd >= 0)
        close(fd);
    return 0;
}

void passwd_start(const struct config *cfg)
{
    char err[PASSWD_ERR_MAX];
    passwd_cfg = cfg;
    passwd_db = passwd_load(cfg, err);
    if (passwd_db == NULL) {
        fprintf(stderr, "smtpd: %s\n", err);
        exit(2);
    }
    if (cfg->n_passwd_files)
        log_info("%zu users may log in", passwd_db->n);
}

void passwd_start_mailboxes(void)
{
    char err[PASSWD_ERR_MAX];
    if (passwd_make_mailboxes(passwd_db, NULL, err) < 0) {
        fprintf(stderr, "smtpd: %s\n", err);
        exit(2);
    }
}

int passwd_reload(void)
{
    char err[PASSWD_ERR_MAX];
    if (passwd_cfg == NULL || passwd_cfg->n_passwd_files == 0)
        return 0;
    struct userdb *db = passwd_load(passwd_cfg, err);
    if (db == NULL || passwd_make_mailboxes(db, passwd_db, err) < 0) {
        log_error("password files not reloaded, the old users stay: %s", err);
        userdb_free(db);
        return -1;
    }
    userdb_free(passwd_db);
    passwd_db = db;
    log_info("password files reloaded: %zu users may log in", db->n);
    return 0;
}

const struct users_entry *passwd_find(const char *name)
{
    return userdb_find(passwd_db, name);
}

const char *passwd_costliest_hash(void)
{
    return passwd_db && passwd_db->costliest ? passwd_db->costliest->hash : NULL;
}

size_t passwd_count(void)
{
    return passwd_db ? passwd_db->n : 0;
}

void passwd_free(void)
{
    userdb_free(passwd_db);
    passwd_db = NULL;
}
