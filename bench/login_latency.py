#!/usr/bin/env python3
"""NOOP latency on one connection while N others log in at once against
yescrypt hashes (docs/benchmarks.md, "Logins"). Starts its own smtpd on
loopback; prints the NOOP round-trip figures and how long the N logins took.

    bench/login_latency.py [SMTPD] [N] [ROUNDS]
"""
import base64
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "e2e"))
from ports import free_port  # noqa: E402  (a block of ports of our own)

SMTPD = sys.argv[1] if len(sys.argv) > 1 else "./smtpd"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 10




class C:
    def __init__(self, port, src):
        self.s = socket.socket()
        self.s.bind((src, 0))
        self.s.connect(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
        self.reply()
        self.cmd("EHLO bench")

    def reply(self):
        while True:
            line = self.f.readline()
            if line[3:4] != b"-":
                return line

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\r\n")
        return self.reply()


def watch(port, windows, lat, stop):
    """NOOPs back to back; keeps the round trips that began while a
    round of logins was under way."""
    w = C(port, "127.0.0.1")
    while not stop:
        a = time.monotonic()
        assert w.cmd("NOOP").startswith(b"250")
        if windows and windows[-1][1] is None:
            lat.append(time.monotonic() - a)


def main():
    d = tempfile.mkdtemp(prefix="smtpd-bench-login-")
    h = subprocess.run(["mkpasswd", "-m", "yescrypt", "pw"], check=True,
                       capture_output=True, text=True).stdout.strip()
    with open(os.path.join(d, "users"), "w") as f:
        f.write("".join("u%d:%s\n" % (i, h) for i in range(N)))
    os.chmod(os.path.join(d, "users"), 0o600)
    port = free_port()
    p = subprocess.Popen([SMTPD, "-s", str(port), "-p", str(free_port()),
                          "-a", "127.0.0.1", "-m", "127.0.0.1", "-f", d + "/mail",
                          "-l", d + "/log", "--passwd-file", d + "/users"])
    time.sleep(0.5)
    windows, lat, stop = [], [], []
    t = threading.Thread(target=watch, args=(port, windows, lat, stop))
    t.start()
    time.sleep(0.2)
    for r in range(ROUNDS):
        clients = [C(port, "127.0.2.%d" % (i + 1)) for i in range(N)]
        windows.append([time.monotonic(), None])
        for i, c in enumerate(clients):
            c.s.sendall(b"AUTH PLAIN " + base64.b64encode(
                b"\0u%d\0pw" % i) + b"\r\n")
        for c in clients:
            assert c.reply().startswith(b"235"), "login failed"
        windows[-1][1] = time.monotonic()
        for c in clients:
            c.s.close()
        time.sleep(0.1)
    stop.append(1)
    t.join()
    took = sorted(b - a for a, b in windows)
    lat.sort()
    print("%d rounds of %d yescrypt logins at once (%s)" % (ROUNDS, N, h[:7]))
    print("all %d logins answered in: median %.0f ms, max %.0f ms"
          % (N, took[len(took) // 2] * 1000, took[-1] * 1000))
    print("NOOP round trip meanwhile (%d NOOPs): median %.2f ms, "
          "99th %.2f ms, max %.2f ms" % (len(lat), lat[len(lat) // 2] * 1000,
                                         lat[int(len(lat) * 0.99)] * 1000,
                                         lat[-1] * 1000))
    p.terminate()
    p.wait()


main()
