"""AUTH PLAIN and LOGIN (RFC 4954, 4616): success,
failure, cancel, order, malformed data, line limits, -A, ESMTPA in the
Received header, and what the log says (and never says)."""
import time

import pytest

from conftest import (b64, greeted, only_file, parse_trace, queue_id,
                      send_mail)

PASS = "s3cr3t-Pa55"
USERS = ("-u", "alice:" + PASS, "-u", "bob:pw")
BODY = b"Subject: auth\r\n\r\nauthenticated\r\n"


@pytest.fixture
def srv(start_server):
    return start_server(*USERS)


@pytest.fixture
def srv_a(start_server):
    """Users, and AUTH required before MAIL."""
    return start_server("-A", *USERS)


def plain(user, password, authz=""):
    return b64("%s\0%s\0%s" % (authz, user, password))


def wait_log(server, pred, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = server.log_text()
        if pred(text):
            return text
        time.sleep(0.05)
    return server.log_text()


def test_ehlo_advertises_auth_when_users_exist(srv, connect):
    lines = connect(srv.port).greet()
    assert "AUTH PLAIN LOGIN" in lines, lines


def test_plain_with_initial_response(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("AUTH PLAIN " + plain("alice", PASS)).startswith("235 2.7.0")


def test_plain_with_challenge(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("AUTH PLAIN") == "334 "
    assert c.cmd(plain("bob", "pw")).startswith("235 2.7.0")


def test_login(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert c.cmd(b64("alice")) == "334 UGFzc3dvcmQ6"
    assert c.cmd(b64(PASS)).startswith("235 2.7.0")


def test_mechanism_is_case_insensitive(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("auth plain " + plain("alice", PASS)).startswith("235 2.7.0")


@pytest.mark.parametrize("user,password", [
    ("alice", "wrong"), ("alice", PASS.upper()), ("alice", ""),
    ("mallory", PASS), ("bob", PASS), ("", PASS)])
def test_plain_failures(srv, connect, user, password):
    c = greeted(connect, srv)
    assert c.cmd("AUTH PLAIN " + plain(user, password)).startswith(
        "535 5.7.8")


def test_login_failure_then_success(srv, connect):
    c = greeted(connect, srv)
    c.cmd("AUTH LOGIN")
    c.cmd(b64("alice"))
    assert c.cmd(b64("nope")).startswith("535 5.7.8")
    assert c.cmd("AUTH LOGIN").startswith("334 ")
    assert c.cmd(b64("nobody")).startswith("334 ")
    assert c.cmd(b64(PASS)).startswith("535 5.7.8")
    assert c.cmd("AUTH PLAIN " + plain("alice", PASS)).startswith("235 2.7.0")


def test_plain_without_separators_is_not_accepted(srv_a, connect):
    c = greeted(connect, srv_a)
    reply = c.cmd("AUTH PLAIN " + b64("alice" + PASS))
    assert reply[:3] in ("501", "535"), reply
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("530 5.7.0")


def test_failed_auth_is_logged_without_the_password(srv, connect):
    c = greeted(connect, srv)
    time.sleep(0.3)
    mark = len(srv.log_text())
    wrong = "Wr0ngGuess-91"
    assert c.cmd("AUTH PLAIN " + plain("alice", wrong)).startswith("535")
    c.cmd("AUTH LOGIN")
    c.cmd(b64("bob"))
    assert c.cmd(b64(wrong)).startswith("535")
    assert c.cmd("AUTH PLAIN " + plain("alice", PASS)).startswith("235")
    c.cmd("QUIT")

    def failed_logged(text):
        new = text[mark:].splitlines()
        return sum("127.0.0.1" in l and "auth" in l.lower() for l in new) >= 2
    text = wait_log(srv, failed_logged)
    assert failed_logged(text), text[mark:]
    for secret in (wrong, PASS, b64(wrong), b64(PASS), plain("alice", PASS),
                   plain("alice", wrong)):
        assert secret not in text, "password in the log"


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_star_cancels(srv_a, connect, mech):
    c = greeted(connect, srv_a)
    assert c.cmd("AUTH " + mech).startswith("334 ")
    assert c.cmd("*").startswith("501 5.7.0")
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("530 5.7.0")
    assert c.cmd("NOOP").startswith("250 2.0.0")


def test_star_cancels_login_at_the_password(srv_a, connect):
    c = greeted(connect, srv_a)
    c.cmd("AUTH LOGIN")
    assert c.cmd(b64("alice")).startswith("334 ")
    assert c.cmd("*").startswith("501 5.7.0")
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("530 5.7.0")


def test_second_auth_is_refused(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("AUTH PLAIN " + plain("alice", PASS)).startswith("235")
    assert c.cmd("AUTH PLAIN " + plain("bob", "pw")).startswith("503 5.5.1")
    assert c.cmd("AUTH LOGIN").startswith("503 5.5.1")


def test_auth_inside_a_transaction_is_refused(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("AUTH PLAIN " + plain("alice", PASS)).startswith(
        "503 5.5.1")
    assert c.cmd("RSET").startswith("250")
    assert c.cmd("AUTH PLAIN " + plain("alice", PASS)).startswith("235")


@pytest.mark.parametrize("steps", [
    ["AUTH PLAIN !!!!"],
    ["AUTH PLAIN", "@@@@"],
    ["AUTH LOGIN", "%%%"],
    ["AUTH LOGIN", b64("alice"), "a=b="],
], ids=["plain-ir", "plain-response", "login-user", "login-pass"])
def test_malformed_base64(srv_a, connect, steps):
    c = greeted(connect, srv_a)
    for step in steps[:-1]:
        assert c.cmd(step).startswith("334 ")
    assert c.cmd(steps[-1]).startswith("501 5.5.2")
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("530 5.7.0")


def test_unknown_mechanism_and_missing_one(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("AUTH CRAM-MD5").startswith("504 5.5.4")
    assert c.cmd("AUTH XYZ " + b64("x")).startswith("504 5.5.4")
    reply = c.cmd("AUTH")
    assert reply[:9] in ("501 5.5.4", "504 5.5.4"), reply


def test_no_users_no_auth(server, connect):
    c = greeted(connect, server)
    reply = c.cmd("AUTH PLAIN " + plain("alice", PASS))
    assert reply[0] == "5", reply


def padded_plain(total):
    """An 'AUTH PLAIN <b64>' line of exactly total octets with CRLF."""
    n = (total - len("AUTH PLAIN ") - 2) // 4 * 3
    blob = b"\0alice\0" + b"x" * (n - 7)
    line = "AUTH PLAIN " + b64(blob)
    assert len(line) + 2 == total
    return line


def test_12000_octet_auth_line_is_not_too_long(srv, connect):
    c = greeted(connect, srv)
    total = 11997     # a multiple of 4 in base64 characters
    reply = c.cmd(padded_plain(total))
    assert reply[:3] in ("501", "535") and not reply.startswith("500"), reply
    assert c.cmd("NOOP").startswith("250 2.0.0")


def test_13000_octet_auth_line_is_too_long(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd(padded_plain(12997)).startswith("500 5.5.6")
    assert c.cmd("NOOP").startswith("250 2.0.0")
    assert c.cmd("AUTH PLAIN " + plain("alice", PASS)).startswith("235")


def test_long_auth_response_lines(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("AUTH PLAIN") == "334 "
    reply = c.cmd(b64(b"\0alice\0" + b"y" * 8900))     # ~11.9 kB
    assert reply[:3] in ("501", "535"), reply
    assert c.cmd("AUTH PLAIN") == "334 "
    assert c.cmd(b64(b"\0alice\0" + b"y" * 9800)).startswith("500 5.5.6")
    assert c.cmd("NOOP").startswith("250 2.0.0")


def test_a_long_line_outside_auth_is_still_512(srv, connect):
    c = greeted(connect, srv)
    assert c.cmd("NOOP " + "x" * 1000).startswith("500 5.5.6")


@pytest.mark.slow
def test_failed_auths_count_toward_the_error_limit(srv, connect):
    c = greeted(connect, srv)
    for i in range(9):
        assert c.cmd("AUTH PLAIN " + plain("alice", "bad%d" % i)).startswith(
            "535 5.7.8"), i
    assert c.cmd("AUTH PLAIN " + plain("alice", "bad")).startswith(
        "421 4.7.0")
    assert c.closed()


def test_require_auth(srv_a, connect):
    c = greeted(connect, srv_a)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("530 5.7.0")
    assert c.cmd("NOOP").startswith("250 2.0.0")
    assert c.cmd("AUTH PLAIN " + plain("alice", PASS)).startswith("235")
    qid = queue_id(send_mail(c, "alice@localhost", ["bob@localhost"], BODY))
    _, f, msg = parse_trace(only_file(srv_a, "bob")[1])
    assert f["proto"] == "ESMTPA" and f["id"] == qid and msg == BODY


def test_require_auth_pipelined(srv_a, connect):
    c = greeted(connect, srv_a)
    c.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n")
    assert c.reply_line().startswith("530 5.7.0")
    for _ in ("RCPT", "DATA"):
        reply = c.reply_line()
        assert reply[:9] in ("503 5.5.1", "530 5.7.0"), reply
    assert c.cmd("NOOP").startswith("250 2.0.0")
    assert srv_a.new_files("bob") == []


def test_received_says_esmtpa_and_log_names_the_user(srv, connect):
    c = greeted(connect, srv, ehlo="laptop.test")
    c.cmd("AUTH LOGIN")
    c.cmd(b64("alice"))
    assert c.cmd(b64(PASS)).startswith("235")
    qid = queue_id(send_mail(c, "alice@localhost", ["postmaster@localhost"],
                             BODY))
    _, f, _ = parse_trace(only_file(srv, "postmaster")[1])
    assert f["proto"] == "ESMTPA" and f["helo"] == "laptop.test"

    def access(text):
        return [l for l in text.splitlines() if qid in l and "alice" in l]
    assert access(wait_log(srv, access)), srv.log_text()


def test_unauthenticated_session_says_esmtp(srv, connect):
    c = greeted(connect, srv)
    c.cmd("AUTH PLAIN " + plain("alice", "wrong"))
    queue_id(send_mail(c, "a@b.test", ["alice@localhost"], BODY))
    _, f, _ = parse_trace(only_file(srv, "alice")[1])
    assert f["proto"] == "ESMTP"


def test_password_with_colons(start_server, connect):
    srv = start_server("-u", "carol:a:b:c")
    c = greeted(connect, srv)
    assert c.cmd("AUTH PLAIN " + plain("carol", "a:b:c")).startswith("235")
