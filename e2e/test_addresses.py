"""Addresses people use: user+tag (and its Maildir++ folder), the
recipient delimiter, aliases from --aliases (catch-all, postmaster, one
copy per folder, reloads on SIGHUP) and VRFY answering as RCPT resolves."""
import os
import signal
import subprocess
import time

import pytest

from conftest import SMTPD_BIN, greeted, only_file, send_mail

BODY = b"Subject: hi\r\n\r\nhello\r\n"


def maildir(path):
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)


def deliver(connect, srv, rcpts):
    c = greeted(connect, srv)
    reply = send_mail(c, "sender@example.org", rcpts, BODY)
    assert reply.startswith("250 2.0.0"), reply
    c.close()


def received(data):
    return data.split(b"\r\n")[1]


def test_plus_tag_reaches_the_mailbox(start_server, connect):
    srv = start_server("-u", "alice:x")
    deliver(connect, srv, ["Alice+news@localhost"])
    _, data = only_file(srv, "alice")
    assert b" for <Alice+news@localhost>;" in received(data)
    assert data.endswith(BODY)


def test_plus_tag_goes_into_its_folder(start_server, connect, tmp_path):
    maildir(tmp_path / "mail" / "alice" / ".news")
    srv = start_server("-u", "alice:x")
    deliver(connect, srv, ["alice+news@localhost"])
    folder = tmp_path / "mail" / "alice" / ".news" / "new"
    deadline = time.monotonic() + 10
    while not list(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    files = list(folder.iterdir())
    assert len(files) == 1
    assert files[0].read_bytes().endswith(BODY)
    assert srv.new_files("alice") == []
    assert list((tmp_path / "mail" / "alice" / ".news" / "tmp").iterdir()) == []


@pytest.mark.parametrize("local", ["alice+News", "alice+a.b", "alice+"])
def test_a_tag_that_names_no_folder_goes_to_the_mailbox(start_server, connect,
                                                        tmp_path, local):
    maildir(tmp_path / "mail" / "alice" / ".news")
    srv = start_server("-u", "alice:x")
    deliver(connect, srv, [local + "@localhost"])
    only_file(srv, "alice")
    assert list((tmp_path / "mail" / "alice" / ".news" / "new").iterdir()) == []


def test_a_folder_that_is_a_link_is_not_followed(start_server, connect,
                                                  tmp_path):
    outside = tmp_path / "outside"
    maildir(outside)
    (tmp_path / "mail" / "alice").mkdir(parents=True)
    os.symlink(outside, tmp_path / "mail" / "alice" / ".news")
    srv = start_server("-u", "alice:x")
    deliver(connect, srv, ["alice+news@localhost"])
    only_file(srv, "alice")
    assert list((outside / "new").iterdir()) == []


def test_no_folder_is_created(start_server, connect, tmp_path):
    srv = start_server("-u", "alice:x")
    deliver(connect, srv, ["alice+fresh@localhost"])
    only_file(srv, "alice")
    assert not (tmp_path / "mail" / "alice" / ".fresh").exists()


def test_unknown_user_with_a_tag(start_server, connect):
    srv = start_server("-u", "alice:x")
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<s@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<bob+news@localhost>").startswith("550 5.1.1")
    assert c.cmd("RCPT TO:<+news@localhost>").startswith("550 5.1.1")


def test_delimiter_off(start_server, connect):
    srv = start_server("-u", "alice:x", "--recipient-delimiter", "")
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<s@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<alice+news@localhost>").startswith("550 5.1.1")
    assert c.cmd("RCPT TO:<alice@localhost>").startswith("250 2.1.5")


def test_other_delimiters(start_server, connect):
    srv = start_server("-u", "alice:x", "--recipient-delimiter", "-_")
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<s@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<alice+news@localhost>").startswith("550 5.1.1")
    assert c.cmd("RCPT TO:<alice-news@localhost>").startswith("250 2.1.5")
    assert c.cmd("RCPT TO:<alice_x-y@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    c.send(BODY + b".\r\n")
    assert c.reply_line().startswith("250 2.0.0")
    _, data = only_file(srv, "alice")
    assert b" for " not in received(data)


@pytest.mark.parametrize("value", ["+++++++++", "@", "+a", " "])
def test_bad_delimiter_exits_2(tmp_path, value):
    r = subprocess.run([SMTPD_BIN, "-f", str(tmp_path / "mail"),
                        "--recipient-delimiter", value],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "--recipient-delimiter" in r.stderr
    assert not (tmp_path / "mail").exists()


# ---- aliases -------------------------------------------------------------

ALIASES = """# who gets what
sales: alice,
\tbob
Abuse: postmaster
team: sales, carol
*: carol
"""

USERS = ("-u", "alice:x", "-u", "bob:x", "-u", "carol:x")


@pytest.fixture
def aliased(start_server, tmp_path):
    path = tmp_path / "aliases"
    path.write_text(ALIASES)
    return start_server(*USERS, "--aliases", str(path))


def test_alias_reaches_each_mailbox(aliased, connect):
    deliver(connect, aliased, ["SALES@localhost"])
    for user in ("alice", "bob"):
        _, data = only_file(aliased, user)
        assert b" for <SALES@localhost>;" in received(data)
    assert aliased.new_files("carol") == []


def test_catch_all(aliased, connect):
    deliver(connect, aliased, ["nobody.here@localhost"])
    _, data = only_file(aliased, "carol")
    assert b" for <nobody.here@localhost>;" in received(data)


def test_alias_of_an_alias_and_a_tag_on_an_alias(aliased, connect):
    deliver(connect, aliased, ["team+x@localhost"])
    for user in ("alice", "bob", "carol"):
        only_file(aliased, user)


def test_one_copy_per_folder(aliased, connect):
    deliver(connect, aliased, ["alice@localhost", "alice+x@localhost",
                               "sales@localhost", "team@localhost"])
    for user in ("alice", "bob", "carol"):
        _, data = only_file(aliased, user)
        assert b" for " not in received(data)
    log = aliased.log_text()
    assert "<alice@localhost>,<alice+x@localhost>,<sales@localhost>," in log


def test_postmaster_alias(start_server, connect, tmp_path):
    path = tmp_path / "aliases"
    path.write_text("postmaster: alice\n")
    srv = start_server("-u", "alice:x", "--aliases", str(path))
    deliver(connect, srv, ["PostMaster@localhost"])
    only_file(srv, "alice")
    assert srv.new_files("postmaster") == []


def test_vrfy_answers_as_rcpt(aliased, connect):
    c = greeted(connect, aliased)
    assert c.cmd("VRFY sales") == "250 2.1.5 <sales@localhost>"
    assert c.cmd("VRFY alice+x") == "250 2.1.5 <alice+x@localhost>"
    assert c.cmd("VRFY whoever") == "250 2.1.5 <whoever@localhost>"


def test_without_catch_all_unknown_is_refused(start_server, connect, tmp_path):
    path = tmp_path / "aliases"
    path.write_text("sales: alice\n")
    srv = start_server("-u", "alice:x", "--aliases", str(path))
    c = greeted(connect, srv)
    assert c.cmd("VRFY nobody").startswith("550 5.1.1")
    assert c.cmd("MAIL FROM:<s@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<nobody@localhost>").startswith("550 5.1.1")
    assert c.cmd("RCPT TO:<sales@localhost>").startswith("250 2.1.5")


@pytest.mark.parametrize("text,line,reason", [
    ("sales alice\n", 1, "malformed line"),
    ("a: alice\n\n  \n# c\nA: bob\n", 5, "defined twice"),
    ("a: alice,\n  zed\n", 2, "unknown target"),
    ("a: b\nb: a\n", 2, "loop"),
    ("a: |/bin/cat\n", 1, "command"),
    ("a: /tmp/box\n", 1, "file"),
    ("a: alice@example.org\n", 1, "domain"),
    ("".join("a%d: a%d\n" % (i, i + 1) for i in range(8)) + "a8: alice\n",
     1, "deeper than 8"),
])
def test_bad_aliases_file_exits_2(tmp_path, text, line, reason):
    path = tmp_path / "aliases"
    path.write_text(text)
    r = subprocess.run([SMTPD_BIN, "-f", str(tmp_path / "mail"),
                        "-a", "127.0.0.1", "-u", "alice:x", "-u", "bob:x",
                        "--aliases", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    first = r.stderr.splitlines()[0]
    assert first.startswith("smtpd: %s:%d: " % (path, line)), r.stderr
    assert reason in first


def test_missing_aliases_file_exits_2(tmp_path):
    r = subprocess.run([SMTPD_BIN, "-f", str(tmp_path / "mail"),
                        "--aliases", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert str(tmp_path / "none") in r.stderr


def wait_log(srv, text, count=1, timeout=10):
    deadline = time.monotonic() + timeout
    while srv.log_text().count(text) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.log_text().count(text) >= count, srv.log_text()


def test_sighup_rereads_and_a_bad_file_keeps_the_old(start_server, connect,
                                                       tmp_path):
    path = tmp_path / "aliases"
    path.write_text("sales: alice\n")
    srv = start_server(*USERS, "--aliases", str(path))
    path.write_text("sales: bob\nhelp: carol\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "aliases reloaded")
    deliver(connect, srv, ["sales@localhost", "help@localhost"])
    only_file(srv, "bob")
    only_file(srv, "carol")
    assert srv.new_files("alice") == []

    path.write_text("sales: alice\nhelp: nobody\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "aliases not reloaded, the old ones stay: %s:2: "
             "unknown target 'nobody'" % path)
    c = greeted(connect, srv)
    assert c.cmd("VRFY help") == "250 2.1.5 <help@localhost>"
    deliver(connect, srv, ["sales@localhost"])
    assert len(srv.wait_new("bob", 2)) == 2
    assert srv.new_files("alice") == []
