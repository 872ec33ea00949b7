"""Delivery: what a stored file holds (Return-Path, Received,
the message), its Maildir name, one file per mailbox, which mailboxes
exist, IPv6 clients, and the stale tmp/ sweep at start."""
import email.utils
import os
import re
import stat
import time

import pytest

from conftest import (greeted, only_file, parse_trace, queue_id, send_mail,
                      strip_trace)

BODY = b"From: a@b.test\r\nSubject: deliver\r\n\r\nhello there\r\n"


def check_date(text):
    when = email.utils.parsedate_to_datetime(text)
    assert when.tzinfo is not None, text
    assert abs(when.timestamp() - time.time()) < 86400, text


def test_stored_file_has_trace_headers_then_the_message(server, connect):
    c = greeted(connect, server, ehlo="client.example")
    qid = queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))
    path, data = only_file(server, "postmaster")
    assert data.startswith(b"Return-Path: <a@b.test>\r\nReceived: from ")
    rp, f, msg = parse_trace(data)
    assert rp == "<a@b.test>"
    assert f["helo"] == "client.example"
    assert f["ip"] == "127.0.0.1"
    assert f["domain"] == "localhost"
    assert f["proto"] == "ESMTP"
    assert f["id"] == qid
    assert f["rcpt"].lower() == "postmaster@localhost"
    check_date(f["date"])
    assert msg == BODY


def test_maildir_file_name(server, connect):
    c = greeted(connect, server)
    qid = queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))
    path, data = only_file(server, "postmaster")
    m = re.match(r"^(\d+)\.(.+)\.([^.,/]+[^,/]*),S=(\d+)$", path.name)
    assert m, path.name
    assert abs(int(m.group(1)) - time.time()) < 3600, path.name
    # "<sec>.<ID>.<host>": the queue ID is the Maildir unique part
    assert path.name.split(".", 1)[1].startswith(qid + "."), path.name
    assert int(m.group(4)) == len(data) == path.stat().st_size
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, oct(
        path.stat().st_mode)
    assert server.tmp_files("postmaster") == []


def test_helo_gives_smtp_in_received(server, connect):
    c = connect(server.port)
    c.reply_line()
    assert c.cmd("HELO old.client").startswith("250")
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))
    _, f, _ = parse_trace(only_file(server, "postmaster")[1])
    assert f["proto"] == "SMTP" and f["helo"] == "old.client"


def test_several_mailboxes_get_identical_files(start_server, connect):
    srv = start_server("-u", "alice:x", "-u", "bob:y")
    c = greeted(connect, srv)
    qid = queue_id(send_mail(c, "a@b.test", ["alice@localhost",
                                             "bob@localhost",
                                             "postmaster@localhost"], BODY))
    datas = []
    for user in ("alice", "bob", "postmaster"):
        path, data = only_file(srv, user)
        assert qid in path.name
        datas.append(data)
    assert datas[0] == datas[1] == datas[2]
    _, f, msg = parse_trace(datas[0])
    assert f["rcpt"] is None, "no 'for <...>' with several recipients"
    assert f["id"] == qid and msg == BODY


def test_same_mailbox_twice_is_delivered_once(server, connect):
    c = greeted(connect, server)
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost",
                                       "PostMaster@localhost"], BODY))
    assert strip_trace(only_file(server, "postmaster")[1]) == BODY


def test_ids_are_unique(server, connect):
    c = greeted(connect, server)
    ids = [queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"],
                              BODY)) for _ in range(20)]
    c2 = greeted(connect, server)
    ids.append(queue_id(send_mail(c2, "a@b.test", ["postmaster@localhost"],
                                  BODY)))
    assert len(set(ids)) == 21
    files = server.wait_new("postmaster", 21)
    assert len(files) == 21
    for qid in ids:
        assert sum(f.name.split(".")[1] == qid for f in files) == 1, qid


def test_id_is_in_the_log(server, connect):
    c = greeted(connect, server)
    qid = queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))
    deadline = time.monotonic() + 5
    while qid not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert qid in server.log_text()


def test_ipv6_client(server, connect):
    c = connect(server.port, "::1")
    c.greet("v6.client")
    qid = queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))
    _, f, msg = parse_trace(only_file(server, "postmaster")[1])
    assert f["ip"] == "IPv6:::1" and f["id"] == qid and msg == BODY


def test_user_mailboxes_are_made_at_start(start_server, tmp_path):
    srv = start_server("-u", "alice:x", "-u", "Bob:y")
    for user in ("alice", "bob"):
        box = srv.root / user
        assert stat.S_IMODE(box.stat().st_mode) == 0o700, user
        for sub in ("tmp", "new", "cur"):
            assert (box / sub).is_dir(), (user, sub)
            assert stat.S_IMODE((box / sub).stat().st_mode) == 0o700


def test_hand_made_maildir_is_a_mailbox(start_server, connect, tmp_path):
    root = tmp_path / "mail"
    for sub in ("tmp", "new", "cur"):
        (root / "carol" / sub).mkdir(parents=True)
    (root / "broken" / "new").mkdir(parents=True)   # not a valid Maildir
    (root / "plainfile").write_text("x")
    srv = start_server()
    c = greeted(connect, srv)
    c.cmd("MAIL FROM:<a@b.test>")
    assert c.cmd("RCPT TO:<Carol@localhost>").startswith("250 2.1.5")
    assert c.cmd("RCPT TO:<broken@localhost>").startswith("550 5.1.1")
    assert c.cmd("RCPT TO:<plainfile@localhost>").startswith("550 5.1.1")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    queue_id(c.reply_line())
    assert strip_trace(only_file(srv, "carol")[1]) == BODY
    assert (root / "plainfile").read_text() == "x"


def test_users_receive_mail(start_server, connect):
    srv = start_server("-u", "alice:secret")
    c = greeted(connect, srv)
    queue_id(send_mail(c, "x@y.test", ["ALICE@localhost"], BODY))
    rp, f, msg = parse_trace(only_file(srv, "alice")[1])
    assert rp == "<x@y.test>" and msg == BODY
    assert srv.new_files("postmaster") == []


def test_stale_tmp_files_are_swept_at_start(start_server, tmp_path):
    root = tmp_path / "mail"
    tmp = root / "postmaster" / "tmp"
    for sub in ("tmp", "new", "cur"):
        (root / "postmaster" / sub).mkdir(parents=True, exist_ok=True)
    old, fresh = tmp / "1.old.host", tmp / "2.fresh.host"
    old.write_text("old")
    fresh.write_text("fresh")
    then = time.time() - 37 * 3600
    os.utime(old, (then, then))
    recent = time.time() - 3600
    os.utime(fresh, (recent, recent))
    kept = root / "postmaster" / "new" / "1.kept.host"
    kept.write_text("mail")
    os.utime(kept, (then, then))
    start_server()
    deadline = time.monotonic() + 5
    while old.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not old.exists()
    assert fresh.exists() and kept.exists()


@pytest.mark.parametrize("sender", ["", "a@b.test",
                                    "first.last+tag@sub.b.test"])
def test_return_path_is_the_sender(server, connect, sender):
    c = greeted(connect, server)
    queue_id(send_mail(c, sender, ["postmaster@localhost"], BODY))
    rp, _, _ = parse_trace(only_file(server, "postmaster")[1])
    assert rp == "<%s>" % sender


def test_messages_from_two_sessions_both_land(server, connect):
    a = greeted(connect, server)
    b = greeted(connect, server)
    a.cmd("MAIL FROM:<a@b.test>")
    b.cmd("MAIL FROM:<c@d.test>")
    a.cmd("RCPT TO:<postmaster@localhost>")
    b.cmd("RCPT TO:<postmaster@localhost>")
    assert a.cmd("DATA").startswith("354")
    assert b.cmd("DATA").startswith("354")
    a.send(b"Subject: A\r\n\r\nfrom a, part 1\r\n")
    b.send(b"Subject: B\r\n\r\nfrom b\r\n.\r\n")
    qb = queue_id(b.reply_line())
    a.send(b"from a, part 2\r\n.\r\n")
    qa = queue_id(a.reply_line())
    files = server.wait_new("postmaster", 2)
    got = {}
    for f in files:
        _, fields, msg = parse_trace(f.read_bytes())
        got[fields["id"]] = msg
    assert got == {
        qa: b"Subject: A\r\n\r\nfrom a, part 1\r\nfrom a, part 2\r\n",
        qb: b"Subject: B\r\n\r\nfrom b\r\n"}


BREAKS = {"alice-new": [("alice", "new")],
          "every-tmp": [("postmaster", "tmp"), ("alice", "tmp")]}


def break_dirs(dirs):
    for d in dirs:
        os.rename(d, d.with_name(d.name + ".away"))
        d.write_text("not a directory")


@pytest.mark.parametrize("which", sorted(BREAKS))
def test_failed_delivery_leaves_nothing_anywhere(start_server, connect,
                                                 which):
    """Maildirs break during the transaction (new/ while the body streams,
    tmp/ before DATA since the body goes to disk as it comes): 451 (or
    452), nothing in any new/ or tmp/, and the session goes on."""
    srv = start_server("-u", "alice:x")
    c = greeted(connect, srv)
    c.cmd("MAIL FROM:<a@b.test>")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("RCPT TO:<alice@localhost>").startswith("250 2.1.5")
    dirs = [srv.root / user / sub for user, sub in BREAKS[which]]
    if which == "every-tmp":
        break_dirs(dirs)
    reply = c.cmd("DATA")
    if reply.startswith("354"):
        c.send(BODY)
        if which == "alice-new":
            break_dirs(dirs)
        c.send(b".\r\n")
        reply = c.reply_line()
    if reply.startswith("250"):
        if any(any(d.with_name(d.name + ".away").iterdir()) for d in dirs):
            pytest.skip("the server keeps directory handles open")
        if which == "every-tmp":
            pytest.skip("the server stages messages outside tmp/")
    assert reply[:9] in ("451 4.3.0", "452 4.3.1"), reply
    for user in ("postmaster", "alice"):
        for sub in ("new", "tmp"):
            d = srv.root / user / sub
            if d.is_dir():
                assert list(d.iterdir()) == [], d
    for d in dirs:
        away = d.with_name(d.name + ".away")
        assert list(away.iterdir()) == [], away
        d.unlink()
        os.rename(away, d)
    assert c.cmd("NOOP").startswith("250 2.0.0")
    assert c.cmd("RSET").startswith("250 2.0.0")
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost",
                                       "alice@localhost"], BODY))
    assert len(srv.new_files("postmaster")) == 1
    assert len(srv.new_files("alice")) == 1


# ---- links below the mailbox root ----------------------------------------

def make_foreign_maildir(path):
    """A complete Maildir outside the server's root, for links to point at."""
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True)
    return path


def foreign_files(path):
    return sorted(str(p) for p in path.rglob("*") if p.is_file())


def test_symlinked_mailbox_is_not_a_mailbox(start_server, connect, tmp_path):
    """A mailbox that is a link to a Maildir outside the root: RCPT gets
    550 5.1.1 (also for a -u user, whose server still starts, with a
    warning), and the directory it points at stays empty."""
    root = tmp_path / "mail"
    root.mkdir()
    foreign = make_foreign_maildir(tmp_path / "elsewhere")
    (root / "eve").symlink_to(foreign)
    (root / "mallory").symlink_to(foreign)
    srv = start_server("-u", "mallory:x")
    assert "mailbox %s/mallory is a symbolic link" % root.resolve() \
        in srv.log_text()
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    for name in ("eve", "mallory"):
        assert c.cmd("RCPT TO:<%s@localhost>" % name).startswith(
            "550 5.1.1"), name
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    queue_id(c.reply_line())
    assert len(srv.wait_new("postmaster")) == 1
    assert foreign_files(foreign) == []
    assert (root / "eve").is_symlink() and (root / "mallory").is_symlink()


def test_linked_new_in_a_real_mailbox_receives_nothing(start_server, connect,
                                                       tmp_path):
    """A real mailbox whose new/ is a link: 550 5.1.1 at RCPT. When the
    link appears after RCPT (a race), the delivery fails with 451 4.3.0
    and nothing lands in the directory it points at, nor in tmp/."""
    srv = start_server("-u", "bob:x", "-u", "carol:x")
    foreign = make_foreign_maildir(tmp_path / "elsewhere")
    new = srv.root / "bob" / "new"
    new.rmdir()
    new.symlink_to(foreign / "new")
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<bob@localhost>").startswith("550 5.1.1")
    assert c.cmd("RCPT TO:<carol@localhost>").startswith("250 2.1.5")
    (srv.root / "carol" / "new").rename(srv.root / "carol" / "new.real")
    (srv.root / "carol" / "new").symlink_to(foreign / "new")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    assert c.reply_line().startswith("451 4.3.0")
    assert foreign_files(foreign) == []
    assert srv.tmp_files("carol") == []
    assert list((srv.root / "carol" / "new.real").iterdir()) == []
    assert "Too many levels of symbolic links" in srv.log_text()


def test_root_given_as_a_link_works(start_server, connect, tmp_path):
    """-f may name a link to the real root: it is resolved at start and
    mail lands in the real directory."""
    real = tmp_path / "real-mail"
    real.mkdir()
    link = tmp_path / "mail-link"
    link.symlink_to(real)
    srv = start_server("-u", "alice:x", root=link)
    c = greeted(connect, srv)
    queue_id(send_mail(c, "a@b.test", ["alice@localhost"], BODY))
    files = srv.wait_new("alice")
    assert len(files) == 1
    assert files[0].resolve().parent == real / "alice" / "new"
    assert strip_trace(files[0].read_bytes()) == BODY
    assert link.is_symlink()
