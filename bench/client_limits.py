#!/usr/bin/python3
"""A client over its limit is refused while many others are held.

Starts its own smtpd (SMTPD, default ./smtpd) on a loopback port with
`-c N+100 --client-limit 1`, opens N clients, each from its own address
(127.1.x.y) and each greeted with 220, then, while they are all held:
  - ROUNDS times, a second connection from an address already held: timed
    from connect() to its `421 4.7.0` and the close;
  - ROUNDS times, a connection from a new address: timed to its 220, then
    QUIT.
Prints the server's VmRSS before and after, the latencies (p50/p99/max in
ms) and the monitor's count of client-limit refusals. Standard library
only; stops the server at the end. Not a test: it asserts nothing about
time.

usage: bench/client_limits.py [N [ROUNDS]]     (defaults 10000, 200)
"""
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "e2e"))
from ports import free_port  # noqa: E402  (a block of ports of our own)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
SMTPD = os.environ.get("SMTPD", "./smtpd")




def source(i):
    return "127.1.%d.%d" % (i // 250, i % 250 + 1)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hold(port, n):
    """n clients, each from its own address, each past its 220."""
    sel = selectors.DefaultSelector()
    socks, pending, batch = [], 0, 500
    for start in range(0, n, batch):
        for i in range(start, min(n, start + batch)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((source(i), 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_READ, b"")
            socks.append(s)
            pending += 1
        while pending > 0:
            for key, _ in sel.select(timeout=30):
                data = key.data + key.fileobj.recv(512)
                if data.endswith(b"\r\n"):
                    if not data.startswith(b"220 "):
                        sys.exit("client refused: %r" % data)
                    sel.unregister(key.fileobj)
                    pending -= 1
                else:
                    sel.modify(key.fileobj, selectors.EVENT_READ, data)
    sel.close()
    return socks


def first_reply(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(512)
        if not chunk:
            break
        data += chunk
    return data


def timed(port, src, expect):
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=30,
                                 source_address=(src, 0))
    reply = first_reply(s)
    if not reply.startswith(expect):
        sys.exit("from %s: %r, expected %r" % (src, reply, expect))
    if expect.startswith(b"421"):
        while s.recv(512):
            pass                        # until the server closes
    else:
        s.sendall(b"QUIT\r\n")
        first_reply(s)
    ms = (time.perf_counter() - t0) * 1000
    s.close()
    return ms


def monitor(port, cmd):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"\xff\xfe\x00\x00\x01smtpd\0\0\0" + bytes([cmd]),
                 ("127.0.0.1", port))
        res = s.recv(64)
    return struct.unpack(">Q", res[6:14])[0]


def stats(ms):
    ms = sorted(ms)
    return "p50 %.2f  p99 %.2f  max %.2f ms" % (
        ms[len(ms) // 2], ms[min(len(ms) - 1, len(ms) * 99 // 100)], ms[-1])


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, mport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    root = tempfile.mkdtemp(prefix="smtpd-limits-")
    srv = subprocess.Popen([SMTPD, "-s", str(port), "-p", str(mport),
                            "-a", "127.0.0.1", "-f", root + "/mail",
                            "-l", root + "/smtpd.log", "-L", "warning",
                            "-c", str(N + 100), "--client-limit", "1"])
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        before = rss_kib(srv.pid)
        socks = hold(port, N)
        after = rss_kib(srv.pid)
        over = [timed(port, source(i % N), b"421 4.7.0 Too many connections "
                      b"from your address") for i in range(ROUNDS)]
        new = [timed(port, source(N + 1 + i), b"220 ") for i in range(ROUNDS)]
        print("clients held: %d, each from its own address" % len(socks))
        print("smtpd VmRSS: %d KiB before, %d KiB with them held"
              % (before, after))
        print("over its limit (421 and closed): %d, %s" % (ROUNDS, stats(over)))
        print("a new address (220, QUIT):       %d, %s" % (ROUNDS, stats(new)))
        print("client limit refusals (monitor 0x10): %d" % monitor(mport, 0x10))
        for s in socks:
            s.close()
    finally:
        srv.terminate()
        srv.wait(timeout=30)


if __name__ == "__main__":
    main()
