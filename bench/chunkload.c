/*
 * chunkload.c - the same mail load over DATA or over BDAT, to compare
 * the two: C threads, each opening one connection per message (EHLO,
 * MAIL, RCPT, then DATA with the dot-stuffed body and "." or one
 * "BDAT n LAST" with the body as it is, QUIT), counting the messages
 * answered 250 (smtpd says 250 once the file is durable). Blocking
 * sockets, one per thread; loopback; bounded by -s seconds.
 *
 *   cc -std=c11 -O2 -D_GNU_SOURCE bench/chunkload.c -o build/bench/chunkload -lpthread
 *   chunkload -p PORT [-a ADDR] [-b] [-c THREADS] [-s SECONDS] [-r RCPT] [-l BYTES]
 *
 * Prints one line: "mode=data|bdat messages=N failed=F seconds=S rate=R".
 * Exit 0 when no message failed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct cl_opts {
    struct sockaddr_in addr;
    int bdat;                   /* -b: BDAT instead of DATA */
    int threads;
    double seconds;
    const char *rcpt;
    char *body;                 /* lines of 'x', CRLF, no line starts with '.' */
    size_t body_len;
};

struct cl_thread {
    pthread_t id;
    const struct cl_opts *o;
    long ok, failed;
};

static double cl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cl_write(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One whole reply; its code, or -1. */
static int cl_reply(int fd)
{
    char line[1024];
    size_t have = 0;
    for (;;) {
        ssize_t r = read(fd, line + have, 1);
        if (r <= 0)
            return -1;
        if (line[have] == '\n') {
            if (have >= 3 && (have == 3 || line[3] != '-'))
                return atoi(line);
            have = 0;
            continue;
        }
        if (have < sizeof(line) - 1)
            have++;
    }
}

static int cl_cmd(int fd, const char *line, int want)
{
    if (cl_write(fd, line, strlen(line)) < 0)
        return -1;
    return cl_reply(fd) == want ? 0 : -1;
}

static int cl_content(int fd, const struct cl_opts *o)
{
    char head[64];
    if (!o->bdat) {
        if (cl_cmd(fd, "DATA\r\n", 354) < 0 || cl_write(fd, o->body, o->body_len) < 0)
            return -1;
        return cl_cmd(fd, ".\r\n", 250);
    }
    snprintf(head, sizeof(head), "BDAT %zu LAST\r\n", o->body_len);
    if (cl_write(fd, head, strlen(head)) < 0 || cl_write(fd, o->body, o->body_len) < 0)
        return -1;
    return cl_reply(fd) == 250 ? 0 : -1;
}

static int cl_message(const struct cl_opts *o)
{
    char rcpt[300];
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, rc = -1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    snprintf(rcpt, sizeof(rcpt), "RCPT TO:<%s>\r\n", o->rcpt);
    if (connect(fd, (const struct sockaddr *)&o->addr, sizeof(o->addr)) == 0
        && cl_reply(fd) == 220
        && cl_cmd(fd, "EHLO chunkload\r\n", 250) == 0
        && cl_cmd(fd, "MAIL FROM:<bench@localhost>\r\n", 250) == 0
        && cl_cmd(fd, rcpt, 250) == 0 && cl_content(fd, o) == 0) {
        rc = 0;
        cl_cmd(fd, "QUIT\r\n", 221);
    }
    close(fd);
    return rc;
}

static void *cl_run(void *arg)
{
    struct cl_thread *t = arg;
    double end = cl_now() + t->o->seconds;
    while (cl_now() < end) {
        if (cl_message(t->o) == 0)
            t->ok++;
        else
            t->failed++;
    }
    return NULL;
}

static void cl_body(struct cl_opts *o, size_t size)
{
    static const char head[] = "Subject: chunkload\r\n\r\n";
    o->body = malloc(size + sizeof(head) + 80);
    if (o->body == NULL) {
        perror("malloc");
        exit(2);
    }
    size_t n = strlen(head);
    memcpy(o->body, head, n);
    while (n < size) {          /* 78 'x' and CRLF per line */
        memset(o->body + n, 'x', 78);
        memcpy(o->body + n + 78, "\r\n", 2);
        n += 80;
    }
    o->body_len = n;
}

static int cl_args(struct cl_opts *o, int argc, char **argv)
{
    int c, port = 0;
    size_t size = 1024;
    const char *addr = "127.0.0.1";
    o->threads = 16;
    o->seconds = 10;
    o->rcpt = "u@localhost";
    while ((c = getopt(argc, argv, "p:a:bc:s:r:l:")) != -1) {
        switch (c) {
        case 'p': port = atoi(optarg); break;
        case 'a': addr = optarg; break;
        case 'b': o->bdat = 1; break;
        case 'c': o->threads = atoi(optarg); break;
        case 's': o->seconds = atof(optarg); break;
        case 'r': o->rcpt = optarg; break;
        case 'l': size = (size_t)atol(optarg); break;
        default: return -1;
        }
    }
    if (port <= 0 || o->threads < 1 || o->threads > 1024 || o->seconds <= 0)
        return -1;
    o->addr.sin_family = AF_INET;
    o->addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, addr, &o->addr.sin_addr) != 1)
        return -1;
    cl_body(o, size);
    return 0;
}

int main(int argc, char **argv)
{
    struct cl_opts o;
    memset(&o, 0, sizeof(o));
    if (cl_args(&o, argc, argv) < 0) {
        fprintf(stderr, "usage: chunkload -p PORT [-a ADDR] [-b] [-c THREADS] "
                "[-s SECONDS] [-r RCPT] [-l BYTES]\n");
        return 2;
    }
    struct cl_thread *t = calloc((size_t)o.threads, sizeof(*t));
    if (t == NULL)
        return 2;
    double start = cl_now();
    for (int i = 0; i < o.threads; i++) {
        t[i].o = &o;
        pthread_create(&t[i].id, NULL, cl_run, &t[i]);
    }
    long ok = 0, failed = 0;
    for (int i = 0; i < o.threads; i++) {
        pthread_join(t[i].id, NULL);
        ok += t[i].ok;
        failed += t[i].failed;
    }
    double took = cl_now() - start;
    printf("mode=%s messages=%ld failed=%ld seconds=%.2f rate=%.0f\n",
           o.bdat ? "bdat" : "data", ok, failed, took, ok / took);
    free(t);
    free(o.body);
    return failed ? 1 : 0;
}
