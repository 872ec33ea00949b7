"""SMTPUTF8 (RFC 6531) and REQUIRETLS (RFC 8689): UTF-8 local-parts with
the MAIL parameter, checked as characters (broken and overlong UTF-8,
C1 controls, '..' refused), 553 5.6.7 without the parameter, the mailbox
directory named by the same bytes, -u and the passwd-file with UTF-8
names, UTF-8 names and targets in --aliases (broken UTF-8 there exits 2
with FILE:LINE), Received's UTF8SMTP/UTF8SMTPS/UTF8SMTPA/UTF8SMTPSA,
Python's smtplib as the client; REQUIRETLS offered and accepted inside TLS only."""
import re
import smtplib
import subprocess

import pytest

from conftest import SMTPD_BIN, b64, greeted, only_file, queue_id, raw_reply, tree
from tls_helpers import certs, client_context, tls_args  # noqa: F401

JORG = "j\u00f6rg"                      # jörg
JORG_B = JORG.encode()
PASS = "s3cr3t-Pa55"
MSG = ("From: a@b.test\r\nTo: %s@localhost\r\nSubject: utf-8\r\n\r\n"
       "Gr\u00fc\u00dfe\r\n" % JORG).encode()
RECEIVED = re.compile(rb"^Received: from \S+ \(\[127\.0\.0\.1\]\) by localhost "
                      rb"with (\S+) id [A-Za-z0-9]+ for <([^>]*)>; ", re.M)


def proto_and_rcpt(data):
    m = RECEIVED.search(data)
    assert m, data[:300]
    return m.group(1).decode(), m.group(2)


def ehlo_keywords(c):
    c.send("EHLO client.test\r\n")
    return [line[4:] for line in raw_reply(c)[1:]]


def login_utf8(s):
    """AUTH PLAIN with a UTF-8 name (smtplib's login() encodes ASCII)."""
    code, text = s.docmd("AUTH", "PLAIN " + b64(b"\0" + JORG_B + b"\0" +
                                                PASS.encode()))
    assert code == 235, text


def cmd(c, line):
    c.send(line + b"\r\n")
    return c.reply_line()


def test_ehlo_lists_smtputf8_but_not_requiretls_in_clear(server, connect):
    c = connect(server.port)
    c.reply_line()
    words = ehlo_keywords(c)
    assert "SMTPUTF8" in words and "CHUNKING" in words
    assert "REQUIRETLS" not in words


def test_smtplib_sends_to_a_utf8_user(start_server):
    srv = start_server("-u", JORG + ":" + PASS)
    assert (srv.root / JORG / "new").is_dir()
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
    try:
        assert s.sendmail("s\u00e9nder@b.test", [JORG + "@localhost"], MSG,
                          mail_options=["SMTPUTF8"]) == {}
    finally:
        s.quit()
    _, data = only_file(srv, JORG)
    assert data.endswith(b"\r\n" + MSG)
    assert data.startswith(b"Return-Path: <s\xc3\xa9nder@b.test>\r\n")
    assert proto_and_rcpt(data) == ("UTF8SMTP", JORG_B + b"@localhost")


def test_ascii_letters_fold_other_characters_do_not(start_server, connect):
    srv = start_server("-u", JORG + ":" + PASS)
    c = greeted(connect, srv)
    assert cmd(c, b"MAIL FROM:<a@b.test> SMTPUTF8").startswith("250 2.1.0")
    assert cmd(c, b"RCPT TO:<J\xc3\xb6RG@localhost>").startswith("250 2.1.5")
    assert cmd(c, b"RCPT TO:<J\xc3\x96RG@localhost>") == "550 5.1.1 No such user here"
    c.send(b"DATA\r\n")
    assert c.reply_line().startswith("354")
    c.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
    queue_id(c.reply_line())
    only_file(srv, JORG)
    assert not (srv.root / "J\u00d6RG").exists()


def test_utf8_without_the_parameter_is_553(start_server, connect):
    srv = start_server("-u", JORG + ":" + PASS)
    c = greeted(connect, srv)
    assert cmd(c, b"MAIL FROM:<j\xc3\xb6rg@b.test>") == \
        "553 5.6.7 Non-ASCII address requires SMTPUTF8"
    assert cmd(c, b"MAIL FROM:<a@b\xc3\xbcro.test>") == \
        "553 5.6.7 Non-ASCII address requires SMTPUTF8"
    assert cmd(c, b"MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert cmd(c, b"RCPT TO:<j\xc3\xb6rg@localhost>") == \
        "553 5.6.7 Non-ASCII address requires SMTPUTF8"


BROKEN = [b"a\xc0\xafb", b"\xc0\xae\xc0\xae", b"a\x80", b"j\xc3", b"\xed\xa0\x80",
          b"\xf4\x90\x80\x80", b"\xff", b"\xe0\x80\xaf"]


@pytest.mark.parametrize("local", BROKEN, ids=[repr(b) for b in BROKEN])
@pytest.mark.parametrize("param", [b"", b" SMTPUTF8"])
def test_broken_utf8_is_501_513_with_or_without_the_parameter(server, connect,
                                                              local, param):
    before = tree(server.root)
    c = greeted(connect, server)
    assert cmd(c, b"MAIL FROM:<" + local + b"@b.test>" + param).startswith(
        "501 5.1.3 ")
    assert cmd(c, b"MAIL FROM:<a@b.test>" + param).startswith("250 2.1.0")
    assert cmd(c, b"RCPT TO:<" + local + b"@localhost>").startswith("501 5.1.3 ")
    assert tree(server.root) == before


@pytest.mark.parametrize("local", [b"a\xc2\x85b", b"\xc2\x9f", b"a/b", b"a\x01b",
                                   b"\xc3\xb6..a", b".\xc3\xb6",
                                   b"\xc3\xb6" * 32 + b"a"])
def test_refused_utf8_local_parts(server, connect, local):
    c = greeted(connect, server)
    assert cmd(c, b"MAIL FROM:<a@b.test> SMTPUTF8").startswith("250 2.1.0")
    assert cmd(c, b"RCPT TO:<" + local + b"@localhost>").startswith("501 5.1.3 ")


def test_64_octets_of_utf8_are_accepted_as_a_local_part(start_server, connect):
    name = "\u00f6" * 32                     # 64 octets
    srv = start_server("-u", name + ":" + PASS)
    c = greeted(connect, srv)
    assert cmd(c, b"MAIL FROM:<a@b.test> SMTPUTF8").startswith("250 2.1.0")
    assert cmd(c, b"RCPT TO:<" + name.encode() + b"@localhost>").startswith(
        "250 2.1.5")


def test_passwd_file_user_logs_in_and_received_says_utf8smtpa(start_server,
                                                              tmp_path):
    pw = tmp_path / "users"
    pw.write_text("%s:{PLAIN}%s\n" % (JORG, PASS), encoding="utf-8")
    srv = start_server("--passwd-file", str(pw))
    assert (srv.root / JORG).is_dir()
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
    try:
        s.ehlo()
        login_utf8(s)
        assert s.sendmail("a@b.test", [JORG + "@localhost"], MSG,
                          mail_options=["SMTPUTF8"]) == {}
    finally:
        s.quit()
    _, data = only_file(srv, JORG)
    assert proto_and_rcpt(data)[0] == "UTF8SMTPA"
    assert "authenticated as %s" % JORG in srv.log_text()


@pytest.mark.parametrize("login", [False, True])
def test_inside_tls_utf8smtps_and_sa(start_server, certs, login):
    srv = start_server(*tls_args(certs, "-u", JORG + ":" + PASS))
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
    try:
        s.starttls(context=client_context())
        s.ehlo()
        if login:
            login_utf8(s)
        assert s.sendmail("a@b.test", [JORG + "@localhost"], MSG,
                          mail_options=["SMTPUTF8"]) == {}
    finally:
        s.quit()
    _, data = only_file(srv, JORG)
    assert proto_and_rcpt(data)[0] == ("UTF8SMTPSA" if login else "UTF8SMTPS")


def test_requiretls_outside_tls_is_an_unknown_parameter(server, connect):
    c = greeted(connect, server)
    assert cmd(c, b"MAIL FROM:<a@b.test> REQUIRETLS") == \
        "555 5.5.4 Unsupported parameter"


def test_requiretls_inside_tls_is_offered_and_accepted(start_server, certs):
    srv = start_server(*tls_args(certs))
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
    try:
        s.ehlo()
        assert not s.has_extn("requiretls")
        s.starttls(context=client_context())
        s.ehlo()
        assert s.has_extn("requiretls") and s.has_extn("smtputf8")
        assert s.sendmail("a@b.test", ["postmaster@localhost"],
                          b"Subject: r\r\n\r\nhi\r\n",
                          mail_options=["REQUIRETLS"]) == {}
    finally:
        s.quit()
    _, data = only_file(srv, "postmaster")
    assert data.endswith(b"\r\nSubject: r\r\n\r\nhi\r\n")
    assert proto_and_rcpt(data)[0] == "ESMTPS"


# ---- UTF-8 in the aliases file --------------------------------------------

BJORN = "bj\u00f6rn"                    # björn, a UTF-8 mailbox as a target


def test_utf8_alias_reaches_its_mailboxes(start_server, connect, tmp_path):
    path = tmp_path / "aliases"
    path.write_bytes(b"j\xc3\xb6rg: alice\n\xc3\xa9quipe: alice, Bj\xc3\xb6rn\n")
    srv = start_server("-u", "alice:x", "-u", BJORN + ":x",
                       "--aliases", str(path))
    c = greeted(connect, srv)
    assert cmd(c, b"MAIL FROM:<a@b.test> SMTPUTF8") == "250 2.1.0 Sender ok"
    assert cmd(c, b"RCPT TO:<J\xc3\xb6rg@localhost>") == "250 2.1.5 Recipient ok"
    assert cmd(c, b"RCPT TO:<J\xc3\x96RG@localhost>") == \
        "550 5.1.1 No such user here"
    c.send(b"DATA\r\n")
    assert c.reply_line().startswith("354 ")
    c.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
    queue_id(c.reply_line())
    _, data = only_file(srv, "alice")
    assert proto_and_rcpt(data) == ("UTF8SMTP", b"J\xc3\xb6rg@localhost")
    assert srv.new_files(BJORN) == []
    assert cmd(c, b"MAIL FROM:<a@b.test> SMTPUTF8") == "250 2.1.0 Sender ok"
    assert cmd(c, b"RCPT TO:<\xc3\xa9quipe@localhost>") == "250 2.1.5 Recipient ok"
    c.send(b"DATA\r\n")
    assert c.reply_line().startswith("354 ")
    c.send(b"Subject: y\r\n\r\nhi\r\n.\r\n")
    queue_id(c.reply_line())
    assert len(srv.wait_new("alice", 2)) == 2
    only_file(srv, BJORN)


@pytest.mark.parametrize("text,line,reason", [
    (b"a: alice\nj\xc3: alice\n", 2, "invalid UTF-8"),
    (b"\xc0\xaf: alice\n", 1, "invalid UTF-8"),
    (b"a: alice,\n  b\xe0\x80\xaf\n", 2, "invalid UTF-8"),
    (b"a\xc2\x85: alice\n", 1, "invalid UTF-8"),
])
def test_broken_utf8_in_the_aliases_file_exits_2(tmp_path, text, line, reason):
    path = tmp_path / "aliases"
    path.write_bytes(text)
    r = subprocess.run([SMTPD_BIN, "-f", str(tmp_path / "mail"),
                        "-a", "127.0.0.1", "-u", "alice:x",
                        "--aliases", str(path)], capture_output=True)
    assert r.returncode == 2
    first = r.stderr.splitlines()[0]
    assert first.startswith(b"smtpd: %s:%d: " % (bytes(path), line)), r.stderr
    assert reason.encode() in first
