"""No relay, no escape, no injection (docs/reliability.md).

Tricky recipients are either delivered to the mailbox their local-part
names, or refused with 5xx; nothing is ever written outside the mailbox
root and RCPT never creates a mailbox; the server never connects
anywhere.  Control bytes in HELO, MAIL, RCPT and AUTH show up escaped as
\\xHH in the Received header and the log: no extra header line, no extra
log line.
"""
import os
import pathlib
import re
import socket
import struct

import pytest

from conftest import b64, greeted, queue_id

# (domain flag, recipient, mailbox it may be delivered to or None: 5xx only)
RCPTS = [
    ("localhost", "<user@example.test@evil.test>", None),
    ("localhost", "<postmaster@localhost@evil.test>", None),
    ("localhost", "<@evil.test:postmaster@localhost>", "postmaster"),
    ("localhost", "<@localhost:postmaster@evil.test>", None),
    ("localhost", "<postmaster%evil.test@localhost>", None),
    ("localhost", "<postmaster!evil.test@localhost>", None),
    ("localhost", "<evil.test!postmaster@localhost>", None),
    ("localhost", '<"quoted"@localhost>', None),
    ("localhost", '<"postmaster@evil.test"@localhost>', None),
    ("localhost", "<postmaster@[127.0.0.1]>", "postmaster"),
    ("localhost", "<postmaster@[IPv6:::1]>", "postmaster"),
    ("localhost", "<postmaster@127.0.0.1>", "postmaster"),
    ("localhost", "<POSTMASTER@LOCALHOST>", "postmaster"),
    ("localhost", "<PostMaster@LocalHost>", "postmaster"),
    ("localhost", "<postmaster@localhost.>", "postmaster"),
    ("localhost", "<postmaster@localhost..>", None),
    ("localhost", "<postmaster@.localhost>", None),
    ("localhost", "<postmaster@localhost.evil.test>", None),
    ("localhost", "<postmaster@evil.test>", None),
    ("localhost", "<postmaster>", "postmaster"),
    ("localhost", "<../../etc@localhost>", None),
    ("localhost", "<../evil@localhost>", None),
    ("localhost", "<..@localhost>", None),
    ("localhost", "<.@localhost>", None),
    ("localhost", "<a/b@localhost>", None),
    ("localhost", "</etc/passwd@localhost>", None),
    ("localhost", "<evil/../postmaster@localhost>", None),
    ("localhost", "<tmp@localhost>", None),
    ("localhost", "<new@localhost>", None),
    ("localhost", "<postmaster\\@evil.test@localhost>", None),
    ("localhost", "<newuser@localhost>", None),
    ("example.test", "<user@example.test@evil.test>", None),
    ("example.test", "<@evil.test:user@example.test>", "user"),
    ("example.test", "<user%evil.test@example.test>", None),
    ("example.test", '<"user"@example.test>', None),
    ("example.test", "<user@[127.0.0.1]>", "user"),
    ("example.test", "<USER@EXAMPLE.TEST>", "user"),
    ("example.test", "<user@example.test.>", "user"),
    ("example.test", "<user@evil.example.test>", None),
    ("example.test", "<user@example.test.evil.test>", None),
    ("example.test", "<user@localhost>", None),
]


def tree(path, skip=()):
    """Every path under path, as strings relative to it, minus skipped."""
    out = set()
    for p in pathlib.Path(path).rglob("*"):
        rel = str(p.relative_to(path))
        if not any(re.match(s, rel) for s in skip):
            out.add(rel)
    return out


def outward_connections(pid, port):
    """The server's TCP sockets that are neither listening on nor accepted
    from its own SMTP port: a relay would show up here."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    odd = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for row in f:
                cols = row.split()
                local_port = int(cols[1].rsplit(":", 1)[1], 16)
                if cols[9] in inodes and local_port != port:
                    odd.append(row.strip())
    return odd


@pytest.mark.parametrize("domain", ["localhost", "example.test"])
def test_tricky_recipients_are_local_or_refused(start_server, connect,
                                                tmp_path, domain):
    # a maildir right next to the root: "../evil" must never reach it
    for sub in ("tmp", "new", "cur"):
        (tmp_path / "evil" / sub).mkdir(parents=True)
    srv = start_server("-d", domain, "-u", "user:pw")
    # the journal holds every message too, but it is not a mailbox
    skip = (r"mail/[^/]+/(new|tmp)/", r"s\d+/", r"mail/\.journal")
    before = tree(tmp_path, skip)
    c = greeted(connect, srv)
    delivered = {}
    for n, (dom, rcpt, box) in enumerate(RCPTS):
        if dom != domain:
            continue
        assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
        line = c.cmd("RCPT TO:%s" % rcpt)
        if line.startswith("250"):
            assert box is not None, (rcpt, line)
            assert c.cmd("DATA").startswith("354")
            c.send(b"Subject: case %d\r\n\r\ntoken-%d-end\r\n.\r\n" % (n, n))
            queue_id(c.reply_line())
            delivered[n] = box
        else:
            assert line[0] == "5", (rcpt, line)
            assert c.cmd("RSET").startswith("250")
        assert srv.proc.poll() is None
    assert c.cmd("QUIT").startswith("221")
    print("%s: %d delivered, %d refused" % (
        domain, len(delivered),
        sum(1 for d, _, _ in RCPTS if d == domain) - len(delivered)))
    # each delivered case is in its mailbox's new/, and nowhere else
    for path in tmp_path.rglob("*"):
        if not path.is_file() or path.parent.parent.parent != srv.root:
            continue
        for n, box in delivered.items():
            if b"token-%d-end" % n in path.read_bytes():
                assert path.parent == srv.root / box / "new", (n, path)
    for n, box in delivered.items():
        hits = [p for p in (srv.root / box / "new").iterdir()
                if b"token-%d-end" % n in p.read_bytes()]
        assert len(hits) == 1, (n, box)
    assert tree(tmp_path, skip) == before
    assert list((tmp_path / "evil" / "new").iterdir()) == []
    assert sorted(p.name for p in srv.root.iterdir()
                  if p.name != ".journal") == ["postmaster", "user"]
    assert outward_connections(srv.pid, srv.port) == []


def test_authenticated_users_cannot_relay_either(start_server, connect):
    srv = start_server("-u", "alice:pw")
    c = greeted(connect, srv)
    assert c.cmd("AUTH PLAIN %s" % b64("\0alice\0pw")).startswith("235")
    assert c.cmd("MAIL FROM:<alice@localhost>").startswith("250")
    for rcpt in ("<someone@evil.test>", "<@localhost:someone@evil.test>",
                 "<someone@[192.0.2.1]>", "<someone%evil.test@localhost>"):
        line = c.cmd("RCPT TO:%s" % rcpt)
        assert line[0] == "5", (rcpt, line)
    assert c.cmd("DATA").startswith("503")
    assert outward_connections(srv.pid, srv.port) == []


# ---- injection into the Received header and the log -------------------------

HELOS = [b"evil\rX-Injected: yes", b"a\x01b", b"x\x1b[2Jy", b"caf\xc3\xa9",
         b"del\x7fete", b"back\\x0dX-Injected: slash", b"tab\there",
         b"evil\rX-Injected: yes\r"]
LOG_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} smtpd\[\d+\] "
                      rb"(debug|info|warning|error): [\x20-\x7e]*$")


def header_block(data):
    head, sep, _ = data.partition(b"\r\n\r\n")
    assert sep, data[:300]
    return head.split(b"\r\n")


def check_log(srv):
    log = srv.log.read_bytes()
    assert log.endswith(b"\n")
    bad = [l for l in log[:-1].split(b"\n") if not LOG_LINE.match(l)]
    assert bad == [], bad[:5]
    assert b"\nX-Injected" not in log and b"\rX-Injected" not in log


@pytest.mark.parametrize("helo", HELOS, ids=lambda h: repr(h)[2:-1])
@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
def test_control_bytes_in_helo_are_escaped(start_server, connect, helo,
                                           verb):
    srv = start_server()
    c = connect(srv.port)
    assert c.reply_line().startswith("220")
    c.send(verb + b" " + helo + b"\r\n")
    code, _ = c.reply()
    assert code == 250 or 500 <= code < 600, code
    if code != 250:
        check_log(srv)
        return
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: helo test\r\n\r\nbody\r\n.\r\n")
    qid = queue_id(c.reply_line())
    assert c.cmd("QUIT").startswith("221")
    f = srv.wait_new("postmaster")[0]
    lines = header_block(f.read_bytes())
    assert [l.split(b":")[0] for l in lines] == [b"Return-Path", b"Received",
                                                 b"Subject"], lines
    for line in lines:
        assert re.match(rb"^[\x20-\x7e]*$", line), line
    received = lines[1].decode("ascii")
    for ch in helo.decode("latin-1"):
        if not 0x20 <= ord(ch) < 0x7f or ch == "\\":
            assert "\\x%02x" % ord(ch) in received, received
    check_log(srv)
    assert qid in srv.log_text()


def test_control_bytes_in_addresses_and_auth_are_escaped(start_server,
                                                         connect):
    srv = start_server("-u", "alice:pw")
    c = greeted(connect, srv)
    for line in (b"MAIL FROM:<a\rX-Injected: yes@b.test>",
                 b"MAIL FROM:<a@b.test>\rX-Injected: yes",
                 b"MAIL FROM:<a\x01b@b.test>",
                 b"MAIL FROM:<a@b\x00.test>",
                 b"MAIL FROM:<\"a\rX-Injected: yes\"@b.test>"):
        c.send(line + b"\r\n")
        assert c.reply_line()[0] == "5", line
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
    for line in (b"RCPT TO:<a\rX-Injected: yes@localhost>",
                 b"RCPT TO:<postmaster@localhost>\rX-Injected: yes",
                 b"RCPT TO:<\x1b[31mred@localhost>",
                 b"RCPT TO:<x@evil.test\x07>"):
        c.send(line + b"\r\n")
        assert c.reply_line()[0] == "5", line
    assert c.cmd("RSET").startswith("250")
    c.send(b"AUTH PLAIN %s\r\n" % b64(b"\0evil\rX-Injected: yes\0pw").encode())
    assert c.reply_line().startswith("535")
    c.send(b"AUTH LOGIN %s\r\n" % b64(b"evil\nX-Injected: yes").encode())
    assert c.reply_line().startswith("334")
    c.send(b"%s\r\n" % b64(b"pw").encode())
    assert c.reply_line().startswith("535")
    assert c.cmd("QUIT").startswith("221")
    c.close()
    srv.stop()
    check_log(srv)
    log = srv.log_text()
    assert "\\x0dX-Injected" in log and "\\x0aX-Injected" in log, log


@pytest.mark.parametrize("rcpt, reply", [
    (b"<a\x00b@localhost>", "501 5.1.3"),
    (b"<\x00postmaster@localhost>", "501 5.1.3"),
    (b"<postmaster\x00@localhost>", "501 5.1.3"),
    (b"<a\x01b@localhost>", "501 5.1.3"),
    (b"<a\x7fb@localhost>", "501 5.1.3"),
    (b"<postmaster@local\x00host>", "501 5.1.2"),
], ids=["nul-inside", "nul-first", "nul-last", "ctrl-01", "del", "nul-domain"])
def test_nul_or_control_byte_in_rcpt_is_a_refused_rcpt(start_server, connect,
                                                        rcpt, reply):
    """A NUL is judged where it stands, like any other control byte: in a
    local-part 501 5.1.3, in the domain 501 5.1.2; logged as a rejected
    RCPT and counted in the monitor's rejected-recipients counter."""
    srv = start_server()
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
    c.send(b"RCPT TO:" + rcpt + b"\r\n")
    assert c.reply_line().startswith(reply + " ")
    # the session goes on
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("QUIT").startswith("221")
    c.close()
    assert rejected_rcpts(srv) == 1
    srv.stop()
    check_log(srv)
    rejected = [ln for ln in srv.log_text().splitlines()
                if "rcpt rejected" in ln]
    assert len(rejected) == 1 and reply in rejected[0], rejected


def rejected_rcpts(srv):
    """The monitor's rejected-recipients counter (command 0x08)."""
    req = b"\xff\xfe\x00\x00\x01smtpd\x00\x00\x00\x08"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(req, ("127.0.0.1", srv.monitor_port))
        res = s.recv(64)
    assert len(res) == 15 and res[5] == 0, res
    return struct.unpack(">Q", res[6:14])[0]
