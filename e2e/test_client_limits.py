"""Limits per client address over real sockets: --client-limit,
--client-rate, --message-rate and --limit-exempt, their exact replies and
log lines, the client address of a PROXY header, health checks never
counted, IPv6 clients counted by their /64, and the refusals counted by
the monitor, `manager stats` and /metrics.

The fixture's own readiness probe comes from 127.0.0.1, so the tests'
clients bind other loopback addresses (127.23.x.y)."""
import socket
import struct
import subprocess
import urllib.request
import uuid

import pytest

from conftest import MANAGER_BIN, SMTPD_BIN, free_port
from tls_helpers import certs, client_context, need_tls, tls_args  # noqa: F401

LIMIT = "421 4.7.0 Too many connections from your address"
RATE = "421 4.7.0 Too many connections per minute from your address"
MSG_RATE = "452 4.7.0 Too many messages per minute from your address"
BODY = b"Subject: limits\r\n\r\nhello\r\n"
TOKEN = b"smtpd\0\0\0"


class Line:
    """A client from a chosen source address."""

    def __init__(self, port, source, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln.decode()

    def reply(self):
        while True:
            ln = self.line()
            if ln[3:4] != "-":
                return ln

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def closed(self):
        try:
            return self.sock.recv(4096) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def clients():
    opened = []

    def make(port, source, host="127.0.0.1"):
        c = Line(port, source, host)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


def refused(c, expect):
    assert c.reply() == expect
    assert c.closed()


def greeted(c):
    assert c.reply().startswith("220 ")
    assert c.cmd("EHLO t.test").startswith("250 ")


def mail(c):
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    c.sock.sendall(BODY + b".\r\n")
    assert c.reply().startswith("250 2.0.0 Ok: queued as ")


def monitor(srv, cmd):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"\xff\xfe\x00\x00\x01" + TOKEN + bytes([cmd]),
                 ("127.0.0.1", srv.monitor_port))
        res = s.recv(64)
    assert len(res) == 15 and res[5] == 0, res
    return struct.unpack(">Q", res[6:14])[0]


# ---- --client-limit ------------------------------------------------------

def test_client_limit_refuses_the_next_and_closes(start_server, clients):
    srv = start_server("--client-limit", "2")
    a = [clients(srv.port, "127.23.0.1") for _ in range(2)]
    for c in a:
        greeted(c)
    refused(clients(srv.port, "127.23.0.1"), LIMIT)
    # another address is not held to it
    greeted(clients(srv.port, "127.23.0.2"))
    assert "127.23.0.1:" in srv.log_text()
    assert "refused: over --client-limit 2 connections from the address" \
        in srv.log_text()
    # one leaves: there is room again
    assert a[0].cmd("QUIT").startswith("221")
    assert a[0].closed()
    greeted(clients(srv.port, "127.23.0.1"))
    assert monitor(srv, 0x10) == 1


def test_exempt_address_is_never_limited(start_server, clients):
    srv = start_server("--client-limit", "1", "--client-rate", "1",
                       "--message-rate", "1", "--limit-exempt", "127.23.1.0/24")
    held = [clients(srv.port, "127.23.1.5") for _ in range(4)]
    for c in held:
        greeted(c)
    mail(held[0])
    mail(held[0])
    # the same limits hold outside the exempt network
    greeted(clients(srv.port, "127.23.2.5"))
    refused(clients(srv.port, "127.23.2.5"), LIMIT)


# ---- --client-rate -------------------------------------------------------

def test_client_rate_refuses_within_the_minute(start_server, clients):
    srv = start_server("--client-rate", "3")
    for _ in range(3):
        c = clients(srv.port, "127.23.3.1")
        greeted(c)
        assert c.cmd("QUIT").startswith("221")
        assert c.closed()
    refused(clients(srv.port, "127.23.3.1"), RATE)
    # a refusal is not counted, and other addresses are unaffected
    refused(clients(srv.port, "127.23.3.1"), RATE)
    greeted(clients(srv.port, "127.23.3.2"))
    assert "127.23.3.1:" in srv.log_text()
    assert "refused: over --client-rate 3 connections per minute" \
        in srv.log_text()
    assert monitor(srv, 0x11) == 2


# ---- --message-rate ------------------------------------------------------

def test_message_rate_refuses_mail(start_server, clients):
    srv = start_server("--message-rate", "2")
    c = clients(srv.port, "127.23.4.1")
    greeted(c)
    mail(c)
    # a transaction that never got its 250 does not count
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("RSET").startswith("250")
    mail(c)
    assert c.cmd("MAIL FROM:<a@b.test>") == MSG_RATE
    # the session goes on; another connection of the address is refused too
    assert c.cmd("NOOP").startswith("250")
    d = clients(srv.port, "127.23.4.1")
    greeted(d)
    assert d.cmd("MAIL FROM:<a@b.test>") == MSG_RATE
    e = clients(srv.port, "127.23.4.2")
    greeted(e)
    mail(e)
    assert srv.wait_new("postmaster", 3)
    assert "127.23.4.1:" in srv.log_text()
    assert "MAIL refused: over --message-rate 2 messages per minute" \
        in srv.log_text()
    assert monitor(srv, 0x12) == 2


# ---- PROXY ----------------------------------------------------------------

def test_proxy_header_address_is_limited(start_server, clients):
    srv = start_server("--proxy-from", "127.23.5.1", "--client-limit", "1",
                       "--client-rate", "3")
    a = clients(srv.port, "127.23.5.1")
    a.sock.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 25\r\n")
    greeted(a)
    b = clients(srv.port, "127.23.5.1")
    b.sock.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40002 25\r\n")
    refused(b, LIMIT)
    assert "192.0.2.7:40002 refused: over --client-limit" in srv.log_text()
    # another client behind the same balancer is not held to it
    c = clients(srv.port, "127.23.5.1")
    c.sock.sendall(b"PROXY TCP4 192.0.2.8 127.0.0.1 40003 25\r\n")
    greeted(c)
    # health checks: never limited, never counted, however many
    for _ in range(6):
        h = clients(srv.port, "127.23.5.1")
        h.sock.sendall(b"PROXY UNKNOWN\r\n")
        greeted(h)
    assert monitor(srv, 0x10) == 1
    assert monitor(srv, 0x11) == 0


# ---- IPv6: one /64 is one client -----------------------------------------

# a random /48 of our own; written as inet_ntop writes it (no leading
# zeros), since the log shows it that way
PREFIX = "fd00:23:%x" % (uuid.uuid4().int & 0xffff)


def ip6(cmd, addr):
    return subprocess.run(["ip", "-6", "addr", cmd, "%s/64" % addr, "dev",
                           "lo", "nodad"], capture_output=True, text=True)


@pytest.fixture
def v6_addresses():
    """Two addresses of one /64 on lo and one of another (removed
    afterwards)."""
    wanted = ["%s:1::2" % PREFIX, "%s:1::3" % PREFIX, "%s:2::2" % PREFIX]
    added = []
    try:
        for a in wanted:
            r = ip6("add", a)
            if r.returncode != 0:
                pytest.skip("cannot add IPv6 addresses to lo (%s)"
                            % r.stderr.strip())
            added.append(a)
        yield wanted
    finally:
        for a in added:
            ip6("del", a)


def test_ipv6_one_64_shares_a_limit(start_server, clients, v6_addresses):
    one, same64, other = v6_addresses
    srv = start_server("--client-limit", "1")
    greeted(clients(srv.port, one, host="::1"))
    refused(clients(srv.port, same64, host="::1"), LIMIT)
    greeted(clients(srv.port, other, host="::1"))
    assert "%s:" % same64 in srv.log_text()


# ---- counted: monitor, manager, metrics ----------------------------------

def test_refusals_in_manager_stats_and_metrics(start_server, clients):
    mport = free_port()
    srv = start_server("--client-limit", "1", "--client-rate", "2",
                       "--message-rate", "1",
                       "--metrics", "127.0.0.1:%d" % mport)
    a = clients(srv.port, "127.23.6.1")
    greeted(a)
    refused(clients(srv.port, "127.23.6.1"), LIMIT)
    mail(a)
    assert a.cmd("MAIL FROM:<a@b.test>") == MSG_RATE
    assert a.cmd("QUIT").startswith("221")
    assert a.closed()
    b = clients(srv.port, "127.23.6.1")
    greeted(b)
    assert b.cmd("QUIT").startswith("221")
    assert b.closed()
    refused(clients(srv.port, "127.23.6.1"), RATE)
    r = subprocess.run([MANAGER_BIN, "-p", str(srv.monitor_port), "stats"],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r
    lines = dict(ln.split(": ") for ln in r.stdout.splitlines())
    assert lines["client limit refusals"] == "1"
    assert lines["client rate refusals"] == "1"
    assert lines["message rate refusals"] == "1"
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                  timeout=10).read().decode()
    for reason in ("client_limit", "client_rate", "message_rate"):
        assert 'smtpd_refused_total{reason="%s"} 1\n' % reason in body, body


# ---- the command line ----------------------------------------------------

@pytest.mark.parametrize("args", [["--client-limit", "x"],
                                  ["--client-rate", "-1"],
                                  ["--message-rate", "70000"],
                                  ["--limit-exempt", "10.0.0.0/33"]])
def test_bad_values_exit_2(tmp_path, args):
    r = subprocess.run([SMTPD_BIN, "-f", str(tmp_path)] + args,
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 2 and "smtpd: bad --" in r.stderr, r


def test_client_limit_on_the_implicit_tls_port(start_server, clients, certs):
    """On the implicit-TLS port the limit is checked where the greeting
    would be, after the handshake: the 421 comes inside TLS."""
    need_tls()
    port = free_port()
    srv = start_server(*tls_args(certs, "--smtps-port", str(port),
                                 "--client-limit", "1"))
    ctx = client_context()
    first = clients(port, "127.23.9.1")
    first.sock = ctx.wrap_socket(first.sock, server_hostname="localhost")
    assert first.reply().startswith("220 ")
    second = clients(port, "127.23.9.1")
    second.sock = ctx.wrap_socket(second.sock, server_hostname="localhost")
    refused(second, LIMIT)
    other = clients(port, "127.23.9.2")
    other.sock = ctx.wrap_socket(other.sock, server_hostname="localhost")
    assert other.reply().startswith("220 ")
    assert "127.23.9.1" in srv.log_text()
