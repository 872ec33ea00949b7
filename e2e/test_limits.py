"""Limits: line length, the error counter, 100 recipients,
SIZE and -z, -c (client limit) and -T (idle timeout)."""
import time

import pytest

from conftest import (greeted, only_file, queue_id, send_mail, strip_trace,
                      tree)

BODY = b"Subject: limits\r\n\r\nsmall\r\n"


# ---- line length ---------------------------------------------------------

def test_512_octet_line_is_accepted(server, connect):
    c = greeted(connect, server)
    line = "NOOP " + "x" * 505
    assert len(line) + 2 == 512
    assert c.cmd(line).startswith("250 2.0.0")


def test_513_octet_line_is_refused_and_session_goes_on(server, connect):
    c = greeted(connect, server)
    line = "NOOP " + "x" * 506
    assert c.cmd(line).startswith("500 5.5.6")
    assert c.cmd("NOOP").startswith("250 2.0.0")
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))


def test_huge_line_gets_one_reply(server, connect):
    """100 kB without a newline: the limit holds before the CRLF comes,
    and the whole line gets a single 500."""
    c = greeted(connect, server)
    c.send(b"MAIL FROM:<" + b"a" * 100000)
    time.sleep(0.3)
    c.send(b"@b.test>\r\nNOOP\r\n")
    assert c.reply_line().startswith("500 5.5.6")
    assert c.reply_line().startswith("250 2.0.0")
    # the long line did not start a transaction
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("503 5.5.1")


def test_long_rcpt_line_is_refused_before_any_file_is_made(server, connect):
    before = tree(server.root)
    c = greeted(connect, server)
    c.cmd("MAIL FROM:<a@b.test>")
    assert c.cmd("RCPT TO:<%s@localhost>" % ("x" * 600)).startswith(
        "500 5.5.6")
    assert tree(server.root) == before


# ---- error counter -------------------------------------------------------

def test_tenth_error_in_a_row_closes(server, connect):
    c = greeted(connect, server)
    for i in range(9):
        assert c.cmd("BOGUS%d" % i).startswith("500 5.5.2"), i
    assert c.cmd("BOGUS9").startswith("421 4.7.0")
    assert c.closed()


def test_mixed_errors_count_together(server, connect):
    c = greeted(connect, server)
    bad = ["BOGUS", "RCPT TO:<postmaster@localhost>", "DATA", "MAIL",
           "EXPN x"]
    replies = [c.cmd(bad[i % len(bad)]) for i in range(9)]
    assert all(r[0] == "5" for r in replies), replies
    assert c.cmd("BOGUS").startswith("421 4.7.0")
    assert c.closed()


def test_a_good_command_resets_the_error_count(server, connect):
    c = greeted(connect, server)
    for _ in range(3):
        for i in range(9):
            assert c.cmd("BOGUS").startswith("500 5.5.2"), i
        assert c.cmd("NOOP").startswith("250 2.0.0")
    assert not c.closed(0.3)
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))


def test_error_limit_with_pipelined_commands(server, connect):
    c = greeted(connect, server)
    c.send("BOGUS\r\n" * 12)
    for i in range(9):
        assert c.reply_line().startswith("500 5.5.2"), i
    assert c.reply_line().startswith("421 4.7.0")
    assert c.closed()
    assert c.buf == b""


# ---- recipients ----------------------------------------------------------

def test_101st_recipient_is_refused_and_the_100_get_mail(start_server,
                                                         connect, tmp_path):
    root = tmp_path / "mail"
    users = ["u%03d" % i for i in range(101)]
    for u in users:
        for sub in ("tmp", "new", "cur"):
            (root / u / sub).mkdir(parents=True, mode=0o700)
    srv = start_server()
    c = greeted(connect, srv)
    c.cmd("MAIL FROM:<a@b.test>")
    for u in users[:100]:
        assert c.cmd("RCPT TO:<%s@localhost>" % u).startswith("250 2.1.5"), u
    assert c.cmd("RCPT TO:<u100@localhost>").startswith("452 4.5.3")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("452 4.5.3")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    qid = queue_id(c.reply_line())
    for u in users[:100]:     # 250 means every file is already in new/
        files = srv.new_files(u)
        assert len(files) == 1, (u, files)
        assert strip_trace(files[0].read_bytes()) == BODY
        assert qid in files[0].name
    assert srv.new_files("u100") == [] and srv.new_files("postmaster") == []


def test_same_mailbox_100_times(server, connect):
    c = greeted(connect, server)
    c.cmd("MAIL FROM:<a@b.test>")
    for i in range(100):
        assert c.cmd("RCPT TO:<postmaster@localhost>").startswith(
            "250 2.1.5"), i
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("452 4.5.3")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    queue_id(c.reply_line())
    assert strip_trace(only_file(server, "postmaster")[1]) == BODY


def test_rset_restarts_the_recipient_count(server, connect):
    c = greeted(connect, server)
    c.cmd("MAIL FROM:<a@b.test>")
    for _ in range(100):
        c.cmd("RCPT TO:<postmaster@localhost>")
    c.cmd("RSET")
    c.cmd("MAIL FROM:<a@b.test>")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")


# ---- size ----------------------------------------------------------------

def test_size_parameter_over_limit(start_server, connect):
    srv = start_server("-z", "10000")
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=10001").startswith("552 5.3.4")
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=5000").startswith("250 2.1.0")


def test_size_parameter_over_default_limit(server, connect):
    c = greeted(connect, server)
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=10485761").startswith(
        "552 5.3.4")
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=99999999999999999999"
                 ).startswith("552 5.3.4")


def test_real_size_over_limit_is_read_and_dropped(start_server, connect):
    srv = start_server("-z", "10000")
    c = greeted(connect, srv)
    c.cmd("MAIL FROM:<a@b.test>")
    c.cmd("RCPT TO:<postmaster@localhost>")
    assert c.cmd("DATA").startswith("354")
    big = BODY + (b"y" * 70 + b"\r\n") * 3000      # ~216 kB
    c.send(big + b"MAIL FROM:<inside@data.test>\r\n.\r\n")
    assert c.reply_line().startswith("552 5.3.4")
    assert c.cmd("NOOP").startswith("250 2.0.0")
    time.sleep(0.3)
    assert srv.new_files("postmaster") == []
    assert srv.tmp_files("postmaster") == []
    # the session goes on and a small message is fine
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))
    assert strip_trace(only_file(srv, "postmaster")[1]) == BODY


@pytest.mark.slow
def test_fifty_megabytes_over_default_limit(server, connect):
    """Far beyond -z: thrown away as it streams, the session survives."""
    c = greeted(connect, server)
    c.sock.settimeout(120)
    c.cmd("MAIL FROM:<a@b.test>")
    c.cmd("RCPT TO:<postmaster@localhost>")
    assert c.cmd("DATA").startswith("354")
    chunk = (b"z" * 998 + b"\r\n") * 1000
    for _ in range(50):
        c.send(chunk)
    c.send(b".\r\n")
    assert c.reply_line().startswith("552 5.3.4")
    assert c.cmd("NOOP").startswith("250 2.0.0")
    assert server.new_files("postmaster") == []
    assert server.tmp_files("postmaster") == []


# ---- -c: concurrent clients ----------------------------------------------

def test_third_client_over_c2_is_refused(start_server, connect):
    srv = start_server("-c", "2")
    a = greeted(connect, srv)
    b = greeted(connect, srv)
    third = connect(srv.port)
    assert third.reply_line().startswith("421 4.3.2")
    assert third.closed()
    # the first two still work
    assert a.cmd("NOOP").startswith("250 2.0.0")
    queue_id(send_mail(b, "a@b.test", ["postmaster@localhost"], BODY))
    # a freed slot is usable again
    assert a.cmd("QUIT").startswith("221")
    assert a.closed()
    deadline = time.monotonic() + 10
    while True:
        d = connect(srv.port)
        if d.reply_line().startswith("220"):
            break
        assert time.monotonic() < deadline, "slot never freed"
        time.sleep(0.2)
    assert d.cmd("EHLO x.test").startswith("250")


# ---- -T: idle timeout ----------------------------------------------------

def test_idle_client_is_timed_out(start_server, connect):
    srv = start_server("-T", "2")
    c = greeted(connect, srv)
    c.sock.settimeout(15)
    t0 = time.monotonic()
    assert c.reply_line().startswith("421 4.4.2")
    assert c.closed()
    assert 1.0 <= time.monotonic() - t0 <= 12


def test_idle_before_helo_is_timed_out(start_server, connect):
    srv = start_server("-T", "2")
    c = connect(srv.port, timeout=15)
    c.reply_line()
    assert c.reply_line().startswith("421 4.4.2")
    assert c.closed()


def test_idle_in_data_is_timed_out_and_leaves_nothing(start_server, connect):
    srv = start_server("-T", "2")
    c = greeted(connect, srv)
    c.cmd("MAIL FROM:<a@b.test>")
    c.cmd("RCPT TO:<postmaster@localhost>")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b"half a message")
    c.sock.settimeout(15)
    try:
        line = c.reply_line()
    except (EOFError, ConnectionResetError):
        line = ""
    assert line == "" or line.startswith("421 4.4.2"), line
    assert c.closed()
    time.sleep(0.3)
    assert srv.new_files("postmaster") == []
    assert srv.tmp_files("postmaster") == []


def test_trickling_bytes_do_not_reset_the_idle_timeout(start_server, connect):
    """-T bounds a whole command: one byte every half second never makes a
    command, so the client is closed like any idle one (slowloris)."""
    srv = start_server("-T", "2")
    c = greeted(connect, srv)
    deadline = time.monotonic() + 15
    closed = False
    for byte in (b"NOOP " + b"x" * 100):
        try:
            c.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        c.sock.settimeout(0.5)
        try:
            chunk = c.sock.recv(4096)
        except TimeoutError:
            chunk = None
        if chunk is not None:
            c.buf += chunk
            closed = True
            break
        assert time.monotonic() < deadline, "never timed out"
    assert closed
    c.sock.settimeout(5)
    assert c.reply_line().startswith("421 4.4.2")
    assert c.closed()


def test_a_busy_client_is_not_timed_out(start_server, connect):
    srv = start_server("-T", "3")
    c = greeted(connect, srv)
    for _ in range(6):
        time.sleep(1)
        assert c.cmd("NOOP").startswith("250 2.0.0")
