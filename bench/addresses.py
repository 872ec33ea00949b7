#!/usr/bin/python3
"""What aliases and quotas cost RCPT: the same loads on smtpd started
plain, with --aliases of 10,000 lines, and with those aliases and
--quota on every one of 1,000 mailboxes.

Each run gets a fresh mailbox root of 1,000 mailboxes (m0000 .. m0999)
and a fresh smtpd, plain, with `--aliases FILE`, or with `--aliases FILE
--quota 1G` (the file: `a00000: m0000` .. `a09999: m0999`, each mailbox
the target of ten aliases; the 1,000 maildirsize files are made at
start). Then:
  - RCPT latency: one client, ROUNDS x (MAIL, 100 RCPTs one at a time,
    each timed from its send to its reply, RSET); the recipients walk
    over the 1,000 mailboxes, by name (plain) or by alias (the others);
  - messages/s: build/bench/chunkload, 16 threads, one connection per
    1 KB message, for SECONDS, to one mailbox (plain) or one alias of it.
The three setups alternate, RUNS times; the medians are printed as a
Markdown table. Standard library only; stops every smtpd it starts. Not
a test: it asserts nothing about time.

usage: bench/addresses.py [RUNS [SECONDS [ROUNDS]]]   (defaults 3, 10, 20)
  SMTPD (default ./smtpd), CHUNKLOAD (default build/bench/chunkload, made
  with cc if missing), BENCH_DIR (default /var/tmp).
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 10
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 20
SMTPD = os.environ.get("SMTPD", "./smtpd")
HERE = os.path.dirname(os.path.abspath(__file__))
CHUNKLOAD = os.environ.get("CHUNKLOAD",
                           os.path.join(HERE, "..", "build", "bench",
                                        "chunkload"))
BOXES = 1000
ALIASES = 10000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_root(work, n):
    root = os.path.join(work, "root%d" % n)
    for i in range(BOXES):
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(root, "m%04d" % i, sub))
    return root


def make_aliases(work):
    path = os.path.join(work, "aliases")
    with open(path, "w") as f:
        f.write("# %d aliases, ten per mailbox\n" % ALIASES)
        for i in range(ALIASES):
            f.write("a%05d: m%04d\n" % (i, i % BOXES))
    return path


class Smtpd:
    def __init__(self, root, extra):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [SMTPD, "-s", str(self.port), "-p", str(free_port()),
             "-a", "127.0.0.1", "-m", "127.0.0.1", "-f", root,
             "-L", "warning", "-c", "1000"] + extra,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120    # 1,000 maildirsize at start
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit("smtpd exited %d" % self.proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        sys.exit("smtpd did not listen")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.reply()

    def reply(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                if line[3:4] != b"-":
                    return line
                continue
            data = self.s.recv(4096)
            if not data:
                sys.exit("smtpd closed the connection")
            self.buf += data

    def cmd(self, line, want):
        self.s.sendall(line.encode() + b"\r\n")
        r = self.reply()
        if not r.startswith(want):
            sys.exit("%s: %s" % (line, r.decode(errors="replace")))


def rcpt_latencies(port, aliased):
    """ROUNDS x 100 RCPTs, each timed; seconds."""
    c = Client(port)
    c.cmd("EHLO bench", b"250")
    out, n = [], 0
    for _ in range(ROUNDS):
        c.cmd("MAIL FROM:<bench@localhost>", b"250")
        for _ in range(100):
            name = ("a%05d" % (n % ALIASES)) if aliased else \
                   ("m%04d" % (n % BOXES))
            n += 1
            t0 = time.perf_counter()
            c.cmd("RCPT TO:<%s@localhost>" % name, b"250")
            out.append(time.perf_counter() - t0)
        c.cmd("RSET", b"250")
    c.cmd("QUIT", b"221")
    return out


def throughput(port, aliased):
    rcpt = "a01007@localhost" if aliased else "m0007@localhost"
    r = subprocess.run([CHUNKLOAD, "-p", str(port), "-c", "16", "-s",
                        str(SECONDS), "-l", "1024", "-r", rcpt],
                       capture_output=True, text=True, timeout=SECONDS + 120)
    line = r.stdout.strip()
    if r.returncode != 0 or "rate=" not in line:
        sys.exit("chunkload: %s %s" % (line, r.stderr))
    return float(line.rsplit("rate=", 1)[1])


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


def main():
    if not os.access(CHUNKLOAD, os.X_OK):
        os.makedirs(os.path.dirname(CHUNKLOAD), exist_ok=True)
        subprocess.run(["cc", "-std=c11", "-O2", "-D_GNU_SOURCE", "-pthread",
                        os.path.join(HERE, "chunkload.c"), "-o", CHUNKLOAD],
                       check=True)
    work = tempfile.mkdtemp(prefix="smtpd-addresses.",
                            dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    try:
        aliases = make_aliases(work)
        setups = (("plain", []), ("aliases", ["--aliases", aliases]),
                  ("with", ["--aliases", aliases, "--quota", "1G"]))
        lat = {name: [] for name, _ in setups}
        rate = {name: [] for name, _ in setups}
        start = {name: [] for name, _ in setups}
        runs = 0
        for _ in range(RUNS):
            for name, extra in setups:
                root = make_root(work, runs)
                runs += 1
                t0 = time.monotonic()
                srv = Smtpd(root, extra)
                start[name].append(time.monotonic() - t0)
                try:
                    lat[name] += rcpt_latencies(srv.port, name != "plain")
                    rate[name].append(throughput(srv.port, name != "plain"))
                finally:
                    srv.stop()
                shutil.rmtree(root, ignore_errors=True)
        print("| smtpd | RCPT p50 | RCPT p99 | msg/s (1 KB, 16 sessions) "
              "| start |")
        print("|---|---:|---:|---:|---:|")
        label = {"plain": "plain (1,000 mailboxes, RCPT by name)",
                 "aliases": "--aliases (10,000 lines, RCPT by alias)",
                 "with": "--aliases and --quota 1G (1,000 maildirsize)"}
        for name, _ in setups:
            print("| %s | %.0f µs | %.0f µs | %s | %.2f s |" % (
                label[name], pct(lat[name], 0.5) * 1e6,
                pct(lat[name], 0.99) * 1e6,
                "{:,.0f}".format(statistics.median(rate[name])),
                statistics.median(start[name])))
        print()
        print("Medians of %d alternating runs; RCPT latency over %d RCPTs "
              "per setup; single runs (msg/s): %s." % (
                  RUNS, len(lat["plain"]),
                  "; ".join(name + " " + " ".join("%.0f" % r for r in rate[name])
                            for name, _ in setups)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
