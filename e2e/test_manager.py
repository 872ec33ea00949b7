"""`manager` driven for real: each one-shot command against
a running server with its exact output, error statuses, no server, the
retransmission with one request id, stray answers ignored, the menu fed
through stdin, and its command line."""
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import MANAGER_BIN, free_port, greeted, send_mail

TOKEN = b"smtpd\0\0\0"
STATS_LABELS = ["historical connections", "concurrent connections",
                "bytes transferred", "transformations", "messages delivered",
                "recipients delivered", "recipients rejected",
                "auth failures", "transformation failures", "uptime seconds",
                "monitor datagrams dropped", "TLS sessions",
                "logins delayed", "logins refused", "client limit refusals",
                "client rate refusals", "message rate refusals"]


def manager(*args, stdin=None, timeout=15):
    return subprocess.run([MANAGER_BIN] + [str(a) for a in args],
                          input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def m(srv, *args, **kw):
    """manager against srv's monitor port."""
    return manager("-p", srv.monitor_port, *args, **kw)


def raw(srv, cmd, token=TOKEN):
    """The amount the server reports for cmd, asked with a raw datagram."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"\xff\xfe\x00\x00\x01" + token + bytes([cmd]),
                 ("127.0.0.1", srv.monitor_port))
        res = s.recv(64)
    assert len(res) == 15 and res[5] == 0, res
    return struct.unpack(">Q", res[6:14])[0]


def settle(srv, timeout=5):
    """Waits until no SMTP client is connected (the fixture's own probe
    may still be closing), so counters stay put."""
    deadline = time.monotonic() + timeout
    while raw(srv, 0x01) != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert raw(srv, 0x01) == 0


def ok(result, out):
    assert (result.returncode, result.stdout, result.stderr) == (0, out, ""), \
        result


# ---- one-shot commands --------------------------------------------------

def test_hist_conc_bytes(server, connect):
    settle(server)
    ok(m(server, "hist"), "historical connections: %d\n" % raw(server, 0x00))
    ok(m(server, "conc"), "concurrent connections: 0\n")
    ok(m(server, "bytes"), "bytes transferred: %d\n" % raw(server, 0x02))
    c = connect(server.port)
    assert c.reply_line().startswith("220")
    deadline = time.monotonic() + 5
    while raw(server, 0x01) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    ok(m(server, "conc"), "concurrent connections: 1\n")


def test_status_on_off_with_t(start_server):
    srv = start_server("-t", "tr a-z A-Z")
    ok(m(srv, "status"), "transformations: ON\n")
    ok(m(srv, "off"), "transformations: OFF\n")
    ok(m(srv, "off"), "transformations: OFF\n")
    ok(m(srv, "status"), "transformations: OFF\n")
    ok(m(srv, "on"), "transformations: ON\n")
    ok(m(srv, "on"), "transformations: ON\n")
    ok(m(srv, "status"), "transformations: ON\n")


def test_on_without_t_is_not_available(server):
    ok(m(server, "status"), "transformations: OFF\n")
    r = m(server, "on")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("manager: not available") and \
        "-t" in r.stderr, r.stderr
    ok(m(server, "off"), "transformations: OFF\n")


def test_stats_lists_every_metric(server, connect):
    c = greeted(connect, server)
    assert send_mail(c, "a@b.test", ["postmaster@localhost"],
                     b"Subject: x\r\n\r\nhi\r\n").startswith("250")
    c.cmd("QUIT")
    c.close()
    settle(server)
    r = m(server, "stats")
    assert r.returncode == 0 and r.stderr == "", r
    lines = r.stdout.splitlines()
    assert [ln.split(": ")[0] for ln in lines] == STATS_LABELS
    values = dict(ln.split(": ") for ln in lines)
    assert int(values["historical connections"]) == raw(server, 0x00)
    assert values["concurrent connections"] == "0"
    assert int(values["bytes transferred"]) == raw(server, 0x02)
    assert values["transformations"] == "OFF"
    assert values["messages delivered"] == "1"
    assert values["recipients delivered"] == "1"
    assert int(values["uptime seconds"]) >= 0


def test_ipv6_and_names(server):
    settle(server)
    want = "historical connections: %d\n" % raw(server, 0x00)
    ok(m(server, "-i", "::1", "hist"), want)
    ok(m(server, "-i", "[::1]", "hist"), want)
    ok(m(server, "-i", "127.0.0.1", "hist"), want)
    ok(m(server, "-i", "localhost", "hist"), want)


def test_custom_token(start_server):
    srv = start_server("-k", "s3cret")
    ok(m(srv, "-k", "s3cret", "status"), "transformations: OFF\n")
    r = m(srv, "status")                    # the default token now fails
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "manager: authentication failed (wrong token)\n"


def test_wrong_token(server):
    for cmd in ("hist", "stats", "off"):
        r = m(server, "-k", "nope", cmd)
        assert r.returncode == 1 and r.stdout == "", r
        assert r.stderr == "manager: authentication failed (wrong token)\n"


# ---- no server, retransmission, stray answers -----------------------------

def test_no_server_waits_the_documented_three_seconds():
    """Nothing listens: the host answers each send at once with ICMP port
    unreachable, yet each of the 3 tries still waits its 1 second, as
    the usage says."""
    port = free_port(socket.SOCK_DGRAM)
    start = time.monotonic()
    r = manager("-p", port, "hist", timeout=15)
    took = time.monotonic() - start
    assert took >= 2.9, took
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr == "manager: no answer from 127.0.0.1 port %d\n" % port


class SilentPeer:
    """A UDP socket that records what it receives and answers with the
    datagrams answer(request) returns."""

    def __init__(self, answer=lambda req: []):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.answer = answer
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(64)
            except socket.timeout:
                continue
            self.received.append((time.monotonic(), data))
            for res in self.answer(data):
                self.sock.sendto(res, peer)

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def test_retries_three_times_with_the_same_id():
    peer = SilentPeer()
    try:
        start = time.monotonic()
        r = manager("-p", peer.port, "conc", timeout=10)
        elapsed = time.monotonic() - start
    finally:
        peer.close()
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "manager: no answer from 127.0.0.1 port %d\n" % peer.port
    assert elapsed > 2.5, elapsed
    sent = [d for _, d in peer.received]
    assert len(sent) == 3
    assert sent[0] == sent[1] == sent[2]
    assert len(sent[0]) == 14 and sent[0][:3] == b"\xff\xfe\x00"
    assert sent[0][5:13] == TOKEN and sent[0][13] == 0x01
    gaps = [b[0] - a[0] for a, b in zip(peer.received, peer.received[1:])]
    assert all(g > 0.8 for g in gaps), gaps


def test_answers_with_another_id_or_length_are_ignored():
    def answers(req):
        rid = req[3:5]
        other = bytes([rid[0] ^ 0xFF, rid[1]])
        good = b"\xff\xfe\x00" + rid + b"\x00" + struct.pack(">Q", 42) + b"\x00"
        return [b"\xff\xfe\x00" + other + b"\x00" + struct.pack(">Q", 1) + b"\x00",
                good[:14], good + b"\x00", b"\xfe\xff" + good[2:], good]
    peer = SilentPeer(answers)
    try:
        r = manager("-p", peer.port, "hist", timeout=10)
    finally:
        peer.close()
    ok(r, "historical connections: 42\n")
    assert len(peer.received) == 1


def test_a_late_answer_to_the_first_send_is_taken():
    """The peer answers only the second send: same id, so it counts."""
    def answers(req):
        if len(peer.received) < 2:
            return []
        return [b"\xff\xfe\x00" + req[3:5] + b"\x00" + bytes(8) + b"\x01"]
    peer = SilentPeer(answers)
    try:
        r = manager("-p", peer.port, "status", timeout=10)
    finally:
        peer.close()
    ok(r, "transformations: ON\n")
    assert len(peer.received) == 2


def test_other_error_statuses_are_reported():
    texts = {1: "version", 3: "command", 4: "length", 5: "unexpected",
             9: "unknown status 9"}
    for status, text in texts.items():
        peer = SilentPeer(lambda req, st=status: [
            b"\xff\xfe\x00" + req[3:5] + bytes([st]) + bytes(9)])
        try:
            r = manager("-p", peer.port, "hist", timeout=10)
        finally:
            peer.close()
        assert r.returncode == 1 and r.stdout == "", r
        assert r.stderr.startswith("manager: ") and text in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1


# ---- the menu -------------------------------------------------------------

def test_menu_through_stdin(server):
    settle(server)
    hist = raw(server, 0x00)
    r = m(server, stdin="0\n1\n3\nq\n")
    assert r.returncode == 0 and r.stderr == "", r
    answers = [ln for ln in r.stdout.splitlines() if ": " in ln]
    assert answers == ["historical connections: %d" % hist,
                       "concurrent connections: 0",
                       "transformations: OFF"]
    for item in ("0", "1", "2", "3", "4", "5", "q"):
        assert any(ln.strip().startswith(item + " ")
                   for ln in r.stdout.splitlines()), (item, r.stdout)


def test_menu_switches_and_ends_at_end_of_input(start_server):
    srv = start_server("-t", "cat")
    r = m(srv, stdin="5\n3\n4\n4\n  3  \n2\n")     # no q: EOF quits
    assert r.returncode == 0 and r.stderr == "", r
    answers = [ln for ln in r.stdout.splitlines() if ": " in ln]
    assert answers[:5] == ["transformations: OFF", "transformations: OFF",
                           "transformations: ON", "transformations: ON",
                           "transformations: ON"]
    assert answers[5].startswith("bytes transferred: ")
    assert raw(srv, 0x03) == 0 and len(answers) == 6


def test_menu_survives_bad_choices_and_errors(server):
    r = m(server, "-k", "bad", stdin="9\nhello\n\n" + "x" * 1000 + "\n0\nq\n")
    assert r.returncode == 0, r
    assert r.stdout.count("unknown choice") == 3
    assert r.stderr == "manager: authentication failed (wrong token)\n"


def test_menu_with_empty_input(server):
    r = m(server, stdin="")
    assert r.returncode == 0 and "q" in r.stdout


# ---- command line -------------------------------------------------------

def test_help_lists_everything():
    r = manager("-h")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: manager [-i ADDR[:PORT]]... [-p PORT]"
                               " [-k TOKEN] [COMMAND]")
    for word in ("-i", "-p", "-k", "-h", "-v", "hist", "conc", "bytes",
                 "status", "on", "off", "stats", "6060", "127.0.0.1",
                 "smtpd", "quit", "exit status", "s stats",
                 "1 second", "3 times"):
        assert word in r.stdout, word


def test_version():
    r = manager("-v")
    assert (r.returncode, r.stdout, r.stderr) == (0, "manager 0.1\n", "")


@pytest.mark.parametrize("args", [
    ["-k", "123456789", "hist"], ["-k", "123456789"], ["-p", "0", "hist"],
    ["-p", "65536", "hist"], ["-p", "abc"], ["-p", "-1"], ["-p"], ["-x"],
    ["frobnicate"], ["hist", "conc"], ["-i", "", "hist"],
    ["-i", "127.0.0.1:0", "hist"], ["-i", "127.0.0.1:", "hist"],
    ["-i", "[::1", "hist"], ["-i", "[::1]x", "hist"], ["-i", "[]:6060"],
    ["-i", "[::1]:70000", "hist"], ["-i", "[::1]:", "hist"],
    ["-i", "127.0.0.1"] * 17 + ["hist"]])
def test_bad_usage_exits_2_with_one_line(args):
    r = manager(*args)
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert r.stderr.startswith("manager: ") and r.stderr.count("\n") == 1, \
        r.stderr


def test_eight_byte_token_is_accepted(start_server):
    srv = start_server("-k", "12345678")
    ok(m(srv, "-k", "12345678", "status"), "transformations: OFF\n")


def test_unknown_host_exits_1():
    r = manager("-i", "no-such-host.invalid", "-p", "6060", "hist")
    assert r.returncode == 1 and r.stderr.startswith("manager: cannot resolve")


# ---- several servers (-i repeated) ----------------------------------------

def test_several_servers_each_answer_and_sum(start_server, connect):
    a = start_server()
    b = start_server("-t", "cat")
    for srv in (a, b):
        settle(srv)
    ha, hb = raw(a, 0x00), raw(b, 0x00)
    # ADDR:PORT, [V6]:PORT, and a bare address taking -p's port
    r = manager("-i", "127.0.0.1:%d" % a.monitor_port,
                "-i", "[::1]:%d" % b.monitor_port, "hist")
    ok(r, "127.0.0.1:%d: historical connections: %d\n"
          "[::1]:%d: historical connections: %d\n"
          "total: historical connections: %d\n"
          % (a.monitor_port, ha, b.monitor_port, hb, ha + hb))
    r = manager("-i", "::1", "-p", b.monitor_port, "-i",
                "127.0.0.1:%d" % a.monitor_port, "conc")
    ok(r, "[::1]:%d: concurrent connections: 0\n"
          "127.0.0.1:%d: concurrent connections: 0\n"
          "total: concurrent connections: 0\n"
          % (b.monitor_port, a.monitor_port))


def test_several_servers_on_off_say_who_answered(start_server):
    a = start_server("-t", "cat")
    b = start_server("-t", "cat")
    args = ["-i", "127.0.0.1:%d" % a.monitor_port,
            "-i", "127.0.0.1:%d" % b.monitor_port]
    ok(manager(*args, "off"),
       "127.0.0.1:%d: transformations: OFF\n127.0.0.1:%d: transformations: OFF\n"
       % (a.monitor_port, b.monitor_port))
    ok(m(a, "status"), "transformations: OFF\n")
    ok(m(b, "status"), "transformations: OFF\n")
    # one server gone: the other still switches; exit 1 names the silent one
    dead = free_port(socket.SOCK_DGRAM)
    r = manager(*args, "-i", "127.0.0.1:%d" % dead, "on")
    assert r.returncode == 1, r
    assert r.stdout == ("127.0.0.1:%d: transformations: ON\n"
                        "127.0.0.1:%d: transformations: ON\n"
                        % (a.monitor_port, b.monitor_port))
    assert r.stderr == "manager: no answer from 127.0.0.1 port %d\n" % dead


def test_several_servers_stats_with_one_silent(start_server):
    a = start_server()
    dead = free_port(socket.SOCK_DGRAM)
    r = manager("-i", "127.0.0.1:%d" % dead, "-i",
                "127.0.0.1:%d" % a.monitor_port, "stats", timeout=30)
    assert r.returncode == 1, r
    # the silent one is given up once, not once per metric
    assert r.stderr.count("no answer") == 1
    lines = r.stdout.splitlines()

    for label in STATS_LABELS:
        assert "127.0.0.1:%d: %s: " % (a.monitor_port, label) in r.stdout
    assert "total of 1 of 2 servers: messages delivered: 0" in lines
    assert not any(l.startswith("total") and "uptime" in l for l in lines)
