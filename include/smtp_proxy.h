/*
 * smtp_proxy.h - the PROXY protocol header (HAProxy's version 1 text line and
 * version 2 binary block) that a load balancer puts before the client's
 * own bytes, and the --proxy-from address lists that say who may send it.
 * Pure functions: no I/O, no allocation, any bytes may be fed
 * (fuzz/fuzz_proxy.c does).
 */
#ifndef SMTP_PROXY_H
#define SMTP_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_V1_MAX      107   /* longest version 1 line, CR LF included */
#define PROXY_V2_FIXED    16    /* signature, version/command, family, length */
#define PROXY_V2_BODY_MAX 512   /* most address + TLV bytes we accept */
#define PROXY_HEADER_MAX  (PROXY_V2_FIXED + PROXY_V2_BODY_MAX)
#define PROXY_TIMEOUT_MS  3000  /* a header must be complete by then */

enum proxy_status {
    PROXY_ERROR = -1,   /* not a header we accept: close, say nothing */
    PROXY_NEED_MORE = 0,
    PROXY_DONE = 1,     /* a whole header: see struct proxy_header */
};

struct proxy_header {
    int version;                    /* 1 or 2 */
    size_t len;                     /* bytes of the header, to be dropped */
    int has_addr;                   /* 0: UNKNOWN / LOCAL / other family,
                                       keep the connection's own address */
    struct sockaddr_storage src;    /* the client, when has_addr */
    struct sockaddr_storage dst;    /* the address it connected to */
    const char *reason;             /* PROXY_ERROR: why, for the log */
};

/*
 * Looks for a PROXY header at the start of p[0..n). PROXY_NEED_MORE while
 * every byte so far can start a valid header and it is not complete;
 * PROXY_ERROR as soon as a byte cannot (h->reason says why), or a version
 * 1 line has no CR LF within PROXY_V1_MAX bytes, or a version 2 header
 * announces more than PROXY_V2_BODY_MAX bytes; PROXY_DONE with h filled.
 * Bytes after the header are not looked at.
 */
enum proxy_status proxy_parse(const uint8_t *p, size_t n,
                              struct proxy_header *h);

/* One --proxy-from entry: an address and how many leading bits count. */
struct proxy_net {
    int family;                     /* AF_INET or AF_INET6 */
    uint8_t addr[16];               /* 4 or 16 bytes used, host bits zero */
    unsigned prefix;                /* 0-32 or 0-128 */
};

/* "ADDR" or "ADDR/PREFIX", IPv4 or IPv6. 0, or -1 when it does not parse. */
int proxy_net_parse(const char *s, struct proxy_net *net);

/* 1 when the peer sa is inside one of nets[0..n). An IPv4-mapped IPv6
 * peer (::ffff:a.b.c.d) matches IPv4 entries too. */
int proxy_net_match(const struct proxy_net *nets, size_t n,
                    const struct sockaddr *sa);

#endif
