"""The write-ahead journal (docs/design.md, "Durability";
docs/reliability.md): a 250 is durable once the message's record is
synced in ROOT/.journal/<host>.<n>, and a restart after a crash writes
again every acknowledged file that is missing, short or different.

A power cut cannot be made here, so it is imitated: the server is killed
with SIGKILL, a copy of every stored file is kept, and then the files are
damaged the way a lost page cache would leave them (gone, cut short, a
reader's rename into cur/ half done) before the server starts again on the
same root. The journal is read by a small parser of its own below (the
layout is in include/maildir_journal_record.h), to find the records to
tear and to prove which messages are in it.
"""
import hashlib
import hmac
import os
import pathlib
import random
import re
import struct
import subprocess
import threading
import time

import pytest

from conftest import (SMTPD_BIN, Client, free_port, greeted, queue_id,
                      send_mail, strip_trace, wait_for)
from test_faults import shim, shim_env  # noqa: F401  (shim: a fixture)

SLOT_SIZE = 4096
DATA_START = 8192
REC_HEADER = 96
STEP = 4 << 20
T_MESSAGE, T_WRAP = 1, 2
REPLAY_RE = re.compile(
    r"journal (\S+)/\.journal/(\S+): (\d+) records after the checkpoint, "
    r"(\d+) files written again, (\d+) to mailboxes that are gone")


# ---- the journal, read back ------------------------------------------------

def read_slot(data, at):
    """(generation, tail_off, tail_seq, key) of the slot at `at`, or None
    when its magic or checksum is wrong."""
    raw = data[at:at + 96]
    if len(raw) < 96 or raw[:8] != b"SMTPDJH1":
        return None
    if hashlib.sha256(raw[:64]).digest() != raw[64:96]:
        return None
    gen, off, seq = struct.unpack_from("<QQQ", raw, 8)
    if off < DATA_START or off > len(data) or off % 8:
        return None
    return gen, off, seq, raw[32:64]


def rec_size(names_len, body_len):
    return (REC_HEADER + names_len + body_len + 7) & ~7


def parse_journal(path):
    """The records after the last checkpoint, as replay would walk them:
    a list of dicts (off, seq, type, names, body_off, body_len, size)."""
    data = pathlib.Path(path).read_bytes()
    slots = [s for s in (read_slot(data, 0), read_slot(data, SLOT_SIZE)) if s]
    assert slots, "no valid header slot in %s" % path
    _, off, seq, key = max(slots)
    records = []
    for _ in range(len(data) // REC_HEADER + 2):
        if off + REC_HEADER > len(data):
            off = DATA_START
            continue
        hdr = data[off:off + REC_HEADER]
        if hdr[:8] != b"SMTPDJR1":
            break
        rtype, names_len = struct.unpack_from("<II", hdr, 8)
        rseq, body_len = struct.unpack_from("<QQ", hdr, 16)
        if rseq != seq or rtype not in (T_MESSAGE, T_WRAP):
            break
        names = data[off + REC_HEADER:off + REC_HEADER + names_len]
        if hmac.new(key, hdr[:64] + names, hashlib.sha256).digest() != hdr[64:96]:
            break
        if rtype == T_WRAP:
            off, seq = DATA_START, seq + 1
            continue
        body_off = off + REC_HEADER + names_len
        body = data[body_off:body_off + body_len]
        if len(body) != body_len or hashlib.sha256(body).digest() != hdr[32:64]:
            break
        parts = names.split(b"\0")[:-1]
        records.append({"off": off, "seq": rseq, "type": rtype,
                        "file": parts[0].decode(),
                        "boxes": [p.decode() for p in parts[1:]],
                        "body_off": body_off, "body_len": body_len,
                        "size": rec_size(names_len, body_len)})
        off, seq = off + rec_size(names_len, body_len), seq + 1
    return records


def host_name():
    """The host as `hostname` gives it, escaped as Maildir names carry it."""
    raw = subprocess.run(["hostname"], capture_output=True, text=True,
                         check=True, timeout=10).stdout.strip()
    return raw.replace("/", "\\057").replace(":", "\\072")


def journal_path(srv, n=0):
    return srv.root / ".journal" / ("%s.%d" % (host_name(), n))


def replay_lines(srv):
    """(file, records, written, gone) of each replay line in srv's log."""
    return [(m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)))
            for m in REPLAY_RE.finditer(srv.log_text())]


# ---- mail ------------------------------------------------------------------

def make_body(token, size):
    """A message of about size bytes whose last line is its token; no line
    starts with a dot, so what is sent is what is stored after the trace."""
    line = b"y" * 76 + b"\r\n"
    return (b"Subject: %s\r\n\r\n" % token + line * (size // len(line))
            + b"TOKEN " + token + b"\r\n")


def deliver(port, rcpts, body):
    """One message on a fresh connection: its queue ID (fails if no 250)."""
    c = Client(port, timeout=30)
    try:
        c.greet()
        qid = queue_id(send_mail(c, "j@test.example",
                                 ["%s@localhost" % r for r in rcpts], body))
        assert c.cmd("QUIT").startswith("221")
        return qid
    finally:
        c.close()


def boxes_files(root, box):
    """Every file of box's new/ and cur/ (paths)."""
    return [p for sub in ("new", "cur") if (root / box / sub).exists()
            for p in sorted((root / box / sub).iterdir())]


def unique(name):
    """The unique part of a Maildir name: what comes before ':2,'."""
    return name.split(":2,", 1)[0]


def files_of(root, box, qid):
    return [p for p in boxes_files(root, box) if ".%s." % qid in unique(p.name)]


def all_tmp(root):
    return sorted(root.glob("*/tmp/*"))


def stored_tokens(root, subs=("new", "cur", "tmp")):
    """token -> number of files carrying it, over every new/, cur/, tmp/."""
    found = {}
    for p in (p for sub in subs for p in root.glob("*/%s/*" % sub)):
        m = re.search(rb"\r\nTOKEN (\S+)\r\n\Z", p.read_bytes())
        if m:
            found[m.group(1)] = found.get(m.group(1), 0) + 1
    return found


def kill9(srv):
    srv.proc.kill()
    srv.proc.wait(timeout=10)


def snapshot(root, acked):
    """(qid, box) -> (path, bytes) of every acknowledged copy, right after
    the kill; each is there once, and is the trace plus what was sent."""
    saved = {}
    for qid, rcpts, body in acked:
        for box in rcpts:
            files = files_of(root, box, qid)
            assert len(files) == 1, (qid, box, files)
            data = files[0].read_bytes()
            assert strip_trace(data) == body, (qid, box)
            assert files[0].name.endswith(",S=%d" % len(data)), files[0].name
            saved[(qid, box)] = (files[0], data)
    return saved


def check_restored(root, saved, boxes, tmp=()):
    """Each saved copy is there once, by its unique name, byte for byte;
    nothing else in any new/ or cur/ of boxes; nothing in tmp/ (but the
    files listed in tmp)."""
    for (qid, box), (path, data) in saved.items():
        files = files_of(root, box, qid)
        assert len(files) == 1, (qid, box, files)
        assert unique(files[0].name) == unique(path.name)
        assert files[0].read_bytes() == data, (qid, box, files[0])
    for box in boxes:
        want = sum(1 for (_, b) in saved if b == box)
        assert len(boxes_files(root, box)) == want, box
    assert all_tmp(root) == sorted(tmp)


USERS = ("-u", "alice:pw", "-u", "bob:pw", "-u", "carol:pw")
BOXES = ("postmaster", "alice", "bob", "carol")


# ---- a power cut -----------------------------------------------------------

def load(port, n_clients, per_client, seed):
    """n_clients at once, per_client messages each, to one or more boxes,
    a few of 100 KB: [(qid, rcpts, body)] of every 250."""
    rcpt_sets = [("alice",), ("bob",), ("alice", "bob", "carol"),
                 ("postmaster", "carol"), ("carol",)]
    acked, errors = [], []

    def client(n):
        rng = random.Random("%s-%d" % (seed, n))
        try:
            c = Client(port, timeout=30)
            c.greet()
            for k in range(per_client):
                rcpts = rcpt_sets[(n + k) % len(rcpt_sets)]
                size = 100000 if (n * per_client + k) % 7 == 3 \
                    else rng.choice([50, 700, 3000])
                body = make_body(b"c%dm%d-%08x" % (n, k, rng.getrandbits(32)),
                                 size)
                line = send_mail(c, "load@test.example",
                                 ["%s@localhost" % r for r in rcpts], body)
                acked.append((queue_id(line), rcpts, body))
            c.close()
        except Exception as e:      # noqa: BLE001  reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,), daemon=True)
               for n in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    return acked


def test_power_cut_restores_every_acknowledged_file_once(start_server,
                                                         tmp_path):
    root = tmp_path / "mail"
    srv = start_server(*USERS, "--checkpoint", "3600", root=root)
    acked = load(srv.port, 6, 6, "power")
    big = [a for a in acked if len(a[2]) > 90000]
    assert len(acked) == 36 and len(big) >= 4
    # one client is in the middle of its DATA when the power goes
    mid = Client(srv.port)
    mid.greet()
    assert mid.cmd("MAIL FROM:<mid@test.example>").startswith("250")
    assert mid.cmd("RCPT TO:<alice@localhost>").startswith("250")
    assert mid.cmd("DATA").startswith("354")
    mid.send(b"Subject: half\r\n\r\n" + b"z" * 5000 + b"\r\nTOKEN half-sent\r\n")
    spool = root / "alice" / "tmp"
    assert wait_for(lambda: len(list(spool.iterdir())) == 1)
    kill9(srv)
    mid.close()
    # its spool file stays in tmp/ until it is 36 hours old, like any
    # other a crash leaves (test_crash.py)
    (half,) = all_tmp(root)
    saved = snapshot(root, acked)
    assert len(parse_journal(journal_path(srv))) == len(acked)

    # what a lost page cache leaves: names gone, files cut short, a
    # reader's rename into cur/ that kept a short file, one that is whole
    # (the copies of a message are hard links: cutting one cuts them all,
    # so each file damaged here is a different inode)
    rng = random.Random(24)
    keys = sorted(saved)
    rng.shuffle(keys)
    keys.sort(key=lambda k: len(saved[k][1]) < 90000)   # big ones first
    inode = {k: saved[k][0].stat().st_ino for k in keys}
    keys = [k for i, k in enumerate(keys)
            if inode[k] not in {inode[o] for o in keys[:i]}]
    deleted, truncated = keys[:4], keys[4:8]
    cur_short, cur_whole = keys[8], keys[9]
    for k in deleted:
        saved[k][0].unlink()
    for i, k in enumerate(truncated):
        path, data = saved[k]
        os.truncate(path, 0 if i == 0 else len(data) // 2)
    path, data = saved[cur_short]
    short = root / cur_short[1] / "cur" / (path.name + ":2,S")
    path.rename(short)
    os.truncate(short, len(data) - 1)
    path, data = saved[cur_whole]
    whole = root / cur_whole[1] / "cur" / (path.name + ":2,RS")
    path.rename(whole)

    cut = {inode[k] for k in truncated + [cur_short]}
    written = len(deleted) + sum(1 for k in saved if inode[k] in cut)

    srv2 = start_server(*USERS, "--checkpoint", "3600", root=root)
    assert replay_lines(srv2) == [(journal_path(srv).name, len(acked),
                                   written, 0)]
    check_restored(root, saved, BOXES, tmp=[half])
    assert whole.read_bytes() == saved[cur_whole][1]     # left where it was
    assert not short.exists()
    assert saved[cur_short][0].read_bytes() == saved[cur_short][1]
    assert b"half-sent" not in stored_tokens(root, ("new", "cur"))

    # replayed once: a file deleted now stays deleted
    kill9(srv2)
    gone = saved[deleted[0]][0]
    gone.unlink()
    srv3 = start_server(*USERS, "--checkpoint", "3600", root=root)
    assert replay_lines(srv3) == []
    assert not gone.exists()
    assert files_of(root, deleted[0][1], deleted[0][0]) == []
    assert parse_journal(journal_path(srv)) == []
    # and the root still takes mail
    deliver(srv3.port, ("alice",), make_body(b"after", 100))


# ---- a torn or corrupt last record ------------------------------------------

@pytest.mark.parametrize("damage", ["body", "names", "cut"])
def test_torn_last_record_is_ignored(start_server, tmp_path, damage):
    root = tmp_path / "mail"
    srv = start_server(*USERS, "--checkpoint", "3600", root=root)
    acked = []
    for k in range(6):
        rcpts = ("alice",) if k % 2 else ("bob", "carol")
        body = make_body(b"torn%d" % k, 2000 + 1000 * k)
        acked.append((deliver(srv.port, rcpts, body), rcpts, body))
    kill9(srv)
    saved = snapshot(root, acked)
    jpath = journal_path(srv)
    records = parse_journal(jpath)
    assert [r["file"] for r in records] == [
        saved[(q, r[0])][0].name for q, r, _ in acked]
    last = records[-1]
    assert last["boxes"] == ["alice"]
    if damage == "body":            # a byte of the message changed
        with open(jpath, "r+b") as f:
            f.seek(last["body_off"] + last["body_len"] // 2)
            f.write(b"\xff\x00")
    elif damage == "names":         # the record's own checksum fails
        with open(jpath, "r+b") as f:
            f.seek(last["off"] + REC_HEADER + 3)
            f.write(b"#")
    else:                           # the file ends in the middle of it
        os.truncate(jpath, last["body_off"] + last["body_len"] // 3)
    assert len(parse_journal(jpath)) == len(records) - 1
    for path, _ in saved.values():
        path.unlink()

    srv2 = start_server(*USERS, "--checkpoint", "3600", root=root)
    copies = sum(len(r) for _, r, _ in acked[:-1])
    assert replay_lines(srv2) == [(jpath.name, len(acked) - 1, copies, 0)]
    lost_qid = acked[-1][0]
    del saved[(lost_qid, "alice")]
    check_restored(root, saved, BOXES)
    assert files_of(root, "alice", lost_qid) == []
    # the journal serves on after it
    qid = deliver(srv2.port, ("alice",), make_body(b"next", 100))
    assert len(files_of(root, "alice", qid)) == 1


# ---- the journal's sync failing ---------------------------------------------

def test_journal_sync_failing_once_gives_451_and_is_never_replayed(
        start_server, shim, tmp_path):   # noqa: F811
    """The journal's fdatasync fails once: that batch's messages get 451
    and leave nothing; their records must never be replayed, not even
    when the next batch, of the same sizes, is written over the same
    place and a crash follows."""
    root = tmp_path / "mail"
    arm = tmp_path / "arm"
    env = shim_env(shim, root, arm, FAULT_LOG=tmp_path / "faults.log",
                   FAULT_FSYNC=1, FAULT_FSYNC_MATCH="/.journal/",
                   FAULT_FSYNC_ONCE=1)
    srv = start_server(*USERS, "--checkpoint", "3600", "--journal-size", "8M",
                       root=root, env=env)
    rcpts = ("alice", "bob")
    good = []
    body = make_body(b"first", 3000)
    good.append((deliver(srv.port, rcpts, body), rcpts, body))
    # eight messages of one size, their final dots sent while the committer
    # syncs a message too big for the journal (its own fsyncs do not
    # fail): they wait, and go into one batch, the one that fails
    big = make_body(b"big", 2500 * 1000)
    bodies = [make_body(b"batch%d" % i, 3000) for i in range(8)]
    clients = [Client(srv.port, timeout=30) for _ in range(9)]
    for c, b in zip(clients, [big] + bodies):
        c.greet()
        assert c.cmd("MAIL FROM:<f@test.example>").startswith("250")
        for box in rcpts:
            assert c.cmd("RCPT TO:<%s@localhost>" % box).startswith("250")
        assert c.cmd("DATA").startswith("354")
        c.send(b[:-2])
    arm.write_text("on")
    for c in clients:
        c.send(b"\r\n.\r\n")
    replies = [c.reply_line() for c in clients]
    arm.unlink()
    good.append((queue_id(replies[0]), rcpts, big))
    replies = replies[1:]
    failed = [i for i, r in enumerate(replies) if r.startswith("451 4.3.0")]
    assert failed, replies
    for i, r in enumerate(replies):
        if i not in failed:
            good.append((queue_id(r), rcpts, bodies[i]))
    tokens = stored_tokens(root)
    for i in failed:
        assert b"batch%d" % i not in tokens, (i, replies)
    assert all_tmp(root) == []
    assert "fdatasync: Input/output error" in srv.log_text()
    faults = (tmp_path / "faults.log").read_text().splitlines()
    assert [ln.split()[0] for ln in faults] == ["fdatasync"]
    # the next message is durable again; of the same size, its record lies
    # where the failed batch's first one was
    body = make_body(b"after", 3000)
    good.append((queue_id(send_mail(clients[1], "f@test.example",
                                    ["%s@localhost" % r for r in rcpts],
                                    body)), rcpts, body))
    for c in clients:
        c.close()
    kill9(srv)
    saved = snapshot(root, good)
    for (qid, _), (path, data) in saved.items():
        if qid != good[1][0]:   # the big one was synced by itself
            path.unlink()

    srv2 = start_server(*USERS, "--checkpoint", "3600", root=root)
    tokens = stored_tokens(root)
    for i in failed:
        assert b"batch%d" % i not in tokens, (i, replies)
    assert replay_lines(srv2) == [(journal_path(srv).name, len(good) - 1,
                                   2 * (len(good) - 1), 0)]
    check_restored(root, saved, BOXES)


# ---- files and flags ---------------------------------------------------------

def test_journal_file_mode_name_and_size(start_server, connect, tmp_path):
    root = tmp_path / "mail"
    srv = start_server("--checkpoint", "3600", root=root)
    c = greeted(connect, srv)
    assert c.cmd("NOOP").startswith("250")
    assert not (root / ".journal").exists()     # not before the first message
    qid = queue_id(send_mail(c, "a@test.example", ["postmaster@localhost"],
                             make_body(b"one", 500)))
    jdir = root / ".journal"
    assert (jdir.stat().st_mode & 0o7777) == 0o700
    files = sorted(p.name for p in jdir.iterdir())
    assert files == ["%s.0" % host_name()]
    jfile = jdir / files[0]
    assert (jfile.stat().st_mode & 0o7777) == 0o600
    assert jfile.stat().st_size == STEP
    # the host in the journal's name is the one in the Maildir file names
    (stored,) = files_of(root, "postmaster", qid)
    after_id = stored.name.split(".%s." % qid, 1)[1]
    assert after_id.rsplit(",S=", 1)[0] == host_name()
    assert [r["file"] for r in parse_journal(jfile)] == [stored.name]

    # .journal is never a mailbox
    assert c.cmd("MAIL FROM:<a@test.example>").startswith("250")
    # (a name with a leading dot is no mailbox's: it is refused as such,
    # whether or not a directory of that name exists)
    for form in ('".journal"', ".journal"):
        line = c.cmd("RCPT TO:<%s@localhost>" % form)
        assert line[:1] == "5", line
        assert line == c.cmd("RCPT TO:<%s@localhost>"
                             % form.replace("journal", "nothing"))
    assert c.cmd("RCPT TO:<nobody@localhost>") == "550 5.1.1 No such user here"
    line = c.cmd('VRFY ".journal"')
    assert line[:1] == "5" and line == c.cmd('VRFY ".nothing"'), line
    assert c.cmd("RSET").startswith("250")
    assert c.cmd("QUIT").startswith("221")
    assert sorted(p.name for p in root.iterdir()) == [".journal", "postmaster"]


def test_no_journal_never_makes_one(start_server, tmp_path):
    root = tmp_path / "mail"
    srv = start_server("-u", "alice:pw", "--no-journal", root=root)
    for k in range(3):
        deliver(srv.port, ("alice", "postmaster"), make_body(b"nj%d" % k, 800))
    assert len(srv.new_files("alice")) == 3
    assert srv.stop() == 0
    assert not (root / ".journal").exists()


@pytest.mark.parametrize("args", [["--checkpoint", "0"],
                                  ["--checkpoint", "3601"],
                                  ["--checkpoint", "x"],
                                  ["--journal-size", "1M"],
                                  ["--journal-size", "x"]])
def test_bad_journal_flags_exit_2(tmp_path, args):
    root = tmp_path / "mail"
    p = subprocess.run([SMTPD_BIN, "-s", str(free_port()), "-f", str(root)]
                       + args, capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2
    err = p.stderr.decode()
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert args[0] in err and repr(args[1]) in err.replace('"', "'"), err
    assert not root.exists()


def test_help_lists_the_journal_flags():
    p = subprocess.run([SMTPD_BIN, "-h"], capture_output=True, timeout=30)
    text = (p.stdout + p.stderr).decode()
    assert p.returncode == 0
    for flag in ("--no-journal", "--checkpoint SECONDS",
                 "--journal-size BYTES"):
        assert flag in text, flag


# ---- two instances on one root ------------------------------------------------

def test_second_instance_has_its_own_journal_and_a_third_replays_the_first(
        start_server, tmp_path):
    root = tmp_path / "mail"
    a = start_server(*USERS, "--checkpoint", "3600", root=root)
    qa = deliver(a.port, ("alice", "bob"), make_body(b"from-a", 1500))
    b = start_server(*USERS, "--checkpoint", "3600", root=root)
    qb = deliver(b.port, ("alice",), make_body(b"from-b", 1500))
    host = host_name()
    assert sorted(p.name for p in (root / ".journal").iterdir()) == [
        host + ".0", host + ".1"]
    assert [r["file"] for r in parse_journal(journal_path(a, 0))] == [
        files_of(root, "alice", qa)[0].name]
    assert [r["file"] for r in parse_journal(journal_path(a, 1))] == [
        files_of(root, "alice", qb)[0].name]

    kill9(a)
    (lost,) = files_of(root, "bob", qa)
    data = lost.read_bytes()
    os.truncate(lost, 10)       # alice's copy is the same inode: cut too
    c = start_server(*USERS, "--checkpoint", "3600", root=root)
    assert replay_lines(c) == [(host + ".0", 1, 2, 0)]
    assert "journal %s/.journal/%s.1: in use by a running instance" % (
        os.path.realpath(root), host) in c.log_text()
    assert lost.read_bytes() == data
    assert files_of(root, "alice", qa)[0].read_bytes() == data
    # b was not disturbed, and c takes the journal a left
    qb2 = deliver(b.port, ("carol",), make_body(b"b-again", 700))
    assert len(files_of(root, "carol", qb2)) == 1
    qc = deliver(c.port, ("carol",), make_body(b"from-c", 700))
    assert [r["file"] for r in parse_journal(journal_path(a, 0))] == [
        files_of(root, "carol", qc)[0].name]
    assert [r["file"] for r in parse_journal(journal_path(a, 1))] == [
        files_of(root, "alice", qb)[0].name,
        files_of(root, "carol", qb2)[0].name]


# ---- a clean stop ---------------------------------------------------------------

def test_clean_stop_leaves_nothing_to_replay(start_server, tmp_path):
    root = tmp_path / "mail"
    srv = start_server(*USERS, "--checkpoint", "3600", root=root)
    qids = [deliver(srv.port, ("alice",), make_body(b"clean%d" % k, 900))
            for k in range(3)]
    assert len(parse_journal(journal_path(srv))) == 3
    assert srv.stop() == 0
    assert parse_journal(journal_path(srv)) == []
    (gone,) = files_of(root, "alice", qids[1])
    gone.unlink()
    srv2 = start_server(*USERS, "--checkpoint", "3600", root=root)
    assert "records after the checkpoint" not in srv2.log_text()
    assert "/.journal/" not in srv2.log_text()
    assert files_of(root, "alice", qids[1]) == []
    assert len(srv2.new_files("alice")) == 2


# ---- a message too big for the journal -------------------------------------------

def test_big_message_is_synced_by_itself_and_survives_kill_9(start_server,
                                                             tmp_path):
    root = tmp_path / "mail"
    srv = start_server(*USERS, "--checkpoint", "3600", "--journal-size", "8M",
                       "-z", "10485760", root=root)
    small = make_body(b"small-one", 600)
    big = make_body(b"big-one", 3 * 1000 * 1000)
    acked = [(deliver(srv.port, ("alice",), small), ("alice",), small),
             (deliver(srv.port, ("alice", "bob"), big), ("alice", "bob"), big)]
    jpath = journal_path(srv)
    records = parse_journal(jpath)
    assert [r["file"] for r in records] == [
        files_of(root, "alice", acked[0][0])[0].name]
    assert b"TOKEN big-one" not in jpath.read_bytes()
    assert jpath.stat().st_size == STEP
    kill9(srv)
    saved = snapshot(root, acked)
    srv2 = start_server(*USERS, "--checkpoint", "3600", root=root)
    assert replay_lines(srv2) == [(jpath.name, 1, 0, 0)]
    check_restored(root, saved, BOXES)


# ---- the checkpoint next to a busy disk --------------------------------------

def dirty_writer(path, stop):
    """Keeps 96 MiB of a file unwritten until stop is set: written once,
    then overwritten in place, never synced, so whatever another program
    flushes is dirty again a moment later."""
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        while not stop.is_set():
            f.seek(0)
            for _ in range(96):
                f.write(chunk)
            f.flush()


def deliver_next_to_writer(srv, neighbour, done, limit=600):
    """Delivers to alice and bob (moving the first message into cur/, as
    a reader would) while dirty_writer runs, until done(metrics) holds
    or limit messages went; their tokens."""
    from test_metrics import scrape
    stop = threading.Event()
    writer = threading.Thread(target=dirty_writer, args=(neighbour, stop))
    writer.start()
    tokens = []
    try:
        for k in range(limit):
            token = b"busy%d" % k
            deliver(srv.port, ("alice", "bob"), make_body(token, 700))
            tokens.append(token)
            if k == 0:
                (first,) = (srv.root / "alice" / "new").iterdir()
                first.rename(srv.root / "alice" / "cur" / (first.name + ":2,S"))
            if done(scrape(srv)):
                break
            time.sleep(0.1)
    finally:
        stop.set()
        writer.join(timeout=60)
    return tokens


def check_after_kill(start_server, srv, tokens):
    """The checkpoint freed every record; after kill -9 and a restart
    nothing is written again and each message is in both mailboxes."""
    assert wait_for(lambda: parse_journal(journal_path(srv)) == [], 30)
    kill9(srv)
    srv2 = start_server(*USERS, root=srv.root)
    assert all(written == 0 for _, _, written, _ in replay_lines(srv2))
    found = stored_tokens(srv.root, ("new", "cur"))
    assert {t: found.get(t) for t in tokens} == {t: 2 for t in tokens}
    assert all_tmp(srv.root) == []


def test_checkpoint_goes_file_by_file_next_to_a_busy_writer(start_server,
                                                            tmp_path):
    """With much of someone else's data unwritten, syncfs would wait for
    all of it: the checkpoint syncs the journalled files through the
    descriptors it kept instead (one of them moved into cur/ by a reader
    meanwhile), then frees their records like any checkpoint."""
    from test_metrics import metrics_server, scrape
    srv = metrics_server(start_server, *USERS, "--checkpoint", "1",
                         root=tmp_path / "mail")
    by_file = "smtpd_journal_checkpoints_by_file_total"
    tokens = deliver_next_to_writer(srv, tmp_path / "neighbour",
                                    lambda m: m[by_file] >= 1)
    values = scrape(srv)
    assert values[by_file] >= 1, values
    assert values["smtpd_journal_checkpoints_total"] >= values[by_file]
    check_after_kill(start_server, srv, tokens)


def test_checkpoint_by_file_failing_syncs_the_filesystem(start_server, shim,
                                                         tmp_path):  # noqa: F811
    """A mailbox directory's fsync fails during a file-by-file checkpoint:
    that checkpoint syncs the whole filesystem instead, and still frees
    the records."""
    from test_metrics import metrics_server
    root, arm = tmp_path / "mail", tmp_path / "arm"
    env = shim_env(shim, root, arm, FAULT_LOG=tmp_path / "faults.log",
                   FAULT_FSYNC_DIR=1, FAULT_FSYNC_MATCH="/alice/new",
                   FAULT_FSYNC_ONCE=1)
    srv = metrics_server(start_server, *USERS, "--checkpoint", "1",
                         root=root, env=env)
    arm.write_text("on")
    faults = tmp_path / "faults.log"
    tokens = deliver_next_to_writer(srv, tmp_path / "neighbour",
                                    lambda m: faults.exists())
    assert [ln.split()[0] for ln in faults.read_text().splitlines()] == [
        "fsync"]
    assert wait_for(lambda: "checkpoint file by file: Input/output error "
                    "(syncing the filesystem instead)" in srv.log_text())
    check_after_kill(start_server, srv, tokens)
