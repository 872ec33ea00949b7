"""A flood of refused monitor datagrams (wrong token, malformed) from many
source addresses: the log gets one summary line per second with the
counts, which add up to what the server received, never a line per
datagram; the monitor keeps answering good requests."""
import re
import socket
import struct
import time

TOKEN = b"smtpd\0\0\0"
SUMMARY = re.compile(r"monitor: (\d+) datagrams refused in the last second "
                     r"\(bad token: (\d+), malformed: (\d+)\), last from "
                     r"(\S+)")


def request(cmd, rid, token=TOKEN):
    return b"\xff\xfe\x00" + struct.pack(">H", rid) + token + bytes([cmd])


def udp_drops(port):
    """Datagrams the kernel dropped for the socket bound to 127.0.0.1:port
    (its receive queue was full): they never reached the server."""
    want = "0100007F:%04X" % port
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want:
                return int(fields[-1])
    raise AssertionError("no UDP socket on 127.0.0.1:%d" % port)


def good_answer(srv, rid):
    """Asks for the historical connections with the right token; the
    status of the answer (the server reads its socket in order, so every
    datagram sent before this one has been handled by then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for _ in range(10):
            s.sendto(request(0x00, rid), ("127.0.0.1", srv.monitor_port))
            try:
                res = s.recv(64)
            except socket.timeout:
                continue
            if res[3:5] == struct.pack(">H", rid):
                return res[5]
    raise AssertionError("the monitor did not answer a good request")


def test_refused_datagrams_are_summed_up_once_a_second(start_server):
    srv = start_server()
    before = len(srv.log_text().splitlines())
    drops_before = udp_drops(srv.monitor_port)
    dest = ("127.0.0.1", srv.monitor_port)
    socks = []
    for i in range(20):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.%d" % (i + 2), 0))
        socks.append(s)
    started = time.monotonic()
    bad_token, malformed = 2000, 300
    try:
        for i in range(bad_token):
            socks[i % 20].sendto(request(0x00, i, b"wrong\0\0\0"), dest)
        for i in range(malformed):
            kind = i % 3
            data = (b"\xff\xfe\x00\x00" if kind == 0       # too short
                    else b"junk datagram" if kind == 1     # no signature
                    else request(0x7F, i))                 # unknown command
            socks[i % 20].sendto(data, dest)
        assert good_answer(srv, 0xBEEF) == 0
        # one more wrong token from its own address, known to be the last
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as last:
            last.bind(("127.0.0.77", 0))
            last.sendto(request(0x00, 1, b"LAST\0\0\0\0"), dest)
            last_port = last.getsockname()[1]
            assert good_answer(srv, 0xCAFE) == 0
    finally:
        for s in socks:
            s.close()
    dropped = udp_drops(srv.monitor_port) - drops_before
    assert srv.stop() == 0          # the last second's count is logged too
    elapsed = time.monotonic() - started

    new = srv.log_text().splitlines()[before:]
    summaries = [SUMMARY.search(l) for l in new if SUMMARY.search(l)]
    assert summaries, "\n".join(new)
    total = sum(int(m.group(1)) for m in summaries)
    tokens = sum(int(m.group(2)) for m in summaries)
    bad = sum(int(m.group(3)) for m in summaries)
    for m in summaries:
        assert int(m.group(1)) == int(m.group(2)) + int(m.group(3)), m.group(0)
    sent = bad_token + malformed + 1
    # every datagram the kernel handed over is counted once (a dropped one
    # may also have been a good request, hence the range)
    assert sent - dropped <= total <= sent, (total, sent, dropped)
    assert tokens <= bad_token + 1 and bad <= malformed, (tokens, bad)
    assert summaries[-1].group(4) == "127.0.0.77:%d" % last_port
    # one summary per second at most, and nothing else per datagram
    assert len(summaries) <= int(elapsed) + 2, (len(summaries), elapsed)
    monitor_lines = [l for l in new if "monitor:" in l
                     and "asked for command" not in l]
    assert len(monitor_lines) == len(summaries), "\n".join(monitor_lines)
    assert not [l for l in new if "wrong token" in l or "dropped" in l]
