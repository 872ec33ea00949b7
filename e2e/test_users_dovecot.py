"""One password file for Dovecot and smtpd: a user hashed by Dovecot's own
`doveadm pw -s SHA512-CRYPT` and one by `mkpasswd -m yescrypt` (a bare
crypt string) each send a message to themselves through smtpd with swaks,
logging in, and read it back over IMAP from a Dovecot that authenticates
them from the same file. Dovecot is started as in test_readback.py, with
its passdb switched from the static password to the passwd-file."""
import imaplib
import os
import pwd
import re
import shutil
import subprocess

import pytest

from conftest import strip_trace
from test_readback import Dovecot, dovecot_base, skip_loudly  # noqa: F401

USERS = {"alice": "Alice pw 1", "bob": "bob-pw-2"}


def hashes(capsys):
    for tool in ("doveadm", "mkpasswd", "swaks"):
        if not shutil.which(tool):
            skip_loudly(capsys, "%s missing; make test-deps installs it" % tool)
    alice = subprocess.run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p",
                            USERS["alice"]], check=True, capture_output=True,
                           text=True).stdout.strip()
    bob = subprocess.run(["mkpasswd", "-m", "yescrypt", USERS["bob"]],
                         check=True, capture_output=True, text=True
                         ).stdout.strip()
    assert alice.startswith("{SHA512-CRYPT}$6$") and bob.startswith("$y$")
    return alice, bob


def use_passwd_file(dc, path):
    """Replaces the template's static passdb with the shared file."""
    text = dc.conf.read_text()
    static = re.compile(r"passdb \{\n  driver = static\n  args = [^\n]*\n\}")
    assert static.search(text), text
    text = static.sub("passdb {\n  driver = passwd-file\n"
                      "  args = scheme=CRYPT username_format=%%u %s\n}" % path,
                      text)
    dc.conf.write_text(text)


def swaks_send(srv, user, subject):
    body = "Subject: %s\r\n\r\nsent by %s through smtpd\r\n" % (subject, user)
    r = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % srv.port, "--helo", "e2e.test",
         "--from", "%s@localhost" % user, "--to", "%s@localhost" % user,
         "--auth", "PLAIN", "--auth-user", user,
         "--auth-password", USERS[user], "--data", body],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "235 2.7.0" in r.stdout and "250 2.0.0 Ok: queued as" in r.stdout
    return body.encode()


def imap_read(dc, user):
    m = imaplib.IMAP4("127.0.0.1", dc.port, timeout=10)
    try:
        typ, _ = m.login(user, USERS[user])
        assert typ == "OK"
        typ, _ = m.select("INBOX", readonly=True)
        assert typ == "OK", dc.logs()
        typ, data = m.search(None, "ALL")
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


def test_one_password_file_for_smtpd_and_dovecot(dovecot_base, start_server,
                                                 capsys):
    binary, base = dovecot_base
    alice, bob = hashes(capsys)
    passwd = base / "passwd"
    passwd.write_text("# shared by smtpd and Dovecot\n"
                      "alice:%s::::::\nbob:%s\n" % (alice, bob))
    # Dovecot's auth process reads it as its internal user when run as root
    os.chmod(passwd, 0o640)
    if os.getuid() == 0:
        os.chown(passwd, 0, pwd.getpwnam("dovecot").pw_gid)

    root = base / "mail"
    srv = start_server("--passwd-file", str(passwd), "-A", root=root)
    sent = {u: swaks_send(srv, u, "to myself, %s" % u) for u in USERS}
    stored = {u: [f.read_bytes() for f in srv.new_files(u)] for u in USERS}
    for u in USERS:
        # swaks ends the data with one more CRLF of its own
        assert len(stored[u]) == 1 and strip_trace(stored[u][0]) in (
            sent[u], sent[u] + b"\r\n")
        assert b"with ESMTPA id" in stored[u][0]

    dc = Dovecot(binary, base, root)
    use_passwd_file(dc, passwd)
    try:
        dc.start()
        for u in USERS:
            assert imap_read(dc, u) == stored[u], dc.logs()
        with pytest.raises(imaplib.IMAP4.error):
            m = imaplib.IMAP4("127.0.0.1", dc.port, timeout=10)
            try:
                m.login("bob", USERS["alice"])
            finally:
                m.shutdown()
    finally:
        dc.stop()
