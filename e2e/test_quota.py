"""Quotas, Maildir++ style: --quota and a passwd-file user's
userdb_quota_rule; the maildirsize file after deliveries (limit line,
one line per delivery, recalculated past 5120 bytes, limit line
rewritten); RCPT's 552 5.2.2 (full, or SIZE= over, counting the SIZE= of
open transactions, an alias with a full mailbox) and 452 4.2.2 (a second
transaction without SIZE= near the limit, the open SIZE= counted); a
mailbox made after start or unreadable then, checked from its first
RCPT; room made by an expunge seen by the RCPT that finds the mailbox
full; kill -9 right after the 250s."""
import re
import signal
import subprocess
import time

import pytest

from conftest import SMTPD_BIN, greeted

BODY = b"Subject: q\r\n\r\n" + b"x" * 500 + b"\r\n"


def sizes(srv, user):
    """S= of every message file in user's new/ and cur/."""
    out = []
    for sub in ("new", "cur"):
        d = srv.root / user / sub
        for f in sorted(d.iterdir()) if d.exists() else []:
            out.append(int(re.search(r",S=(\d+)", f.name).group(1)))
    return out


def maildirsize(srv, user):
    return (srv.root / user / "maildirsize").read_bytes()


def totals(text):
    lines = text.decode().splitlines()[1:]
    return (sum(int(l.split()[0]) for l in lines),
            sum(int(l.split()[1]) for l in lines))


def deliver(connect, srv, rcpts, body=BODY):
    """One message; returns the name sizes of the files it added."""
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<s@example.org>") == "250 2.1.0 Sender ok"
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r).startswith("250 2.1.5"), r
    assert c.cmd("DATA").startswith("354")
    c.send(body + b".\r\n")
    assert c.reply_line().startswith("250 2.0.0"), rcpts
    c.close()


def rcpt(connect, srv, to, size=None):
    """MAIL (with SIZE= when given), RCPT: the RCPT's reply; the client."""
    c = greeted(connect, srv)
    mail = "MAIL FROM:<s@example.org>" + (" SIZE=%d" % size if size else "")
    assert c.cmd(mail) == "250 2.1.0 Sender ok"
    return c.cmd("RCPT TO:<%s>" % to), c


def test_maildirsize_gets_a_line_per_delivery(start_server, connect):
    srv = start_server("-u", "alice:x", "--quota", "1M:100")
    assert maildirsize(srv, "alice") == b"1048576S,100C\n0 0\n"
    seen = []
    for i in range(3):
        deliver(connect, srv, ["alice@localhost"], BODY + b"y" * i + b"\r\n")
        new = [s for s in sizes(srv, "alice")]
        assert len(new) == i + 1
    seen = sizes(srv, "alice")
    text = maildirsize(srv, "alice")
    lines = text.split(b"\n")
    assert lines[0] == b"1048576S,100C" and lines[1] == b"0 0"
    assert sorted(int(l.split()[0]) for l in lines[2:-1]) == sorted(seen)
    assert all(l.endswith(b" 1") for l in lines[2:-1])
    assert lines[-1] == b"" and len(lines) == 6


def test_made_at_start_and_a_folder_counts_for_its_mailbox(start_server,
                                                          connect, tmp_path):
    for sub in ("tmp", "new", "cur"):
        (tmp_path / "mail" / "bob" / ".news" / sub).mkdir(parents=True)
    srv = start_server("-u", "alice:x", "-u", "bob:y", "--quota", "0:10")
    deliver(connect, srv, ["alice@localhost"])
    deliver(connect, srv, ["bob+news@localhost"])
    (s,) = sizes(srv, "alice")
    assert maildirsize(srv, "alice") == b"10C\n0 0\n%d 1\n" % s
    folder = srv.root / "bob" / ".news" / "new"
    (f,) = list(folder.iterdir())
    s = int(re.search(r",S=(\d+)", f.name).group(1))
    assert maildirsize(srv, "bob") == b"10C\n0 0\n%d 1\n" % s


def test_missing_file_is_recalculated_at_delivery(start_server, connect):
    srv = start_server("-u", "alice:x", "--quota", "1M")
    deliver(connect, srv, ["alice@localhost"])
    (srv.root / "alice" / "maildirsize").unlink()
    deliver(connect, srv, ["alice@localhost"])
    s = sizes(srv, "alice")
    assert maildirsize(srv, "alice") == b"1048576S\n%d 2\n" % sum(s)


def test_full_mailbox_gets_552(start_server, connect):
    srv = start_server("-u", "alice:x", "-u", "bob:y", "--quota", "1k")
    deliver(connect, srv, ["alice@localhost"])
    deliver(connect, srv, ["alice@localhost"])      # 500 B + 500 B + headers
    assert totals(maildirsize(srv, "alice"))[0] >= 1024
    reply, c = rcpt(connect, srv, "alice@localhost")
    assert reply == "552 5.2.2 Mailbox full"
    assert c.cmd("RCPT TO:<Alice+x@localhost>") == "552 5.2.2 Mailbox full"
    assert c.cmd("RCPT TO:<bob@localhost>").startswith("250 2.1.5")
    assert "rcpt rejected TO:<alice@localhost>: 552 5.2.2" in srv.log_text()


def expunge_all(srv, user):
    """What an IMAP client's expunge does: the files go, and a negative
    line for them is appended to maildirsize (as Dovecot does)."""
    gone = n = 0
    for f in srv.new_files(user):
        gone += int(re.search(r",S=(\d+)", f.name).group(1))
        n += 1
        f.unlink()
    with open(srv.root / user / "maildirsize", "ab") as f:
        f.write(b"-%d -%d\n" % (gone, n))


def test_room_made_by_an_expunge_is_seen_at_once(start_server, connect):
    """The RCPT that finds the mailbox full (from the deliveries' figures)
    waits for maildirsize to be read again and answers from that."""
    srv = start_server("-u", "alice:x", "--quota", "1k")
    deliver(connect, srv, ["alice@localhost"])
    deliver(connect, srv, ["alice@localhost"])
    assert totals(maildirsize(srv, "alice"))[0] >= 1024
    expunge_all(srv, "alice")
    reply, c = rcpt(connect, srv, "alice@localhost")
    assert reply == "250 2.1.5 Recipient ok"


def test_full_after_the_read_gets_552_and_pipelined_commands_follow(
        start_server, connect):
    """The RCPT waiting for the read holds back the commands sent after
    it in the same packet; their replies come after its 552, in order."""
    srv = start_server("-u", "alice:x", "-u", "bob:y", "--quota", "1k")
    deliver(connect, srv, ["alice@localhost"])
    deliver(connect, srv, ["alice@localhost"])
    c = greeted(connect, srv)
    c.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@localhost>\r\n"
           b"RCPT TO:<bob@localhost>\r\nNOOP\r\n")
    assert [c.reply_line() for _ in range(4)] == [
        "250 2.1.0 Sender ok", "552 5.2.2 Mailbox full",
        "250 2.1.5 Recipient ok", "250 2.0.0 Ok"]


def make_mailbox(path, files=()):
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True)
    for name in files:
        (path / "cur" / name).write_bytes(b"z")


def test_mailbox_made_after_start_is_checked_at_its_first_rcpt(
        start_server, connect):
    srv = start_server("-u", "alice:x", "--quota", "1k")
    make_mailbox(srv.root / "carol", ["1.a.h,S=2000:2,S"])
    make_mailbox(srv.root / "dan")
    reply, c = rcpt(connect, srv, "carol@localhost")
    assert reply == "552 5.2.2 Mailbox full"
    assert maildirsize(srv, "carol") == b"1024S\n2000 1\n"
    reply, c = rcpt(connect, srv, "dan@localhost", size=1025)
    assert reply == "552 5.2.2 Mailbox full"
    assert c.cmd("RCPT TO:<dan@localhost>") == "552 5.2.2 Mailbox full"
    c.close()
    reply, c = rcpt(connect, srv, "dan@localhost", size=1024)
    assert reply == "250 2.1.5 Recipient ok"


def test_maildirsize_unreadable_at_start_is_read_at_rcpt(
        start_server, connect, tmp_path):
    box = tmp_path / "mail" / "alice"
    make_mailbox(box, ["1.a.h,S=5000:2,S"])
    (box / "maildirsize").mkdir()           # not a file: cannot be read
    srv = start_server("-u", "alice:x", "--quota", "4k")
    assert "alice/maildirsize" in srv.log_text()
    (box / "maildirsize").rmdir()
    reply, _ = rcpt(connect, srv, "alice@localhost")
    assert reply == "552 5.2.2 Mailbox full"
    assert maildirsize(srv, "alice") == b"4096S\n5000 1\n"


def test_user_added_by_a_reload_is_checked_at_its_first_rcpt(
        start_server, connect, tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text("alice:{PLAIN}a\n")
    srv = start_server("--passwd-file", str(pw))
    pw.write_text("alice:{PLAIN}a\n"
                  "dave:{PLAIN}d::::::userdb_quota_rule=*:storage=1\n")
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "password files reloaded" not in srv.log_text():
        assert time.monotonic() < deadline, srv.log_text()
        time.sleep(0.05)
    reply, c = rcpt(connect, srv, "dave@localhost", size=1025)
    assert reply == "552 5.2.2 Mailbox full"
    assert maildirsize(srv, "dave") == b"1024S\n0 0\n"
    c.close()
    reply, _ = rcpt(connect, srv, "dave@localhost", size=1024)
    assert reply == "250 2.1.5 Recipient ok"


def test_message_count_limit(start_server, connect):
    srv = start_server("-u", "alice:x", "--quota", "1M:2")
    deliver(connect, srv, ["alice@localhost"])
    deliver(connect, srv, ["alice@localhost"])
    reply, _ = rcpt(connect, srv, "alice@localhost", size=10)
    assert reply == "552 5.2.2 Mailbox full"


def test_size_that_would_go_over_gets_552(start_server, connect):
    srv = start_server("-u", "alice:x", "--quota", "10k")
    reply, _ = rcpt(connect, srv, "alice@localhost", size=10241)
    assert reply == "552 5.2.2 Mailbox full"
    reply, _ = rcpt(connect, srv, "alice@localhost", size=10240)
    assert reply.startswith("250 2.1.5")


def test_open_transactions_size_counts(start_server, connect):
    srv = start_server("-u", "alice:x", "--quota", "10k")
    first, a = rcpt(connect, srv, "alice@localhost", size=6000)
    assert first.startswith("250 2.1.5")
    second, b = rcpt(connect, srv, "alice@localhost", size=6000)
    assert second == "552 5.2.2 Mailbox full"
    assert a.cmd("RSET").startswith("250")
    assert b.cmd("RCPT TO:<alice@localhost>").startswith("250 2.1.5")


def test_second_transaction_without_size_near_the_limit_gets_452(
        start_server, connect):
    srv = start_server("-u", "alice:x", "--quota", "10k", "-z", "20000")
    first, a = rcpt(connect, srv, "alice@localhost")
    assert first.startswith("250 2.1.5")
    second, b = rcpt(connect, srv, "alice@localhost")
    assert second == "452 4.2.2 Mailbox nearly full, try again later"
    a.close()                                   # the hold goes with it
    b.cmd("RSET")
    assert b.cmd("MAIL FROM:<s@example.org>") == "250 2.1.0 Sender ok"
    assert b.cmd("RCPT TO:<alice@localhost>").startswith("250 2.1.5")


def test_without_size_the_open_sizes_count_for_the_452(start_server,
                                                      connect):
    """10 KiB limit, -z 6000: a transaction that declared SIZE=6000 leaves
    4240 bytes, within -z: a second one without SIZE= gets 452 until the
    first is over (the 10240 bytes of an empty mailbox are not within
    -z: without the first, it passes)."""
    srv = start_server("-u", "alice:x", "--quota", "10k", "-z", "6000")
    first, a = rcpt(connect, srv, "alice@localhost", size=6000)
    assert first == "250 2.1.5 Recipient ok"
    second, b = rcpt(connect, srv, "alice@localhost")
    assert second == "452 4.2.2 Mailbox nearly full, try again later"
    assert a.cmd("RSET").startswith("250")
    assert b.cmd("RCPT TO:<alice@localhost>") == "250 2.1.5 Recipient ok"
    third, c = rcpt(connect, srv, "alice@localhost", size=3000)
    assert third == "250 2.1.5 Recipient ok"    # with SIZE=: it fits


def test_far_from_the_limit_many_transactions_pass(start_server, connect):
    srv = start_server("-u", "alice:x", "--quota", "1M", "-z", "1000")
    for _ in range(3):
        reply, _ = rcpt(connect, srv, "alice@localhost")
        assert reply.startswith("250 2.1.5")


def test_alias_with_a_full_mailbox_gets_552(start_server, connect, tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("team: alice, bob\n")
    srv = start_server("-u", "alice:x", "-u", "bob:y", "--quota", "1k",
                       "--aliases", str(aliases))
    deliver(connect, srv, ["alice@localhost"])
    deliver(connect, srv, ["alice@localhost"])
    reply, c = rcpt(connect, srv, "team@localhost")
    assert reply == "552 5.2.2 Mailbox full"
    assert c.cmd("RCPT TO:<bob@localhost>").startswith("250 2.1.5")


def test_passwd_file_rule_overrides_quota(start_server, connect, tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text("alice:{PLAIN}a::::::userdb_quota_rule=*:storage=1\n"
                  "bob:{PLAIN}b\n"
                  "carol:{PLAIN}c:1:1::/h::userdb_quota_rule=*:bytes=5000:messages=7\n")
    srv = start_server("--passwd-file", str(pw), "--quota", "1M")
    assert maildirsize(srv, "alice") == b"1024S\n0 0\n"
    assert maildirsize(srv, "bob") == b"1048576S\n0 0\n"
    assert maildirsize(srv, "carol") == b"5000S,7C\n0 0\n"
    deliver(connect, srv, ["alice@localhost"])
    deliver(connect, srv, ["alice@localhost"])
    reply, _ = rcpt(connect, srv, "alice@localhost")
    assert reply == "552 5.2.2 Mailbox full"
    reply, _ = rcpt(connect, srv, "bob@localhost", size=5000)
    assert reply.startswith("250 2.1.5")


def test_bad_rule_in_passwd_file_exits_2(tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text("alice:{PLAIN}a::::::userdb_quota_rule=*:storage=1X\n")
    r = subprocess.run([SMTPD_BIN, "--passwd-file", str(pw), "-f",
                        str(tmp_path / "m"), "-s", "1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "%s:1: " % pw in r.stderr and "userdb_quota_rule" in r.stderr


@pytest.mark.parametrize("value", ["", "abc", "0", "10X", "1m", "1M:", "1M:x",
                                   "1M:1k", "-5", "99999999999999999999"])
def test_bad_quota_exits_2(tmp_path, value):
    r = subprocess.run([SMTPD_BIN, "--quota", value, "-f",
                        str(tmp_path / "m")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "bad --quota" in r.stderr


def test_recalculated_past_5120_bytes(start_server, connect, tmp_path):
    box = tmp_path / "mail" / "alice"
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True)
    (box / "cur" / "1.a.h,S=1000:2,S").write_bytes(b"z")
    text = b"104857600S\n1000 1\n"
    while len(text) < 5116:     # the next line takes it past 5120
        text += b"0 0\n"
    (box / "maildirsize").write_bytes(text)
    srv = start_server("-u", "alice:x", "--quota", "100M")
    assert maildirsize(srv, "alice") == text        # kept as it was
    deliver(connect, srv, ["alice@localhost"])
    s = sizes(srv, "alice")
    assert len(s) == 2
    assert maildirsize(srv, "alice") == b"104857600S\n%d 2\n" % sum(s)


def test_limit_line_rewritten_when_the_limit_differs(start_server, tmp_path):
    box = tmp_path / "mail" / "alice"
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.a.h,S=300").write_bytes(b"z")
    (box / "new" / "2.b.h").write_bytes(b"12345")
    (box / "maildirsize").write_bytes(b"999S\n300 1\n")
    srv = start_server("-u", "alice:x", "--quota", "2k:9")
    assert maildirsize(srv, "alice") == b"2048S,9C\n305 2\n"


def test_kill_9_after_the_250s_keeps_the_totals(start_server, connect):
    srv = start_server("-u", "alice:x", "-u", "bob:y", "--quota", "1G")
    clients = []
    for i in range(8):
        c = greeted(connect, srv)
        assert c.cmd("MAIL FROM:<s@example.org>") == "250 2.1.0 Sender ok"
        assert c.cmd("RCPT TO:<alice@localhost>").startswith("250")
        if i % 2:
            assert c.cmd("RCPT TO:<bob@localhost>").startswith("250")
        assert c.cmd("DATA").startswith("354")
        clients.append(c)
    for i, c in enumerate(clients):     # the ends together: one batch
        c.send(BODY + b"n" * i + b"\r\n.\r\n")
    for c in clients:
        assert c.reply_line().startswith("250 2.0.0")
    srv.proc.kill()
    srv.proc.wait()
    for user, n in (("alice", 8), ("bob", 4)):
        s = sizes(srv, user)
        assert len(s) == n
        assert totals(maildirsize(srv, user)) == (sum(s), n)
    again = start_server("-u", "alice:x", "-u", "bob:y", "--quota", "1G")
    deliver(connect, again, ["alice@localhost"])
    s = sizes(again, "alice")
    assert totals(maildirsize(again, "alice")) == (sum(s), 9)


def test_no_quota_no_maildirsize(start_server, connect):
    srv = start_server("-u", "alice:x")
    deliver(connect, srv, ["alice@localhost"])
    assert not (srv.root / "alice" / "maildirsize").exists()
