"""VRFY: a known mailbox, an ambiguous prefix with its
candidates, an unknown name, and the address forms a client may use."""
import pytest

from conftest import greeted, raw_reply, tree

USERS = ("-u", "alice:x", "-u", "alan:x", "-u", "albert:y",
         "-u", "alanna:z")


@pytest.fixture
def srv(start_server):
    return start_server(*USERS)


@pytest.mark.parametrize("arg", ["alice", "alice@localhost",
                                 "<alice@localhost>", "ALICE",
                                 "Alice@LocalHost"])
def test_known_user(srv, connect, arg):
    c = greeted(connect, srv)
    assert c.cmd("VRFY " + arg) == "250 2.1.5 <alice@localhost>"


def test_postmaster_is_known(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("VRFY postmaster") == "250 2.1.5 <postmaster@localhost>"


def test_hand_made_maildir_is_known(start_server, connect, tmp_path):
    for sub in ("tmp", "new", "cur"):
        (tmp_path / "mail" / "dora" / sub).mkdir(parents=True)
    srv = start_server()
    c = greeted(connect, srv)
    assert c.cmd("VRFY dora") == "250 2.1.5 <dora@localhost>"


def test_domain_flag(start_server, connect):
    srv = start_server("-d", "example.org", *USERS)
    c = greeted(connect, srv)
    assert c.cmd("VRFY alice") == "250 2.1.5 <alice@example.org>"
    assert c.cmd("VRFY <alice@example.org>") == (
        "250 2.1.5 <alice@example.org>")


def test_ambiguous_prefix_lists_candidates(srv, connect):
    c = greeted(connect, srv)
    c.send("VRFY al\r\n")
    lines = raw_reply(c)
    assert all(l[:3] == "553" for l in lines), lines
    assert all(l[3] == "-" for l in lines[:-1]) and lines[-1][3] == " "
    assert lines[0][4:9] == "5.1.4", lines
    text = "\n".join(lines)
    for name in ("alice", "alan", "albert", "alanna"):
        assert "<%s@localhost>" % name in text, lines
    assert "postmaster" not in text


def test_ambiguous_prefix_only_names_matches(srv, connect):
    c = greeted(connect, srv)
    c.send("VRFY ala\r\n")
    lines = raw_reply(c)
    assert lines[0].startswith("553") and "5.1.4" in lines[0], lines
    text = "\n".join(lines)
    assert "<alan@localhost>" in text and "<alanna@localhost>" in text
    assert "<alice@localhost>" not in text and "albert" not in text


def test_single_prefix_match_is_not_a_match(srv, connect):
    """553 only when several mailboxes start with the string."""
    c = greeted(connect, srv)
    assert c.cmd("VRFY alb").startswith("550 5.1.1")


def test_exact_match_wins_over_longer_names(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("VRFY alan") == "250 2.1.5 <alan@localhost>"


@pytest.mark.parametrize("arg", ["nobody", "nobody@localhost", "zz",
                                 "<nobody@localhost>"])
def test_unknown(srv, connect, arg):
    c = greeted(connect, srv)
    assert c.cmd("VRFY " + arg).startswith("550 5.1.1")


def test_other_domain_is_not_ours(srv, connect):
    c = greeted(connect, srv)
    reply = c.cmd("VRFY alice@elsewhere.test")
    assert reply.startswith("550 "), reply


def test_missing_argument(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("VRFY").startswith("501 5.5.4")


@pytest.mark.parametrize("arg", ["a/b", "../alice", "a..b"])
def test_bad_names_never_touch_the_disk(srv, connect, arg):
    before = tree(srv.root)
    c = greeted(connect, srv)
    reply = c.cmd("VRFY " + arg)
    assert reply[:3] in ("501", "550") and reply[4:5] == "5", reply
    assert tree(srv.root) == before


def test_vrfy_does_not_disturb_a_transaction(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("VRFY alice").startswith("250 2.1.5")
    assert c.cmd("RCPT TO:<alice@localhost>").startswith("250 2.1.5")
