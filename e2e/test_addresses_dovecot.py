"""Dovecot shows a user+tag message in the tag's folder: smtpd delivers
alice+news@localhost into the Maildir++ folder alice/.news/ (made by
hand beforehand, as a user or an IMAP client would), and a private
Dovecot (started as in test_readback.py) lists the folder `news` and
gives the message there byte for byte, while INBOX stays empty."""
import imaplib

from conftest import dot_stuff, strip_trace
from test_readback import (Dovecot, dovecot_base,  # noqa: F401
                           message)


def imap_folder(dc, user, folder):
    """The folder names user sees, and every message in folder as bytes
    (read-only, BODY.PEEK[])."""
    m = imaplib.IMAP4("127.0.0.1", dc.port, timeout=10)
    try:
        typ, _ = m.login(user, dc.password)
        assert typ == "OK"
        typ, listed = m.list()
        assert typ == "OK", listed
        names = [line.decode().rsplit(" ", 1)[1].strip('"') for line in listed]
        typ, _ = m.select(folder, readonly=True)
        assert typ == "OK", dc.logs()
        typ, data = m.search(None, "ALL")
        assert typ == "OK"
        found = []
        for num in data[0].split():
            typ, parts = m.fetch(num, "(BODY.PEEK[])")
            assert typ == "OK", parts
            found.append(parts[0][1])
        return names, found
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_dovecot_shows_a_tag_message_in_its_folder(dovecot_base, start_server,
                                                   connect):
    binary, base = dovecot_base
    root = base / "mail"
    srv = start_server("-u", "alice:pw", root=root)
    for sub in ("tmp", "new", "cur"):
        (root / "alice" / ".news" / sub).mkdir(parents=True)
    sent = message(b"a newsletter")
    c = connect(srv.port)
    c.greet()
    assert c.cmd("MAIL FROM:<news@example.org>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<alice+news@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    c.send(dot_stuff(sent) + b".\r\n")
    assert c.reply_line().startswith("250 2.0.0 Ok: queued as ")
    files = srv.wait_new("alice/.news")
    assert len(files) == 1
    stored = files[0].read_bytes()
    assert strip_trace(stored) == sent
    assert b"for <alice+news@localhost>" in stored
    assert srv.new_files("alice") == []

    dc = Dovecot(binary, base, root)
    try:
        dc.start()
        names, got = imap_folder(dc, "alice", "news")
        _, inbox = imap_folder(dc, "alice", "INBOX")
    finally:
        dc.stop()
    assert "news" in names, names
    assert got == [stored], dc.logs()
    assert inbox == []
