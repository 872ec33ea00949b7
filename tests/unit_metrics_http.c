/*
 * unit_metrics_http.c - metrics_http.c: requests fed whole, a byte at a
 * time and cut at every length (each cut must say "need more"); methods
 * and paths; malformed and oversized requests. Also metrics.c's replies
 * for each kind of request (metrics_answer), without sockets.
 */
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "metrics_http.h"
#include "unit.h"

static const char prometheus_request[] =
    "GET /metrics HTTP/1.1\r\n"
    "Host: 127.0.0.1:9100\r\n"
    "User-Agent: Prometheus/2.42.0\r\n"
    "Accept: application/openmetrics-text;version=1.0.0,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
    "Accept-Encoding: gzip\r\n"
    "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n"
    "\r\n";

static enum metrics_http_status parse_all(const char *s, size_t n,
                                          struct metrics_http_req *r)
{
    memset(r, 0, sizeof(*r));
    return metrics_http_parse(r, s, n);
}

static void test_whole(void)
{
    struct metrics_http_req r;
    size_t n = strlen(prometheus_request);
    CHECK_EQ_INT(parse_all(prometheus_request, n, &r), METRICS_HTTP_DONE);
    CHECK_EQ_INT(r.method, METRICS_HTTP_GET);
    CHECK_EQ_INT(r.len, n);
    CHECK_EQ_INT(r.path_len, 8);
    CHECK_MEM(prometheus_request + r.path_off, "/metrics", 8);
}

/* Every prefix, parsed from scratch, needs more. */
static void test_every_prefix(void)
{
    struct metrics_http_req r;
    size_t n = strlen(prometheus_request);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(parse_all(prometheus_request, i, &r),
                     METRICS_HTTP_NEED_MORE);
}

/* The same state fed one more byte each time. */
static void test_byte_at_a_time(void)
{
    struct metrics_http_req r;
    size_t n = strlen(prometheus_request);
    memset(&r, 0, sizeof(r));
    for (size_t i = 1; i < n; i++)
        CHECK_EQ_INT(metrics_http_parse(&r, prometheus_request, i),
                     METRICS_HTTP_NEED_MORE);
    CHECK_EQ_INT(metrics_http_parse(&r, prometheus_request, n),
                 METRICS_HTTP_DONE);
    CHECK_EQ_INT(r.len, n);
    CHECK_EQ_INT(r.method, METRICS_HTTP_GET);
}

static void test_methods_and_paths(void)
{
    static const struct {
        const char *req;
        int method;
        const char *path;
    } ok[] = {
        { "GET /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_GET, "/metrics" },
        { "HEAD /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_HEAD, "/metrics" },
        { "POST /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_OTHER, "/metrics" },
        { "DELETE / HTTP/1.0\r\n\r\n", METRICS_HTTP_OTHER, "/" },
        { "get /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_OTHER, "/metrics" },
        { "GET /metrics?x=1&y HTTP/1.1\n\n", METRICS_HTTP_GET, "/metrics" },
        { "GET /other HTTP/1.1\nHost: a\n\n", METRICS_HTTP_GET, "/other" },
        { "GET /a:b HTTP/1.1\r\nX-Empty:\r\n\r\n", METRICS_HTTP_GET, "/a:b" },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct metrics_http_req r;
        CHECK_EQ_INT(parse_all(ok[i].req, strlen(ok[i].req), &r),
                     METRICS_HTTP_DONE);
        CHECK_EQ_INT(r.method, ok[i].method);
        CHECK_EQ_INT(r.path_len, strlen(ok[i].path));
        CHECK_MEM(ok[i].req + r.path_off, ok[i].path, strlen(ok[i].path));
    }
}

/* A body after the blank line is not part of the request. */
static void test_bytes_after(void)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\n\r\nbody bytes";
    struct metrics_http_req r;
    CHECK_EQ_INT(parse_all(req, strlen(req), &r), METRICS_HTTP_DONE);
    CHECK_EQ_INT(r.len, strlen("GET /metrics HTTP/1.1\r\n\r\n"));
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/2.0\r\n\r\n", "GET /metrics HTTP/1.1 \r\n\r\n",
        "GET /metrics HTTP/1.x\r\n\r\n", "GET /me\x01trics HTTP/1.1\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n: no name\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nA: b\rc\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct metrics_http_req r;
        if (parse_all(bad[i], strlen(bad[i]), &r) != METRICS_HTTP_ERROR)
            fprintf(stderr, "accepted request %zu\n", i);
        CHECK_EQ_INT(parse_all(bad[i], strlen(bad[i]), &r), METRICS_HTTP_ERROR);
    }
    static const char nul[] = "GET /metrics HTTP/1.1\r\nA: \0\r\n\r\n";
    struct metrics_http_req r;
    CHECK_EQ_INT(parse_all(nul, sizeof(nul) - 1, &r), METRICS_HTTP_ERROR);
}

/* A request of exactly METRICS_HTTP_MAX bytes passes; one byte more, or
 * that many bytes without a blank line, does not. */
static void test_size_limit(void)
{
    static const char head[] = "GET /metrics HTTP/1.1\r\nX: ";
    char *buf = malloc(METRICS_HTTP_MAX + 2);
    size_t fill = METRICS_HTTP_MAX - (sizeof(head) - 1) - 4;
    struct metrics_http_req r;
    memcpy(buf, head, sizeof(head) - 1);
    memset(buf + sizeof(head) - 1, 'a', fill);
    memcpy(buf + METRICS_HTTP_MAX - 4, "\r\n\r\n", 4);
    CHECK_EQ_INT(parse_all(buf, METRICS_HTTP_MAX, &r), METRICS_HTTP_DONE);
    CHECK_EQ_INT(r.len, METRICS_HTTP_MAX);
    memset(buf + sizeof(head) - 1, 'a', fill + 1);
    memcpy(buf + METRICS_HTTP_MAX - 3, "\r\n\r\n", 4);
    CHECK_EQ_INT(parse_all(buf, METRICS_HTTP_MAX - 1, &r),
                 METRICS_HTTP_NEED_MORE);
    CHECK_EQ_INT(parse_all(buf, METRICS_HTTP_MAX, &r), METRICS_HTTP_ERROR);
    CHECK_EQ_INT(parse_all(buf, METRICS_HTTP_MAX + 1, &r), METRICS_HTTP_ERROR);
    free(buf);
}

static char reply[20000];

static size_t answer(const char *req)
{
    struct metrics_http_req r;
    enum metrics_http_status st = parse_all(req, strlen(req), &r);
    return metrics_answer(req, &r, st, reply, sizeof(reply));
}

static int starts(const char *s, size_t n, const char *prefix)
{
    return n >= strlen(prefix) && memcmp(s, prefix, strlen(prefix)) == 0;
}

static void test_answers(void)
{
    size_t n = answer("GET /metrics HTTP/1.1\r\n\r\n");
    CHECK(starts(reply, n, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; "
                 "version=0.0.4; charset=utf-8\r\nContent-Length: "));
    size_t head = answer("HEAD /metrics HTTP/1.1\r\n\r\n");
    CHECK(head > 0 && head < n);
    CHECK(starts(reply, head, "HTTP/1.1 200 OK\r\n"));
    CHECK_MEM(reply + head - 4, "\r\n\r\n", 4);
    n = answer("GET /x HTTP/1.1\r\n\r\n");
    CHECK(starts(reply, n, "HTTP/1.1 404 Not Found\r\n"));
    n = answer("PUT /metrics HTTP/1.1\r\n\r\n");
    CHECK(starts(reply, n, "HTTP/1.1 405 Method Not Allowed\r\n"
                 "Allow: GET, HEAD\r\n"));
    n = answer("nonsense\r\n\r\n");
    CHECK(starts(reply, n, "HTTP/1.1 400 Bad Request\r\n"));
    CHECK(strstr(reply, "Connection: close\r\n") != NULL);
}

UNIT_MAIN("metrics_http",
          { "whole", test_whole },
          { "every_prefix", test_every_prefix },
          { "byte_at_a_time", test_byte_at_a_time },
          { "methods_and_paths", test_methods_and_paths },
          { "bytes_after", test_bytes_after },
          { "malformed", test_malformed },
          { "size_limit", test_size_limit },
          { "answers", test_answers })
