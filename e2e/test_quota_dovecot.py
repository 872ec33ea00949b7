"""Dovecot agrees with smtpd's quota accounting: with `quota = maildir`
and the same limit, `doveadm quota get` shows the usage smtpd wrote in
maildirsize after its deliveries. Dovecot is started as in
test_readback.py, with the quota plugin on and its control files left
in the Maildir (with CONTROL= elsewhere Dovecot would look for
maildirsize there instead). And room Dovecot makes by expunging is seen
by the next RCPT to the full mailbox, which waits for smtpd to read
maildirsize again."""
import os
import re
import shutil
import subprocess

from conftest import greeted
from test_readback import Dovecot, dovecot_base, skip_loudly  # noqa: F401

BODY = b"Subject: q\r\n\r\n" + b"d" * 3000 + b"\r\n"


def deliver(connect, srv, to):
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<s@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<%s>" % to).startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    assert c.reply_line().startswith("250 2.0.0")
    c.close()


def with_quota(dc, rule):
    text = dc.conf.read_text()
    text = text.replace(":CONTROL=%s/control/%%u" % dc.base, "")
    assert ":CONTROL=" not in text
    text += ("\nmail_plugins = $mail_plugins quota\n"
             "plugin {\n  quota = maildir:User quota\n"
             "  quota_rule = %s\n}\n" % rule)
    dc.conf.write_text(text)


def quota_get(dc, user):
    out = doveadm(dc, "-f", "tab", "quota", "get", "-u", user)
    rows = {}
    for line in out.splitlines()[1:]:
        f = line.split("\t")
        rows[f[1]] = (int(f[2]), f[3])     # name, type, value, limit, %
    return rows


def doveadm(dc, *args):
    r = subprocess.run(["doveadm", "-c", str(dc.conf)] + list(args),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr + dc.logs()
    return r.stdout


def need_quota_plugin(capsys):
    if not shutil.which("doveadm"):
        skip_loudly(capsys, "doveadm missing; make test-deps installs it")
    if not any(os.path.exists(p + "/lib10_quota_plugin.so") for p in
               ("/usr/lib/dovecot/modules", "/usr/libexec/dovecot/modules")):
        skip_loudly(capsys, "Dovecot's quota plugin missing")


def test_doveadm_quota_get_agrees(start_server, connect, dovecot_base,
                                  capsys):
    need_quota_plugin(capsys)
    binary, base = dovecot_base
    root = base / "mail"
    srv = start_server("-u", "alice:x", "--quota", "1M:50", root=root)
    for _ in range(3):
        deliver(connect, srv, "alice@localhost")
    text = (root / "alice" / "maildirsize").read_text()
    lines = text.splitlines()
    assert lines[0] == "1048576S,50C"
    used = sum(int(l.split()[0]) for l in lines[1:])
    assert sum(int(l.split()[1]) for l in lines[1:]) == 3
    files = sorted((root / "alice" / "new").iterdir())
    assert used == sum(int(re.search(r",S=(\d+)", f.name).group(1))
                       for f in files)
    dc = Dovecot(binary, base, root)
    with_quota(dc, "*:storage=1M:messages=50")
    dc.start()
    try:
        rows = quota_get(dc, "alice")
    finally:
        dc.stop()
    # doveadm shows KiB, rounded up
    assert rows["STORAGE"][0] == (used + 1023) // 1024, rows
    assert rows["STORAGE"][1] == "1024", rows
    assert rows["MESSAGE"] == (3, "50"), rows
    # Dovecot kept our file as it was (same limit: nothing recounted)
    assert (root / "alice" / "maildirsize").read_text() == text


def test_room_made_by_doveadm_expunge_gets_250_at_once(
        start_server, connect, dovecot_base, capsys):
    """smtpd fills the mailbox; Dovecot agrees it is full; Dovecot expunges
    every message (recording it in maildirsize); the very next RCPT, no
    552 in between, waits for smtpd's read of maildirsize and gets 250."""
    need_quota_plugin(capsys)
    binary, base = dovecot_base
    root = base / "mail"
    srv = start_server("-u", "alice:x", "-u", "bob:y", "--quota", "8k",
                       root=root)
    for _ in range(3):                  # 3 x 3 KB: over 8 KiB
        deliver(connect, srv, "alice@localhost")
    deliver(connect, srv, "bob@localhost")
    dc = Dovecot(binary, base, root)
    with_quota(dc, "*:storage=8K")
    dc.start()
    try:
        rows = quota_get(dc, "alice")
        assert rows["STORAGE"][0] >= 8, rows        # KiB: full
        doveadm(dc, "expunge", "-u", "alice", "mailbox", "INBOX", "all")
        rows = quota_get(dc, "alice")
    finally:
        dc.stop()
    assert rows["STORAGE"][0] == 0 and rows["MESSAGE"][0] == 0, rows
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<s@example.org>") == "250 2.1.0 Sender ok"
    assert c.cmd("RCPT TO:<alice@localhost>") == "250 2.1.5 Recipient ok"
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    assert c.reply_line().startswith("250 2.0.0")
    c.close()
    lines = (root / "alice" / "maildirsize").read_text().splitlines()
    assert sum(int(l.split()[0]) for l in lines[1:]) == \
        sum(int(re.search(r",S=(\d+)", f.name).group(1))
            for d in ("new", "cur") for f in (root / "alice" / d).iterdir())
    assert sum(int(l.split()[1]) for l in lines[1:]) == 1
