#!/usr/bin/python3
"""Idle TLS clients: memory per session (docs/benchmarks.md section 8).

    bench/tls_idle.py PID PORT N

Opens N implicit-TLS connections to 127.0.0.1:PORT, each taken past its
EHLO and then left idle; reads the server's VmRSS (process PID) before and
after, and times one more client's whole transaction meanwhile. Prints one
key=value line. Standard library only; loopback only.
"""
import resource
import socket
import ssl
import sys
import time


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def reply(f):
    while True:
        line = f.readline()
        if not line or line[3:4] == b" ":
            return line


def connect(ctx, port):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                        server_hostname="localhost")
    f = s.makefile("rb")
    reply(f)
    return s, f


def main():
    pid, port, n = (int(a) for a in sys.argv[1:4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s, _ = connect(ctx, port)           # warm-up: OpenSSL's first use
    s.close()
    time.sleep(0.3)
    before = rss_kib(pid)
    held = []
    for _ in range(n):
        s, f = connect(ctx, port)
        s.sendall(b"EHLO idle.test\r\n")
        reply(f)
        held.append((s, f))
    time.sleep(0.5)
    after = rss_kib(pid)
    start = time.monotonic()
    s, f = connect(ctx, port)
    for cmd in (b"EHLO one.more\r\n", b"MAIL FROM:<a@b.test>\r\n",
                b"RCPT TO:<postmaster@localhost>\r\n", b"DATA\r\n",
                b"Subject: one more\r\n\r\nhi\r\n.\r\n", b"QUIT\r\n"):
        s.sendall(cmd)
        reply(f)
    print("held=%d rss_before_kib=%d rss_after_kib=%d per_session_kib=%.1f "
          "one_more_transaction_ms=%.1f" % (n, before, after,
                                            (after - before) / n,
                                            (time.monotonic() - start) * 1000))


if __name__ == "__main__":
    main()
