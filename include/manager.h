/*
 * manager.h - what the two files of the monitor's client share
 * (manager.c: questions, answers, the menu; manager_args.c: the command
 * line). Nothing of the server's: the protocol is in monitor_proto.h.
 */
#ifndef MANAGER_H
#define MANAGER_H

#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "monitor_proto.h"

#define MANAGER_VERSION  "0.1"
#define MANAGER_TRIES    3      /* sends of one request, same id */
#define MANAGER_WAIT_MS  1000   /* per send */
#define MANAGER_LINE_MAX 256    /* one menu answer */

enum manager_exit { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

#define MANAGER_MAX_SERVERS 16

struct manager_server {
    char host[256];                 /* as given, brackets stripped */
    char port[8];                   /* validated decimal; "" = -p's */
    struct addrinfo *addrs;         /* host resolved, tried in order */
    bool silent;                    /* gave no answer: not asked again */
};

struct manager {
    struct manager_server servers[MANAGER_MAX_SERVERS];    /* -i, in order */
    size_t nservers;
    char port[8];                   /* -p: for servers without their own */
    uint8_t token[MON_TOKEN_LEN];   /* NUL-padded */
};

/* Fills m from argv (manager_args.c). Returns -1 to go on (*command set,
 * NULL for the menu), else the exit status to end with (-h, -v, bad
 * usage). */
int manager_parse_args(int argc, char **argv, struct manager *m,
                       const char **command);

#endif
