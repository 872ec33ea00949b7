"""Hardening of the session (docs/reliability.md): one reply formatter, so
the longest -d still gives every refused client exactly one line; a whole
message must arrive within 10 x -T, whatever the client trickles."""
import signal
import socket

from conftest import Client, queue_id, send_mail

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


# ---- a whole message within 10 x -T ------------------------------------

def test_trickled_message_is_dropped_after_ten_timeouts(start_server):
    """-T 1: one byte every 0.5 s keeps each read inside -T, but the
    message must be whole 10 s after its 354: then 421 4.4.2, nothing in
    new/ or tmp/, the connection closed and its descriptors freed."""
    from test_hostile import fd_count, settled_fd_count, wait_until
    srv = start_server("-T", "1")
    fds0 = settled_fd_count(srv.pid)
    c = Client(srv.port)
    try:
        c.greet()
        assert c.cmd("MAIL FROM:<a@b.test>") == "250 2.1.0 Sender ok"
        assert c.cmd("RCPT TO:<postmaster@localhost>") == "250 2.1.5 Recipient ok"
        assert c.cmd("DATA").startswith("354 ")
        c.sock.settimeout(0.5)
        sent = 0
        got = b""
        for _ in range(240):            # bounded: 2 minutes at most
            try:
                chunk = c.sock.recv(4096)
            except socket.timeout:
                chunk = None
            if chunk is not None:
                got += chunk
                break                   # a reply, or the close
            try:
                c.sock.sendall(b"a")
            except OSError:
                break
            sent += 1
        c.sock.settimeout(30)
        while True:
            try:
                chunk = c.sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        c.close()
    assert got == (b"421 4.4.2 localhost Message took too long, "
                   b"closing connection\r\n"), got
    assert sent >= 10, sent             # it lived past several -T
    assert "not complete within 10 s" in srv.log_text()
    assert srv.new_files("postmaster") == []
    assert wait_until(lambda: srv.tmp_files("postmaster") == [], 10), \
        srv.tmp_files("postmaster")
    assert wait_until(lambda: fd_count(srv.pid) == fds0, 10), \
        (fd_count(srv.pid), fds0)
    d = Client(srv.port)                # the server goes on
    try:
        d.greet()
        queue_id(send_mail(d, "a@b.test", ["postmaster@localhost"],
                           b"Subject: after\r\n\r\nfast enough\r\n"))
    finally:
        d.close()
    assert len(srv.new_files("postmaster")) == 1
