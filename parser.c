/*
 * parser.c - SMTP bytes in, commands, paths and DATA body bytes out.
 * Owns line framing and its limits, verb splitting, MAIL/RCPT path and
 * parameter syntax, local-part rules (README.md, "Mailboxes and users") and the DATA end/unstuffing
 * machine. No I/O, no allocation, no global state; any input is safe.
 */
#include "parser.h"
#include "smtp_utf8.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* ---- small character helpers (ASCII only, no locale) ------------------ */

static int parser_is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int parser_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static unsigned char parser_upper(unsigned char c)
{
    return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 'a' + 'A') : c;
}

/* Case-insensitive: does s[0..len) start with the uppercase word w? */
static int parser_has_prefix(const char *s, size_t len, const char *w)
{
    size_t wl = strlen(w);

    if (len < wl)
        return 0;
    for (size_t i = 0; i < wl; i++)
        if (parser_upper((unsigned char)s[i]) != (unsigned char)w[i])
            return 0;
    return 1;
}

/* ---- line framing ------------------------------------------------------ */

/* While skipping, everything up to and including the next LF is dropped. */
static enum line_status parser_skip_line(struct line_reader *lr,
                                         const uint8_t *p, size_t n,
                                         size_t *consumed)
{
    const uint8_t *lf = memchr(p, '\n', n);

    if (!lf) {
        *consumed = n;
        return LINE_NEED_MORE;
    }
    lr->skipping = 0;
    *consumed = (size_t)(lf - p) + 1;
    return LINE_TOO_LONG;
}

enum line_status parser_next_line(struct line_reader *lr, const uint8_t *p,
                                  size_t n, size_t limit, size_t *consumed,
                                  size_t *line_len)
{
    const uint8_t *lf;
    size_t total;

    *consumed = 0;
    *line_len = 0;
    if (lr->skipping)
        return parser_skip_line(lr, p, n, consumed);
    lf = memchr(p, '\n', n);
    if (!lf) {
        /* The line already fills the limit without its LF: it can only
         * end too long, so drop it as it comes instead of buffering it. */
        if (n >= limit) {
            lr->skipping = 1;
            *consumed = n;
        }
        return LINE_NEED_MORE;
    }
    total = (size_t)(lf - p) + 1;   /* the line with its LF (and CR) */
    *consumed = total;
    if (total > limit)
        return LINE_TOO_LONG;
    *line_len = total - 1;
    if (*line_len > 0 && p[*line_len - 1] == '\r')
        (*line_len)--;
    return LINE_READY;
}

int parser_is_auth_line(const uint8_t *p, size_t n)
{
    /* Shorter than "AUTH " it cannot matter: the normal limit is larger. */
    return n >= 5 && parser_has_prefix((const char *)p, n, "AUTH ");
}

/* ---- commands ----------------------------------------------------------- */

static const char *const parser_verbs[] = {
    [VERB_HELO] = "HELO", [VERB_EHLO] = "EHLO", [VERB_MAIL] = "MAIL",
    [VERB_RCPT] = "RCPT", [VERB_DATA] = "DATA", [VERB_RSET] = "RSET",
    [VERB_NOOP] = "NOOP", [VERB_QUIT] = "QUIT", [VERB_VRFY] = "VRFY",
    [VERB_HELP] = "HELP", [VERB_EXPN] = "EXPN", [VERB_AUTH] = "AUTH",
    [VERB_BDAT] = "BDAT",
};

static enum smtp_verb parser_find_verb(const char *line, size_t len)
{
    /* The one long verb (RFC 3207); every other is exactly four letters:
     * "HELOX" is not HELO. */
    if (len >= 8 && (len == 8 || line[8] == ' ')
        && parser_has_prefix(line, 8, "STARTTLS"))
        return VERB_STARTTLS;
    if (len < 4 || (len > 4 && line[4] != ' '))
        return VERB_UNKNOWN;
    for (int v = 0; v < VERB_STARTTLS; v++)
        if (parser_has_prefix(line, 4, parser_verbs[v]))
            return (enum smtp_verb)v;
    return VERB_UNKNOWN;
}

void parser_command(const char *line, size_t len, struct smtp_command *cmd)
{
    size_t start, end = len;

    cmd->has_nul = memchr(line, '\0', len) != NULL;
    cmd->verb = parser_find_verb(line, len);
    cmd->arg = "";
    cmd->arg_len = 0;
    if (cmd->verb == VERB_UNKNOWN)
        return;
    start = cmd->verb == VERB_STARTTLS ? 8 : 4;
    while (start < len && line[start] == ' ')
        start++;
    while (end > start && line[end - 1] == ' ')
        end--;
    if (end > start) {
        cmd->arg = line + start;
        cmd->arg_len = end - start;
    }
}

/* ---- local-parts and domains ----------------------------------------- */

static int parser_local_char_ok(unsigned char c)
{
    return parser_is_alpha(c) || parser_is_digit(c) || c == '.' ||
           c == '_' || c == '+' || c == '-';
}

/* Characters, not bytes: a non-ASCII one is valid UTF-8 and no C1
 * control (U+0080-U+009F). */
enum path_status parser_local_part_check(const char *s, size_t len)
{
    if (!utf8_valid(s, len))
        return PATH_BAD_UTF8;
    if (len < 1 || len > SMTP_LOCAL_MAX)
        return PATH_BAD_LOCAL;
    if (s[0] == '.' || s[len - 1] == '.')
        return PATH_BAD_LOCAL;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_char((const unsigned char *)s + i, len - i, &cp);
        if (cp >= 0x80 ? cp <= 0x9F : !parser_local_char_ok((unsigned char)cp))
            return PATH_BAD_LOCAL;
        if (s[i] == '.' && s[i + 1] == '.')   /* s[len-1] is not '.' */
            return PATH_BAD_LOCAL;
        i += n;
    }
    return PATH_OK;
}

int parser_local_part_ok(const char *s, size_t len)
{
    return parser_local_part_check(s, len) == PATH_OK;
}

/* RFC 5321 sub-domain: Let-dig [Ldh-str], at most 63 octets (RFC 1035). */
static int parser_label_ok(const char *s, size_t len)
{
    if (len < 1 || len > 63)
        return 0;
    if (s[0] == '-' || s[len - 1] == '-')
        return 0;
    if (!utf8_valid(s, len))
        return 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;    /* non-ASCII: a U-label's UTF-8 (RFC 6531), no C1 */
        size_t n = utf8_char((const unsigned char *)s + i, len - i, &cp);
        if (cp >= 0x80 ? cp <= 0x9F
                       : !parser_is_alpha((unsigned char)cp)
                         && !parser_is_digit((unsigned char)cp) && cp != '-')
            return 0;
        i += n;
    }
    return 1;
}

/* Dot-separated labels; the caller has already stripped a trailing dot. */
static int parser_hostname_ok(const char *s, size_t len)
{
    size_t start = 0;

    if (len < 1 || len > SMTP_DOMAIN_MAX)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (!parser_label_ok(s + start, i - start))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]"; inet_pton does the real check. */
static int parser_literal_ok(const char *s, size_t len)
{
    char ip[64];
    unsigned char bin[16];
    int family = AF_INET;

    if (len < 3 || s[0] != '[' || s[len - 1] != ']')
        return 0;
    s++;
    len -= 2;
    if (parser_has_prefix(s, len, "IPV6:")) {
        family = AF_INET6;
        s += 5;
        len -= 5;
    }
    if (len < 1 || len >= sizeof(ip) || memchr(s, '\0', len))
        return 0;
    memcpy(ip, s, len);
    ip[len] = '\0';
    return inet_pton(family, ip, bin) == 1;
}

/* Checks s[0..len) as a domain and stores it, minus one trailing dot. */
static enum path_status parser_take_domain(const char *s, size_t len,
                                           struct smtp_path *path)
{
    if (len > 0 && s[0] == '[') {
        if (len > SMTP_DOMAIN_MAX || !parser_literal_ok(s, len))
            return PATH_BAD_DOMAIN;
    } else {
        if (len > 1 && s[len - 1] == '.')
            len--;
        if (!parser_hostname_ok(s, len))
            return PATH_BAD_DOMAIN;
    }
    memcpy(path->domain, s, len);
    path->domain[len] = '\0';
    return PATH_OK;
}

/* ---- paths ------------------------------------------------------------ */

/*
 * Skips an RFC 5321 source route "@a,@b:" at s[0..len) (RFC 5321 C says
 * to ignore it). Returns how many bytes it used; 0 means not a valid route.
 */
static size_t parser_skip_route(const char *s, size_t len, int *bad_domain)
{
    size_t i = 0;

    *bad_domain = 0;
    while (i < len && s[i] == '@') {
        size_t start = ++i;
        while (i < len && s[i] != ',' && s[i] != ':')
            i++;
        if (i == len)
            return 0;
        if (!parser_hostname_ok(s + start, i - start)) {
            *bad_domain = 1;
            return 0;
        }
        if (s[i++] == ':')
            return i;
    }
    return 0;
}

/* A mailbox without '@': only RCPT TO:<postmaster> (RFC 5321 4.5.1). */
static enum path_status parser_bare_local(const char *s, size_t len,
                                          int is_rcpt, struct smtp_path *path)
{
    if (is_rcpt && len == 10 && strncasecmp(s, "postmaster", 10) == 0) {
        memcpy(path->local, s, len);
        path->local[len] = '\0';
        return PATH_OK;
    }
    enum path_status st = parser_local_part_check(s, len);
    return st == PATH_OK ? PATH_BAD_DOMAIN : st;
}

/* "local@domain" in s[0..len), source route already removed. */
static enum path_status parser_mailbox(const char *s, size_t len, int is_rcpt,
                                       struct smtp_path *path)
{
    const char *at = memchr(s, '@', len);
    size_t local_len;

    if (!at)
        return parser_bare_local(s, len, is_rcpt, path);
    local_len = (size_t)(at - s);
    enum path_status st = parser_local_part_check(s, local_len);
    if (st != PATH_OK)
        return st;
    memcpy(path->local, s, local_len);
    path->local[local_len] = '\0';
    path->utf8 = utf8_has_8bit(s, len);
    /* A second '@' lands in the domain, where it is refused. */
    return parser_take_domain(at + 1, len - local_len - 1, path);
}

/* Parses "<...>" at *pp and leaves *pp just after the '>'. */
static enum path_status parser_path(const char **pp, int is_rcpt,
                                    struct smtp_path *path)
{
    const char *s = *pp, *gt;
    size_t len, skip;
    int bad_domain;

    if (*s != '<' || !(gt = strchr(s, '>')))
        return PATH_SYNTAX;
    s++;
    len = (size_t)(gt - s);
    *pp = gt + 1;
    if (len == 0) {
        path->null_path = 1;
        return is_rcpt ? PATH_SYNTAX : PATH_OK;
    }
    if (s[0] == '@') {
        skip = parser_skip_route(s, len, &bad_domain);
        if (skip == 0)
            return bad_domain ? PATH_BAD_DOMAIN : PATH_SYNTAX;
        s += skip;
        len -= skip;
    }
    return parser_mailbox(s, len, is_rcpt, path);
}

/* "FROM:" / "TO:" then optional spaces; returns where the path starts. */
static const char *parser_path_start(const char *arg, const char *word)
{
    size_t wl = strlen(word);

    if (!parser_has_prefix(arg, strnlen(arg, wl), word))
        return NULL;
    arg += wl;
    while (*arg == ' ')
        arg++;
    return arg;
}

/* ---- MAIL parameters (RFC 1870, 6152, 4954) --------------------------- */

static enum path_status parser_size_param(const char *v, size_t len,
                                          struct mail_params *params)
{
    uint64_t size = 0;

    if (len < 1)
        return PATH_BAD_PARAM;
    /* A number too large for 64 bits is still a size: it saturates, and
     * the session answers 552 as for any size over the limit. */
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)((unsigned char)v[i] - '0');
        if (d > 9)
            return PATH_BAD_PARAM;
        size = size > (UINT64_MAX - d) / 10 ? UINT64_MAX : size * 10 + d;
    }
    params->has_size = 1;
    params->size = size;
    return PATH_OK;
}

static enum path_status parser_body_param(const char *v, size_t len,
                                          struct mail_params *params)
{
    if (len == 4 && parser_has_prefix(v, len, "7BIT")) {
        params->body_8bit = 0;
        return PATH_OK;
    }
    if (len == 8 && parser_has_prefix(v, len, "8BITMIME")) {
        params->body_8bit = 1;
        return PATH_OK;
    }
    return PATH_BAD_PARAM;
}

/* One "KEYWORD=value" token s[0..len). */
static enum path_status parser_mail_param(const char *s, size_t len,
                                          struct mail_params *params)
{
    if (len == 8 && parser_has_prefix(s, len, "SMTPUTF8")) {
        params->smtputf8 = 1;
        return PATH_OK;
    }
    if (len == 10 && parser_has_prefix(s, len, "REQUIRETLS")) {
        params->requiretls = 1;
        return PATH_OK;
    }
    if (len < 5 || s[4] != '=')
        return PATH_BAD_PARAM;
    if (parser_has_prefix(s, len, "SIZE"))
        return parser_size_param(s + 5, len - 5, params);
    if (parser_has_prefix(s, len, "BODY"))
        return parser_body_param(s + 5, len - 5, params);
    if (parser_has_prefix(s, len, "AUTH"))
        return PATH_OK;     /* RFC 4954 5: may be ignored */
    return PATH_BAD_PARAM;
}

/* What follows the '>': nothing, or space-separated parameters. */
static enum path_status parser_params(const char *s, int is_rcpt,
                                      struct mail_params *params)
{
    if (*s != '\0' && *s != ' ')
        return PATH_SYNTAX;
    for (;;) {
        size_t len;
        enum path_status st;

        while (*s == ' ')
            s++;
        if (*s == '\0')
            return PATH_OK;
        if (is_rcpt)
            return PATH_BAD_PARAM;
        len = strcspn(s, " ");
        st = parser_mail_param(s, len, params);
        if (st != PATH_OK)
            return st;
        s += len;
    }
}

static enum path_status parser_path_arg(const char *arg, const char *word,
                                        int is_rcpt, struct smtp_path *path,
                                        struct mail_params *params)
{
    const char *s = parser_path_start(arg, word);
    enum path_status st;

    memset(path, 0, sizeof(*path));
    if (params)
        memset(params, 0, sizeof(*params));
    if (!s)
        return PATH_SYNTAX;
    st = parser_path(&s, is_rcpt, path);
    if (st != PATH_OK)
        return st;
    return parser_params(s, is_rcpt, params);
}

enum path_status parser_mail_from(const char *arg, struct smtp_path *path,
                                  struct mail_params *params)
{
    return parser_path_arg(arg, "FROM:", 0, path, params);
}

enum path_status parser_rcpt_to(const char *arg, struct smtp_path *path)
{
    return parser_path_arg(arg, "TO:", 1, path, NULL);
}

/* ---- DATA ------------------------------------------------------------- */

/*
 * Only CR LF starts a line; a dot there is dropped (unstuffing), and
 * "." CR LF right after it ends the data. The CR after such a dot is held
 * in the state until the next byte says whether it is the terminator.
 */
enum data_state {
    DATA_LINE_START,   /* just after CR LF (or at the very start) */
    DATA_IN_LINE,
    DATA_CR,           /* a CR was output; LF would start a line */
    DATA_DOT,          /* a line-start dot was swallowed */
    DATA_DOT_CR,       /* dot then CR; the CR is held back, not output */
    DATA_DONE,         /* CR LF . CR LF seen */
};

void data_parser_init(struct data_parser *dp)
{
    dp->state = DATA_LINE_START;
}

/* Ordinary byte handling once no dot is pending. */
static enum data_state data_plain(enum data_state st, uint8_t c,
                                  uint8_t *out, size_t *o)
{
    out[(*o)++] = c;
    if (c == '\r')
        return DATA_CR;
    if (c == '\n' && st == DATA_CR)
        return DATA_LINE_START;
    return DATA_IN_LINE;
}

static enum data_state data_step(enum data_state st, uint8_t c,
                                 uint8_t *out, size_t *o)
{
    switch (st) {
    case DATA_LINE_START:
        if (c == '.')
            return DATA_DOT;
        return data_plain(DATA_IN_LINE, c, out, o);
    case DATA_DOT:
        if (c == '\r')
            return DATA_DOT_CR;
        return data_plain(DATA_IN_LINE, c, out, o);
    case DATA_DOT_CR:
        if (c == '\n')
            return DATA_DONE;
        out[(*o)++] = '\r';           /* the held CR was body after all */
        return data_plain(DATA_CR, c, out, o);
    case DATA_CR:
        return data_plain(DATA_CR, c, out, o);
    default:
        return data_plain(DATA_IN_LINE, c, out, o);
    }
}

size_t data_parser_feed(struct data_parser *dp, const uint8_t *in, size_t n,
                        uint8_t *out, size_t *out_len, int *done)
{
    enum data_state st = (enum data_state)dp->state;
    size_t i = 0, o = 0;

    *done = st == DATA_DONE;
    while (!*done && i < n) {
        if (st == DATA_IN_LINE) {
            /* Inside a line only a CR can change the state: copy the run
             * up to it at once instead of a step per byte. */
            const uint8_t *cr = memchr(in + i, '\r', n - i);
            size_t run = cr ? (size_t)(cr - (in + i)) : n - i;
            memcpy(out + o, in + i, run);
            i += run;
            o += run;
            if (cr == NULL)
                break;
        }
        st = data_step(st, in[i++], out, &o);
        *done = st == DATA_DONE;
    }
    dp->state = (int)st;
    *out_len = o;
    return i;
}
