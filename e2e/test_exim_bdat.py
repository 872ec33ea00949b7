"""A real sender that speaks BDAT: Exim's SMTP transport sends every
message in chunks when the server offers CHUNKING (its hosts_try_chunking
is `*` by default). Exim cannot be installed next to Postfix, so
e2e/deps.sh unpacks its Debian package into a directory of its own
(SMTPD_TEST_EXIM, default /var/cache/smtpd-test/exim) and the test runs
that binary with its own configuration, spool and log, no daemon:
`exim4 -C CONF -odf -i RCPT...` takes the message on standard input and
delivers it in the foreground to smtpd, through a relay on loopback that
keeps every byte Exim sends.

What Exim 4.96 does: a short message goes in one `BDAT n LAST`; when the
body does not fit its output buffer (a few KB), the header goes in one
chunk and the whole body in a second, `LAST`, one."""
import os
import pathlib
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from conftest import free_port

EXIM_DIR = pathlib.Path(os.environ.get("SMTPD_TEST_EXIM",
                                       "/var/cache/smtpd-test/exim"))
EXIM = EXIM_DIR / "usr" / "sbin" / "exim4"
SENDER = "exim@exim.invalid"

CONFIG = """\
exim_path = {exim}
keep_environment =
spool_directory = {top}/spool
log_file_path = {top}/log/%slog
primary_hostname = exim.invalid
qualify_domain = exim.invalid

begin routers
to_smtpd:
  driver = manualroute
  route_list = * 127.0.0.1::{port}
  self = send
  transport = smtpd_bdat

begin transports
smtpd_bdat:
  driver = smtp
  hosts_try_chunking = *
  hosts_avoid_tls = *
  allow_localhost
"""


class Recorder:
    """A relay on 127.0.0.1 in front of smtpd: passes every connection
    through and keeps what the client sent on each."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.2)
        self.sent = []          # one bytearray per connection
        self.sockets = []
        self.pumps = []
        self.stopping = threading.Event()
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            server = socket.create_connection(("127.0.0.1", self.target),
                                              timeout=60)
            client.settimeout(60)
            self.sockets += [client, server]
            kept = bytearray()
            self.sent.append(kept)
            for src, dst, keep in ((client, server, kept),
                                   (server, client, None)):
                t = threading.Thread(target=self._pump,
                                     args=(src, dst, keep), daemon=True)
                t.start()
                self.pumps.append(t)

    @staticmethod
    def _pump(src, dst, keep):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if keep is not None:
                    keep += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        """Waits until every connection has ended (bounded by the sockets'
        timeouts), then closes everything."""
        self.stopping.set()
        self.acceptor.join(timeout=10)
        for t in self.pumps:
            t.join(timeout=120)
        for s in self.sockets:
            s.close()
        self.listener.close()


def split_commands(stream):
    """What the client sent, read as the server reads it: (command lines,
    [(size, last, octets)] of each BDAT chunk)."""
    commands, chunks, pos = [], [], 0
    while pos < len(stream):
        end = stream.index(b"\r\n", pos)
        line = bytes(stream[pos:end])
        pos = end + 2
        commands.append(line)
        m = re.fullmatch(rb"BDAT (\d+)( LAST)?", line)
        if m:
            size = int(m.group(1))
            chunks.append((size, m.group(2) is not None,
                           bytes(stream[pos:pos + size])))
            pos += size
    return commands, chunks


@pytest.fixture
def exim():
    """A function send(port, rcpts, message) -> (recorded client bytes
    per connection, Exim's -v transcript, Exim's main log)."""
    if not os.access(EXIM, os.X_OK):
        pytest.fail("no Exim in %s: run e2e/deps.sh as root" % EXIM_DIR)
    try:
        pwd.getpwnam("Debian-exim")
    except KeyError:
        pytest.fail("user Debian-exim missing (Exim will not start without "
                    "it): run e2e/deps.sh as root")
    if os.geteuid() != 0:
        pytest.skip("Exim writes its spool as Debian-exim: it needs root")
    # Exim's own user must reach its spool: pytest's directories are 0700
    top = pathlib.Path(tempfile.mkdtemp(prefix="smtpd-exim-"))
    top.chmod(0o755)
    for sub in ("spool", "log"):
        (top / sub).mkdir()
        shutil.chown(top / sub, "Debian-exim", "Debian-exim")
    relays = []

    def send(port, rcpts, message):
        relay = Recorder(port)
        relays.append(relay)
        conf = top / ("exim%d.conf" % len(relays))
        conf.write_text(CONFIG.format(exim=EXIM, top=top, port=relay.port))
        r = subprocess.run([str(EXIM), "-C", str(conf), "-odf", "-i", "-v",
                            "-f", SENDER] + rcpts,
                           input=message, capture_output=True, timeout=120)
        relay.close()
        mainlog = (top / "log" / "mainlog").read_text(errors="replace")
        transcript = r.stdout.decode(errors="replace") + \
            r.stderr.decode(errors="replace")
        assert r.returncode == 0, transcript + mainlog
        return relay.sent, transcript, mainlog

    try:
        yield send
    finally:
        for relay in relays:
            relay.close()
        shutil.rmtree(top, ignore_errors=True)


def delivered(srv, sent, transcript, mainlog, rcpts):
    """Checks one Exim delivery: BDAT on the wire (no DATA), as Exim's
    transcript and smtpd's log say too; each recipient's file is what the
    chunks carried, after smtpd's Return-Path and Received lines. Returns
    the chunks."""
    assert len(sent) == 1, transcript
    commands, chunks = split_commands(sent[0])
    assert b"DATA" not in commands, commands
    assert chunks and chunks[-1][1] and not any(c[1] for c in chunks[:-1])
    assert all(len(c[2]) == c[0] for c in chunks)
    for size, last, _ in chunks:
        line = "SMTP+> BDAT %d%s" % (size, " LAST" if last else "")
        assert line in transcript, transcript
    message = b"".join(c[2] for c in chunks)
    m = re.search(r'=> \S+ R=to_smtpd T=smtpd_bdat H=127\.0\.0\.1 '
                  r'\[127\.0\.0\.1\] K C="250 2\.0\.0 Ok: queued as (\S+)"',
                  mainlog)
    assert m, mainlog          # K: Exim's mark for a message sent by BDAT
    msg_id = m.group(1)
    assert mainlog.count("queued as %s" % msg_id) == len(rcpts), mainlog
    log = srv.log_text()
    assert "message %s comes in BDAT chunks" % msg_id in log, log
    for rcpt in rcpts:
        box = rcpt.split("@")[0]
        files = srv.wait_new(box)
        assert len(files) == 1, (box, files)
        assert msg_id in files[0].name
        data = files[0].read_bytes()
        head = data[:len(data) - len(message)]
        assert data[len(head):] == message
        assert re.fullmatch(
            rb"Return-Path: <exim@exim\.invalid>\r\n"
            rb"Received: from exim\.invalid \(\[127\.0\.0\.1\]\) by localhost"
            rb" with ESMTP id " + msg_id.encode() + rb"[^\r\n]*\r\n", head), \
            head
    return message, chunks


def body_lines(count):
    """Lines that DATA would have dot-stuffed: BDAT sends them as they are."""
    lines = [b".", b"..", b".leading dot", b""]
    lines += [b".line %06d " % i + b"x" * 50 for i in range(count)]
    return lines


def test_exim_sends_small_message_in_one_bdat_last(start_server, exim):
    srv = start_server("-u", "bob:secret")
    body = b"\n".join(body_lines(3)) + b"\n"
    sent, transcript, mainlog = exim(
        srv.port, ["bob@localhost"], b"Subject: by exim\n\n" + body)
    assert "250-CHUNKING" in transcript
    message, chunks = delivered(srv, sent, transcript, mainlog,
                                ["bob@localhost"])
    assert len(chunks) == 1, chunks
    # Exim sends its lines with CR LF; the body arrives as it was written
    assert message.endswith(b"\r\n\r\n" + body.replace(b"\n", b"\r\n"))
    assert b"\r\nSubject: by exim\r\n" in message
    assert re.search(rb"Received: from \S+ by exim\.invalid with local "
                     rb"\(Exim [0-9.]+\)", message), message[:500]


def test_exim_sends_a_megabyte_in_chunks(start_server, exim):
    srv = start_server("-u", "bob:secret")
    body = b"\r\n".join(body_lines(16000)) + b"\r\n"
    assert len(body) > 1000000
    sent, transcript, mainlog = exim(
        srv.port, ["bob@localhost"],
        b"Subject: a megabyte\n\n" + body.replace(b"\r\n", b"\n"))
    message, chunks = delivered(srv, sent, transcript, mainlog,
                                ["bob@localhost"])
    # Exim 4.96: the header in one chunk, the body in the LAST one
    assert len(chunks) >= 2, [(c[0], c[1]) for c in chunks]
    assert message.endswith(b"\r\n\r\n" + body)


def test_exim_two_recipients_one_transaction(start_server, exim):
    srv = start_server("-u", "bob:secret", "-u", "alice:secret")
    body = b"\n".join(body_lines(2000)) + b"\n"
    rcpts = ["bob@localhost", "alice@localhost"]
    sent, transcript, mainlog = exim(
        srv.port, rcpts, b"Subject: to two\n\n" + body)
    commands, _ = split_commands(sent[0])
    assert [c for c in commands if c.startswith(b"RCPT")] == [
        b"RCPT TO:<bob@localhost>", b"RCPT TO:<alice@localhost>"]
    assert len([c for c in commands if c.startswith(b"MAIL")]) == 1
    message, chunks = delivered(srv, sent, transcript, mainlog, rcpts)
    assert len(chunks) >= 2, [(c[0], c[1]) for c in chunks]
    assert message.endswith(b"\r\n\r\n" + body.replace(b"\n", b"\r\n"))
