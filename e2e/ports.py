"""Ports for the servers the tests and benchmarks start (standard library
only; e2e/conftest.py and bench/*.py use free_port).

Asking the kernel for port 0 and closing the socket again is racy when
several test processes run at once: the kernel may give the same number to
another process's client socket or server before ours binds it. So the
ports come from outside the kernel's ephemeral range (whence every port-0
bind and every outgoing connection takes its local port), in blocks of
BLOCK ports; each process takes a block of its own for as long as it lives
and hands out its ports in turn. A block is taken by binding a socket
named after it in Linux's abstract Unix namespace: only one process can
hold that name, and the kernel frees it when the process ends, however it
ends. So pytest-xdist workers, several suites run at once and a helper
running the suite in another clone never share a port.
"""
import errno
import os
import socket

BLOCK = 500
FIRST = 10000     # well clear of the usual services (and make run's 2525)

_claim = None     # the socket that holds our block's name
_ports = []       # our block
_next = 0


def _ephemeral():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999     # Linux's default


def _blocks():
    lo, hi = _ephemeral()
    usable = [p for p in range(FIRST, 65536) if not lo <= p <= hi]
    return [usable[i:i + BLOCK]
            for i in range(0, len(usable) - BLOCK + 1, BLOCK)]


def _take_block():
    """Claims the first free block, starting at this xdist worker's number
    (gw0, gw1, ...) so that the workers of one run rarely have to look."""
    global _claim, _ports
    blocks = _blocks()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    start = int(worker[2:]) if worker[2:].isdigit() else 0
    for i in range(len(blocks)):
        n = (start + i) % len(blocks)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind("\0smtpd-test-ports-%d-%d" % (blocks[n][0], BLOCK))
        except OSError:
            s.close()
            continue
        _claim, _ports = s, blocks[n]
        return
    raise RuntimeError("every block of test ports is taken (%d blocks)"
                       % len(blocks))


def _bindable(port, family, kind):
    addr = "0.0.0.0" if family == socket.AF_INET else "::"
    try:
        s = socket.socket(family, kind)
    except OSError as e:
        if family == socket.AF_INET6 and e.errno == errno.EAFNOSUPPORT:
            return True         # no IPv6 here: nothing can take it there
        raise
    with s:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            s.bind((addr, port))
        except OSError as e:
            if family == socket.AF_INET6 and e.errno == errno.EADDRNOTAVAIL:
                return True
            return False
    return True


def is_free(port):
    """Nothing uses port on any IPv4 or IPv6 address, over TCP or UDP (a
    listener on one loopback address blocks the wildcard bind too)."""
    return all(_bindable(port, family, kind)
               for family in (socket.AF_INET, socket.AF_INET6)
               for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM))


def free_port(kind=socket.SOCK_STREAM):
    """The next port of our block that is free right now for TCP and UDP
    on every address: the loopback defaults of -a, and the wildcard that
    some tests listen on. kind (the protocol the caller means to use) is
    accepted for the callers' sake; both are checked."""
    global _next
    if _claim is None:
        _take_block()
    for _ in range(len(_ports)):
        port = _ports[_next]
        _next = (_next + 1) % len(_ports)
        if is_free(port):
            return port
    raise RuntimeError("no free port in %d-%d" % (_ports[0], _ports[-1]))
