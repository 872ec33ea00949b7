"""Dovecot reads a UTF-8 mailbox over IMAP: Python's smtplib delivers with
SMTPUTF8 to jörg (a user of a passwd-file that smtpd and Dovecot both
read), then jörg logs in to a private Dovecot (started as in
test_readback.py) with AUTHENTICATE PLAIN carrying the UTF-8 name, and
FETCH gives the stored file byte for byte. Dovecot's mail_location
`ROOT/%u` finds the directory smtpd named by the same bytes."""
import imaplib
import os
import pwd
import re
import shutil
import smtplib
import subprocess

from conftest import strip_trace
from test_readback import Dovecot, dovecot_base, skip_loudly  # noqa: F401

JORG = "j\u00f6rg"
JORG_B = JORG.encode()
PASS = "J\u00f6rg's pw 1"
MSG = ("From: j\u00f6rg@localhost\r\nTo: j\u00f6rg@localhost\r\n"
       "Subject: Gr\u00fc\u00dfe\r\n\r\nf\u00fcr Dovecot\r\n").encode()


def dovecot_reads(dc, passwd):
    """The template's static passdb becomes the shared passwd-file, and
    Dovecot takes user names of any bytes (its default allows only ASCII
    letters, digits and .-_@)."""
    text = dc.conf.read_text()
    static = re.compile(r"passdb \{\n  driver = static\n  args = [^\n]*\n\}")
    assert static.search(text), text
    text = static.sub("passdb {\n  driver = passwd-file\n"
                      "  args = scheme=CRYPT username_format=%%u %s\n}" % passwd,
                      text)
    dc.conf.write_text(text + "auth_username_chars =\n")


def imap_fetch_utf8(dc, user, password):
    m = imaplib.IMAP4("127.0.0.1", dc.port, timeout=10)
    try:
        typ, _ = m.authenticate("PLAIN", lambda _: b"\0" + user + b"\0" +
                                password)
        assert typ == "OK"
        typ, _ = m.select("INBOX", readonly=True)
        assert typ == "OK", dc.logs()
        typ, data = m.search(None, "ALL")
        assert typ == "OK"
        found = []
        for num in data[0].split():
            typ, parts = m.fetch(num, "(BODY.PEEK[])")
            assert typ == "OK", parts
            found.append(parts[0][1])
        return found
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_dovecot_reads_a_utf8_mailbox(dovecot_base, start_server, capsys):
    binary, base = dovecot_base
    if not shutil.which("doveadm"):
        skip_loudly(capsys, "doveadm missing; make test-deps installs it")
    hashed = subprocess.run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p",
                             PASS], check=True, capture_output=True,
                            text=True).stdout.strip()
    passwd = base / "passwd"
    passwd.write_bytes(JORG_B + b":" + hashed.encode() + b"\n")
    os.chmod(passwd, 0o640)
    if os.getuid() == 0:
        os.chown(passwd, 0, pwd.getpwnam("dovecot").pw_gid)

    root = base / "mail"
    srv = start_server("--passwd-file", str(passwd), root=root)
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
    try:
        assert s.sendmail("s\u00e9nder@b.test", [JORG + "@localhost"], MSG,
                          mail_options=["SMTPUTF8"]) == {}
    finally:
        s.quit()
    files = srv.wait_new(JORG)
    assert len(files) == 1 and files[0].parent.parent == root / JORG
    stored = files[0].read_bytes()
    assert strip_trace(stored) == MSG

    dc = Dovecot(binary, base, root)
    dovecot_reads(dc, passwd)
    try:
        dc.start()
        got = imap_fetch_utf8(dc, JORG_B, PASS.encode())
        assert got == [stored], dc.logs()
        # the name's bytes, not a folded or normalized form, log in
        for other in ("J\u00d6RG", "jo\u0308rg"):
            m = imaplib.IMAP4("127.0.0.1", dc.port, timeout=10)
            try:
                try:
                    m.authenticate("PLAIN", lambda _, o=other: b"\0" +
                                   o.encode() + b"\0" + PASS.encode())
                    raise AssertionError("%r logged in" % other)
                except imaplib.IMAP4.error as e:
                    assert "AUTHENTICATIONFAILED" in str(e), e
            finally:
                m.shutdown()
    finally:
        dc.stop()
