#!/usr/bin/python3
"""A Prometheus stand-in for benchmarks: GET /metrics every --interval
seconds (a new connection each time, as Prometheus does after a
Connection: close) until SIGTERM or --seconds; then prints how many
scrapes were made, how many failed, and their latency (p50, p99, max, in
ms). Standard library only."""
import argparse
import signal
import socket
import sys
import time


def scrape(host, port, timeout):
    """Milliseconds for one whole 200 reply, or None on a failure."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    if not data.startswith(b"HTTP/1.1 200 OK\r\n"):
        return None
    return (time.monotonic() - t0) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--timeout", type=float, default=10)
    args = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    times, failed = [], 0
    end = time.monotonic() + args.seconds
    next_at = time.monotonic()
    while not stop and time.monotonic() < end:
        ms = scrape(args.host, args.port, args.timeout)
        if ms is None:
            failed += 1
        else:
            times.append(ms)
        next_at += args.interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)    # the scrape interval itself
    times.sort()

    def pct(p):
        return times[min(len(times) - 1, int(len(times) * p))] if times else 0

    print("scrapes=%d failed=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f" % (
        len(times), failed, pct(0.5), pct(0.99), times[-1] if times else 0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
