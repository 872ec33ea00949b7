"""The monitor protocol (docs/monitor-protocol.md) with raw
datagrams: every command and every status, the order of the checks,
counters against what the test itself did, ON/OFF really changing the next
message, garbage datagrams, over IPv4 and IPv6."""
import base64
import random
import socket
import struct
import time

import pytest

from conftest import greeted, send_mail

TOKEN = b"smtpd\0\0\0"
HOSTS = ["127.0.0.1", "::1"]
BODY = b"From: a@b.test\r\nSubject: monitor\r\n\r\nsome Mixed case text\r\n"

# commands
HIST, CONC, BYTES, STATUS, ON, OFF = range(6)
MESSAGES, RECIPIENTS, RCPT_REJECTED, AUTH_FAILURES, TR_FAILURES, UPTIME, \
    DROPPED, TLS_SESSIONS, AUTH_DELAYED, AUTH_REFUSED = range(6, 16)
CLIENT_LIMIT, CLIENT_RATE, MESSAGE_RATE = range(16, 19)
COUNTERS = [HIST, CONC, BYTES, MESSAGES, RECIPIENTS, RCPT_REJECTED,
            AUTH_FAILURES, TR_FAILURES, UPTIME, DROPPED, TLS_SESSIONS,
            AUTH_DELAYED, AUTH_REFUSED, CLIENT_LIMIT, CLIENT_RATE,
            MESSAGE_RATE]
N_COMMANDS = 19     # 0x00 .. 0x12; the next code is unknown
# statuses
OK, BAD_VERSION, AUTH_FAILED, BAD_COMMAND, BAD_LENGTH, ERROR, NOT_AVAILABLE = \
    range(7)


def request(cmd, rid=0x1234, token=TOKEN, version=0):
    return (b"\xff\xfe" + bytes([version]) + struct.pack(">H", rid) + token +
            bytes([cmd]))


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def exchange(srv, data, host="127.0.0.1", timeout=3.0):
    """Sends one datagram; the response, or None if none came in time."""
    with socket.socket(family_of(host), socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (host, srv.monitor_port))
        try:
            return s.recv(64)
        except socket.timeout:
            return None


def decode(res):
    """(id, status, amount, boolean) of a well-formed response."""
    assert res is not None, "no answer"
    assert len(res) == 15, res
    sig, version, rid, status, amount, flag = struct.unpack(">2sBHBQB", res)
    assert sig == b"\xff\xfe" and version == 0, res
    return rid, status, amount, flag


def ask(srv, cmd, host="127.0.0.1", token=TOKEN, version=0):
    """One request with a fresh id; (status, amount, boolean)."""
    rid = random.randrange(65536)
    got_id, status, amount, flag = decode(
        exchange(srv, request(cmd, rid, token, version), host))
    assert got_id == rid
    return status, amount, flag


def counter(srv, cmd, host="127.0.0.1"):
    status, amount, flag = ask(srv, cmd, host)
    assert (status, flag) == (OK, 0)
    return amount


def wait_counter(srv, cmd, want, timeout=5):
    """Polls cmd until it equals want (the server counts asynchronously to
    the client seeing its socket close); returns the last value."""
    deadline = time.monotonic() + timeout
    value = counter(srv, cmd)
    while value != want and time.monotonic() < deadline:
        time.sleep(0.02)
        value = counter(srv, cmd)
    return value


def smtp_visit(srv, host="127.0.0.1"):
    """Opens a connection, reads the greeting, QUIT, reads to EOF; returns
    bytes sent + received."""
    fam = family_of(host)
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect((host, srv.port))
        got = b""
        while b"\r\n" not in got:
            chunk = s.recv(512)
            assert chunk, got
            got += chunk
        assert got.startswith(b"220")
        s.sendall(b"QUIT\r\n")
        while True:
            chunk = s.recv(512)
            if not chunk:
                break
            got += chunk
        assert b"\r\n221" in got
        return len(got) + len(b"QUIT\r\n")


# ---- every command, every status ---------------------------------------

@pytest.mark.parametrize("host", HOSTS)
def test_every_counter_answers_ok_with_boolean_zero(server, host):
    for cmd in COUNTERS:
        status, _, flag = ask(server, cmd, host)
        assert (status, flag) == (OK, 0), cmd


@pytest.mark.parametrize("host", HOSTS)
def test_response_echoes_the_id_and_has_the_layout(server, host):
    for rid in (0x0000, 0x1234, 0xBEEF, 0xFFFF):
        res = exchange(server, request(HIST, rid), host)
        assert len(res) == 15
        assert res[:5] == b"\xff\xfe\x00" + struct.pack(">H", rid)
        assert res[5] == OK and res[14] == 0


@pytest.mark.parametrize("host", HOSTS)
def test_transformation_commands_without_t(server, host):
    assert ask(server, STATUS, host) == (OK, 0, 0)
    assert ask(server, ON, host) == (NOT_AVAILABLE, 0, 0)
    assert ask(server, ON, host) == (NOT_AVAILABLE, 0, 0)
    assert ask(server, STATUS, host) == (OK, 0, 0)
    assert ask(server, OFF, host) == (OK, 0, 0)
    assert ask(server, OFF, host) == (OK, 0, 0)


@pytest.mark.parametrize("host", HOSTS)
def test_on_off_are_idempotent_with_t(start_server, host):
    srv = start_server("-t", "tr a-z A-Z")
    assert ask(srv, STATUS, host) == (OK, 0, 1)      # -t starts ON
    assert ask(srv, ON, host) == (OK, 0, 1)
    assert ask(srv, ON, host) == (OK, 0, 1)
    assert ask(srv, STATUS, host) == (OK, 0, 1)
    assert ask(srv, OFF, host) == (OK, 0, 0)
    assert ask(srv, OFF, host) == (OK, 0, 0)
    assert ask(srv, STATUS, host) == (OK, 0, 0)
    assert ask(srv, ON, host) == (OK, 0, 1)
    assert ask(srv, STATUS, host) == (OK, 0, 1)


@pytest.mark.parametrize("host", HOSTS)
def test_wrong_version(server, host):
    for version in (1, 2, 0x7F, 0xFF):
        assert ask(server, HIST, host, version=version) == (BAD_VERSION, 0, 0)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("token", [b"wrong\0\0\0", b"\0" * 8, b"smtpd\0\0\x01",
                                   b"SMTPD\0\0\0", b"smtpd   "])
def test_wrong_token(server, host, token):
    assert ask(server, HIST, host, token=token) == (AUTH_FAILED, 0, 0)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("cmd", [N_COMMANDS, 0x7F, 0x80, 0xFF])
def test_unknown_command(server, host, cmd):
    assert ask(server, cmd, host) == (BAD_COMMAND, 0, 0)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("length", [5, 6, 13])
def test_wrong_length_echoes_the_id(server, host, length):
    data = (request(HIST, 0xABCD) + b"\0" * 30)[:length]
    rid, status, amount, flag = decode(exchange(server, data, host))
    assert (rid, status, amount, flag) == (0xABCD, BAD_LENGTH, 0, 0)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("length", [2, 3, 4, 15, 16, 20, 40, 200])
def test_too_short_or_response_sized_gets_no_answer(server, host, length):
    """Below 5 bytes there is no id to echo; 15 bytes and more may be a
    response, and answering responses is how monitors loop forever."""
    data = (request(HIST, 0xABCD) + b"\0" * 200)[:length]
    assert exchange(server, data, host, timeout=0.5) is None
    assert counter(server, DROPPED, host) == 1


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("data", [
    b"", b"\xff", b"\xfe\xff" + request(HIST)[2:], b"\xff\xff" + request(HIST)[2:],
    b"\x00" * 14, b"\xfe" + request(HIST)[1:], b"GET / HTTP/1.0\r\n\r\n"],
    ids=["empty", "one-byte", "swapped", "ffff", "zeros", "fefe", "http"])
def test_no_signature_no_answer(server, host, data):
    assert exchange(server, data, host, timeout=0.5) is None
    assert counter(server, HIST, host) >= 1     # and it still answers


def test_checks_come_in_the_order_length_version_token_command(server):
    bad_token = b"nope\0\0\0\0"
    # length before everything: a 13-byte request with every fault
    assert decode(exchange(server, request(0x7F, 7, bad_token, 1)[:13])) == \
        (7, BAD_LENGTH, 0, 0)
    # version before token and command
    assert ask(server, 0x7F, token=bad_token, version=1) == (BAD_VERSION, 0, 0)
    assert ask(server, HIST, token=bad_token, version=1) == (BAD_VERSION, 0, 0)
    # token before command
    assert ask(server, 0x7F, token=bad_token) == (AUTH_FAILED, 0, 0)
    # a wrong token does not switch anything either
    assert ask(server, ON, token=bad_token) == (AUTH_FAILED, 0, 0)
    assert ask(server, 0x7F) == (BAD_COMMAND, 0, 0)


def test_custom_token(start_server):
    srv = start_server("-k", "s3cret")
    for host in HOSTS:
        assert ask(srv, HIST, host, token=b"s3cret\0\0")[0] == OK
        assert ask(srv, HIST, host, token=TOKEN) == (AUTH_FAILED, 0, 0)
        assert ask(srv, HIST, host, token=b"s3cret\0\0\0"[:7] + b"x") == \
            (AUTH_FAILED, 0, 0)


def test_eight_byte_token(start_server):
    srv = start_server("-k", "12345678")
    assert ask(srv, HIST, token=b"12345678")[0] == OK
    assert ask(srv, HIST, token=b"1234567\0") == (AUTH_FAILED, 0, 0)
    assert ask(srv, HIST) == (AUTH_FAILED, 0, 0)


# ---- counters against what the test did ----------------------------------

def test_historical_rises_by_exactly_n(server):
    before = counter(server, HIST)
    n = 7
    for i in range(n):
        smtp_visit(server, HOSTS[i % 2])
    assert wait_counter(server, HIST, before + n) == before + n
    time.sleep(0.2)
    assert counter(server, HIST, "::1") == before + n


def test_concurrent_equals_connections_held(server, connect):
    assert wait_counter(server, CONC, 0) == 0
    held = []
    for k in range(1, 6):
        c = connect(server.port, HOSTS[k % 2])
        assert c.reply_line().startswith("220")
        held.append(c)
        assert wait_counter(server, CONC, k) == k
    for k in range(len(held) - 1, -1, -1):
        held.pop().close()
        assert wait_counter(server, CONC, k) == k


def test_bytes_grow_by_at_least_what_was_exchanged(server, connect):
    before = counter(server, BYTES)
    moved = sum(smtp_visit(server) for _ in range(3))
    c = greeted(connect, server)
    payload = BODY + b"x" * 5000 + b"\r\n"
    assert send_mail(c, "a@b.test", ["postmaster@localhost"],
                     payload).startswith("250")
    moved += len(payload) + 200       # the commands and replies, at least
    c.close()
    deadline = time.monotonic() + 5
    while counter(server, BYTES) < before + moved and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    assert counter(server, BYTES) >= before + moved


def test_bytes_count_exactly_a_visit(server):
    """Exactly the bytes read from and written to clients."""
    assert wait_counter(server, CONC, 0) == 0
    before = counter(server, BYTES)
    moved = smtp_visit(server)
    assert wait_counter(server, BYTES, before + moved) == before + moved


def test_messages_and_recipients_delivered(start_server, connect):
    srv = start_server("-u", "alice:pw")
    m0, r0 = counter(srv, MESSAGES), counter(srv, RECIPIENTS)
    c = greeted(connect, srv)
    assert send_mail(c, "a@b.test", ["postmaster@localhost"],
                     BODY).startswith("250")
    assert wait_counter(srv, MESSAGES, m0 + 1) == m0 + 1
    assert counter(srv, RECIPIENTS) == r0 + 1
    assert send_mail(c, "a@b.test", ["postmaster@localhost",
                                     "alice@localhost"], BODY).startswith("250")
    assert wait_counter(srv, MESSAGES, m0 + 2) == m0 + 2
    assert wait_counter(srv, RECIPIENTS, r0 + 3) == r0 + 3


def test_rejected_rcpt_and_auth_failures(start_server, connect):
    srv = start_server("-u", "alice:pw")
    r0, a0 = counter(srv, RCPT_REJECTED), counter(srv, AUTH_FAILURES)
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
    assert c.cmd("RCPT TO:<nobody-here@localhost>")[0] in "45"
    assert c.cmd("RCPT TO:<someone@elsewhere.test>")[0] in "45"
    assert wait_counter(srv, RCPT_REJECTED, r0 + 2) == r0 + 2
    assert c.cmd("RSET").startswith("250")
    wrong = base64.b64encode(b"\0alice\0nope").decode()
    assert c.cmd("AUTH PLAIN " + wrong).startswith("535")
    assert wait_counter(srv, AUTH_FAILURES, a0 + 1) == a0 + 1


def test_transformation_failures(start_server, connect):
    srv = start_server("-t", "cat >/dev/null; exit 3")
    f0 = counter(srv, TR_FAILURES)
    c = greeted(connect, srv)
    assert send_mail(c, "a@b.test", ["postmaster@localhost"],
                     BODY).startswith("451")
    assert wait_counter(srv, TR_FAILURES, f0 + 1) == f0 + 1
    # OFF: the same message now goes through untouched
    assert ask(srv, OFF) == (OK, 0, 0)
    assert send_mail(c, "a@b.test", ["postmaster@localhost"],
                     BODY).startswith("250")
    assert counter(srv, TR_FAILURES) == f0 + 1


def test_uptime_counts_seconds(server):
    first = counter(server, UPTIME)
    assert first < 60
    time.sleep(1.2)
    assert counter(server, UPTIME) >= first + 1


# ---- ON/OFF change what the next message goes through ---------------------

def test_off_stores_unchanged_on_uppercases(start_server, connect):
    srv = start_server("-t", "tr a-z A-Z")
    c = greeted(connect, srv)
    assert ask(srv, OFF) == (OK, 0, 0)
    assert ask(srv, OFF) == (OK, 0, 0)
    assert send_mail(c, "a@b.test", ["postmaster@localhost"],
                     BODY).startswith("250")
    files = srv.wait_new("postmaster", 1)
    assert len(files) == 1
    plain = files[0].read_bytes()
    assert plain.endswith(b"\r\n" + BODY)
    assert plain.startswith(b"Return-Path: <a@b.test>")

    assert ask(srv, ON) == (OK, 0, 1)
    assert ask(srv, ON) == (OK, 0, 1)
    assert send_mail(c, "a@b.test", ["postmaster@localhost"],
                     BODY).startswith("250")
    files = srv.wait_new("postmaster", 2)
    assert len(files) == 2
    upper = [d for d in (f.read_bytes() for f in files) if d != plain]
    assert len(upper) == 1
    assert upper[0] == upper[0].upper()
    assert upper[0].endswith(b"\r\n" + BODY.upper())


# ---- garbage ------------------------------------------------------------

def expected_status(data):
    """The protocol's answer to data, from docs/monitor-protocol.md 8, for a
    server without -t and with the default token; None: no answer."""
    if len(data) < 5 or len(data) >= 15 or data[:2] != b"\xff\xfe":
        return None
    rid = struct.unpack(">H", data[3:5])[0]
    if len(data) != 14:
        return rid, BAD_LENGTH
    if data[2] != 0:
        return rid, BAD_VERSION
    if data[5:13] != TOKEN:
        return rid, AUTH_FAILED
    if data[13] >= N_COMMANDS:
        return rid, BAD_COMMAND
    return rid, NOT_AVAILABLE if data[13] == ON else OK


def random_datagram(rng):
    kind = rng.random()
    if kind < 0.4:                      # anything at all
        return bytes(rng.randrange(256) for _ in range(rng.randrange(41)))
    if kind < 0.7:                      # the signature, then anything
        n = rng.randrange(2, 41)
        return b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(n - 2))
    # a plausible request with one or two things wrong, or none
    data = bytearray(request(rng.randrange(256), rng.randrange(65536)))
    if rng.random() < 0.3:
        data[2] = rng.randrange(256)
    if rng.random() < 0.3:
        data[5 + rng.randrange(8)] ^= 1 + rng.randrange(255)
    if rng.random() < 0.5:
        data[13] = rng.randrange(N_COMMANDS)
    return bytes(data)


def drain(sock, want, got, timeout=5):
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(64))
        except socket.timeout:
            break


def test_a_thousand_random_datagrams(server):
    rng = random.Random(20240601)
    expected, got = [], []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for batch in range(20):
            for _ in range(50):
                data = random_datagram(rng)
                s.sendto(data, ("127.0.0.1", server.monitor_port))
                if expected_status(data) is not None:
                    expected.append(expected_status(data))
            drain(s, len(expected), got)
        drain(s, len(expected) + 1, got, timeout=0.5)   # nothing extra
    answers = [decode(res) for res in got]
    assert all(a[2] == 0 and a[3] == 0 for a in answers
               if a[1] != OK)
    assert sorted((a[0], a[1]) for a in answers) == sorted(expected)
    assert len(expected) > 300
    # still fine, on both families
    for host in HOSTS:
        assert ask(server, HIST, host)[0] == OK
        assert ask(server, STATUS, host) == (OK, 0, 0)
    assert server.proc.poll() is None


def test_many_requests_in_a_burst_are_all_answered(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for rid in range(100):
            s.sendto(request(HIST, rid), ("127.0.0.1", server.monitor_port))
        got = []
        drain(s, 100, got)
    assert sorted(decode(r)[0] for r in got) == list(range(100))
