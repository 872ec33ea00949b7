/*
 * metrics_http.c - the metrics endpoint's request parser: a request line
 * and header lines, checked one whole line at a time. Pure: no I/O, no
 * allocation; the caller owns the buffer and keeps the state between
 * calls (metrics_http.h).
 */
#include "metrics_http.h"

#include <stdbool.h>
#include <string.h>

/* RFC 9110 5.6.2: the characters of a token (method, header name). */
static bool http_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A target byte: visible ASCII, no space. */
static bool http_target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/* Length of a token at p[0..n), 0 when none. */
static size_t http_token_len(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && http_tchar((unsigned char)p[i]))
        i++;
    return i;
}

static enum metrics_http_method http_method(const char *p, size_t n)
{
    if (n == 3 && memcmp(p, "GET", 3) == 0)
        return METRICS_HTTP_GET;
    if (n == 4 && memcmp(p, "HEAD", 4) == 0)
        return METRICS_HTTP_HEAD;
    return METRICS_HTTP_OTHER;
}

/* "METHOD SP /target SP HTTP/1.d", the line without its end. */
static bool http_request_line(struct metrics_http_req *r, const char *line,
                              size_t n)
{
    size_t m = http_token_len(line, n), t, end;

    if (m == 0 || m == n || line[m] != ' ')
        return false;
    r->method = http_method(line, m);
    t = m + 1;
    end = t;
    while (end < n && http_target_char((unsigned char)line[end]))
        end++;
    if (end == t || line[t] != '/' || end == n || line[end] != ' ')
        return false;
    r->path_off = t;
    r->path_len = end - t;
    const char *q = memchr(line + t, '?', end - t);
    if (q != NULL)
        r->path_len = (size_t)(q - (line + t));
    end++;
    return n - end == 8 && memcmp(line + end, "HTTP/1.", 7) == 0
           && line[end + 7] >= '0' && line[end + 7] <= '9';
}

/* "Name: value": a token, a colon, then visible bytes, spaces and tabs
 * (RFC 9110 5.5: no CR, LF or NUL in a value; no folding). */
static bool http_header_line(const char *line, size_t n)
{
    size_t name = http_token_len(line, n);

    if (name == 0 || name == n || line[name] != ':')
        return false;
    for (size_t i = name + 1; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\0' || c == '\r' || (c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Checks one whole line (its end removed). Returns false when it is bad;
 * sets *blank on the blank line that ends the request. */
static bool http_line(struct metrics_http_req *r, const char *buf,
                      size_t start, size_t n, bool *blank)
{
    const char *line = buf + start;

    *blank = false;
    if (start == 0)
        return http_request_line(r, line, n);
    if (n == 0) {
        *blank = true;
        return true;
    }
    return http_header_line(line, n);
}

enum metrics_http_status metrics_http_parse(struct metrics_http_req *r,
                                            const char *buf, size_t n)
{
    size_t limit = n < METRICS_HTTP_MAX ? n : METRICS_HTTP_MAX;

    while (r->scanned < limit) {
        const char *lf = memchr(buf + r->scanned, '\n', limit - r->scanned);
        if (lf == NULL)
            break;
        size_t end = (size_t)(lf - buf);
        size_t len = end - r->scanned;
        if (len > 0 && buf[end - 1] == '\r')
            len--;
        bool blank;
        if (!http_line(r, buf, r->scanned, len, &blank))
            return METRICS_HTTP_ERROR;
        r->scanned = end + 1;
        if (blank) {
            r->len = r->scanned;
            return METRICS_HTTP_DONE;
        }
    }
    return n >= METRICS_HTTP_MAX ? METRICS_HTTP_ERROR : METRICS_HTTP_NEED_MORE;
}
