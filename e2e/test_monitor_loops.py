"""The monitor cannot be turned against the server (docs/monitor-protocol.md,
"Datagrams that get no answer"): a datagram forged to come from the
monitor's own address and port, two monitors that seem to talk to each
other, and a flood of requests leave the server idle, greeting SMTP
clients and stopping on SIGTERM.

Forging a source address needs a raw socket, so those tests run as root
and skip, saying why, otherwise."""
import os
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import Client

TOKEN = b"smtpd\0\0\0"
HIST, DROPPED = 0x00, 0x0C
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not ROOT, reason="forging a UDP source address needs a raw socket (root)")


def request(cmd, rid=0x4242, token=TOKEN):
    return b"\xff\xfe\x00" + struct.pack(">H", rid) + token + bytes([cmd])


def ask(port, cmd, timeout=3.0):
    """(status, amount) of one request from an ordinary socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(request(cmd), ("127.0.0.1", port))
        res = s.recv(64)
    assert len(res) == 15 and res[:3] == b"\xff\xfe\x00", res
    return res[5], struct.unpack(">Q", res[6:14])[0]


def dropped(srv):
    status, amount = ask(srv.monitor_port, DROPPED)
    assert status == 0
    return amount


def forge(payload, src_port, dst_port, src="127.0.0.1", dst="127.0.0.1"):
    """Sends one UDP datagram whose IPv4 source is src:src_port, built by
    hand on a raw socket (the kernel fills in the IP checksum; a UDP
    checksum of 0 means none, which IPv4 allows)."""
    udp = struct.pack(">HHHH", src_port, dst_port, 8 + len(payload), 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(payload),
                     0x1234, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW,
                       socket.IPPROTO_RAW) as s:
        s.sendto(ip + udp + payload, (dst, 0))


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_idle(srv, seconds=1.0):
    """The server burns (almost) no CPU for a while: nothing loops."""
    before = cpu_seconds(srv.pid)
    time.sleep(seconds)
    used = cpu_seconds(srv.pid) - before
    assert used < 0.3 * seconds, "smtpd used %.2f s of CPU in %.1f s" % (
        used, seconds)


def greeted_at_once(srv):
    """A new client gets its 220 greeting (the loop is not stuck)."""
    c = Client(srv.port, timeout=10)
    try:
        return c.reply_line().startswith("220 ")
    finally:
        c.close()


def stops_on_sigterm(srv, timeout=5):
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(timeout=timeout)
    return srv.proc.returncode


# ---- forged from the monitor's own address and port -----------------------

@needs_root
@pytest.mark.parametrize("payload", [
    b"\xff\xfe", b"\xff\xfe\x00\x12\x34", request(HIST),
    request(HIST) + b"\x00"], ids=["2-bytes", "5-bytes", "request", "15-bytes"])
def test_datagram_forged_from_own_port_gets_no_answer(start_server, payload):
    srv = start_server()
    forge(payload, srv.monitor_port, srv.monitor_port)
    assert_idle(srv)
    assert greeted_at_once(srv)
    assert dropped(srv) == 1
    assert stops_on_sigterm(srv) == 0


@needs_root
def test_datagram_from_port_zero_gets_no_answer(start_server):
    srv = start_server()
    forge(request(HIST), 0, srv.monitor_port)
    assert_idle(srv, 0.5)
    assert dropped(srv) == 1
    assert ask(srv.monitor_port, HIST)[0] == 0


@needs_root
def test_two_monitors_that_seem_to_talk_to_each_other_do_not_loop(start_server):
    a, b = start_server(), start_server()
    # b gets a request that seems to come from a's monitor: b answers a,
    # and a must not answer that answer.
    for payload in (b"\xff\xfe", b"\xff\xfe\x00\x00\x01", request(HIST),
                    request(0x7F)):
        forge(payload, a.monitor_port, b.monitor_port)
    time.sleep(0.3)
    assert_idle(a)
    assert_idle(b)
    # b answered the three that are requests of 5 to 14 bytes, and dropped
    # the 2-byte one; a dropped the three answers and nothing else came.
    assert dropped(b) == 1
    assert dropped(a) == 3
    assert greeted_at_once(a) and greeted_at_once(b)
    assert stops_on_sigterm(a) == 0
    assert stops_on_sigterm(b) == 0


def test_fifteen_bytes_and_more_get_no_answer_and_are_counted(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        for n in (15, 16, 64, 1000):
            s.sendto((request(HIST) + b"\x00" * 1000)[:n],
                     ("127.0.0.1", server.monitor_port))
        with pytest.raises(socket.timeout):
            s.recv(64)
    assert dropped(server) == 4


# ---- a flood ----------------------------------------------------------------

def flood(port, stop, sent):
    """Sends requests as fast as the socket takes them until told to stop
    (at most a million); sent[0] counts them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        req = request(HIST)
        while sent[0] < 1000000 and not stop.is_set():
            try:
                s.sendto(req, ("127.0.0.1", port))
                sent[0] += 1
            except BlockingIOError:
                time.sleep(0.0005)


def test_a_flood_of_requests_leaves_smtp_served_and_sigterm_working(
        start_server):
    srv = start_server()
    stop, sent = threading.Event(), [0]
    sender = threading.Thread(target=flood, args=(srv.monitor_port, stop, sent))
    sender.start()
    try:
        deadline = time.monotonic() + 20
        while sent[0] < 50000 and time.monotonic() < deadline:
            time.sleep(0.05)
        greeted = [greeted_at_once(srv) for _ in range(5)]
        code = stops_on_sigterm(srv)
    finally:
        stop.set()
        sender.join(timeout=30)
    assert sent[0] >= 50000
    assert all(greeted), greeted
    assert code == 0
