#!/usr/bin/env python3
"""A correct login's latency while N connections guess passwords
(docs/benchmarks.md, "Logins under attack"). Starts its own smtpd on
loopback with yescrypt users; N guessing threads, each on a new
127.x.y.z address per connection, send wrong passwords (for one user,
or with --names many each its own unknown name) and come back after
every 535 or 454; meanwhile another address logs in correctly ROUNDS
times, a new connection each, and the AUTH-to-235 times are printed.

    bench/login_attack.py [--names one|many] [SMTPD] [N] [ROUNDS]
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

ARGS = sys.argv[1:]
NAMES = "one"
if "--names" in ARGS:
    i = ARGS.index("--names")
    NAMES = ARGS[i + 1]
    del ARGS[i:i + 2]
SMTPD = ARGS[0] if len(ARGS) > 0 else "./smtpd"
N = int(ARGS[1]) if len(ARGS) > 1 else 200
ROUNDS = int(ARGS[2]) if len(ARGS) > 2 else 20




def auth_line(user, password):
    return b"AUTH PLAIN " + base64.b64encode(
        b"\0" + user.encode() + b"\0" + password.encode()) + b"\r\n"


class C:
    def __init__(self, port, src):
        self.s = socket.socket()
        self.s.settimeout(120)
        self.s.bind((src, 0))
        self.s.connect(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
        self.reply()
        self.cmd(b"EHLO bench\r\n")

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError
            if line[3:4] != b"-":
                return line

    def cmd(self, data):
        self.s.sendall(data)
        return self.reply()

    def close(self):
        self.f.close()
        self.s.close()


counts = {"535": 0, "454": 0, "other": 0}
lock = threading.Lock()


def attacker(k, port, stop):
    n = 0
    while not stop:
        n += 1
        a = k * 1000 + n            # a new address for every connection
        src = "127.%d.%d.%d" % (20 + a // 65536 % 200, a // 256 % 256, a % 256 or 1)
        user = "victim" if NAMES == "one" else "nobody%d" % k
        try:
            c = C(port, src)
            for _ in range(9):      # the tenth error would close it
                r = c.cmd(auth_line(user, "guess%d" % n))[:3].decode()
                with lock:
                    counts[r if r in counts else "other"] += 1
                if stop:
                    break
                if r == "454":
                    time.sleep(0.05)
            c.close()
        except (OSError, EOFError):
            time.sleep(0.05)


def main():
    d = tempfile.mkdtemp(prefix="smtpd-bench-attack-")
    h = subprocess.run(["mkpasswd", "-m", "yescrypt", "pw"], check=True,
                       capture_output=True, text=True).stdout.strip()
    with open(os.path.join(d, "users"), "w") as f:
        f.write("victim:%s\nowner:%s\n" % (h, h))
    os.chmod(os.path.join(d, "users"), 0o600)
    port = free_port()
    p = subprocess.Popen([SMTPD, "-s", str(port), "-p", str(free_port()),
                          "-a", "127.0.0.1", "-m", "127.0.0.1", "-c", "2000",
                          "-f", d + "/mail", "-l", d + "/log",
                          "--passwd-file", d + "/users"])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.05)
    stop = []
    threads = [threading.Thread(target=attacker, args=(k, port, stop))
               for k in range(N)]
    for t in threads:
        t.start()
    time.sleep(3)                   # the attack is under way
    lat = []
    for r in range(ROUNDS):
        c = C(port, "127.0.0.1")
        t0 = time.monotonic()
        reply = c.cmd(auth_line("owner", "pw"))
        lat.append(time.monotonic() - t0)
        assert reply.startswith(b"235"), reply
        c.close()
        time.sleep(0.5)
    stop.append(1)
    for t in threads:
        t.join()
    p.terminate()
    p.wait()
    log = open(d + "/log").read()
    lat.sort()
    print("%d guessing connections (%s name%s, yescrypt %s), %d correct "
          "logins from another address" % (N, NAMES, "" if NAMES == "one"
                                           else "s", h[:7], ROUNDS))
    print("correct login, AUTH to 235: median %.0f ms, max %.0f ms"
          % (lat[len(lat) // 2] * 1000, lat[-1] * 1000))
    print("guesses meanwhile: %d answered 535 (checked), %d answered 454; "
          "%d 'AUTH failed' lines logged" % (counts["535"], counts["454"],
                                             log.count("AUTH failed for user")))


main()
