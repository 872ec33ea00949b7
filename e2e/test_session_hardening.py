"""Hardening of the session (docs/reliability.md): one reply formatter, so
the longest -d still gives every refused client exactly one line; a whole
message must arrive within 10 x -T, whatever the client trickles."""
import os
import signal
import socket
import threading
import time

from conftest import Client, greeted, queue_id, send_mail

# 255 bytes, the longest -d the command line accepts
LONG_DOMAIN = ".".join(c * 63 for c in "abcd")
assert len(LONG_DOMAIN) == 255


def read_to_eof(sock, timeout=30):
    """Everything the server sends until it closes."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def assert_one_line(data, start):
    assert data.startswith(start), data
    assert len(data) <= 512, len(data)
    assert data.endswith(b"\r\n"), data
    assert data.count(b"\r\n") == 1, data
    assert b"\n" not in data[:-1] and b"\r" not in data[:-2], data


def test_refused_client_gets_one_421_line_with_longest_domain(start_server,
                                                              connect):
    """-c 1 and a 255-byte -d: the second client gets one 421 4.3.2 line
    naming the whole domain, at most 512 bytes, and the connection closes
    with nothing else (before the fix: a 165-byte write of stack bytes)."""
    srv = start_server("-d", LONG_DOMAIN, "-c", "1")
    first = connect(srv.port)
    assert first.reply_line() == "220 %s ESMTP" % LONG_DOMAIN
    for _ in range(3):
        second = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        try:
            data = read_to_eof(second)
        finally:
            second.close()
        assert_one_line(data, b"421 4.3.2 " + LONG_DOMAIN.encode()
                        + b" Too many connections")
    assert first.cmd("NOOP") == "250 2.0.0 Ok"


def test_long_domain_in_every_421_and_the_ehlo_list(start_server, connect):
    """The same 255-byte domain in EHLO's list, the idle timeout's 421 and
    the shutdown's 421: each a whole line ending in CRLF."""
    srv = start_server("-d", LONG_DOMAIN, "-T", "1")
    c = connect(srv.port)
    lines = c.greet()
    assert lines[0] == LONG_DOMAIN and lines[-1] == "HELP", lines
    assert_one_line(read_to_eof(c.sock), b"421 4.4.2 " + LONG_DOMAIN.encode()
                    + b" Idle timeout")
    srv2 = start_server("-d", LONG_DOMAIN)
    d = connect(srv2.port)
    d.greet()
    srv2.proc.send_signal(signal.SIGTERM)
    assert_one_line(read_to_eof(d.sock), b"421 4.3.0 " + LONG_DOMAIN.encode()
                    + b" Service shutting down")
    assert srv2.proc.wait(timeout=30) == 0
