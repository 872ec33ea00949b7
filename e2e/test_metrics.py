"""--metrics ADDR:PORT: the Prometheus endpoint over raw sockets (every
reply with its exact status line and headers, HEAD, 404, 405, 400 for an
oversize, malformed or slow request, the cap on connections), values
equal to `manager stats` on an idle server, each counter moved by what
it counts, `promtool check metrics` on the body, the shipped
docs/prometheus.yml and docs/alerts.yml checked by promtool, and a real
Prometheus scraping a server while it stores mail."""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import MANAGER_BIN, ROOT, free_port, greeted, send_mail

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
# metrics.h: METRICS_REQUEST_MS, METRICS_MAX_CONNS
REQUEST_SECONDS = 5
MAX_CONNS = 64


def metrics_server(start_server, *args, addr="127.0.0.1", **kw):
    port = free_port()
    where = "[%s]:%d" % (addr, port) if ":" in addr else "%s:%d" % (addr, port)
    srv = start_server("--metrics", where, *args, **kw)
    srv.metrics_port = port
    srv.metrics_addr = addr
    return srv


def connect_metrics(srv, timeout=10):
    family = socket.AF_INET6 if ":" in srv.metrics_addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((srv.metrics_addr, srv.metrics_port))
    return s


def read_all(s):
    """Everything until the server closes."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def http(srv, request, timeout=10):
    """Sends request, returns (status line, [header lines], body)."""
    with connect_metrics(srv, timeout) as s:
        s.sendall(request)
        data = read_all(s)
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data
    lines = head.split(b"\r\n")
    return lines[0], lines[1:], body


def get(srv, path="/metrics"):
    return http(srv, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())


def scrape(srv):
    """The samples of one GET /metrics: {'name{labels}': int or float}."""
    status, _, body = get(srv)
    assert status == b"HTTP/1.1 200 OK"
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = int(value) if value.isdigit() else float(value)
    return values


def manager_stats(srv):
    r = subprocess.run([MANAGER_BIN, "-p", str(srv.monitor_port), "stats"],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    return dict(line.split(": ", 1) for line in r.stdout.splitlines())


# ---- the replies ---------------------------------------------------------

def test_get_metrics_exact_headers_and_every_named_metric(start_server):
    srv = metrics_server(start_server)
    status, headers, body = get(srv)
    assert status == b"HTTP/1.1 200 OK"
    assert headers == [b"Content-Type: " + CONTENT_TYPE,
                       b"Content-Length: %d" % len(body),
                       b"Connection: close"]
    text = body.decode()
    for name, kind in [("smtpd_connections_total", "counter"),
                       ("smtpd_connections_current", "gauge"),
                       ("smtpd_bytes_total", "counter"),
                       ("smtpd_messages_total", "counter"),
                       ("smtpd_recipients_total", "counter"),
                       ("smtpd_auth_total", "counter"),
                       ("smtpd_tls_sessions_total", "counter"),
                       ("smtpd_refused_total", "counter"),
                       ("smtpd_build_info", "gauge"),
                       ("smtpd_uptime_seconds", "gauge")]:
        assert "\n# TYPE %s %s\n" % (name, kind) in "\n" + text, name
        assert re.search(r"^# HELP %s \S" % name, text, re.M), name
    values = scrape(srv)
    for result in ("stored", "rejected", "failed"):
        assert values['smtpd_messages_total{result="%s"}' % result] == 0
    for result in ("ok", "failed", "throttled"):
        assert values['smtpd_auth_total{result="%s"}' % result] == 0
    for reason in ("max_clients", "client_limit", "client_rate",
                   "message_rate", "proxy"):
        assert values['smtpd_refused_total{reason="%s"}' % reason] == 0
    tls = "no" if "built without TLS" in subprocess.run(
        [srv.cmd[0], "-v"], capture_output=True, text=True).stdout else "yes"
    assert 'smtpd_build_info{version="0.1",tls="%s"} 1\n' % tls in text


def test_head_is_get_without_the_body(start_server):
    srv = metrics_server(start_server)
    status, headers, body = http(srv, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert status == b"HTTP/1.1 200 OK"
    assert headers[0] == b"Content-Type: " + CONTENT_TYPE
    assert re.fullmatch(rb"Content-Length: [1-9][0-9]*", headers[1])
    assert headers[2:] == [b"Connection: close"]
    assert body == b""


def test_other_path_is_404(start_server):
    srv = metrics_server(start_server)
    for path in ("/", "/metricsx", "/metrics/", "/other"):
        status, headers, body = get(srv, path)
        assert status == b"HTTP/1.1 404 Not Found"
        assert b"Content-Length: %d" % len(body) in headers
        assert b"Connection: close" in headers


def test_other_method_is_405_with_allow(start_server):
    srv = metrics_server(start_server)
    for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS"):
        status, headers, body = http(
            srv, method + b" /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert status == b"HTTP/1.1 405 Method Not Allowed"
        assert b"Allow: GET, HEAD" in headers
        assert b"Content-Length: %d" % len(body) in headers
        assert b"Connection: close" in headers


def test_query_string_is_ignored(start_server):
    srv = metrics_server(start_server)
    status, _, _ = get(srv, "/metrics?module=smtp")
    assert status == b"HTTP/1.1 200 OK"


def test_request_over_8_kib_is_400_and_closed(start_server):
    srv = metrics_server(start_server)
    request = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
    status, headers, body = http(srv, request)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert b"Content-Length: %d" % len(body) in headers
    assert b"Connection: close" in headers


def test_request_of_exactly_8_kib_is_served(start_server):
    srv = metrics_server(start_server)
    head = b"GET /metrics HTTP/1.1\r\nX-Pad: "
    request = head + b"a" * (8192 - len(head) - 4) + b"\r\n\r\n"
    assert len(request) == 8192
    status, _, _ = http(srv, request)
    assert status == b"HTTP/1.1 200 OK"


def test_malformed_request_is_400(start_server):
    srv = metrics_server(start_server)
    for request in (b"hello\r\n\r\n", b"GET /metrics\r\n\r\n",
                    b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n"):
        status, headers, _ = http(srv, request)
        assert status == b"HTTP/1.1 400 Bad Request", request
        assert b"Connection: close" in headers


def test_request_sent_a_byte_at_a_time(start_server):
    srv = metrics_server(start_server)
    with connect_metrics(srv) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n":
            s.sendall(bytes([b]))
        data = read_all(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.slow
def test_slow_request_gets_400_and_close(start_server, connect):
    """Incomplete after REQUEST_SECONDS: 400, then the server closes. An
    SMTP client is served meanwhile."""
    srv = metrics_server(start_server)
    with connect_metrics(srv, timeout=REQUEST_SECONDS * 6) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        c = greeted(connect, srv)
        assert c.cmd("NOOP").startswith("250")
        data = read_all(s)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    assert b"\r\nConnection: close\r\n" in data


def test_client_that_leaves_early_costs_nothing(start_server):
    srv = metrics_server(start_server)
    for _ in range(5):
        with connect_metrics(srv) as s:
            s.sendall(b"GET /met")
    assert get(srv)[0] == b"HTTP/1.1 200 OK"


def test_connections_over_the_cap_are_closed_at_once(start_server, connect):
    srv = metrics_server(start_server)
    held = []
    try:
        for _ in range(MAX_CONNS):
            s = connect_metrics(srv)
            s.sendall(b"GET")
            held.append(s)
        # the server has taken all of them once this SMTP session is served
        c = greeted(connect, srv)
        assert c.cmd("NOOP").startswith("250")
        with connect_metrics(srv) as extra:
            assert read_all(extra) == b""
    finally:
        for s in held:
            s.close()
    # the held ones go away on their own (EOF); then one is served again
    deadline = time.monotonic() + 30
    while True:
        try:
            values = scrape(srv)
            break
        except (AssertionError, OSError):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert values["smtpd_metrics_refused_total"] >= 1


def test_ipv6_address_in_brackets(start_server):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:
        pytest.skip("no IPv6 loopback here: %s" % e)
    srv = metrics_server(start_server, addr="::1")
    assert scrape(srv)["smtpd_connections_current"] == 0


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:", ":9100",
                                   "::1:9100", "[::1]9100", "[127.0.0.1]:9100",
                                   "localhost:9100", "127.0.0.1:0",
                                   "127.0.0.1:65536", "[::1]:x"])
def test_bad_metrics_flag_exits_2(value, tmp_path):
    r = subprocess.run([os.environ.get("SMTPD_BIN", str(ROOT / "smtpd")),
                        "-f", str(tmp_path / "mail"), "--metrics", value],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert r.stderr.startswith("smtpd: bad --metrics"), r.stderr


def test_off_by_default(server):
    assert "metrics" not in server.log_text()
    assert "(HTTP)" not in server.log_text()


def test_usage_names_the_flag():
    r = subprocess.run([os.environ.get("SMTPD_BIN", str(ROOT / "smtpd")),
                        "-h"], capture_output=True, text=True, timeout=10)
    assert "--metrics ADDR:PORT" in r.stdout


# ---- the values ---------------------------------------------------------

PAIRS = [("historical connections", "smtpd_connections_total"),
         ("concurrent connections", "smtpd_connections_current"),
         ("bytes transferred", "smtpd_bytes_total"),
         ("messages delivered", 'smtpd_messages_total{result="stored"}'),
         ("recipients delivered", "smtpd_recipients_total"),
         ("recipients rejected", "smtpd_recipients_rejected_total"),
         ("auth failures", 'smtpd_auth_total{result="failed"}'),
         ("transformation failures", "smtpd_transform_failures_total"),
         ("monitor datagrams dropped", "smtpd_monitor_dropped_total"),
         ("TLS sessions", "smtpd_tls_sessions_total"),
         ("logins delayed", "smtpd_auth_delayed_total"),
         ("logins refused", 'smtpd_auth_total{result="throttled"}')]


def test_values_equal_manager_stats_on_an_idle_server(start_server, connect):
    srv = metrics_server(start_server, "-u", "alice:pw")
    c = greeted(connect, srv)
    for i in range(3):
        assert send_mail(c, "a@x", ["alice@localhost"],
                         b"Subject: %d\r\n\r\nhi\r\n" % i).startswith("250")
    assert c.cmd("MAIL FROM:<a@x>").startswith("250")
    assert c.cmd("RCPT TO:<nobody@elsewhere.test>").startswith("550")
    assert c.cmd("QUIT").startswith("221")
    assert c.closed()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"\xff\xfe\x00", ("127.0.0.1", srv.monitor_port))
    # idle: no SMTP client left, so nothing moves but the clock
    deadline = time.monotonic() + 10
    while manager_stats(srv)["concurrent connections"] != "0":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stats = manager_stats(srv)
    values = scrape(srv)
    for label, name in PAIRS:
        assert values[name] == int(stats[label]), (label, name)
    assert values["smtpd_transformations_enabled"] == (
        1 if stats["transformations"] == "ON" else 0)
    assert abs(values["smtpd_uptime_seconds"] -
               int(stats["uptime seconds"])) <= 1
    assert values['smtpd_messages_total{result="stored"}'] == 3
    assert values["smtpd_recipients_rejected_total"] == 1
    assert values["smtpd_monitor_dropped_total"] >= 1
    assert values["smtpd_connections_total"] >= 1


@pytest.mark.parametrize("mode", [(), ("--no-journal",)],
                         ids=["journal", "no-journal"])
def test_journal_figures(start_server, connect, mode):
    """With the journal each stored message is a record and each batch a
    sync in the histogram (buckets cumulative, +Inf = count); with
    --no-journal the smtpd_journal_* families are not there at all."""
    srv = metrics_server(start_server, "-u", "alice:pw", *mode)
    c = greeted(connect, srv)
    for i in range(3):
        assert send_mail(c, "a@x", ["alice@localhost"],
                         b"Subject: %d\r\n\r\nhi\r\n" % i).startswith("250")
    status, _, body = get(srv)
    values = scrape(srv)
    if mode:
        assert b"smtpd_journal" not in body
        return
    assert "\n# TYPE smtpd_journal_sync_seconds histogram\n" in body.decode()
    assert values["smtpd_journal_records_total"] == 3
    syncs = values["smtpd_journal_sync_seconds_count"]
    assert 1 <= syncs <= 3
    assert values['smtpd_journal_sync_seconds_bucket{le="+Inf"}'] == syncs
    buckets = [v for k, v in values.items()
               if k.startswith("smtpd_journal_sync_seconds_bucket")]
    assert buckets == sorted(buckets)
    assert values["smtpd_journal_sync_seconds_sum"] > 0
    assert values["smtpd_journal_bytes"] > 3 * 96
    assert values["smtpd_journal_full_total"] == 0


def test_messages_counted_by_how_they_ended(start_server, connect):
    """stored: 250; rejected: 552 over -z; failed: 451 from a failed
    transformation."""
    srv = metrics_server(start_server, "-z", "100", "-t", "exit 3")
    c = greeted(connect, srv)
    big = b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n"
    assert send_mail(c, "a@x", ["postmaster@localhost"], big).startswith(
        "552 5.3.4")
    assert send_mail(c, "a@x", ["postmaster@localhost"],
                     b"Subject: t\r\n\r\nhi\r\n").startswith("451 4.3.0")
    values = scrape(srv)
    assert values['smtpd_messages_total{result="rejected"}'] == 1
    assert values['smtpd_messages_total{result="failed"}'] == 1
    assert values['smtpd_messages_total{result="stored"}'] == 0
    assert values["smtpd_transform_failures_total"] == 1


def test_auth_ok_and_failed(start_server, connect):
    srv = metrics_server(start_server, "-u", "alice:pw")
    c = greeted(connect, srv)
    bad = base64.b64encode(b"\0alice\0wrong").decode()
    good = base64.b64encode(b"\0alice\0pw").decode()
    assert c.cmd("AUTH PLAIN " + bad).startswith("535")
    assert c.cmd("AUTH PLAIN " + good).startswith("235")
    values = scrape(srv)
    assert values['smtpd_auth_total{result="ok"}'] == 1
    assert values['smtpd_auth_total{result="failed"}'] == 1


def test_refusals_over_max_clients_counted(start_server, connect):
    srv = metrics_server(start_server, "-c", "1")
    c = greeted(connect, srv)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        assert s.recv(512).startswith(b"421 4.3.2")
    values = scrape(srv)
    assert values['smtpd_refused_total{reason="max_clients"}'] == 1
    assert values["smtpd_connections_current"] == 1
    c.close()


def test_refusals_for_bad_proxy_header_counted(start_server):
    srv = metrics_server(start_server, "--proxy-from", "127.0.0.1")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"EHLO not-a-proxy-header\r\n")
        assert read_all(s) == b""
    values = scrape(srv)
    assert values['smtpd_refused_total{reason="proxy"}'] == 1


# ---- promtool -------------------------------------------------------------

needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool not installed "
                                           "(Debian prometheus)")


@needs_promtool
def test_promtool_accepts_the_body(start_server, connect):
    srv = metrics_server(start_server)
    c = greeted(connect, srv)
    send_mail(c, "a@x", ["postmaster@localhost"], b"Subject: x\r\n\r\nx\r\n")
    _, _, body = get(srv)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_shipped_alert_rules_and_scrape_config_check(tmp_path):
    r = subprocess.run([PROMTOOL, "check", "rules",
                        str(ROOT / "docs" / "alerts.yml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
    # the config names the rule file by a relative path: check a copy
    # next to it, as it would sit in /etc/prometheus
    shutil.copy(ROOT / "docs" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ROOT / "docs" / "alerts.yml", tmp_path / "alerts.yml")
    r = subprocess.run([PROMTOOL, "check", "config",
                        str(tmp_path / "prometheus.yml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- a real Prometheus ----------------------------------------------------

def prometheus_query(port, query):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (
        port, urllib.parse.urlencode({"query": query}))
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


@pytest.mark.slow
@pytest.mark.skipif(PROMETHEUS is None,
                    reason="prometheus not installed (Debian prometheus)")
def test_prometheus_scrapes_the_messages_stored(start_server, connect,
                                                tmp_path):
    n = 7
    srv = metrics_server(start_server)
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: smtpd\n    static_configs:\n"
        "      - targets: ['127.0.0.1:%d']\n" % srv.metrics_port)
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        [PROMETHEUS, "--config.file=%s" % config,
         "--storage.tsdb.path=%s" % (tmp_path / "data"),
         "--web.listen-address=127.0.0.1:%d" % web],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        c = greeted(connect, srv)
        for i in range(n):
            assert send_mail(c, "a@x", ["postmaster@localhost"],
                             b"Subject: %d\r\n\r\nhi\r\n" % i).startswith("250")
        want = {'stored': str(n), 'rejected': "0", 'failed': "0"}
        got = None
        deadline = time.monotonic() + 120
        while got != want:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, (got, (
                tmp_path / "prometheus.log").read_text()[-2000:])
            time.sleep(0.2)
            try:
                answer = prometheus_query(web, "smtpd_messages_total")
            except OSError:
                continue
            assert answer["status"] == "success", answer
            got = {r["metric"]["result"]: r["value"][1]
                   for r in answer["data"]["result"]}
        up = prometheus_query(web, 'up{job="smtpd"}')["data"]["result"]
        assert up[0]["value"][1] == "1"
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()
