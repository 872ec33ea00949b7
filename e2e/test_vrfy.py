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


# ---- --vrfy on|auth|off ------------------------------------------------

def login(c, user, password):
    from conftest import b64
    assert c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (user, password))) == (
        "235 2.7.0 Authentication successful")


def test_vrfy_on_answers_anyone(start_server, connect):
    srv = start_server("--vrfy", "on", *USERS)
    c = greeted(connect, srv)
    assert c.cmd("VRFY alice") == "250 2.1.5 <alice@localhost>"
    assert c.cmd("VRFY nobody") == "550 5.1.1 No such user here"


def test_vrfy_auth_answers_only_after_login(start_server, connect):
    srv = start_server("--vrfy", "auth", *USERS)
    c = greeted(connect, srv)
    assert c.cmd("VRFY alice") == "530 5.7.0 Authentication required"
    assert c.cmd("VRFY al") == "530 5.7.0 Authentication required"
    assert c.cmd("VRFY nobody") == "530 5.7.0 Authentication required"
    login(c, "alice", "x")
    assert c.cmd("VRFY alice") == "250 2.1.5 <alice@localhost>"
    assert c.cmd("VRFY nobody") == "550 5.1.1 No such user here"


def test_vrfy_off_answers_no_one(start_server, connect):
    srv = start_server("--vrfy", "off", *USERS)
    c = greeted(connect, srv)
    assert c.cmd("VRFY alice") == "502 5.5.1 VRFY command is disabled"
    assert c.cmd("VRFY al") == "502 5.5.1 VRFY command is disabled"
    login(c, "alice", "x")
    assert c.cmd("VRFY alice") == "502 5.5.1 VRFY command is disabled"
    assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_vrfy_bad_value_exits_2(tmp_path):
    import subprocess
    from conftest import SMTPD_BIN
    p = subprocess.run([SMTPD_BIN, "--vrfy", "maybe", "-f", str(tmp_path)],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2
    assert "bad --vrfy 'maybe'" in p.stderr, p.stderr


def test_vrfy_ambiguous_with_longest_domain_fits(start_server, connect):
    """A 255-byte -d: the 553 lists what fits in the output buffer, each
    line whole, and the session goes on."""
    domain = ".".join(c * 63 for c in "abcd")
    names = ["al%02d" % i + "x" * 58 for i in range(10)]
    args = []
    for n in names:
        args += ["-u", n + ":p"]
    srv = start_server("-d", domain, *args)
    c = greeted(connect, srv)
    c.send("VRFY al\r\n")
    lines = raw_reply(c)
    assert lines[0] == "553-5.1.4 Ambiguous; candidates:", lines
    assert len(lines) >= 3, lines
    for i, line in enumerate(lines[1:]):
        sep = " " if i == len(lines) - 2 else "-"
        assert line == "553%s5.1.4 <%s@%s>" % (sep, names[i], domain), line
    assert c.cmd("NOOP") == "250 2.0.0 Ok"
