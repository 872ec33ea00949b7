"""Shared fixtures for the end-to-end suite.

Every test starts the real binary (SMTPD_BIN, default ../smtpd) on loopback
with free ports and a temporary mailbox root, talks to it over real
sockets, and stops it afterwards.  Standard library only.
"""
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

from ports import free_port  # noqa: F401  (the tests import it from here)

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SMTPD_BIN = os.environ.get("SMTPD_BIN", str(ROOT / "smtpd"))
MANAGER_BIN = os.environ.get("MANAGER_BIN", str(ROOT / "manager"))
SANITIZED = os.environ.get("SMTPD_SANITIZED") == "1"
# exit codes the sanitizers use (Makefile: ASAN_OPTIONS / UBSAN_OPTIONS)
SANITIZER_EXITS = (86, 87)


def wait_for_greeting(port, proc, output, what, hello=b""):
    """Waits up to 10 s until 127.0.0.1:port answers 220 (after hello, if
    given), then says QUIT; raises with output() if proc exits first or
    nothing answers."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s: %s" % (
                what, proc.returncode, output()))
        try:
            with socket.create_connection(("127.0.0.1", port),
                                          timeout=1) as s:
                s.settimeout(5)
                if hello:
                    s.sendall(hello)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    s.recv(512)
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not start: %s" % (what, output()))


class Server:
    """One running smtpd.  args: extra flags; the fixture adds the ports,
    -f ROOT, -a 127.0.0.1 -a ::1 (unless given) and -l LOG."""

    def __init__(self, tmp_path, args=(), root=None, env=None):
        self.port = free_port()
        self.monitor_port = free_port(socket.SOCK_DGRAM)
        self.root = pathlib.Path(root) if root else tmp_path / "mail"
        self.log = tmp_path / "smtpd.log"
        args = list(args)
        cmd = [SMTPD_BIN, "-s", str(self.port), "-p", str(self.monitor_port),
               "-f", str(self.root), "-l", str(self.log), "-L", "debug"]
        if "-a" not in args:
            cmd += ["-a", "127.0.0.1", "-a", "::1"]
        cmd += args
        self.cmd = cmd
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.stderr_path = tmp_path / "smtpd.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, env=full_env)
        self._wait_ready()

    def _wait_ready(self):
        # a listed PROXY peer must speak first; for others it is one
        # unknown command
        hello = b"PROXY UNKNOWN\r\n" if "--proxy-from" in self.cmd else b""
        wait_for_greeting(self.port, self.proc, self.startup_text,
                          "smtpd", hello)

    def startup_text(self):
        """What a failed start shows: standard error and the log's tail
        (with -l the reason, e.g. "Address already in use", is there)."""
        tail = "\n".join(self.log_text().splitlines()[-20:])
        return "stderr: %r; log tail:\n%s" % (self.stderr_text(), tail)

    def stderr_text(self):
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def maildir(self, user):
        return self.root / user

    def new_files(self, user):
        d = self.root / user / "new"
        return sorted(d.iterdir()) if d.exists() else []

    def tmp_files(self, user):
        d = self.root / user / "tmp"
        return sorted(d.iterdir()) if d.exists() else []

    def wait_new(self, user, count=1, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = self.new_files(user)
            if len(files) >= count:
                return files
            time.sleep(0.02)
        return self.new_files(user)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops the server; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode

    def check_sanitizers(self):
        err = self.stderr_text()
        assert "ERROR: AddressSanitizer" not in err, err
        assert "runtime error:" not in err, err
        assert "ERROR: LeakSanitizer" not in err, err
        assert self.proc.returncode not in SANITIZER_EXITS, err


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server("-u", "a:b", ...) -> Server.  Every server it
    started is stopped at the end of the test, and must exit cleanly with
    no sanitizer report."""
    servers = []
    counter = [0]

    def start(*args, root=None, env=None):
        counter[0] += 1
        d = tmp_path / ("s%d" % counter[0])
        d.mkdir()
        srv = Server(d, args, root=root or (tmp_path / "mail"), env=env)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        was_running = srv.proc.poll() is None
        code = srv.stop()
        srv.check_sanitizers()
        if was_running:
            assert code == 0, "smtpd exit %s: %s" % (code, srv.stderr_text())


@pytest.fixture
def server(start_server):
    """A server on defaults (domain localhost), no users."""
    return start_server()


class Client:
    """A raw SMTP client: send bytes, read whole replies."""

    def __init__(self, port, host="127.0.0.1", timeout=10, family=None):
        if family is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; have %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def reply(self):
        """One whole reply: (code, [text lines]).  Text excludes 'NNN-'."""
        lines = []
        while True:
            line = self._line()
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines

    def reply_line(self):
        """One reply as 'NNN text' (last line of a multi-line reply)."""
        code, lines = self.reply()
        return "%d %s" % (code, lines[-1])

    def cmd(self, line):
        """Send one command line, return 'NNN text' of its reply."""
        self.send(line + "\r\n")
        return self.reply_line()

    def greet(self, ehlo="client.test"):
        assert self.reply_line().startswith("220 ")
        self.send("EHLO %s\r\n" % ehlo)
        code, lines = self.reply()
        assert code == 250, lines
        return lines

    def closed(self, timeout=5):
        """True when the server has closed the connection (EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def connect():
    """Factory: connect(port, host="127.0.0.1") -> Client; closed at end."""
    clients = []

    def make(port, host="127.0.0.1", **kw):
        c = Client(port, host, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def send_mail(client, sender, rcpts, body):
    """MAIL/RCPT/DATA with an already greeted client; returns the final
    reply line.  body: bytes ending in CRLF, already dot-stuffed."""
    assert client.cmd("MAIL FROM:<%s>" % sender).startswith("250 2.1.0")
    for r in rcpts:
        assert client.cmd("RCPT TO:<%s>" % r).startswith("250 2.1.5")
    assert client.cmd("DATA").startswith("354")
    client.send(body + b".\r\n")
    return client.reply_line()


def wait_for(cond, timeout=10):
    """Polls cond until it holds (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def fd_count(pid):
    """The server's open descriptors, leaving out message files of a
    Maildir: while other programs keep the disk busy, the journal keeps
    one per message until its next checkpoint (on purpose: it syncs
    through them), and that is not a leak. (Opened as the tmp/ file, its
    link there since removed, such a descriptor reads "tmp/NAME
    (deleted)".)"""
    fds = "/proc/%d/fd" % pid
    count = 0
    for fd in os.listdir(fds):
        try:
            target = os.readlink(os.path.join(fds, fd))
        except OSError:
            continue        # closed meanwhile
        if not re.search(r"/(tmp|new|cur)/[^/]+( \(deleted\))?$", target):
            count += 1
    return count


def strip_trace(data):
    """The stored file minus the Return-Path and Received lines we add."""
    assert data.startswith(b"Return-Path: "), data[:200]
    _, rest = data.split(b"\r\n", 1)
    assert rest.startswith(b"Received: "), rest[:200]
    # Received may be folded over continuation lines starting with SP/TAB
    _, rest = rest.split(b"\r\n", 1)
    while rest[:1] in (b" ", b"\t"):
        _, rest = rest.split(b"\r\n", 1)
    return rest


# ---- helpers for the SMTP core, delivery and auth suites -----------------
# (appended; the fixtures above are unchanged)
import base64  # noqa: E402
import re  # noqa: E402

QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([A-Za-z0-9]{1,32})$")


def queue_id(line):
    """The ID of a '250 2.0.0 Ok: queued as ID' line; fails on anything else."""
    m = QUEUED_RE.match(line)
    assert m, "not a queued reply: %r" % line
    return m.group(1)


def raw_reply(client):
    """One whole reply as its raw lines, e.g. ['250-localhost', '250 HELP']."""
    lines = []
    while True:
        line = client._line()
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines


def no_reply(client, seconds=1.0):
    """True when the server sends nothing (and does not close) for seconds."""
    if client.buf:
        return False
    client.sock.settimeout(seconds)
    try:
        chunk = client.sock.recv(65536)
    except socket.timeout:
        return True
    finally:
        client.sock.settimeout(10)
    client.buf += chunk
    return False


def only_file(srv, user, timeout=10):
    """(path, bytes) of the single file in user's new/; fails on 0 or >1."""
    files = srv.wait_new(user, 1, timeout)
    time.sleep(0.1)
    files = srv.new_files(user)
    assert len(files) == 1, files
    return files[0], files[0].read_bytes()


def dot_stuff(body):
    """SMTP transparency (RFC 5321 4.5.2) for a body made of CRLF lines."""
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..")


RECEIVED_RE = re.compile(
    r"^Received: from (?P<helo>\S+) \(\[(?P<ip>[^\]]+)\]\) by (?P<domain>\S+)"
    r" with (?P<proto>SMTP|ESMTPS?A?) id (?P<id>[A-Za-z0-9]{1,32})"
    r"(?: for <(?P<rcpt>[^>]*)>)?; (?P<date>.+)$")


def parse_trace(data):
    """Splits a stored file: (return_path, received_fields, message)."""
    head, rest = data.split(b"\r\n", 1)
    assert head.startswith(b"Return-Path: "), data[:200]
    assert rest.startswith(b"Received: "), rest[:200]
    recv, rest = rest.split(b"\r\n", 1)
    while rest[:1] in (b" ", b"\t"):     # folded continuation lines
        more, rest = rest.split(b"\r\n", 1)
        recv += b" " + more.lstrip()
    m = RECEIVED_RE.match(recv.decode("latin-1"))
    assert m, "bad Received header: %r" % recv
    return head[len(b"Return-Path: "):].decode("latin-1"), m.groupdict(), rest


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def tree(root):
    """Every path under root, relative, sorted (to prove nothing was made)."""
    root = pathlib.Path(root)
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def greeted(connect, srv, ehlo="client.test", host="127.0.0.1"):
    """A client connected to srv that has already done EHLO."""
    c = connect(srv.port, host)
    c.greet(ehlo)
    return c


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(items):
    """The slow tests first, otherwise in their order: with several
    processes (make test), a long test that started last would run alone
    while the other processes have nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
