#!/usr/bin/python3
"""Does the server's event loop ever stall? One SMTP connection, one NOOP
at a time for SECONDS (or until STOP_FILE exists), each request to its
250 timed with time.monotonic(). Prints a compact distribution:

    noops=N failures=F seconds=S p50=.. p90=.. p99=.. p99.9=.. max=.. (ms)
    histogram_ms <1:N <2:N <5:N ... >=200:N

    bench/noop_latency.py --host 127.0.0.1 --port 2525 --seconds 30 \\
        [--stop-file FILE] [--ready-file FILE] [--out FILE] \\
        [--interval SECONDS] [--timeout SECONDS]

A NOOP that gets no reply within --timeout seconds, a reply other than
250 or a lost connection counts as a failure (not in the percentiles);
the client then connects again and goes on. Exit 0 once the figures are
printed, 1 if not one NOOP was answered. Standard library only.
"""
import argparse
import math
import os
import socket
import sys
import time

BUCKETS_MS = [1, 2, 5, 10, 20, 50, 100, 200]


class Failure(Exception):
    pass


class Conn:
    """One SMTP session: greeting read and EHLO sent on connect."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.expect(self.reply(), b"220")
        self.sock.sendall(b"EHLO noop-latency\r\n")
        self.expect(self.reply(), b"250")

    def reply(self):
        """The last line of a (possibly multi-line) reply."""
        while True:
            line = self.file.readline(1024)
            if not line:
                raise Failure("connection closed")
            if line[3:4] != b"-":
                return line

    @staticmethod
    def expect(line, code):
        if not line.startswith(code):
            raise Failure("unexpected reply: %r" % line[:80])

    def noop(self):
        """Seconds from sending NOOP to reading its 250."""
        t0 = time.monotonic()
        self.sock.sendall(b"NOOP\r\n")
        line = self.reply()
        t1 = time.monotonic()
        self.expect(line, b"250")
        return t1 - t0

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.file.close()
        self.sock.close()


def percentile(sorted_values, p):
    """Nearest rank: the smallest value with at least p% at or below it."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def histogram(values_ms):
    counts = [0] * (len(BUCKETS_MS) + 1)
    for v in values_ms:
        for i, edge in enumerate(BUCKETS_MS):
            if v < edge:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
    labels = ["<%d" % e for e in BUCKETS_MS] + [">=%d" % BUCKETS_MS[-1]]
    return " ".join("%s:%d" % (l, c) for l, c in zip(labels, counts))


def main():
    ap = argparse.ArgumentParser(
        description="NOOP round trips on one SMTP connection")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="how long to send NOOPs (default 10)")
    ap.add_argument("--stop-file",
                    help="stop as soon as this file exists")
    ap.add_argument("--ready-file",
                    help="create this file once connected and past EHLO")
    ap.add_argument("--out",
                    help="also write every latency (ms), one a line; "
                         "a failure is written as 'fail'")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds to wait for a reply (default 10)")
    ap.add_argument("--interval", type=float, default=0.0,
                    help="pause between NOOPs in seconds (default 0: "
                         "back to back)")
    args = ap.parse_args()

    lat_ms, failures, errors = [], 0, {}
    out = open(args.out, "w") if args.out else None
    start = time.monotonic()
    deadline = start + args.seconds
    conn = None
    while time.monotonic() < deadline:
        if args.stop_file and os.path.exists(args.stop_file):
            break
        try:
            if conn is None:
                conn = Conn(args.host, args.port, args.timeout)
                if args.ready_file:
                    open(args.ready_file, "a").close()
            ms = conn.noop() * 1000.0
            lat_ms.append(ms)
            if out:
                out.write("%.3f\n" % ms)
        except (OSError, Failure) as e:
            # socket.timeout is an OSError: a stall longer than --timeout.
            failures += 1
            kind = "timeout" if isinstance(e, socket.timeout) else str(e)
            errors[kind] = errors.get(kind, 0) + 1
            if out:
                out.write("fail\n")
            if conn is not None:
                try:
                    conn.file.close()
                    conn.sock.close()
                except OSError:
                    pass
                conn = None
            time.sleep(0.1)     # a server that is down: do not spin
            continue
        if args.interval > 0:
            time.sleep(args.interval)
    elapsed = time.monotonic() - start
    if conn is not None:
        conn.close()
    if out:
        out.close()

    lat_ms.sort()
    print("noops=%d failures=%d seconds=%.1f p50=%.3f p90=%.3f p99=%.3f "
          "p99.9=%.3f max=%.3f (ms)" % (
              len(lat_ms), failures, elapsed,
              percentile(lat_ms, 50), percentile(lat_ms, 90),
              percentile(lat_ms, 99), percentile(lat_ms, 99.9),
              lat_ms[-1] if lat_ms else float("nan")))
    print("histogram_ms " + histogram(lat_ms))
    if errors:
        print("failures: " + ", ".join("%s %d" % kv for kv in
                                       sorted(errors.items())))
    return 0 if lat_ms else 1


if __name__ == "__main__":
    sys.exit(main())
