"""Read back with real mail tools.

A message delivered through smtpd is read from its Maildir by Python's
mailbox.Maildir and by Dovecot over IMAP (imaplib); both must see the
exact bytes smtpd stored, and those are our two trace lines followed by
exactly what the client sent (after dot-unstuffing).

Dovecot comes from Debian's dovecot-imapd. When it is not installed the
Dovecot test skips and says so. The test starts its own Dovecot from the
template e2e/dovecot.conf on a free loopback port, with every file under a
private temporary directory, and stops it at the end.
"""
import grp
import imaplib
import mailbox
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import (dot_stuff, free_port, greeted, send_mail, strip_trace,
                      tree)

HERE = pathlib.Path(__file__).resolve().parent
TEMPLATE = HERE / "dovecot.conf"
SKIP_REASON = "dovecot-imapd not installed; make test-deps installs it"


def message(subject, extra=b""):
    """A message as a client sends it (CRLF lines, before dot-stuffing),
    with the things a store might mangle: 8-bit text, lines starting with
    a dot, a long line, blank lines, trailing spaces."""
    return (b"From: Alice <alice@example.org>\r\n"
            b"To: alice@localhost\r\n"
            b"Subject: " + subject + b"\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n"
            b"\r\n"
            b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln.\r\n"
            b".a line that starts with a dot\r\n"
            b"..and one with two\r\n"
            b"\r\n"
            b"trailing spaces   \r\n"
            + b"x" * 900 + b"\r\n"
            + extra +
            b"-- \r\nAlice\r\n")


def deliver(connect, srv, body):
    """Sends body to alice; returns the bytes stored in her new/."""
    before = set(srv.new_files("alice"))
    c = greeted(connect, srv)
    reply = send_mail(c, "alice@example.org", ["alice@localhost"],
                      dot_stuff(body))
    assert reply.startswith("250 2.0.0 Ok: queued as "), reply
    c.cmd("QUIT")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = set(srv.new_files("alice")) - before
        if new:
            assert len(new) == 1, new
            return new.pop()
        time.sleep(0.02)
    raise AssertionError("no new file for alice")


# ---- (a) Python's mailbox.Maildir ----------------------------------------

def test_python_mailbox_reads_exact_bytes(start_server, connect):
    srv = start_server("-u", "alice:pw")
    sent = message(b"read back by mailbox.Maildir")
    path = deliver(connect, srv, sent)
    stored = path.read_bytes()
    assert strip_trace(stored) == sent

    box = mailbox.Maildir(str(srv.maildir("alice")), factory=None,
                          create=False)
    keys = list(box.keys())
    # The key is the file name up to the ':' info part; ours has none.
    assert keys == [path.name]
    # get_bytes() turns os.linesep into b"\n": on POSIX that changes
    # nothing, so the CRLF lines must come back untouched.
    got = box.get_bytes(keys[0])
    assert got == stored.replace(os.linesep.encode(), b"\n")
    assert got == stored
    assert strip_trace(got) == sent

    msg = box.get_message(keys[0])
    assert msg.get_subdir() == "new"
    assert msg["Subject"] == "read back by mailbox.Maildir"
    assert msg["Return-Path"] == "<alice@example.org>"
    assert msg["Received"].startswith("from client.test ([127.0.0.1]) by "
                                      "localhost with ESMTP id ")


# ---- (b) Dovecot over IMAP -----------------------------------------------

def dovecot_binary():
    """dovecot's path, or None. /usr/sbin is not in an ordinary user's
    PATH on Debian, so look there too."""
    found = shutil.which("dovecot")
    if found:
        return found
    if os.access("/usr/sbin/dovecot", os.X_OK):
        return "/usr/sbin/dovecot"
    return None


def imap_installed():
    """dovecot-core gives the dovecot binary; dovecot-imapd the imap one."""
    return any(os.access(p, os.X_OK) for p in
               ("/usr/lib/dovecot/imap", "/usr/libexec/dovecot/imap"))


def skip_loudly(capsys, reason):
    # pytest -q does not show skip reasons; say it on the terminal.
    with capsys.disabled():
        print("\n%s: skipped: %s" % (__name__, reason))
    pytest.skip(reason)


class Dovecot:
    """One Dovecot serving IMAP on 127.0.0.1 from smtpd's mailbox root."""

    def __init__(self, binary, base, root):
        self.base = base
        self.root = root
        self.port = free_port()
        self.password = secrets.token_hex(8)
        self.proc = None
        if os.getuid() == 0:
            # Dovecot never reads mail as root: the mail processes run as
            # nobody, and the Maildirs are handed to nobody before start.
            nobody = pwd.getpwnam("nobody")
            self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
            login, internal = "dovenull", "dovecot"
            internal_group = grp.getgrgid(pwd.getpwnam("dovecot").pw_gid).gr_name
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            login = internal = pwd.getpwuid(self.uid).pw_name
            internal_group = grp.getgrgid(self.gid).gr_name
        values = {
            "BASE": str(base), "PORT": str(self.port), "ROOT": str(root),
            "PASS": self.password, "LOGIN_USER": login,
            "INTERNAL_USER": internal, "INTERNAL_GROUP": internal_group,
            "MAIL_UID": str(self.uid), "MAIL_GID": str(self.gid),
        }
        text = TEMPLATE.read_text()
        for name, value in values.items():
            text = text.replace("@%s@" % name, value)
        assert "@" not in "".join(l.split("#")[0] for l in text.splitlines()), \
            "placeholder left in the generated dovecot.conf"
        self.conf = base / "dovecot.conf"
        self.conf.write_text(text)
        self.log = base / "dovecot.log"
        self.binary = binary

    def hand_over(self):
        """As root: give the Maildirs and our private dirs to the mail uid."""
        for d in ("control", "index", "home"):
            (self.base / d).mkdir(exist_ok=True)
        if os.getuid() != 0:
            return
        for top in [self.root] + [self.base / d for d in ("control", "index", "home")]:
            os.chown(top, self.uid, self.gid)
            for dirpath, dirnames, filenames in os.walk(top):
                for n in dirnames + filenames:
                    os.chown(os.path.join(dirpath, n), self.uid, self.gid)

    def start(self):
        self.hand_over()
        self.out = open(self.base / "dovecot.out", "wb")
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.out,
            start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dovecot exited %s: %s" % (
                    self.proc.returncode, self.logs()))
            try:
                with socket.create_connection(("127.0.0.1", self.port),
                                              timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(256).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("dovecot did not start: " + self.logs())

    def logs(self):
        text = ""
        for p in (self.base / "dovecot.out", self.log):
            if p.exists():
                text += p.read_text(errors="replace")
        return text

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                # the master did not stop: end its whole group (ours alone,
                # start_new_session made it)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.out.close()
        self.proc = None


@pytest.fixture
def dovecot_base(capsys):
    """A private directory for Dovecot and smtpd's mailbox root, readable
    by the unprivileged users Dovecot runs as (pytest's own tmp_path is
    not, when the tests run as root)."""
    binary = dovecot_binary()
    if binary is None or not imap_installed():
        skip_loudly(capsys, SKIP_REASON)
    if os.getuid() == 0:
        for user in ("nobody", "dovenull", "dovecot"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                skip_loudly(capsys, "user %s missing; reinstall "
                            "dovecot-core" % user)
    base = pathlib.Path(tempfile.mkdtemp(prefix="smtpd-e2e-dovecot-"))
    os.chmod(base, 0o755)
    yield binary, base
    shutil.rmtree(base, ignore_errors=True)


def imap_messages(dc, user):
    """Every message in user's INBOX as bytes: BODY.PEEK[] (which leaves
    the \\Seen flag alone) on a mailbox opened read-only (EXAMINE)."""
    m = imaplib.IMAP4("127.0.0.1", dc.port, timeout=10)
    try:
        typ, _ = m.login(user, dc.password)
        assert typ == "OK"
        typ, _ = m.select("INBOX", readonly=True)
        assert typ == "OK", dc.logs()
        typ, data = m.search(None, "ALL")
        assert typ == "OK"
        found = []
        for num in data[0].split():
            typ, parts = m.fetch(num, "(RFC822.SIZE BODY.PEEK[])")
            assert typ == "OK", parts
            head, body = parts[0]
            assert b"RFC822.SIZE %d" % len(body) in head, head
            found.append(body)
        return found
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_dovecot_imap_reads_exact_bytes(dovecot_base, start_server, connect):
    binary, base = dovecot_base
    root = base / "mail"
    srv = start_server("-u", "alice:pw", root=root)
    sent = [message(b"first, read back by Dovecot"),
            message(b"second", extra=b"one more line\r\n"),
            message(b"third", extra=b"\r\n\r\n.\r\n..\r\n")]
    stored = []
    for body in sent:
        data = deliver(connect, srv, body).read_bytes()
        assert strip_trace(data) == body
        stored.append(data)

    before = tree(root)
    dc = Dovecot(binary, base, root)
    try:
        dc.start()
        got = imap_messages(dc, "alice")
    finally:
        dc.stop()
    assert sorted(got) == sorted(stored), dc.logs()
    assert sorted(strip_trace(g) for g in got) == sorted(sent)
    # read-only and with its own files elsewhere, Dovecot moved nothing
    # out of new/ and wrote nothing into the Maildirs
    assert tree(root) == before
