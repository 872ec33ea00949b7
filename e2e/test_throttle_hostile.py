"""The login throttle against the attacks it once lost to: many parallel
connections from one address (a check counts from its start, so they get
no more checks than sequential ones), guesses at one account from many
addresses (one check a second past ten, while its owner still logs in
from an address it used before), and many addresses of one IPv6 /64
(counted as one). Real sockets on loopback; counts of replies and of
log lines, never a time bound."""
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import b64
from test_throttle import FAILED, THROTTLED, Line, client_from, plain

OK = "235 2.7.0 Authentication successful"


def session(port, source, host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(30)
    s.bind((source, 0))
    s.connect((host, port))
    c = Line(s)
    assert c.reply().startswith("220 ")
    assert c.cmd("EHLO t.test").startswith("250 ")
    return c


def all_at_once(clients, user, password):
    """Sends one AUTH on every session before reading any reply; returns
    the replies, in the sessions' order."""
    for c in clients:
        c.sock.sendall(("AUTH PLAIN %s\r\n" % plain(user, password)).encode())
    return [c.reply() for c in clients]


def close_all(clients):
    for c in clients:
        c.sock.close()


@pytest.fixture
def srv(start_server):
    return start_server("-u", "alice:right", "-u", "bob:other", "-c", "400")


def test_100_parallel_connections_get_10_checks(srv):
    """100 sessions from one address guess at once: ten are checked (and
    fail, logged for fail2ban), ninety get 454 at once, each refusal
    logged with the address."""
    clients = [session(srv.port, "127.0.9.1") for _ in range(100)]
    replies = all_at_once(clients, "alice", "guess")
    assert replies.count(FAILED) == 10, replies
    assert replies.count(THROTTLED) == 90, replies
    close_all(clients)
    log = srv.log_text()
    assert log.count("AUTH failed for user 'alice' from 127.0.9.1\n") == 10
    assert log.count("AUTH refused from 127.0.9.1: too many failed logins\n") == 90
    # the right password is not checked either now
    c = session(srv.port, "127.0.9.1")
    assert c.cmd("AUTH PLAIN " + plain("alice", "right")) == THROTTLED


def test_rotating_addresses_meet_the_account_limit(srv):
    """Ten addresses fail once each at alice: from then on one check a
    second for alice, whatever the address; bob is not concerned; the
    right password still logs in once its second comes."""
    first = [session(srv.port, "127.0.10.%d" % (i + 1)) for i in range(10)]
    assert all_at_once(first, "alice", "guess") == [FAILED] * 10
    # 40 more addresses, each new to the server, at once
    more = [session(srv.port, "127.0.11.%d" % (i + 1)) for i in range(40)]
    t0 = time.monotonic()
    replies = all_at_once(more, "alice", "guess")
    seconds = time.monotonic() - t0
    checked = replies.count(FAILED)
    print("\n40 addresses at once: %d checked, %d refused in %.2f s"
          % (checked, replies.count(THROTTLED), seconds))
    assert checked + replies.count(THROTTLED) == 40
    # one check a second: at most one per started second the burst lasted
    assert checked <= 1 + int(seconds), (checked, seconds)
    log = srv.log_text()
    assert log.count("too many failed logins for user 'alice'") == 40 - checked
    assert "AUTH refused from 127.0.11." in log
    # bob, from one of the same addresses, is checked as usual
    c = session(srv.port, "127.0.11.40")
    assert c.cmd("AUTH PLAIN " + plain("bob", "other")) == OK
    # the owner from a new address: refused at most until its second
    # comes, then the right password logs in
    for attempt in range(50):
        c = session(srv.port, "127.0.12.%d" % (attempt + 1))
        reply = c.cmd("AUTH PLAIN " + plain("alice", "right"))
        c.sock.close()
        if reply == OK:
            break
        assert reply == THROTTLED
        time.sleep(0.2)
    assert reply == OK
    close_all(first + more)


def test_unknown_names_count_too(srv):
    first = [session(srv.port, "127.0.13.%d" % (i + 1)) for i in range(10)]
    assert all_at_once(first, "nosuch", "guess") == [FAILED] * 10
    more = [session(srv.port, "127.0.14.%d" % (i + 1)) for i in range(20)]
    t0 = time.monotonic()
    replies = all_at_once(more, "NoSuch", "guess")
    seconds = time.monotonic() - t0
    assert replies.count(FAILED) <= 1 + int(seconds), replies
    assert replies.count(THROTTLED) >= 1
    close_all(first + more)


def test_owner_is_not_locked_out(srv):
    """alice logged in from 127.0.15.1 once; while 30 other addresses
    guess at her account, her own logins from that address go through."""
    c = session(srv.port, "127.0.15.1")
    assert c.cmd("AUTH PLAIN " + plain("alice", "right")) == OK
    guessers = [session(srv.port, "127.0.16.%d" % (i + 1)) for i in range(30)]
    owner = [session(srv.port, "127.0.15.1") for _ in range(3)]
    for g in guessers:
        g.sock.sendall(("AUTH PLAIN %s\r\n" % plain("alice", "x")).encode())
    # sent while the account is past its ten: a stranger would get 454
    assert all_at_once(owner, "alice", "right") == [OK] * 3
    replies = [g.reply() for g in guessers]
    # ten checks before the limit, the owner's three among them if the
    # server read those first
    assert replies.count(FAILED) >= 10 - 3 and THROTTLED in replies, replies
    c = session(srv.port, "127.0.15.1")
    assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert c.cmd(b64("alice")) == "334 UGFzc3dvcmQ6"
    assert c.cmd(b64("right")) == OK
    close_all(guessers + owner)


def test_a_third_check_waits_its_turn(srv):
    """Five sessions of one address with the right password at once: at
    most two are checked at a time, the others wait; all log in."""
    clients = [session(srv.port, "127.0.17.1") for _ in range(5)]
    assert all_at_once(clients, "alice", "right") == [OK] * 5
    close_all(clients)


# ---- IPv6: one /64 is one client ------------------------------------------

# a random /48 of our own, written as inet_ntop writes it (no leading
# zeros): the log lines compared below show it that way
PREFIX = "fd00:19:%x" % (uuid.uuid4().int & 0xffff)


def ip6(cmd, addr):
    return subprocess.run(["ip", "-6", "addr", cmd, "%s/64" % addr, "dev",
                           "lo", "nodad"], capture_output=True, text=True)


@pytest.fixture
def v6_addresses():
    """Twelve addresses of one /64 on lo (removed afterwards), and one of
    another /64."""
    addrs = ["%s:1::%x" % (PREFIX, i + 2) for i in range(12)]
    other = "%s:2::2" % PREFIX
    added = []
    try:
        for a in addrs + [other]:
            r = ip6("add", a)
            if r.returncode != 0:
                pytest.skip("cannot add IPv6 addresses to lo (%s)"
                            % r.stderr.strip())
            added.append(a)
        yield addrs, other
    finally:
        for a in added:
            ip6("del", a)


def test_ipv6_counted_by_its_64(start_server, v6_addresses):
    addrs, other = v6_addresses
    srv = start_server("-u", "alice:right", "-a", "::1", "-a", "127.0.0.1")
    # ten addresses of the /64, one guess each, at different names
    clients = [session(srv.port, a, host="::1") for a in addrs[:10]]
    for i, c in enumerate(clients):
        c.sock.sendall(("AUTH PLAIN %s\r\n" % plain("n%d" % i, "x")).encode())
    assert [c.reply() for c in clients] == [FAILED] * 10
    # an eleventh address of it is refused; another /64 is not
    c = session(srv.port, addrs[10], host="::1")
    assert c.cmd("AUTH PLAIN " + plain("alice", "right")) == THROTTLED
    assert "AUTH refused from %s: too many failed logins" % addrs[10] \
        in srv.log_text()
    c = session(srv.port, other, host="::1")
    assert c.cmd("AUTH PLAIN " + plain("alice", "right")) == OK
    close_all(clients)
