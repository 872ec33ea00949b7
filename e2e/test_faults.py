"""Faults (docs/reliability.md): a disk that fills up or fails
gives 452 4.3.1 / 451 4.3.0 and leaves nothing in any new/ or tmp/; out
of descriptors, new clients get 421 instead of hanging and the server
recovers when they leave; a filter that crashes, hangs or floods its
output changes nothing for the other clients.

Disk faults come from tests/faultshim.c, an LD_PRELOAD library built here
that fails write/fsync/syncfs/link only on files under the mailbox root,
and only while an "arm" file exists, so the same server first proves it
works, then fails, then works again.  A real full disk (a 1 MiB tmpfs) is
tried too when we may mount one.
"""
import contextlib
import os
import pathlib
import resource
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import SANITIZED, greeted, queue_id, send_mail

HERE = pathlib.Path(__file__).resolve().parent
SHIM_SRC = HERE.parent / "tests" / "faultshim.c"
BODY = b"Subject: fault test\r\n\r\n" + b"0123456789abcdef" * 4096 + b"\r\nEND\r\n"


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    """Path of the built faultshim.so (skips when no C compiler)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler to build tests/faultshim.c")
    out = tmp_path_factory.mktemp("shim") / "faultshim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(SHIM_SRC),
                    "-ldl"], check=True, timeout=60)
    return out


def shim_env(shim, root, arm, **faults):
    env = {"LD_PRELOAD": str(shim), "FAULT_ROOT": str(root),
           "FAULT_ARM": str(arm)}
    if SANITIZED:   # the shim comes before the ASan runtime in the list
        env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "")
                               + ":verify_asan_link_order=0").lstrip(":")
    env.update({k: str(v) for k, v in faults.items()})
    return env


def spool_files(srv):
    """Every file in any mailbox's new/ or tmp/."""
    return sorted(srv.root.glob("*/new/*")) + sorted(srv.root.glob("*/tmp/*"))


def transaction(client, rcpts, body=BODY):
    """MAIL, RCPTs, DATA, body: the reply to DATA if it was not 354, else
    the reply after the final dot."""
    assert client.cmd("MAIL FROM:<a@b.test>").startswith("250 ")
    for r in rcpts:
        assert client.cmd("RCPT TO:<%s>" % r).startswith("250 ")
    line = client.cmd("DATA")
    if not line.startswith("354"):
        return line
    client.send(body + b".\r\n")
    return client.reply_line()


class FaultServer:
    """A server under the shim, faults off until arm() is called."""

    def __init__(self, start_server, shim, tmp_path, *args, **faults):
        self.arm_file = tmp_path / "arm"
        root = tmp_path / "mail"
        self.srv = start_server("-u", "alice:pw", *args,
                                env=shim_env(shim, root, self.arm_file,
                                             FAULT_LOG=tmp_path / "faults.log",
                                             **faults))

    def arm(self):
        self.arm_file.write_text("on")

    def disarm(self):
        self.arm_file.unlink()


# The two ways a 250 is made durable: the journal (the default) and
# --no-journal (each file and new/ synced).
DURABILITY = pytest.mark.parametrize("mode", [(), ("--no-journal",)],
                                     ids=["journal", "no-journal"])


def check_fault(start_server, connect, shim, tmp_path, rcpts, expect,
                mode=("--no-journal",), **faults):
    """Works before, fails as expected while armed leaving nothing, works
    again after, on the same connection."""
    fs = FaultServer(start_server, shim, tmp_path, *mode, **faults)
    srv = fs.srv
    c = greeted(connect, srv)
    queue_id(transaction(c, rcpts))
    before = spool_files(srv)
    assert len(before) == len(set(rcpts))
    fs.arm()
    line = transaction(c, rcpts)
    assert line.startswith(expect), line
    fs.disarm()
    assert spool_files(srv) == before
    assert c.cmd("RSET").startswith("250")
    queue_id(transaction(c, rcpts))
    assert len(spool_files(srv)) == 2 * len(set(rcpts))
    assert c.cmd("QUIT").startswith("221")
    return srv


# ---- the disk -------------------------------------------------------------

@DURABILITY
def test_disk_full_in_the_middle_of_the_body(start_server, connect, shim,
                                             tmp_path, mode):
    srv = check_fault(start_server, connect, shim, tmp_path,
                      ["postmaster@localhost"], "452 4.3.1",
                      FAULT_WRITE_AFTER=4096, mode=mode)
    assert "No space left" in srv.log_text()


@DURABILITY
def test_disk_full_at_the_first_byte(start_server, connect, shim, tmp_path,
                                     mode):
    """The trace headers are written at DATA: the 452 may come there."""
    check_fault(start_server, connect, shim, tmp_path,
                ["postmaster@localhost", "alice@localhost"], "452 4.3.1",
                FAULT_WRITE_AFTER=0, mode=mode)


@DURABILITY
def test_write_error_gives_451(start_server, connect, shim, tmp_path, mode):
    check_fault(start_server, connect, shim, tmp_path,
                ["postmaster@localhost"], "451 4.3.0",
                FAULT_WRITE_AFTER=20000, FAULT_WRITE_ERRNO="EIO", mode=mode)


@DURABILITY
def test_fsync_and_syncfs_failing_give_451(start_server, connect, shim,
                                           tmp_path, mode):
    check_fault(start_server, connect, shim, tmp_path,
                ["postmaster@localhost", "alice@localhost"], "451 4.3.0",
                FAULT_SYNCFS=1, FAULT_FSYNC=1, mode=mode)


def test_directory_fsync_failing_removes_the_links(start_server, connect,
                                                   shim, tmp_path):
    """The files were linked into both new/ before the directory sync
    failed: the links must go again."""
    check_fault(start_server, connect, shim, tmp_path,
                ["postmaster@localhost", "alice@localhost"], "451 4.3.0",
                FAULT_SYNCFS=1, FAULT_FSYNC_DIR=1, mode=("--no-journal",))


@DURABILITY
def test_second_link_failing_removes_the_first(start_server, connect, shim,
                                               tmp_path, mode):
    check_fault(start_server, connect, shim, tmp_path,
                ["postmaster@localhost", "alice@localhost"], "452 4.3.1",
                FAULT_LINK_AFTER=1, mode=mode)


def test_syncfs_failing_alone_falls_back_to_fsync(start_server, connect,
                                                  shim, tmp_path):
    """syncfs may fail for someone else's file; fsync of ours then decides.
    Three mailboxes: a lone message to one or two is flushed with fsync
    alone, three take the syncfs path unless the machine has lately held
    much unwritten data (commit_flush_choose): either way it is delivered."""
    fs = FaultServer(start_server, shim, tmp_path, "-u", "bob:pw",
                     "--no-journal", FAULT_SYNCFS=1)
    fs.arm()
    c = greeted(connect, fs.srv)
    queue_id(transaction(c, ["postmaster@localhost", "alice@localhost",
                             "bob@localhost"]))
    for box in ("postmaster", "alice", "bob"):
        assert len(fs.srv.new_files(box)) == 1


@DURABILITY
def test_concurrent_clients_during_disk_full(start_server, connect, shim,
                                             tmp_path, mode):
    """Ten clients fail together while the disk is full; none hangs, none
    leaves a file, and all of them deliver once there is room again."""
    fs = FaultServer(start_server, shim, tmp_path, *mode,
                     FAULT_WRITE_AFTER=1000)
    clients = [greeted(connect, fs.srv) for _ in range(10)]
    fs.arm()
    for c in clients:
        assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
        assert c.cmd("RCPT TO:<alice@localhost>").startswith("250")
        c.send("DATA\r\n")
    go = [c.reply_line() for c in clients]
    assert all(g.startswith("354") for g in go), go    # headers fit in 1000
    for c in clients:               # all ten bodies in flight at once
        c.send(BODY + b".\r\n")
    replies = [c.reply_line() for c in clients]
    assert all(r.startswith("452 4.3.1") for r in replies), replies
    assert spool_files(fs.srv) == []
    fs.disarm()
    for c in clients:
        queue_id(transaction(c, ["alice@localhost"]))
    assert len(fs.srv.new_files("alice")) == 10


def send_together(clients, rcpts_of):
    """Every client's transaction up to DATA, then all bodies at once, so
    that they reach the committer in as few batches as possible; the
    replies after the dot, in client order."""
    for i, c in enumerate(clients):
        assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
        for r in rcpts_of(i):
            assert c.cmd("RCPT TO:<%s>" % r).startswith("250")
        c.send("DATA\r\n")
    assert all(c.reply_line().startswith("354") for c in clients)
    for c in clients:
        c.send(BODY + b".\r\n")
    return [c.reply_line() for c in clients]


def test_one_mailbox_directory_failing_fails_only_its_messages(
        start_server, connect, shim, tmp_path):
    """A batch syncs each new/ once for all its messages; when bob's new/
    cannot be synced, every message with a copy for bob gets 451 and
    leaves nothing anywhere (not even alice's copy of the message sent to
    both), and the messages for alice alone are delivered."""
    fs = FaultServer(start_server, shim, tmp_path, "-u", "bob:pw",
                     "--no-journal", FAULT_SYNCFS=1, FAULT_FSYNC_DIR=1,
                     FAULT_FSYNC_MATCH="/bob/new")
    clients = [greeted(connect, fs.srv) for _ in range(9)]
    rcpts = [["alice@localhost"], ["bob@localhost"],
             ["alice@localhost", "bob@localhost"]]
    fs.arm()
    replies = send_together(clients, lambda i: rcpts[i % 3])
    for i, line in enumerate(replies):
        want = "250 2.0.0" if i % 3 == 0 else "451 4.3.0"
        assert line.startswith(want), (i, replies)
    assert len(fs.srv.new_files("alice")) == 3
    assert fs.srv.new_files("bob") == []
    assert sorted(fs.srv.root.glob("*/tmp/*")) == []
    fs.disarm()
    queue_id(transaction(clients[1], ["bob@localhost"]))
    assert len(fs.srv.new_files("bob")) == 1


def test_one_fsync_failing_fails_one_message(start_server, connect, shim,
                                             tmp_path):
    """Eight messages at once and the disk fails one file's fsync: that
    message alone gets 451 and leaves nothing; the seven others land."""
    fs = FaultServer(start_server, shim, tmp_path, "--no-journal",
                     FAULT_SYNCFS=1, FAULT_FSYNC=1, FAULT_FSYNC_ONCE=1)
    clients = [greeted(connect, fs.srv) for _ in range(8)]
    fs.arm()
    replies = send_together(clients, lambda i: ["alice@localhost"])
    failed = [r for r in replies if r.startswith("451 4.3.0")]
    assert len(failed) == 1, replies
    assert sum(r.startswith("250 2.0.0") for r in replies) == 7, replies
    assert len(fs.srv.new_files("alice")) == 7
    assert sorted(fs.srv.root.glob("*/tmp/*")) == []
    lines = (tmp_path / "faults.log").read_text().splitlines()
    assert [ln.split()[0] for ln in lines if ln.startswith("fsync")] == ["fsync"]


def can_mount_tmpfs(where):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                        str(where)], capture_output=True, timeout=10)
    return r.returncode == 0


def test_real_full_tmpfs(start_server, connect, tmp_path):
    """A real full disk: a 1 MiB tmpfs as the mailbox root, a 2 MB message."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if not can_mount_tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs here (needs root and the right)")
    try:
        srv = start_server(root=mnt / "mail")
        c = greeted(connect, srv)
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 2000
        line = transaction(c, ["postmaster@localhost"], big)
        assert line.startswith("452 4.3.1"), line
        assert spool_files(srv) == []
        queue_id(transaction(c, ["postmaster@localhost"]))
        assert len(srv.new_files("postmaster")) == 1
        assert c.cmd("QUIT").startswith("221")
        c.close()
        assert srv.stop() == 0
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=10)


# ---- descriptors ----------------------------------------------------------

def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


@contextlib.contextmanager
def popen_with(preexec_fn):
    """The fixture's Server calls subprocess.Popen: give it a preexec_fn."""
    real = subprocess.Popen

    def popen(*a, **kw):
        kw["preexec_fn"] = preexec_fn
        return real(*a, **kw)
    subprocess.Popen = popen
    try:
        yield
    finally:
        subprocess.Popen = real


def first_reply(sock, timeout):
    """The first line the server sends, b"" on EOF/reset, None on silence."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        return None if not data else data
    return data


def test_out_of_descriptors_refuses_with_421_and_recovers(start_server,
                                                          connect):
    with popen_with(low_nofile):
        srv = start_server()
    limits = pathlib.Path("/proc/%d/limits" % srv.pid).read_text()
    assert any(l.startswith("Max open files") and l.split()[3] == "64"
               for l in limits.splitlines()), limits
    socks, greeted_n, refused_n, told_421 = [], 0, 0, 0
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            socks.append(s)
            first = first_reply(s, 5)
            assert first is not None, "client %d left hanging" % len(socks)
            if first.startswith(b"220 "):
                greeted_n += 1
            else:
                assert first == b"" or first.startswith(b"421 4.3.2"), first
                refused_n += 1
                told_421 += first.startswith(b"421")
        assert greeted_n >= 30 and refused_n >= 20, (greeted_n, refused_n)
        print("fd limit 64: %d clients served, %d refused (%d of them "
              "with 421 4.3.2)" % (greeted_n, refused_n, told_421))
    finally:
        for s in socks:
            s.close()
    assert srv.proc.poll() is None
    deadline = time.monotonic() + 10
    while True:     # the server notices the closes; then there is room
        c = connect(srv.port)
        try:
            if c.reply_line().startswith("220 "):
                break
        except (EOFError, OSError):
            pass
        c.close()
        assert time.monotonic() < deadline, "no room again after the flood"
        time.sleep(0.1)
    c.send("EHLO client.test\r\n")
    assert c.reply()[0] == 250
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))
    assert c.cmd("QUIT").startswith("221")
    assert "out of descriptors" in srv.log_text() \
        or "refused a client" in srv.log_text()


def test_out_of_descriptors_mid_transaction_leaves_nothing(start_server,
                                                           connect):
    """Spool files need descriptors too: clients that cannot get one are
    told 451/452 at DATA; every 250 is in new/ and tmp/ ends empty."""
    with popen_with(low_nofile):
        srv = start_server()
    clients = [greeted(connect, srv) for _ in range(30)]
    for c in clients:
        assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
        assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250")
    for c in clients:               # all spool files open at once
        c.send("DATA\r\n")
    answers = [c.reply_line() for c in clients]
    go = [c for c, a in zip(clients, answers) if a.startswith("354")]
    refused = [a for a in answers if not a.startswith("354")]
    assert all(a[:3] in ("451", "452") for a in refused), refused
    assert go and refused, answers
    for c in go:
        c.send(BODY + b".\r\n")
    finals = [c.reply_line() for c in go]
    acked = [queue_id(f) for f in finals if f.startswith("250")]
    assert all(f[:3] in ("250", "451", "452") for f in finals), finals
    print("fd limit 64, 30 clients: %d spool files refused, %d delivered"
          % (len(refused), len(acked)))
    names = [f.name for f in srv.new_files("postmaster")]
    for qid in acked:
        assert sum(1 for n in names if ".%s." % qid in n) == 1, qid
    assert len(names) == len(acked)
    assert srv.tmp_files("postmaster") == []
    for c in clients:
        c.close()
    deadline = time.monotonic() + 10
    while True:
        c = connect(srv.port)
        try:
            if c.reply_line().startswith("220 "):
                break
        except (EOFError, OSError):
            pass
        c.close()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    c.send("EHLO client.test\r\n")
    assert c.reply()[0] == 250
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], BODY))


# ---- filters ---------------------------------------------------------------

FILTER = r"""
case "$SMTPD_SENDER" in
crash@*) cat >/dev/null; kill -SEGV $$ ;;
hang@*)  exec sleep 60 ;;
flood@*) cat >/dev/null; yes | head -c 20000000 ;;
*)       exec cat ;;
esac
"""


def hostile_transaction(port, sender, out):
    from conftest import Client
    c = Client(port, timeout=30)
    try:
        c.greet()
        t0 = time.monotonic()
        out[sender] = (send_mail(c, sender, ["postmaster@localhost"],
                                 b"Subject: hostile\r\n\r\nx\r\n"),
                       time.monotonic() - t0)
        c.cmd("QUIT")
    except Exception as e:      # reported by the assertions below
        out[sender] = (repr(e), 0)
    finally:
        c.close()


def children_of(pid):
    """pids whose parent is pid (zombies included: they are unreaped)."""
    kids = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rfind(")") + 2:].split()[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.parametrize("kind", ["crash", "hang", "flood"])
def test_misbehaving_filter_does_not_touch_other_clients(start_server,
                                                         connect, tmp_path,
                                                         kind):
    script = tmp_path / "filter.sh"
    script.write_text(FILTER)
    srv = start_server("-t", "sh %s" % script, "-T", "2")
    out = {}
    t = threading.Thread(target=hostile_transaction,
                         args=(srv.port, "%s@evil.test" % kind, out))
    t.start()
    time.sleep(0.3)                 # the filter is running now
    c = greeted(connect, srv)
    qid = queue_id(send_mail(c, "good@b.test", ["postmaster@localhost"],
                             b"Subject: good\r\n\r\ngood\r\n"))
    hostile_waiting = t.is_alive()
    assert c.cmd("QUIT").startswith("221")
    t.join(30)
    assert not t.is_alive()
    line, hostile_took = out["%s@evil.test" % kind]
    print("%s filter: %r after %.2f s" % (kind, line, hostile_took))
    if kind == "flood":
        assert line[:3] in ("250", "451", "452", "552"), line
    else:
        assert line.startswith("451 4.3.0"), line
    if kind == "hang":
        # the good one was stored while the bad one's filter still hung
        assert hostile_waiting
    goods = [f for f in srv.new_files("postmaster") if qid in f.name]
    assert len(goods) == 1 and b"\r\n\r\ngood\r\n" in goods[0].read_bytes()
    if kind == "hang":
        assert hostile_took >= 1.5, hostile_took
    deadline = time.monotonic() + 5     # killed (whole group) and reaped
    while children_of(srv.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children_of(srv.pid) == []
    assert not list(srv.root.glob("*/tmp/*")), list(srv.root.glob("*/tmp/*"))


def test_filter_output_over_the_size_limit_is_not_stored(start_server,
                                                         connect):
    srv = start_server("-t", "cat >/dev/null; yes | head -c 3000000",
                       "-z", "1000000")
    c = greeted(connect, srv)
    line = send_mail(c, "a@b.test", ["postmaster@localhost"],
                     b"Subject: small\r\n\r\nsmall\r\n")
    assert line[:3] in ("451", "552"), line
    assert spool_files(srv) == []
