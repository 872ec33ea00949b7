/*
 * smtp_proxy.c - the PROXY protocol header a load balancer sends before the
 * client's bytes (version 1: one text line; version 2: a binary block),
 * and matching a peer against the --proxy-from list. Bytes in, a verdict
 * out: no I/O, no allocation, so it is unit-tested prefix by prefix and
 * fuzzed on its own. The session decides what to do with the verdict.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "smtp_proxy.h"

static const char proxy_v1_sig[] = "PROXY ";
#define PROXY_V1_SIG_LEN (sizeof(proxy_v1_sig) - 1)
static const uint8_t proxy_v2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

enum { PROXY_V2_LOCAL = 0x0, PROXY_V2_PROXY = 0x1 };
enum { PROXY_AF_UNSPEC, PROXY_AF_INET, PROXY_AF_INET6, PROXY_AF_UNIX };
#define PROXY_V2_STREAM 0x1

static enum proxy_status proxy_fail(struct proxy_header *h, const char *why)
{
    h->reason = why;
    return PROXY_ERROR;
}

/* The n bytes we have agree with the first n bytes of sig. */
static int proxy_prefix_ok(const uint8_t *p, size_t n, const void *sig,
                           size_t sig_len)
{
    return memcmp(p, sig, n < sig_len ? n : sig_len) == 0;
}

static void proxy_fill(struct sockaddr_storage *ss, int family,
                       const void *addr, uint16_t port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        a4->sin_family = AF_INET;
        memcpy(&a4->sin_addr, addr, 4);
        a4->sin_port = htons(port);
    } else {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        memcpy(&a6->sin6_addr, addr, 16);
        a6->sin6_port = htons(port);
    }
}

/* ---- version 1: "PROXY TCP4 SRC DST SPORT DPORT\r\n" ------------------ */

/* Decimal 0-65535, no sign, no leading zero. */
static int proxy_v1_port(const char *s, uint16_t *port)
{
    size_t len = strlen(s);
    unsigned v = 0;
    if (len == 0 || len > 5 || (s[0] == '0' && len > 1))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* Splits s at single spaces into exactly want fields, none empty. */
static int proxy_v1_split(char *s, char **field, int want)
{
    int n = 0;
    for (;;) {
        if (n == want || *s == '\0' || *s == ' ')
            return -1;
        field[n++] = s;
        char *sp = strchr(s, ' ');
        if (sp == NULL)
            return n == want ? 0 : -1;
        *sp = '\0';
        s = sp + 1;
    }
}

/* rest: the line after "PROXY ", without CR LF, NUL-terminated. */
static enum proxy_status proxy_v1_fields(char *rest, struct proxy_header *h)
{
    if (strncmp(rest, "UNKNOWN", 7) == 0 && (rest[7] == '\0' || rest[7] == ' '))
        return PROXY_DONE;      /* whatever follows is to be ignored */
    char *f[5];
    if (proxy_v1_split(rest, f, 5) < 0)
        return proxy_fail(h, "version 1 line without 5 fields");
    int family;
    if (strcmp(f[0], "TCP4") == 0)
        family = AF_INET;
    else if (strcmp(f[0], "TCP6") == 0)
        family = AF_INET6;
    else
        return proxy_fail(h, "version 1 protocol not TCP4, TCP6 or UNKNOWN");
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    if (inet_pton(family, f[1], src) != 1 || inet_pton(family, f[2], dst) != 1)
        return proxy_fail(h, "version 1 address does not parse");
    if (proxy_v1_port(f[3], &sport) < 0 || proxy_v1_port(f[4], &dport) < 0)
        return proxy_fail(h, "version 1 port does not parse");
    proxy_fill(&h->src, family, src, sport);
    proxy_fill(&h->dst, family, dst, dport);
    h->has_addr = 1;
    return PROXY_DONE;
}

static enum proxy_status proxy_parse_v1(const uint8_t *p, size_t n,
                                        struct proxy_header *h)
{
    if (!proxy_prefix_ok(p, n, proxy_v1_sig, PROXY_V1_SIG_LEN))
        return proxy_fail(h, "no PROXY header");
    const uint8_t *lf = memchr(p, '\n', n < PROXY_V1_MAX ? n : PROXY_V1_MAX);
    if (lf == NULL)
        return n >= PROXY_V1_MAX ? proxy_fail(h, "version 1 line too long")
                                 : PROXY_NEED_MORE;
    size_t len = (size_t)(lf - p) + 1;
    if (p[len - 2] != '\r')
        return proxy_fail(h, "version 1 line without CR LF");
    if (memchr(p, '\0', len) != NULL)
        return proxy_fail(h, "version 1 line with a NUL byte");
    char line[PROXY_V1_MAX + 1];
    memcpy(line, p, len - 2);
    line[len - 2] = '\0';
    h->version = 1;
    h->len = len;
    return proxy_v1_fields(line + PROXY_V1_SIG_LEN, h);
}

/* ---- version 2: 16 fixed bytes, addresses, TLVs ------------------------ */

/* TLVs (type, 2-byte length, value) must fill the rest exactly; we use
 * none of them, but a malformed list means a malformed header. */
static int proxy_v2_tlvs_ok(const uint8_t *p, size_t n)
{
    while (n >= 3) {
        size_t len = (size_t)p[1] << 8 | p[2];
        if (3 + len > n)
            return 0;
        p += 3 + len;
        n -= 3 + len;
    }
    return n == 0;
}

static enum proxy_status proxy_v2_address(uint8_t fam_proto, const uint8_t *body,
                                          size_t len, struct proxy_header *h)
{
    unsigned fam = fam_proto >> 4, proto = fam_proto & 0xF;
    size_t alen = 2;    /* per address; the two ports take 4 */
    if (fam == PROXY_AF_UNSPEC || fam == PROXY_AF_UNIX)
        return PROXY_DONE;      /* no IP client: keep the connection's */
    if (fam == PROXY_AF_INET)
        alen = 4;
    else if (fam == PROXY_AF_INET6)
        alen = 16;
    else
        return proxy_fail(h, "version 2 address family unknown");
    if (proto != PROXY_V2_STREAM)
        return proxy_fail(h, "version 2 protocol not a stream");
    if (len < 2 * alen + 4)
        return proxy_fail(h, "version 2 addresses cut short");
    if (!proxy_v2_tlvs_ok(body + 2 * alen + 4, len - 2 * alen - 4))
        return proxy_fail(h, "version 2 TLVs malformed");
    int family = alen == 4 ? AF_INET : AF_INET6;
    const uint8_t *ports = body + 2 * alen;
    proxy_fill(&h->src, family, body, (uint16_t)(ports[0] << 8 | ports[1]));
    proxy_fill(&h->dst, family, body + alen, (uint16_t)(ports[2] << 8 | ports[3]));
    h->has_addr = 1;
    return PROXY_DONE;
}

static enum proxy_status proxy_parse_v2(const uint8_t *p, size_t n,
                                        struct proxy_header *h)
{
    if (!proxy_prefix_ok(p, n, proxy_v2_sig, sizeof(proxy_v2_sig)))
        return proxy_fail(h, "no PROXY header");
    if (n > 12 && (p[12] >> 4) != 2)
        return proxy_fail(h, "version 2 header with another version");
    if (n > 12 && (p[12] & 0xF) != PROXY_V2_LOCAL && (p[12] & 0xF) != PROXY_V2_PROXY)
        return proxy_fail(h, "version 2 command unknown");
    if (n < PROXY_V2_FIXED)
        return PROXY_NEED_MORE;
    size_t body = (size_t)p[14] << 8 | p[15];
    if (body > PROXY_V2_BODY_MAX)
        return proxy_fail(h, "version 2 header too long");
    if (n < PROXY_V2_FIXED + body)
        return PROXY_NEED_MORE;
    h->version = 2;
    h->len = PROXY_V2_FIXED + body;
    if ((p[12] & 0xF) == PROXY_V2_LOCAL)
        return PROXY_DONE;      /* the balancer's own connection */
    return proxy_v2_address(p[13], p + PROXY_V2_FIXED, body, h);
}

enum proxy_status proxy_parse(const uint8_t *p, size_t n, struct proxy_header *h)
{
    memset(h, 0, sizeof(*h));
    if (n == 0)
        return PROXY_NEED_MORE;
    if (p[0] == 'P')
        return proxy_parse_v1(p, n, h);
    if (p[0] == '\r')
        return proxy_parse_v2(p, n, h);
    return proxy_fail(h, "no PROXY header");
}

/* ---- --proxy-from ------------------------------------------------------ */

static int proxy_net_prefix(const char *s, unsigned max, unsigned *prefix)
{
    size_t len = strlen(s);
    unsigned v = 0;
    if (len == 0 || len > 3)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *prefix = v;
    return 0;
}

int proxy_net_parse(const char *s, struct proxy_net *net)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(addr))
        return -1;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    memset(net, 0, sizeof(*net));
    if (inet_pton(AF_INET, addr, net->addr) == 1)
        net->family = AF_INET;
    else if (inet_pton(AF_INET6, addr, net->addr) == 1)
        net->family = AF_INET6;
    else
        return -1;
    unsigned max = net->family == AF_INET ? 32 : 128;
    net->prefix = max;
    if (slash && proxy_net_prefix(slash + 1, max, &net->prefix) < 0)
        return -1;
    return 0;
}

/* The first bits of a and b are equal. */
static int proxy_bits_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    size_t whole = bits / 8;
    unsigned rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xFF << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int proxy_net_match(const struct proxy_net *nets, size_t n,
                    const struct sockaddr *sa)
{
    uint8_t a4[4], a6[16];
    int have4 = 0, have6 = 0;
    if (sa->sa_family == AF_INET) {
        memcpy(a4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        have4 = 1;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        memcpy(a6, in6, 16);
        have6 = 1;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            memcpy(a4, a6 + 12, 4);
            have4 = 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (nets[i].family == AF_INET && have4
            && proxy_bits_equal(a4, nets[i].addr, nets[i].prefix))
            return 1;
        if (nets[i].family == AF_INET6 && have6
            && proxy_bits_equal(a6, nets[i].addr, nets[i].prefix))
            return 1;
    }
    return 0;
}
