"""The process: flags and their errors, -h/-v, signals
(SIGTERM/SIGINT graceful stop, SIGHUP log reopen, SIGPIPE, kill -9), the
listen addresses, the open-files limit, and what the log records."""
import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import (SMTPD_BIN, free_port, greeted, only_file, parse_trace,
                      queue_id, send_mail, strip_trace)

BODY = b"Subject: process\r\n\r\nhello\r\n"


def run_smtpd(args, tmp_path, timeout=10, strace=False):
    """Runs smtpd expecting it to exit by itself; returns CompletedProcess
    and the list of socket() calls it made (None without strace)."""
    cmd = [SMTPD_BIN] + list(args)
    trace = tmp_path / "strace.out"
    if strace:
        cmd = ["strace", "-f", "-qq", "-o", str(trace),
               "-e", "trace=socket"] + cmd
    env = dict(os.environ)
    if strace:      # LeakSanitizer cannot run under ptrace
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, cwd=tmp_path, env=env)
    calls = None
    if strace:
        calls = [l for l in trace.read_text().splitlines()
                 if "AF_INET" in l]
    return p, calls


BAD_FLAGS = [
    ["-s", "0"], ["-s", "70000"], ["-s", "abc"], ["-p", "0"],
    ["-p", "65536"], ["-L", "loud"], ["-l", "/nonexistent/dir/x.log"],
    ["-c", "abc"], ["-z", "abc"], ["-T", "abc"], ["-Q"], ["-s"],
    ["-f", "/proc/no/such/root"], ["-u", "a/b:pw"], ["-u", "nopassword"],
    ["extra-operand"],
]


@pytest.mark.parametrize("flags", BAD_FLAGS, ids=[" ".join(f) for f in
                                                   BAD_FLAGS])
def test_bad_flags_exit_2_with_one_line(tmp_path, flags):
    port = free_port()
    args = ["-s", str(port), "-p", str(free_port(socket.SOCK_DGRAM)),
            "-f", str(tmp_path / "mail"), "-a", "127.0.0.1"] + flags
    p, _ = run_smtpd(args, tmp_path)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 2, (p.returncode, err)
    assert len(err.strip().splitlines()) == 1, err
    assert len(err.strip()) > 10, err


@pytest.mark.parametrize("flags", [["-s", "0"], ["-L", "loud"],
                                   ["-l", "/nonexistent/dir/x.log"],
                                   ["-f", "/proc/no/such/root"]])
def test_bad_flags_open_no_socket(tmp_path, flags):
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    args = ["-s", str(free_port()), "-p", str(free_port(socket.SOCK_DGRAM)),
            "-f", str(tmp_path / "mail")] + flags
    p, calls = run_smtpd(args, tmp_path, strace=True)
    assert p.returncode == 2, p.stderr
    assert calls == [], calls


@pytest.mark.parametrize("flag", ["-h", "-v"])
def test_help_and_version_exit_0(tmp_path, flag):
    p, _ = run_smtpd([flag], tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip(), "nothing printed for %s" % flag
    if flag == "-h":
        out = p.stdout.decode()
        for f in ("-d", "-s", "-f", "-u", "-A", "-l", "-L", "-c", "-z",
                  "-T"):
            assert f in out, (f, out)


# ---- signals -------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_says_421_to_idle_clients(start_server, connect, sig):
    srv = start_server()
    idle = greeted(connect, srv)
    mid = greeted(connect, srv)
    mid.cmd("MAIL FROM:<a@b.test>")
    mid.cmd("RCPT TO:<postmaster@localhost>")
    fresh = connect(srv.port)
    fresh.reply_line()
    srv.proc.send_signal(sig)
    for c in (idle, mid, fresh):
        assert c.reply_line().startswith("421 4.3.0")
        assert c.closed()
    assert srv.proc.wait(timeout=10) == 0
    assert srv.new_files("postmaster") == []


def test_sigterm_lets_data_finish(start_server, connect):
    srv = start_server()
    busy = greeted(connect, srv)
    busy.cmd("MAIL FROM:<a@b.test>")
    busy.cmd("RCPT TO:<postmaster@localhost>")
    assert busy.cmd("DATA").startswith("354")
    busy.send(b"Subject: late\r\n\r\nfirst half\r\n")
    idle = greeted(connect, srv)
    time.sleep(0.2)
    srv.proc.send_signal(signal.SIGTERM)
    assert idle.reply_line().startswith("421 4.3.0")
    assert srv.proc.poll() is None, "exited with a transaction in DATA"
    # no new clients while stopping
    try:
        late = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
        late.settimeout(2)
        try:
            got = late.recv(100)
        except socket.timeout:
            got = b""
        late.close()
        assert not got.startswith(b"220"), got
    except ConnectionRefusedError:
        pass
    busy.send(b"second half\r\n.\r\n")
    qid = queue_id(busy.reply_line())
    try:
        rest = busy.reply_line()
        assert rest.startswith("421 4.3.0"), rest
    except (EOFError, ConnectionResetError):
        pass
    assert busy.closed()
    assert srv.proc.wait(timeout=10) == 0
    _, f, msg = parse_trace(only_file(srv, "postmaster")[1])
    assert f["id"] == qid
    assert msg == b"Subject: late\r\n\r\nfirst half\r\nsecond half\r\n"


def test_sighup_reopens_the_log(start_server, connect):
    srv = start_server()
    greeted(connect, srv).cmd("QUIT")
    time.sleep(0.3)
    moved = srv.log.with_name("smtpd.log.1")
    os.rename(srv.log, moved)
    srv.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    c = greeted(connect, srv)
    port = c.sock.getsockname()[1]
    c.cmd("QUIT")
    deadline = time.monotonic() + 5
    while str(port) not in srv.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.log.exists(), "no new log file after SIGHUP"
    assert str(port) in srv.log_text()
    assert str(port) not in moved.read_text(errors="replace")
    assert srv.proc.poll() is None


def test_sigpipe_is_ignored(server, connect):
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", server.port), 10)
        s.sendall(b"EHLO x\r\n" + b"NOOP\r\n" * 20000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.5)
    assert server.proc.poll() is None, "smtpd died"
    assert greeted(connect, server).cmd("NOOP").startswith("250 2.0.0")


def sender_loop(port, results, stop):
    """Delivers numbered messages until stop is set or the server dies."""
    from conftest import Client
    n = 0
    try:
        c = Client(port, timeout=10)
        c.greet()
        while not stop.is_set():
            body = b"Subject: %d\r\n\r\n" % n + b"x" * 20000 + b"\r\nEND\r\n"
            line = send_mail(c, "a@b.test", ["postmaster@localhost"], body)
            results.append((queue_id(line), body))
            n += 1
    except Exception:      # the server was killed under us
        pass


@pytest.mark.slow
def test_kill_9_keeps_every_acknowledged_message(start_server):
    srv = start_server()
    results, stop = [], threading.Event()
    threads = [threading.Thread(target=sender_loop,
                                args=(srv.port, results, stop), daemon=True)
               for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    srv.proc.kill()
    srv.proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(results) > 4, "too few messages got through to test"
    files = {f.name: f for f in srv.new_files("postmaster")}
    for qid, body in list(results):
        # the ID is the second dot-separated part of the name; a plain
        # substring test would take Q137 for Q1376
        match = [f for name, f in files.items() if name.split(".")[1] == qid]
        assert len(match) == 1, qid
        assert strip_trace(match[0].read_bytes()) == body
    for f in files.values():
        size = int(f.name.rsplit(",S=", 1)[1])
        assert f.stat().st_size == size, f.name


# ---- listeners and limits ------------------------------------------------

def test_ipv4_only_listener(start_server, connect):
    srv = start_server("-a", "127.0.0.1")
    assert greeted(connect, srv).cmd("NOOP").startswith("250")
    with pytest.raises(OSError):
        socket.create_connection(("::1", srv.port), timeout=3).close()


def test_ipv6_only_listener(tmp_path, connect):
    """Started by hand: the fixture's readiness probe uses 127.0.0.1."""
    port = free_port()
    cmd = [SMTPD_BIN, "-s", str(port), "-p", str(free_port(socket.SOCK_DGRAM)),
           "-f", str(tmp_path / "mail"), "-a", "::1",
           "-l", str(tmp_path / "log")]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                c = connect(port, "::1")
                break
            except OSError:
                assert time.monotonic() < deadline, "no ::1 listener"
                time.sleep(0.05)
        c.greet()
        assert c.cmd("NOOP").startswith("250 2.0.0")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0, proc.stderr.read()


def test_open_files_limit_is_raised(server):
    with open("/proc/%d/limits" % server.pid) as f:
        line = next(l for l in f if l.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line


# ---- logs ----------------------------------------------------------------

def wait_log(srv, pred, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred(srv.log_text()):
        time.sleep(0.05)
    return srv.log_text()


def test_connection_open_and_close_are_logged(server, connect):
    c = greeted(connect, server)
    port = str(c.sock.getsockname()[1])
    c.cmd("QUIT")

    def lines(text):
        return [l for l in text.splitlines()
                if "127.0.0.1" in l and port in l]
    assert len(lines(wait_log(server, lambda t: len(lines(t)) >= 2))) >= 2


def test_access_line_answers_who_what_when(start_server, connect):
    srv = start_server("-u", "alice:pw")
    c = greeted(connect, srv, ehlo="helo.example")
    body = BODY + b"z" * 1234 + b"\r\n"
    qid = queue_id(send_mail(c, "sender@b.test", ["alice@localhost",
                                                   "postmaster@localhost"],
                             body))
    size = len(only_file(srv, "alice")[1])

    def access(text):
        return [l for l in text.splitlines() if qid in l
                and "sender@b.test" in l]
    found = access(wait_log(srv, access))
    assert found, srv.log_text()
    line = " ".join(found)
    for part in ("127.0.0.1", "helo.example", "alice@localhost",
                 "postmaster@localhost"):
        assert part in line, (part, line)
    assert str(len(body)) in line or str(size) in line, line
    assert line[:4].isdigit(), "no time on the access line: " + line


def test_rejected_rcpt_is_logged(server, connect):
    c = greeted(connect, server)
    c.cmd("MAIL FROM:<a@b.test>")
    assert c.cmd("RCPT TO:<ghost-9c1@localhost>").startswith("550")
    text = wait_log(server, lambda t: "ghost-9c1" in t)
    assert "ghost-9c1" in text


def test_log_level_warning_hides_info(start_server, connect):
    srv = start_server("-L", "warning")
    c = greeted(connect, srv)
    qid = queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))
    c.cmd("QUIT")
    time.sleep(0.5)
    assert qid not in srv.log_text()
    assert "127.0.0.1" not in srv.log_text()


def test_user_password_is_hidden_from_ps(start_server, connect):
    """-u USER:PASS: the password is blanked in /proc/PID/cmdline (what ps
    shows) while the server still checks it."""
    srv = start_server("-u", "Alice:s3cret-pass")
    cmdline = open("/proc/%d/cmdline" % srv.pid, "rb").read()
    assert b"s3cret-pass" not in cmdline
    assert b"Alice:" in cmdline
    c = connect(srv.port)
    c.greet()
    token = base64.b64encode(b"\0alice\0s3cret-pass").decode()
    assert c.cmd("AUTH PLAIN " + token).startswith("235 2.7.0")


def test_mailbox_root_that_is_a_file_is_named_as_such(tmp_path):
    """A root that exists but is no directory is not something smtpd
    "cannot create": the message says what it is."""
    root = tmp_path / "mail"
    root.write_text("a file\n")
    p, _ = run_smtpd(["-s", str(free_port()), "-p",
                      str(free_port(socket.SOCK_DGRAM)), "-f", str(root),
                      "-a", "127.0.0.1"], tmp_path)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 2, err
    assert err == "smtpd: the mailbox root %s is not a directory\n" % root, err
