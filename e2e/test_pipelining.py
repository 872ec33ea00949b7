"""PIPELINING (RFC 2920): commands in one send or one byte per
send; every command answered, in order, nothing buffered lost."""
import socket
import threading
import time

from conftest import only_file, queue_id, strip_trace

BODY = b"Subject: pipe\r\n\r\npipelined\r\n"


def codes(c, n):
    return [c.reply_line() for _ in range(n)]


def test_mail_rcpt_rcpt_data_in_one_send(start_server, connect):
    srv = start_server("-u", "alice:pw")
    c = connect(srv.port)
    c.greet()
    c.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<postmaster@localhost>\r\n"
           "RCPT TO:<alice@localhost>\r\nDATA\r\n")
    got = codes(c, 4)
    assert got[0].startswith("250 2.1.0"), got
    assert got[1].startswith("250 2.1.5"), got
    assert got[2].startswith("250 2.1.5"), got
    assert got[3].startswith("354"), got
    c.send(BODY + b".\r\n")
    queue_id(c.reply_line())
    for user in ("postmaster", "alice"):
        assert strip_trace(only_file(srv, user)[1]) == BODY


def test_whole_session_in_one_send(server, connect):
    c = connect(server.port)
    c.send(b"EHLO x.test\r\nMAIL FROM:<a@b.test>\r\n"
           b"RCPT TO:<postmaster@localhost>\r\nDATA\r\n" + BODY +
           b".\r\nQUIT\r\n")
    assert c.reply_line() == "220 localhost ESMTP"
    assert c.reply()[0] == 250
    got = codes(c, 5)
    assert got[0].startswith("250 2.1.0")
    assert got[1].startswith("250 2.1.5")
    assert got[2].startswith("354")
    queue_id(got[3])
    assert got[4].startswith("221 2.0.0")
    assert c.closed()
    assert strip_trace(only_file(server, "postmaster")[1]) == BODY


def test_session_one_byte_per_send(server, connect):
    c = connect(server.port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wire = (b"EHLO x.test\r\nMAIL FROM:<a@b.test>\r\n"
            b"RCPT TO:<postmaster@localhost>\r\nDATA\r\n" + BODY +
            b"..dot\r\n.\r\nQUIT\r\n")
    for i in range(len(wire)):
        c.send(wire[i:i + 1])
        time.sleep(0.002)
    assert c.reply_line().startswith("220 ")
    assert c.reply()[0] == 250
    got = codes(c, 5)
    assert [g[:3] for g in got] == ["250", "250", "354", "250", "221"], got
    queue_id(got[3])
    assert strip_trace(only_file(server, "postmaster")[1]) == (
        BODY + b".dot\r\n")


def test_errors_in_the_middle_keep_the_order(server, connect):
    c = connect(server.port)
    c.reply_line()
    c.send("EHLO x.test\r\nDATA\r\nMAIL FROM:<a@b.test>\r\n"
           "RCPT TO:<nobody@localhost>\r\nBOGUS\r\n"
           "RCPT TO:<postmaster@other.test>\r\n"
           "RCPT TO:<postmaster@localhost>\r\nMAIL FROM:<x@y.test>\r\n"
           "NOOP\r\nDATA\r\n")
    assert c.reply()[0] == 250
    got = codes(c, 9)
    want = ["503 5.5.1", "250 2.1.0", "550 5.1.1", "500 5.5.2", "550 5.7.1",
            "250 2.1.5", "503 5.5.1", "250 2.0.0", "354"]
    assert [g[:len(w)] for g, w in zip(got, want)] == want, got
    c.send(BODY + b".\r\n")
    queue_id(c.reply_line())


def test_two_messages_back_to_back_in_one_send(server, connect):
    c = connect(server.port)
    msg = (b"MAIL FROM:<a@b.test>\r\nRCPT TO:<postmaster@localhost>\r\n"
           b"DATA\r\n" + BODY + b".\r\n")
    c.send(b"EHLO x.test\r\n" + msg + msg.replace(b"pipelined", b"second")
           + b"QUIT\r\n")
    c.reply_line()
    c.reply()
    got = codes(c, 9)
    assert [g[:3] for g in got] == ["250", "250", "354", "250"] * 2 + [
        "221"], got
    assert queue_id(got[3]) != queue_id(got[7])
    files = server.wait_new("postmaster", 2)
    assert sorted(strip_trace(f.read_bytes()) for f in files) == sorted(
        [BODY, BODY.replace(b"pipelined", b"second")])


def test_many_commands_without_reading(server, connect):
    """50000 NOOPs written while nobody reads the replies: the server must
    stop reading while its output is blocked and lose nothing."""
    n = 50000
    c = connect(server.port, timeout=30)
    c.reply_line()
    wire = b"NOOP\r\n" * n + b"QUIT\r\n"
    sender = threading.Thread(target=c.send, args=(wire,), daemon=True)
    sender.start()
    time.sleep(1.0)
    for i in range(n):
        line = c.reply_line()
        assert line.startswith("250 2.0.0"), (i, line)
    assert c.reply_line().startswith("221 2.0.0")
    sender.join(30)
    assert not sender.is_alive()


def test_hundred_commands_in_one_send(server, connect):
    """More replies than fit in one output buffer: the rest of the input
    must be processed once the output drains."""
    c = connect(server.port)
    c.reply_line()
    c.send(b"EHLO x.test\r\n" + b"NOOP\r\n" * 100 + b"QUIT\r\n")
    assert c.reply()[0] == 250
    for i in range(100):
        line = c.reply_line()
        assert line.startswith("250 2.0.0"), (i, line)
    assert c.reply_line().startswith("221 2.0.0")
    assert c.closed()
