"""DATA: only <CRLF>.<CRLF> ends the message (no SMTP
smuggling), dot-unstuffing, a terminator split across sends, long lines,
arbitrary bytes, a 5 MB message byte-exact, the client hanging up
mid-DATA, and the session going on after a message."""
import base64
import os
import socket
import struct
import time

import pytest

from conftest import (dot_stuff, greeted, no_reply, only_file, queue_id,
                      send_mail, strip_trace)

HEAD = b"Subject: data\r\n\r\n"


def start_data(c, rcpt="postmaster@localhost"):
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<%s>" % rcpt).startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")


def test_message_stored_as_sent(server, connect):
    c = greeted(connect, server)
    body = HEAD + b"line one\r\nline two\r\n"
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], body))
    assert strip_trace(only_file(server, "postmaster")[1]) == body


def test_empty_message(server, connect):
    c = greeted(connect, server)
    start_data(c)
    c.send(b".\r\n")
    queue_id(c.reply_line())
    assert strip_trace(only_file(server, "postmaster")[1]) == b""


def test_dot_unstuffing(server, connect):
    c = greeted(connect, server)
    start_data(c)
    sent = (b"..starts with a dot\r\n...two dots\r\n..\r\n.. \r\n"
            b"middle . dot\r\nend.\r\n")
    c.send(sent + b".\r\n")
    queue_id(c.reply_line())
    assert strip_trace(only_file(server, "postmaster")[1]) == (
        b".starts with a dot\r\n..two dots\r\n.\r\n. \r\n"
        b"middle . dot\r\nend.\r\n")


# (sequence inside the data, what is stored for it): only CRLF.CRLF ends
# the data; a "." right after CRLF that is not the terminator is removed.
SMUGGLING = [
    (b"\n.\n", b"\n.\n"),
    (b"\r.\r", b"\r.\r"),
    (b"\n.\r\n", b"\n.\r\n"),
    (b"\r\n.\n", b"\r\n\n"),
    (b"\r\n.\r", b"\r\n\r"),
    (b"\r.\r\n", b"\r.\r\n"),
]


@pytest.mark.parametrize("seq,stored", SMUGGLING,
                         ids=[repr(s[0]) for s in SMUGGLING])
def test_bare_cr_or_lf_never_ends_data(server, connect, seq, stored):
    c = greeted(connect, server)
    start_data(c)
    smuggled = (b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<postmaster@localhost>"
                b"\r\nDATA\r\nsmuggled\r\n")
    c.send(HEAD + b"hello" + seq + smuggled)
    assert no_reply(c, 1.0), "the server answered before CRLF.CRLF"
    c.send(b".\r\n")
    queue_id(c.reply_line())
    assert c.cmd("NOOP").startswith("250 2.0.0"), "a smuggled reply came"
    assert strip_trace(only_file(server, "postmaster")[1]) == (
        HEAD + b"hello" + stored + smuggled)


@pytest.mark.parametrize("cut", range(0, 6))
def test_terminator_split_across_two_sends(server, connect, cut):
    c = greeted(connect, server)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start_data(c)
    body = HEAD + b"split at %d" % cut
    wire = body + b"\r\n.\r\n"
    first, second = wire[:len(body) + cut], wire[len(body) + cut:]
    c.send(first)
    if cut < 5:
        assert no_reply(c, 0.5), "answered before the whole terminator"
    if second:
        c.send(second)
    queue_id(c.reply_line())
    assert strip_trace(only_file(server, "postmaster")[1]) == (
        body + b"\r\n")


def test_every_split_point_in_one_session(server, connect):
    """Each message is sent in two pieces cut at a different byte, so every
    state of the terminator parser meets a read boundary."""
    c = greeted(connect, server)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = HEAD + b"..dot\r\nx\r\n"
    wire = dot_stuff(body) + b".\r\n"
    assert wire == HEAD + b"...dot\r\nx\r\n.\r\n"
    for cut in range(1, len(wire)):
        start_data(c)
        c.send(wire[:cut])
        time.sleep(0.02)
        c.send(wire[cut:])
        queue_id(c.reply_line())
    files = server.wait_new("postmaster", len(wire) - 1)
    assert len(files) == len(wire) - 1
    for f in files:
        assert strip_trace(f.read_bytes()) == body


def test_lines_longer_than_1000_bytes_are_kept(server, connect):
    c = greeted(connect, server)
    body = HEAD + b"A" * 1500 + b"\r\n" + b"B" * 100000 + b"\r\nend\r\n"
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], body))
    assert strip_trace(only_file(server, "postmaster")[1]) == body


def test_every_byte_value_is_kept(server, connect):
    c = greeted(connect, server)
    body = HEAD + bytes(range(256)) + b"\r\n" + bytes(range(255, -1, -1)) \
        + b"\r\n"
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], body))
    assert strip_trace(only_file(server, "postmaster")[1]) == body


def test_message_without_final_crlf_before_dot(server, connect):
    """"x\r\n.\r\n": the CRLF before the dot belongs to the message."""
    c = greeted(connect, server)
    start_data(c)
    c.send(HEAD + b"no blank line\r\n.\r\n")
    queue_id(c.reply_line())
    assert strip_trace(only_file(server, "postmaster")[1]) == (
        HEAD + b"no blank line\r\n")


@pytest.mark.slow
def test_five_megabytes_byte_exact(server, connect):
    c = greeted(connect, server)
    raw = os.urandom(3_900_000)
    lines = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    body = HEAD + lines + b".leading dot line\r\n"
    assert len(body) > 5_000_000
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=%d" % len(body)).startswith(
        "250 2.1.0")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    c.sock.settimeout(60)
    c.send(dot_stuff(body) + b".\r\n")
    queue_id(c.reply_line())
    assert strip_trace(only_file(server, "postmaster")[1]) == body


def test_second_message_in_the_same_session(server, connect):
    c = greeted(connect, server)
    id1 = queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"],
                             HEAD + b"one\r\n"))
    id2 = queue_id(send_mail(c, "c@d.test", ["postmaster@localhost"],
                             HEAD + b"two\r\n"))
    assert id1 != id2
    files = server.wait_new("postmaster", 2)
    bodies = sorted(strip_trace(f.read_bytes()) for f in files)
    assert bodies == [HEAD + b"one\r\n", HEAD + b"two\r\n"]
    assert c.cmd("QUIT").startswith("221 2.0.0")


def wait_empty(server, user, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.tmp_files(user) and not server.new_files(user):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["close", "reset"])
def test_hangup_mid_data_leaves_nothing(server, connect, how):
    c = greeted(connect, server)
    start_data(c)
    c.send(HEAD + b"x" * 200000 + b"\r\nno end")
    time.sleep(0.3)
    if how == "reset":
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
    c.close()
    time.sleep(0.5)
    assert wait_empty(server, "postmaster"), (
        server.tmp_files("postmaster"), server.new_files("postmaster"))
    # and the server still works
    c2 = greeted(connect, server)
    queue_id(send_mail(c2, "a@b.test", ["postmaster@localhost"], HEAD))
    assert len(server.wait_new("postmaster")) == 1


def test_hangup_right_after_354_leaves_nothing(server, connect):
    c = greeted(connect, server)
    start_data(c)
    c.close()
    time.sleep(0.5)
    assert wait_empty(server, "postmaster")


def test_tmp_is_empty_after_delivery(server, connect):
    c = greeted(connect, server)
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], HEAD))
    only_file(server, "postmaster")
    assert server.tmp_files("postmaster") == []


def test_data_then_commands_in_one_send(server, connect):
    c = greeted(connect, server)
    start_data(c)
    c.send(HEAD + b"body\r\n.\r\nNOOP\r\nQUIT\r\n")
    queue_id(c.reply_line())
    assert c.reply_line().startswith("250 2.0.0")
    assert c.reply_line().startswith("221 2.0.0")
    stored = strip_trace(only_file(server, "postmaster")[1])
    assert stored == HEAD + b"body\r\n"
