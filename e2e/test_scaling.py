"""Many instances on one mailbox root, behind the real HAProxy.

Two smtpd share one -f root. HAProxy (Debian's haproxy, run in the
foreground with docs/haproxy.cfg, its placeholders filled with loopback
ports) sends PROXY version 1 to one and version 2 to the other and
health-checks both with `option smtpchk`. Clients bound to 127.0.0.2 and
127.0.0.3 send 2,000 messages through it: each one acknowledged is stored
exactly once under a distinct ID, and Received and the log name the real
client. Then one instance is killed with SIGKILL under load: new clients
go to the other and no acknowledged message is lost. HAProxy also passes
implicit TLS through to --smtps-port with either PROXY version."""
import concurrent.futures
import pathlib
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port, parse_trace, wait_for_greeting
from tls_helpers import certs, client_context, smtps_port, tls_args  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parent.parent
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SOURCES = ("127.0.0.2", "127.0.0.3")
SEQ_RE = re.compile(rb"\r\nX-Seq: (\d+)\r\n")

pytestmark = pytest.mark.skipif(not pathlib.Path(HAPROXY).exists(),
                                reason="haproxy is not installed")


class Balancer:
    """HAProxy in the foreground, configured from docs/haproxy.cfg."""

    def __init__(self, tmp_path, smtpd1, smtpd2):
        self.port = free_port()
        text = (ROOT / "docs" / "haproxy.cfg").read_text()
        for name, value in (("LISTEN", "127.0.0.1:%d" % self.port),
                            ("SMTPD1", "127.0.0.1:%d" % smtpd1.port),
                            ("SMTPD2", "127.0.0.1:%d" % smtpd2.port),
                            ("DOMAIN", "lb.test")):
            text = text.replace("@%s@" % name, value)
        assert not [l for l in text.splitlines()
                    if "@" in l and not l.lstrip().startswith("#")]
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(text)
        self.out_path = tmp_path / "haproxy.out"
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self):
        wait_for_greeting(self.port, self.proc, self.output, "haproxy")

    def output(self):
        if not self._out.closed:
            self._out.flush()
        return self.out_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture
def balanced(start_server, tmp_path):
    """(haproxy, smtpd1, smtpd2): two instances on one root behind HAProxy."""
    s1 = start_server("--proxy-from", "127.0.0.1", "-c", "2000")
    s2 = start_server("--proxy-from", "127.0.0.1", "-c", "2000")
    assert s1.root == s2.root
    lb = Balancer(tmp_path, s1, s2)
    yield lb, s1, s2
    lb.stop()


class Conn:
    """A minimal SMTP client bound to a source address."""

    def __init__(self, source, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def reply(self):
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                if line[3:4] != b"-":
                    return line.decode("latin-1")
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.sock.close()


def message(seq, source):
    return (b"From: load@example.org\r\nSubject: load %d\r\nX-Seq: %d\r\n"
            b"X-Src: %s\r\n\r\nmessage %d\r\n.\r\n"
            % (seq, seq, source.encode(), seq))


def send_batch(port, source, seqs):
    """One connection, one message per seq. Returns [(seq, id, when)] of
    the messages acknowledged with 250; stops at the first failure."""
    acked = []
    try:
        c = Conn(source, port)
    except OSError:
        return acked
    try:
        assert c.reply().startswith("220 ")
        assert c.cmd("EHLO load.test").startswith("250")
        for seq in seqs:
            assert c.cmd("MAIL FROM:<load@example.org>").startswith("250 2.1.0")
            assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
            assert c.cmd("DATA").startswith("354")
            c.sock.sendall(message(seq, source))
            r = c.reply()
            if not r.startswith("250 2.0.0 Ok: queued as "):
                break
            acked.append((seq, r.rsplit(" ", 1)[1], time.monotonic()))
        c.cmd("QUIT")
    except (OSError, EOFError, AssertionError):
        pass
    finally:
        c.close()
    return acked


def stored(srv):
    """{seq: [(queue id, Received ip, X-Src)]} over every file in new/."""
    found = {}
    for f in srv.new_files("postmaster"):
        data = f.read_bytes()
        m = SEQ_RE.search(data)
        assert m, f
        _, rcv, rest = parse_trace(data)
        src = re.search(rb"\r\nX-Src: (\S+)\r\n", data).group(1).decode()
        assert rcv["id"] in f.name
        found.setdefault(int(m.group(1)), []).append((rcv["id"], rcv["ip"], src))
    return found


def check_stored_once(srv, acked):
    found = stored(srv)
    for seq, qid, _ in acked:
        assert len(found.get(seq, [])) == 1, (seq, found.get(seq))
        fid, ip, src = found[seq][0]
        assert fid == qid
        assert ip == src, (seq, ip, src)
    assert all(len(v) == 1 for v in found.values())
    ids = [v[0][0] for v in found.values()]
    assert len(set(ids)) == len(ids)
    return found


def bad_log_lines(srv):
    return [l for l in srv.log_text().splitlines()
            if " warning: " in l or " error: " in l]


def test_two_instances_one_root_without_balancer(start_server):
    """The shared root alone: concurrent clients straight to both."""
    s1 = start_server()
    s2 = start_server()
    total, per_conn = 400, 5
    jobs = [((s1, s2)[i % 2], list(range(i * per_conn, (i + 1) * per_conn)))
            for i in range(total // per_conn)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda j: send_batch(j[0].port, "127.0.0.1", j[1]), jobs))
    acked = [a for r in results for a in r]
    assert len(acked) == total
    s1.wait_new("postmaster", total, timeout=10)
    check_stored_once(s1, acked)
    # each instance's files carry its own pid, in the ID and the name
    names = [f.name for f in s1.new_files("postmaster")]
    for srv in (s1, s2):
        assert sum(1 for n in names if "P%dR" % srv.pid in n) == total // 2


@pytest.mark.slow
def test_two_thousand_messages_through_haproxy(balanced):
    lb, s1, s2 = balanced
    total, per_conn, workers = 2000, 10, 16
    jobs = [(SOURCES[i % 2], list(range(i * per_conn, (i + 1) * per_conn)))
            for i in range(total // per_conn)]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda j: send_batch(lb.port, *j), jobs))
    took = time.monotonic() - t0
    acked = [a for r in results for a in r]
    print("%d messages through HAProxy in %.1f s (%.0f/s)"
          % (len(acked), took, len(acked) / took))
    assert len(acked) == total, lb.output()
    s1.wait_new("postmaster", total, timeout=10)
    found = check_stored_once(s1, acked)
    assert len(found) == total
    # both instances took a share; the log names the real clients
    logs = s1.log_text() + s2.log_text()
    for srv in (s1, s2):
        assert "message id=" in srv.log_text()
    for src in SOURCES:
        assert logs.count("client=%s:" % src) == total // 2
    assert "client=127.0.0.1:" not in logs
    # each ID names its instance: the pid is part of it
    pids = {re.search(r"P(\d+)R", a[1]).group(1) for a in acked}
    assert pids == {str(s1.pid), str(s2.pid)}
    # the health checks came, and are no warning or error
    time.sleep(1.2)
    assert "PROXY version 2 without a client address (health check)" \
        in s2.log_text()
    assert "via 127.0.0.1:" in s1.log_text()
    assert bad_log_lines(s1) == [] and bad_log_lines(s2) == []


@pytest.mark.slow
def test_kill_one_instance_under_load(balanced):
    lb, s1, s2 = balanced
    stop = threading.Event()
    lock = threading.Lock()
    acked, late_failures = [], []
    counter = iter(range(10 ** 9))
    killed_at = [None]

    def worker(n):
        source = SOURCES[n % 2]
        while not stop.is_set():
            with lock:
                seqs = [next(counter) for _ in range(3)]
            started = time.monotonic()
            got = send_batch(lb.port, source, seqs)
            with lock:
                acked.extend(got)
                # a client that came after the kill (and HAProxy's
                # retry) must be served in full by the other instance
                if killed_at[0] and started > killed_at[0] + 0.2 \
                        and len(got) < len(seqs):
                    late_failures.append(seqs)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(2)
    s1.proc.send_signal(signal.SIGKILL)
    s1.proc.wait()
    killed_at[0] = time.monotonic()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    before = sum(1 for a in acked if a[2] <= killed_at[0])
    after = len(acked) - before
    print("acknowledged: %d before the kill, %d after" % (before, after))
    assert before > 20 and after > 20
    assert late_failures == [], late_failures
    s2.wait_new("postmaster", len(acked), timeout=10)
    check_stored_once(s2, acked)
    # everything acknowledged a second after the kill came from the
    # survivor (a 250 the dead one sent just before it died may still sit
    # in a client's socket until that thread reads it)
    pids = {re.search(r"P(\d+)R", a[1]).group(1) for a in acked
            if a[2] > killed_at[0] + 1.0}
    assert pids == {str(s2.pid)}
    assert bad_log_lines(s2) == []


# ---- HAProxy in front of the implicit-TLS port ---------------------------

TLS_CFG = """global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
listen smtps_v1
    bind 127.0.0.1:{v1}
    server smtpd 127.0.0.1:{smtps} send-proxy
listen smtps_v2
    bind 127.0.0.1:{v2}
    server smtpd 127.0.0.1:{smtps} send-proxy-v2
"""


def smtps_through(port, source):
    """One message over implicit TLS (Python's smtplib) through HAProxy,
    sent from source; retried while HAProxy is not listening yet."""
    ctx = client_context()
    deadline = time.monotonic() + 10
    while True:
        try:
            smtp = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=10,
                                    source_address=(source, 0))
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with smtp:
        smtp.sendmail("a@example.org", ["postmaster@localhost"],
                      b"Subject: via HAProxy\r\n\r\nfrom %s\r\n"
                      % source.encode())


def test_haproxy_in_front_of_the_implicit_tls_port(start_server, certs,
                                                   tmp_path):
    """HAProxy (mode tcp, send-proxy and send-proxy-v2) passes TLS through
    to --smtps-port: the header is read before the handshake, so Received
    and the log name each real client, not HAProxy."""
    srv = start_server(*tls_args(certs, "--smtps-port", str(free_port()),
                                 "--proxy-from", "127.0.0.1"))
    ports = {"v1": free_port(), "v2": free_port()}
    cfg = tmp_path / "haproxy-tls.cfg"
    cfg.write_text(TLS_CFG.format(smtps=smtps_port(srv), **ports))
    out = open(tmp_path / "haproxy-tls.out", "wb")
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)],
                            stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT)
    try:
        smtps_through(ports["v1"], "127.0.0.2")
        smtps_through(ports["v2"], "127.0.0.3")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
    by_source = {}
    for path in srv.wait_new("postmaster", 2):
        f = parse_trace(path.read_bytes())[1]
        by_source[f["ip"]] = f["proto"]
    assert by_source == {"127.0.0.2": "ESMTPS", "127.0.0.3": "ESMTPS"}
    log = srv.log_text()
    for source, version in (("127.0.0.2", 1), ("127.0.0.3", 2)):
        assert re.search(r"%s:\d+ via 127\.0\.0\.1:\d+, PROXY version %d\n"
                         % (re.escape(source), version), log), log
        assert re.search(r"%s:\d+ TLS on: TLSv1" % re.escape(source), log), log
    assert "bad PROXY" not in log
