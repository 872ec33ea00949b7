/*
 * metrics_http.h - the request side of the metrics endpoint's HTTP/1.x:
 * the request line and the header lines, up to the blank line that ends
 * them. Pure: bytes in, a verdict out; no I/O, no allocation, any bytes
 * may be fed (fuzz/fuzz_http.c does).
 */
#ifndef METRICS_HTTP_H
#define METRICS_HTTP_H

#include <stddef.h>

/* The longest request (request line and headers, blank line included). */
#define METRICS_HTTP_MAX 8192

enum metrics_http_status {
    METRICS_HTTP_ERROR = -1,    /* malformed or longer than the limit: 400 */
    METRICS_HTTP_NEED_MORE = 0,
    METRICS_HTTP_DONE = 1,      /* a whole request: see the struct */
};

enum metrics_http_method {
    METRICS_HTTP_GET,
    METRICS_HTTP_HEAD,
    METRICS_HTTP_OTHER,         /* a well-formed method we do not serve */
};

/*
 * One request being parsed. Zero it before the first call, then hand
 * the same struct and the same growing buffer to every call: lines
 * already checked are not looked at again, so feeding a request a byte
 * at a time costs no more than feeding it at once.
 */
struct metrics_http_req {
    size_t scanned;                 /* bytes of whole lines checked */
    enum metrics_http_method method;
    size_t path_off, path_len;      /* the target, without "?query" */
    size_t len;                     /* DONE: bytes up to the blank line */
};

/*
 * Parses buf[0..n), which starts with the bytes of earlier calls.
 * Lines end with LF, optionally preceded by CR. NEED_MORE while every
 * whole line so far is valid and no blank line has come; ERROR as soon
 * as a whole line is not (a request line other than "METHOD /path
 * HTTP/1.x", a header without a name and a colon, a NUL, a folded
 * line), or when no blank line comes within METRICS_HTTP_MAX bytes;
 * DONE with method, path and len set. Bytes after the blank line (a
 * body) are not looked at.
 */
enum metrics_http_status metrics_http_parse(struct metrics_http_req *r,
                                            const char *buf, size_t n);

#endif
