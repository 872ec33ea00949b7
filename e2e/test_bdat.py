"""CHUNKING (RFC 3030): BDAT n [LAST]. The content is stored byte for
byte (no unstuffing, no end marker), each chunk but the last answered
"250 2.0.0 n octets received", the last with the reply DATA gets; a
refused chunk's bytes are still read, a size that does not parse closes
the connection, the size limit, RSET, pipelining, memory."""
import socket
import threading
import time

import pytest

from conftest import greeted, no_reply, only_file, queue_id, strip_trace
from test_hostile import vm_rss_kb

HEAD = b"Subject: chunks\r\n\r\n"


def envelope(c, rcpt="postmaster@localhost"):
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<%s>" % rcpt).startswith("250 2.1.5")


def bdat(c, data, last=False):
    c.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)
    return c.reply_line()


def test_ehlo_lists_chunking(server, connect):
    c = connect(server.port)
    assert "CHUNKING" in c.greet()


def test_chunks_are_stored_as_their_concatenation(server, connect):
    c = greeted(connect, server)
    envelope(c)
    parts = [HEAD + b"one\r\n.\r\n", b"..two\nbare LF\rbare CR", b"\r\n.", b""]
    assert bdat(c, parts[0]) == "250 2.0.0 %d octets received" % len(parts[0])
    assert bdat(c, parts[1]) == "250 2.0.0 %d octets received" % len(parts[1])
    assert bdat(c, parts[2]) == "250 2.0.0 3 octets received"
    qid = queue_id(bdat(c, parts[3], last=True))
    path, data = only_file(server, "postmaster")
    assert qid in path.name
    assert strip_trace(data) == b"".join(parts)
    assert b"id %s" % qid.encode() in data
    assert "message %s comes in BDAT chunks" % qid in server.log_text()
    assert c.cmd("NOOP").startswith("250 2.0.0")


def test_bdat_0_last_ends_the_message(server, connect):
    c = greeted(connect, server)
    envelope(c)
    assert bdat(c, HEAD) .startswith("250 2.0.0 ")
    queue_id(c.cmd("BDAT 0 LAST"))
    assert strip_trace(only_file(server, "postmaster")[1]) == HEAD


def test_a_lone_bdat_0_last_stores_an_empty_message(server, connect):
    c = greeted(connect, server)
    envelope(c)
    queue_id(c.cmd("BDAT 0 LAST"))
    assert strip_trace(only_file(server, "postmaster")[1]) == b""


def test_bdat_0_without_last_is_a_syntax_error(server, connect):
    c = greeted(connect, server)
    envelope(c)
    assert c.cmd("BDAT 0") == "501 5.5.4 Syntax error in parameters or arguments"
    queue_id(bdat(c, HEAD, last=True))


@pytest.mark.parametrize("arg", ["", "x", "-1", "+5", "1x", "10 LASTX",
                                 "10 FIRST", "9223372036854775808",
                                 "99999999999999999999999"])
def test_a_size_that_does_not_parse_closes(server, connect, arg):
    c = greeted(connect, server)
    envelope(c)
    c.send(("BDAT %s\r\n" % arg).encode() + b"MAIL FROM:<x@y>\r\n")
    line = c.reply_line()
    assert line.startswith("521 5.5.4"), line
    assert c.closed()
    assert server.new_files("postmaster") == []


def test_largest_size_parses(server, connect):
    """2^63-1 is a size: the 521 is not given; the client then leaves."""
    c = greeted(connect, server)
    c.send(b"BDAT 9223372036854775807\r\nsome bytes")
    assert no_reply(c, 0.5)


def test_refused_chunk_bytes_are_read(server, connect):
    c = greeted(connect, server)
    payload = b"RSET\r\nMAIL FROM:<evil@x>\r\n"
    assert bdat(c, payload) == "503 5.5.1 MAIL first"
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert bdat(c, payload, last=True) == "503 5.5.1 RCPT first"
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    queue_id(bdat(c, HEAD, last=True))
    assert strip_trace(only_file(server, "postmaster")[1]) == HEAD


def test_data_after_bdat_is_a_bad_sequence(server, connect):
    c = greeted(connect, server)
    envelope(c)
    assert bdat(c, HEAD).startswith("250 2.0.0")
    assert c.cmd("DATA") == "503 5.5.1 Bad sequence of commands"
    queue_id(bdat(c, b"end\r\n", last=True))
    assert strip_trace(only_file(server, "postmaster")[1]) == HEAD + b"end\r\n"


def test_rset_drops_what_the_chunks_held(server, connect):
    c = greeted(connect, server)
    envelope(c)
    assert bdat(c, HEAD + b"dropped\r\n").startswith("250 2.0.0")
    assert c.cmd("RSET") == "250 2.0.0 Reset"
    assert server.tmp_files("postmaster") == []
    envelope(c)
    queue_id(bdat(c, HEAD + b"kept\r\n", last=True))
    assert strip_trace(only_file(server, "postmaster")[1]) == HEAD + b"kept\r\n"


def test_chunk_over_the_limit_and_later_ones_get_552(start_server, connect):
    srv = start_server("-z", "1000")
    c = greeted(connect, srv)
    envelope(c)
    assert bdat(c, b"x" * 600).startswith("250 2.0.0 600 ")
    assert bdat(c, b"y" * 600) == "552 5.3.4 Message too big"
    assert bdat(c, b"z" * 10) == "552 5.3.4 Message too big"
    assert bdat(c, b"w" * 10, last=True) == "552 5.3.4 Message too big"
    assert c.cmd("NOOP").startswith("250 2.0.0")
    envelope(c)
    queue_id(bdat(c, HEAD, last=True))
    assert strip_trace(only_file(srv, "postmaster")[1]) == HEAD
    assert srv.tmp_files("postmaster") == []


def test_pipelined_chunks_and_quit_in_one_send(server, connect):
    c = greeted(connect, server)
    c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<postmaster@localhost>\r\n"
           b"BDAT 5\r\nhelloBDAT 8 LAST\r\n world\r\nQUIT\r\n")
    assert c.reply_line().startswith("250 2.1.0")
    assert c.reply_line().startswith("250 2.1.5")
    assert c.reply_line() == "250 2.0.0 5 octets received"
    queue_id(c.reply_line())
    assert c.reply_line().startswith("221 2.0.0")
    assert strip_trace(only_file(server, "postmaster")[1]) == b"hello world\r\n"


def test_chunk_boundary_inside_crlf_dot_crlf_ends_nothing(server, connect):
    c = greeted(connect, server)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    envelope(c)
    smuggled = (b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<postmaster@localhost>"
                b"\r\nDATA\r\nsmuggled\r\n")
    stored = b""
    for cut in range(1, 5):
        wire = b"x\r\n.\r\n" + smuggled
        for part in (wire[:cut + 1], wire[cut + 1:]):
            assert bdat(c, part).startswith("250 2.0.0 ")
            stored += part
    for seq in (b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n"):
        assert bdat(c, seq + smuggled).startswith("250 2.0.0 ")
        stored += seq + smuggled
    queue_id(bdat(c, b"", last=True))
    assert c.cmd("NOOP").startswith("250 2.0.0"), "a smuggled reply came"
    assert strip_trace(only_file(server, "postmaster")[1]) == stored


def test_chunk_bytes_one_per_send(server, connect):
    c = greeted(connect, server)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    envelope(c)
    wire = b"BDAT 6 LAST\r\nab\r\ncdQUIT\r\n"
    for i in range(len(wire)):
        c.send(wire[i:i + 1])
    queue_id(c.reply_line())
    assert c.reply_line().startswith("221 2.0.0")
    assert strip_trace(only_file(server, "postmaster")[1]) == b"ab\r\ncd"


def test_received_names_esmtp_and_the_one_recipient(server, connect):
    c = greeted(connect, server)
    envelope(c)
    queue_id(bdat(c, HEAD, last=True))
    data = only_file(server, "postmaster")[1]
    assert b" with ESMTP id " in data
    assert b" for <postmaster@localhost>;" in data


@pytest.mark.slow
def test_fifty_megabytes_in_one_chunk_keep_memory_bounded(start_server,
                                                          connect):
    size = 50 * 1024 * 1024
    srv = start_server("-z", str(size + 1024))
    c = greeted(connect, srv)
    envelope(c)
    rss0 = vm_rss_kb(srv.pid)
    c.send(b"BDAT %d LAST\r\n" % size)
    block = (b"0123456789abcdef" * 4096)
    peak = [rss0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], vm_rss_kb(srv.pid))
            time.sleep(0.05)

    t = threading.Thread(target=watch)
    t.start()
    try:
        for _ in range(size // len(block)):
            c.send(block)
        queue_id(c.reply_line())
    finally:
        stop.set()
        t.join()
    path, _ = only_file(srv, "postmaster", timeout=60)
    assert path.stat().st_size > size
    assert peak[0] - rss0 < 8 * 1024, (rss0, peak[0])


@pytest.mark.slow
def test_message_deadline_counts_from_the_first_chunk(start_server, connect):
    """-T 1: a one-octet chunk every 0.5 s keeps each command inside -T,
    but the message must be whole 10 s after its first chunk: then
    421 4.4.2, nothing stored, nothing left in tmp/."""
    from test_hostile import wait_until
    srv = start_server("-T", "1")
    c = greeted(connect, srv)
    envelope(c)
    replies = []
    started = time.monotonic()
    for _ in range(60):                 # bounded: 30 s at most
        c.send(b"BDAT 1\r\nx")
        line = c.reply_line()
        replies.append(line)
        if not line.startswith("250 "):
            break
        time.sleep(0.5)
    assert replies[-1] == ("421 4.4.2 localhost Message took too long, "
                           "closing connection"), replies
    assert time.monotonic() - started >= 9.5
    assert len(replies) >= 10 and all(r == "250 2.0.0 1 octets received"
                                      for r in replies[:-1]), replies
    assert c.closed()
    assert "not complete within 10 s" in srv.log_text()
    assert srv.new_files("postmaster") == []
    assert wait_until(lambda: srv.tmp_files("postmaster") == [], 10)
