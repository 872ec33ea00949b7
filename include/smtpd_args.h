/*
 * smtpd_args.h - smtpd's command line (smtpd.8) into a struct config.
 */
#ifndef SMTPD_ARGS_H
#define SMTPD_ARGS_H

#include <stddef.h>
#include <stdint.h>
#include "log.h"
#include "maildir_quota.h"
#include "smtp_proxy.h"

#define ARGS_MAX_ADDRS  16
#define ARGS_MAX_USERS  256
#define ARGS_MAX_PASSWD_FILES 8
#define MONITOR_TOKEN_LEN 8
#define DEFAULT_MONITOR_TOKEN "smtpd"
#define SMTPD_VERSION "0.1"

/* --vrfy: who gets an answer to VRFY */
enum vrfy_mode { VRFY_ON, VRFY_AUTH, VRFY_OFF };

struct user {
    char *name;     /* lowercase local-part (malloc'd) */
    char *pass;     /* malloc'd; blanked in argv so ps does not show it */
};

struct config {
    const char *domain;                     /* -d */
    uint16_t smtp_port;                     /* -s */
    uint16_t monitor_port;                  /* -p */
    const char *smtp_addrs[ARGS_MAX_ADDRS]; /* -a; none = every address */
    size_t n_smtp_addrs;
    const char *monitor_addrs[ARGS_MAX_ADDRS]; /* -m; none = 127.0.0.1, ::1 */
    size_t n_monitor_addrs;
    const char *root;                       /* -f */
    struct user users[ARGS_MAX_USERS];      /* -u */
    size_t n_users;
    const char *passwd_files[ARGS_MAX_PASSWD_FILES]; /* --passwd-file */
    size_t n_passwd_files;
    int require_auth;                       /* -A */
    uint8_t token[MONITOR_TOKEN_LEN];       /* -k, NUL-padded */
    int token_is_default;
    const char *token_file;                 /* --monitor-token-file */
    const char *transform_cmd;              /* -t, NULL = none */
    const char *log_file;                   /* -l, NULL = stderr */
    enum log_level log_level;               /* -L */
    unsigned max_clients;                   /* -c */
    uint64_t max_size;                      /* -z */
    unsigned timeout_s;                     /* -T */
    const char *tls_cert;                   /* --tls-cert, NULL = no TLS */
    const char *tls_key;                    /* --tls-key, NULL = in tls_cert */
    uint16_t smtps_port;                    /* --smtps-port, 0 = none */
    int require_tls;                        /* --require-tls */
    struct proxy_net proxy_from[ARGS_MAX_ADDRS]; /* --proxy-from */
    size_t n_proxy_from;
    enum vrfy_mode vrfy;                    /* --vrfy, default VRFY_ON */
    char metrics_addr[64];                  /* --metrics ADDR, numeric */
    uint16_t metrics_port;                  /* --metrics :PORT, 0 = off */
    char delimiters[9];                     /* --recipient-delimiter, "+" */
    const char *aliases_file;               /* --aliases, NULL = none */
    struct quota_limit quota;               /* --quota, 0 = none */
    unsigned client_limit;                  /* --client-limit, 0 = none */
    unsigned client_rate;                   /* --client-rate, 0 = none */
    unsigned message_rate;                  /* --message-rate, 0 = none */
    struct proxy_net limit_exempt[ARGS_MAX_ADDRS]; /* --limit-exempt */
    size_t n_limit_exempt;
    int no_journal;                         /* --no-journal */
    unsigned checkpoint;                    /* --checkpoint SECONDS */
    uint64_t journal_size;                  /* --journal-size */
};

/*
 * Fills cfg from argv. On -h or -v prints to stdout and exits 0; on a bad
 * flag or value prints one line to stderr and exits 2. Checks only what
 * needs no I/O; smtpd.c checks the log file and mailbox root next.
 */
void args_parse(int argc, char **argv, struct config *cfg);

/* --monitor-token-file: reads the token from the file's first line into
 * cfg->token (after log_open: a file that group or others may read is
 * warned about in the log). On an error prints "smtpd: FILE: reason"
 * and exits 2. Does nothing without the option. */
void args_load_token_file(struct config *cfg);

/* Frees what args_parse allocated (the users). */
void args_free(struct config *cfg);

/* The user called name (already lowercase), or NULL. */
const struct user *args_find_user(const struct config *cfg, const char *name);

#endif
