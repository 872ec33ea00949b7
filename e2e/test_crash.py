"""Crash safety (docs/reliability.md): kill -9 at a random moment
while clients deliver, several rounds on the same mailbox root.  Every
message that got "250 2.0.0" is whole in new/ of each of its recipients,
exactly once; a restart on the same root serves again; tmp/ files older
than 36 h are swept at start and fresh ones are kept.  Every other round
runs the messages through a filter (-t cat).  The whole test runs four
times: with the write-ahead journal (the default: the files are synced
later, and a replay at start finds them all in new/, since only the
process died) and with --no-journal (each file synced before its 250),
each on a quiet disk and with a neighbour rewriting a 64 MiB file on the
same filesystem the whole time, which keeps the kernel's unwritten data
above the committer's threshold so that its batches go file by file
(docs/design.md, "Durability").

Each message carries a unique token as its last line, so a file can be
matched to the 250 it earned and checked for being whole: its size is the
",S=" of its name and it ends with the token line exactly as sent.
"""
import os
import random
import shutil
import re
import threading
import time

import pytest

from conftest import Client, queue_id

ROUNDS = 20
CLIENTS = 6
TOKEN_RE = re.compile(rb"\r\nTOKEN (\S+)\r\n\Z")


def make_body(token, rng):
    """Sizes from a few bytes to 200 KB, so a kill often lands mid-DATA."""
    size = rng.choice([10, 500, 2000, 8000, 30000, 200000])
    line = b"x" * 76 + b"\r\n"
    return (b"Subject: %s\r\n\r\n" % token
            + line * (size // len(line))
            + b"TOKEN " + token + b"\r\n")


def sender(port, rnd, n, rcpt_sets, acked, stop):
    """Delivers until the server dies; acked gets (token, id, rcpts)."""
    rng = random.Random("%d-%d" % (rnd, n))
    k = 0
    try:
        c = Client(port, timeout=10)
        c.greet()
        while not stop.is_set():
            token = b"r%dc%dm%d-%08x" % (rnd, n, k, rng.getrandbits(32))
            rcpts = rcpt_sets[k % len(rcpt_sets)]
            k += 1
            assert c.cmd("MAIL FROM:<crash@test.example>").startswith("250")
            for r in rcpts:
                assert c.cmd("RCPT TO:<%s@localhost>" % r).startswith("250")
            assert c.cmd("DATA").startswith("354")
            c.send(make_body(token, rng) + b".\r\n")
            line = c.reply_line()
            if line.startswith("250 2.0.0"):
                acked.append((token.decode(), queue_id(line), rcpts))
    except Exception:       # EOF / reset: the server was killed under us
        pass


def scan_new(root, user):
    """token -> [file names] for every file in user's new/; also checks
    that each file there is whole, acknowledged or not."""
    found = {}
    for f in (root / user / "new").iterdir():
        data = f.read_bytes()
        size = int(f.name.rsplit(",S=", 1)[1])
        assert len(data) == size, "%s: %d bytes, name says %d" % (
            f.name, len(data), size)
        m = TOKEN_RE.search(data)
        assert m, "%s does not end with its token line" % f.name
        found.setdefault(m.group(1).decode(), []).append(f.name)
    return found


def neighbour(path, stop):
    """Rewrites a 64 MiB file, never synced, until told to stop (bounded:
    200 rounds)."""
    chunk = b"n" * (1 << 20)
    for _ in range(200):
        if stop.is_set():
            break
        with open(path, "wb") as f:
            for _ in range(64):
                f.write(chunk)
    path.unlink(missing_ok=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [(), ("--no-journal",)],
                         ids=["journal", "no-journal"])
@pytest.mark.parametrize("disk", ["quiet", "neighbour"])
def test_kill_9_rounds_lose_no_acknowledged_message(start_server, tmp_path,
                                                    disk, mode):
    noise_stop = threading.Event()
    noise = threading.Thread(target=neighbour, daemon=True,
                             args=(tmp_path / "neighbour", noise_stop))
    if disk == "neighbour":
        noise.start()
    try:
        kill_rounds(start_server, tmp_path, mode)
    finally:
        noise_stop.set()
        if noise.is_alive():
            noise.join(60)
    assert not noise.is_alive()


REPLAY_RE = re.compile(r"journal \S+: (\d+) records after the checkpoint, "
                       r"(\d+) files written again")


def check_replay(srv, mode):
    """The files of a process killed are all in new/ (only a power cut
    loses them): a replay at start, if any, writes none again; with
    --no-journal there is no journal at all."""
    found = REPLAY_RE.findall(srv.log_text())
    if mode:
        assert found == [] and not (srv.root / ".journal").exists()
    else:
        assert [written for _, written in found if written != "0"] == []


def kill_rounds(start_server, tmp_path, mode):
    root = tmp_path / "mail"
    rcpt_sets = [("postmaster",), ("alice",), ("postmaster", "alice", "bob")]
    acked, killed_after = [], []
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    print("kill -9 rounds, seed %d" % seed)
    for rnd in range(ROUNDS):
        # odd rounds run every message through a filter (-t cat): its
        # copy of the message is what must be durable then
        extra = ("-t", "cat") if rnd % 2 else ()
        srv = start_server("-u", "alice:pw", "-u", "bob:pw", *extra, *mode,
                           root=root)
        check_replay(srv, mode)
        stop = threading.Event()
        round_acked = []
        threads = [threading.Thread(target=sender, daemon=True,
                                    args=(srv.port, rnd, n, rcpt_sets,
                                          round_acked, stop))
                   for n in range(CLIENTS)]
        for t in threads:
            t.start()
        delay = rng.uniform(0.2, 1.5)
        time.sleep(delay)
        srv.proc.kill()
        srv.proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(15)
        assert not any(t.is_alive() for t in threads)
        acked.extend(round_acked)
        killed_after.append((round(delay, 2), len(round_acked)))
    print("rounds (kill after s, acknowledged):", killed_after)
    assert len(acked) >= 2 * ROUNDS, "too few messages got through to test"

    found = {u: scan_new(root, u) for u in ("postmaster", "alice", "bob")}
    for token, qid, rcpts in acked:
        for user in rcpts:
            names = found[user].get(token, [])
            assert len(names) == 1, (token, user, names)
            assert ".%s." % qid in names[0], (qid, names[0])
    copies = sum(len(r) for _, _, r in acked)
    on_disk = sum(len(v) for f in found.values() for v in f.values())
    print("%d messages acknowledged (%d copies), %d files in new/"
          % (len(acked), copies, on_disk))

    # the same root serves again after the last kill
    srv = start_server("-u", "alice:pw", "-u", "bob:pw", *mode, root=root)
    check_replay(srv, mode)
    c = Client(srv.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
    assert c.cmd("RCPT TO:<alice@localhost>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: after\r\n\r\nTOKEN after-restart\r\n.\r\n")
    queue_id(c.reply_line())
    assert c.cmd("QUIT").startswith("221")
    c.close()
    assert "after-restart" in scan_new(root, "alice")
    assert srv.stop() == 0
    shutil.rmtree(root)     # passed: do not keep ~10,000 files around


def test_restart_sweeps_stale_tmp_files_only(start_server, tmp_path):
    root = tmp_path / "mail"
    srv = start_server("-u", "alice:pw", root=root)
    assert srv.stop() == 0
    now = time.time()
    planted = {}
    for user in ("postmaster", "alice"):
        for name, age_h in (("stale", 37), ("borderline", 35), ("fresh", 0)):
            p = root / user / "tmp" / ("%d.M1P1Q1.host.%s" % (now, name))
            p.write_bytes(b"partial message")
            os.utime(p, (now - age_h * 3600, now - age_h * 3600))
            planted[p] = age_h > 36
    srv = start_server("-u", "alice:pw", root=root)
    for p, stale in planted.items():
        assert p.exists() != stale, (p.name, stale)
    assert "stale" in srv.log_text()
    c = Client(srv.port)
    c.greet()
    assert c.cmd("QUIT").startswith("221")
    c.close()
