"""The PROXY protocol behind --proxy-from, over real sockets: a listed peer
gets nothing before its header, the header's source is the client in
Received, the log and SMTPD_CLIENT; UNKNOWN and LOCAL keep the
connection's address; bad, oversized and slow headers close without a
word; peers not listed are never read as PROXY. The same on the
implicit-TLS port, where the header comes before the ClientHello."""
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import (SMTPD_BIN, Client, free_port, no_reply, only_file,
                      parse_trace)
from tls_helpers import (TlsClient, certs, client_context,  # noqa: F401
                         smtps_port, tls_args)

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
BODY = b"Subject: proxied\r\n\r\nhello\r\n"


def v2(src, dst, sport, dport, cmd=0x21, tlvs=b""):
    if ":" in src:
        fam, addrs = 0x21, (socket.inet_pton(socket.AF_INET6, src)
                            + socket.inet_pton(socket.AF_INET6, dst))
    else:
        fam, addrs = 0x11, socket.inet_aton(src) + socket.inet_aton(dst)
    body = addrs + struct.pack(">HH", sport, dport) + tlvs
    return V2_SIG + bytes([cmd, fam]) + struct.pack(">H", len(body)) + body


V2_LOCAL = V2_SIG + b"\x20\x00\x00\x00"


def proxied(start_server, *extra):
    return start_server("--proxy-from", "127.0.0.1", "--proxy-from", "::1/128",
                        *extra)


def mail_through(connect, srv, header, host="127.0.0.1", split=False):
    """Sends header, then one message; returns the stored file's bytes."""
    c = connect(srv.port, host)
    assert no_reply(c, 0.3), "greeted before the PROXY header"
    if split:
        for i in range(len(header)):
            c.send(header[i:i + 1])
    else:
        c.send(header)
    assert c.reply_line() == "220 localhost ESMTP"
    c.send("EHLO client.test\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("MAIL FROM:<a@example.org>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    assert c.reply_line().startswith("250 2.0.0 Ok: queued as ")
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
    return only_file(srv, "postmaster")[1]


def test_v1_source_is_the_client(start_server, connect):
    srv = proxied(start_server, "-t",
                  "printf 'X-Client: %s\\r\\n' \"$SMTPD_CLIENT\"; cat")
    data = mail_through(connect, srv,
                        b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 25\r\n")
    _, rcv, rest = parse_trace(data.split(b"\r\n", 1)[1])
    assert data.startswith(b"X-Client: 192.0.2.7\r\n")
    assert rcv["ip"] == "192.0.2.7"
    log = srv.log_text()
    assert "192.0.2.7:40001 via 127.0.0.1:" in log
    assert "client=192.0.2.7:40001 " in log


def test_v2_ipv6_source_split_byte_by_byte(start_server, connect):
    srv = proxied(start_server)
    data = mail_through(connect, srv, v2("2001:db8::7", "::1", 443, 25),
                        host="::1", split=True)
    assert parse_trace(data)[1]["ip"] == "IPv6:2001:db8::7"
    assert "2001:db8::7:443 via ::1:" in srv.log_text()


def test_v2_with_tlvs(start_server, connect):
    srv = proxied(start_server)
    tlvs = b"\x02\x00\x09mx.a.test" + b"\x04\x00\x00"
    data = mail_through(connect, srv, v2("192.0.2.9", "127.0.0.1", 1, 25,
                                         tlvs=tlvs))
    assert parse_trace(data)[1]["ip"] == "192.0.2.9"


def test_unknown_keeps_own_address(start_server, connect):
    srv = proxied(start_server)
    data = mail_through(connect, srv, b"PROXY UNKNOWN\r\n")
    assert parse_trace(data)[1]["ip"] == "127.0.0.1"


def test_v2_local_keeps_own_address(start_server, connect):
    srv = proxied(start_server)
    c = connect(srv.port)
    c.send(V2_LOCAL + b"QUIT\r\n")      # a health check, pipelined
    assert c.reply_line() == "220 localhost ESMTP"
    assert c.reply_line() == "221 2.0.0 Bye"
    assert c.closed()
    log = srv.log_text()
    assert "health check" in log
    assert "bad PROXY" not in log


def closes_silently(c, timeout=5):
    """The server closes without having sent a single byte."""
    assert c.closed(timeout)
    return c.buf == b""


BAD = [
    b"EHLO client.test\r\n",                          # no header at all
    b"PROXY TCP4 192.0.2.7 127.0.0.1 40001\r\n",        # a field missing
    b"PROXY TCP4 192.0.2.300 127.0.0.1 40001 25\r\n",   # address
    b"PROXY TCP4 192.0.2.7 127.0.0.1 70000 25\r\n",     # port
    b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 25\n",       # no CR
    b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n",           # over 107 bytes
    V2_SIG + b"\x21\x11\x02\x01" + b"\x00" * 513,       # 513 > 512
    V2_SIG + b"\x21\x11\x00\x10" + b"\x00" * 12 + b"\x04\x00\x09\x00",  # TLV
    V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12,        # version 3
]


def test_bad_headers_close_without_reply(start_server, connect):
    srv = proxied(start_server)
    for header in BAD:
        c = connect(srv.port)
        c.send(header)
        assert closes_silently(c), (header, c.buf)
    log = srv.log_text()
    assert log.count("bad PROXY header") == len(BAD), log
    # the server goes on serving
    data = mail_through(connect, srv, b"PROXY TCP4 192.0.2.8 127.0.0.1 9 25\r\n")
    assert parse_trace(data)[1]["ip"] == "192.0.2.8"


def test_slow_header_closes_after_3s(start_server, connect):
    srv = proxied(start_server)
    c = connect(srv.port)
    c.send(b"PROXY TCP4 192.0.2.7 ")     # and then nothing
    t0 = time.monotonic()
    assert closes_silently(c, timeout=10)
    took = time.monotonic() - t0
    assert took >= 2.5, took            # not before its 3 s
    c2 = connect(srv.port)               # silent from the start
    assert closes_silently(c2, timeout=10)
    assert "no PROXY header within 3000 ms" in srv.log_text()


def test_peer_not_listed_is_plain_smtp(start_server, connect):
    srv = start_server("--proxy-from", "192.0.2.0/24", "--proxy-from", "::2")
    c = connect(srv.port)
    assert c.reply_line() == "220 localhost ESMTP"
    assert c.cmd("PROXY TCP4 192.0.2.7 127.0.0.1 40001 25") \
        == "500 5.5.2 Command unrecognized"
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
    c6 = connect(srv.port, "::1")
    assert c6.reply_line() == "220 localhost ESMTP"


def test_bad_proxy_from_exits_2(tmp_path):
    for bad in ["10.0.0.0/33", "::/129", "host.example", "", "10.0.0.1/x"]:
        r = subprocess.run([SMTPD_BIN, "-f", str(tmp_path / "m"),
                            "--proxy-from", bad], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 2, (bad, r)
        assert "--proxy-from" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([SMTPD_BIN, "--proxy-from"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "needs a value" in r.stderr
    r = subprocess.run([SMTPD_BIN, "--no-such-option"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "--no-such-option" in r.stderr
    r = subprocess.run([SMTPD_BIN, "-h"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and "--proxy-from" in r.stdout


def test_full_server_refuses_before_the_header(start_server, connect):
    srv = proxied(start_server, "-c", "1")
    time.sleep(0.2)                      # the readiness probe has left
    c = connect(srv.port)
    c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 25\r\n")
    assert c.reply_line() == "220 localhost ESMTP"
    c2 = connect(srv.port)               # one too many: told at once
    assert c2.reply_line().startswith("421 4.3.2 ")
    assert c2.closed()
    assert c.cmd("QUIT") == "221 2.0.0 Bye"


# ---- the implicit-TLS port: the header comes before the ClientHello -------


class BioTls:
    """TLS over a plain socket through memory BIOs, so that the first
    flight (the ClientHello) leaves in the same send() as what precedes it."""

    def __init__(self, sock):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_context().wrap_bio(self.inc, self.out,
                                             server_hostname="localhost")
        self.buf = b""

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _pull(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.inc.write(data)

    def handshake(self, prefix):
        with pytest.raises(ssl.SSLWantReadError):
            self.obj.do_handshake()
        self.sock.sendall(prefix + self.out.read())     # one send()
        for _ in range(100):
            self._pull()
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
        raise AssertionError("handshake did not end")

    def send(self, data):
        self.obj.write(data.encode() if isinstance(data, str) else data)
        self._flush()

    def reply_line(self):
        """The last line of the next reply."""
        while True:
            while b"\r\n" not in self.buf:
                try:
                    self.buf += self.obj.read(65536)
                except ssl.SSLWantReadError:
                    self._pull()
            line, self.buf = self.buf.split(b"\r\n", 1)
            line = line.decode()
            if len(line) < 4 or line[3] != "-":
                return line

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply_line()


def proxied_tls(start_server, certs):
    return proxied(start_server,
                   *tls_args(certs, "--smtps-port", str(free_port())))


def mail_over(t):
    """One message over a TLS session t that has just been greeted."""
    assert t.cmd("EHLO client.test").startswith("250 ")
    assert t.cmd("MAIL FROM:<a@example.org>").startswith("250 2.1.0")
    assert t.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert t.cmd("DATA").startswith("354")
    t.send(BODY + b".\r\n")
    assert t.reply_line().startswith("250 2.0.0 Ok: queued as ")
    assert t.cmd("QUIT") == "221 2.0.0 Bye"


def test_implicit_tls_header_and_client_hello_in_one_send(start_server,
                                                          certs):
    """A PROXY v1 line and the ClientHello in one send(): the server takes
    the line and leaves the ClientHello to TLS; the header's source is the
    client in Received and the log."""
    srv = proxied_tls(start_server, certs)
    s = socket.create_connection(("127.0.0.1", smtps_port(srv)), timeout=10)
    try:
        t = BioTls(s)
        t.handshake(b"PROXY TCP4 192.0.2.9 127.0.0.1 40009 465\r\n")
        assert t.reply_line() == "220 localhost ESMTP"
        mail_over(t)
    finally:
        s.close()
    rp, f, msg = parse_trace(only_file(srv, "postmaster")[1])
    assert f["ip"] == "192.0.2.9" and f["proto"] == "ESMTPS", f
    assert msg == BODY
    log = srv.log_text()
    assert "192.0.2.9:40009 via 127.0.0.1:" in log, log
    assert "192.0.2.9:40009 TLS on: TLSv1." in log, log


def test_implicit_tls_v2_header_then_handshake(start_server, certs):
    """A PROXY v2 header sent byte by byte, then the handshake."""
    srv = proxied_tls(start_server, certs)
    c = TlsClient(smtps_port(srv))
    for b in v2("2001:db8::5", "::1", 40010, 465):
        c.sock.sendall(bytes([b]))
    c.wrap()
    assert c.reply_line() == "220 localhost ESMTP"
    c.send("EHLO client.test\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("MAIL FROM:<a@example.org>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    assert c.reply_line().startswith("250 2.0.0 Ok: queued as ")
    rp, f, msg = parse_trace(only_file(srv, "postmaster")[1])
    assert f["ip"] == "IPv6:2001:db8::5" and f["proto"] == "ESMTPS", f
    assert "2001:db8::5:40010 via 127.0.0.1:" in srv.log_text()


def test_implicit_tls_bad_or_slow_header_closes_without_reply(start_server,
                                                              certs):
    """On the implicit-TLS port as on the plain one: a bad header, or a
    ClientHello where the header should be, closes without a byte; so
    does a header not whole within 3 s."""
    srv = proxied_tls(start_server, certs)
    port = smtps_port(srv)
    hello = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + b"\x00" * 40
    for header in BAD + [hello]:
        c = Client(port)
        c.send(header)
        assert closes_silently(c), (header, c.buf)
        c.close()
    assert srv.log_text().count("bad PROXY header") == len(BAD) + 1
    c = Client(port)
    c.send(b"PROXY TCP4 192.0.2.7 ")
    assert closes_silently(c, timeout=10)
    c.close()
    assert "no PROXY header within 3000 ms" in srv.log_text()
    # a peer not listed gets TLS at once
    raw = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=("127.0.0.2", 0))
    with client_context().wrap_socket(raw, server_hostname="localhost") as t:
        assert t.recv(512).startswith(b"220 localhost ESMTP")
