"""Memory checker (docs/reliability.md): one short but varied session with
the server running under valgrind memcheck; any memory error or definite
leak makes valgrind exit 99 instead of the server's 0.  The larger runs
(a representative part of the suite under valgrind) are described in
docs/reliability.md.
"""
import shutil

import pytest

import conftest
from conftest import SANITIZED, b64, greeted, queue_id, send_mail

VALGRIND = ["valgrind", "-q", "--leak-check=full", "--error-exitcode=99",
            "--errors-for-leak-kinds=definite"]


@pytest.fixture
def valgrind_bin(tmp_path, monkeypatch):
    """SMTPD_BIN takes no arguments: a wrapper script runs it under
    valgrind; the fixture's Server picks it up from conftest."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    if SANITIZED:
        pytest.skip("an ASan binary cannot run under valgrind")
    log = tmp_path / "valgrind.log"
    wrapper = tmp_path / "smtpd-valgrind"
    wrapper.write_text("#!/bin/sh\nexec %s --log-file=%s %s \"$@\"\n"
                       % (" ".join(VALGRIND), log, conftest.SMTPD_BIN))
    wrapper.chmod(0o755)
    monkeypatch.setattr(conftest, "SMTPD_BIN", str(wrapper))
    return log


def test_one_session_under_valgrind(valgrind_bin, start_server, connect):
    srv = start_server("-u", "alice:pw", "-t", "cat")
    c = greeted(connect, srv)
    assert c.cmd("AUTH PLAIN %s" % b64("\0alice\0pw")).startswith("235")
    assert c.cmd("VRFY alice").startswith("250")
    assert c.cmd("X" * 600).startswith("500 5.5.6")
    assert c.cmd("RCPT TO:<nobody@evil.test>").startswith("503")
    queue_id(send_mail(c, "a@b.test", ["alice@localhost",
                                       "postmaster@localhost"],
                       b"Subject: under valgrind\r\n\r\n..dot\r\nbody\r\n"))
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
    assert c.cmd("RCPT TO:<nobody@localhost>").startswith("550")
    assert c.cmd("RSET").startswith("250")
    # a client that leaves in the middle of DATA
    d = greeted(connect, srv)
    assert d.cmd("MAIL FROM:<a@b.test>").startswith("250")
    assert d.cmd("RCPT TO:<alice@localhost>").startswith("250")
    assert d.cmd("DATA").startswith("354")
    d.send(b"Subject: cut\r\n\r\nhalf a mess")
    d.close()
    assert c.cmd("QUIT").startswith("221")
    assert len(srv.wait_new("alice")) == 1
    code = srv.stop(timeout=60)
    report = valgrind_bin.read_text(errors="replace")
    print("valgrind: exit %d, report %d bytes" % (code, len(report)))
    assert code == 0, report
    assert report.strip() == "", report


def test_proxy_sessions_under_valgrind(valgrind_bin, start_server, connect):
    """PROXY headers good, bad and unfinished at SIGTERM."""
    srv = start_server("--proxy-from", "127.0.0.1")
    c = connect(srv.port)
    c.send(b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x07"
           b"\x7f\x00\x00\x01\x9c\x41\x00\x19")
    assert c.reply_line().startswith("220 ")
    c.send(b"EHLO v.test\r\n")
    assert c.reply()[0] == 250
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"],
                       b"Subject: proxied\r\n\r\nbody\r\n"))
    bad = connect(srv.port)
    bad.send(b"PROXY TCP4 300.0.0.1 127.0.0.1 1 2\r\n")
    assert bad.closed()
    pending = connect(srv.port)
    pending.send(b"PROXY TCP4 192.0.2.")      # still waiting at the stop
    assert c.cmd("QUIT").startswith("221")
    code = srv.stop(timeout=60)
    report = valgrind_bin.read_text(errors="replace")
    assert code == 0, report
    assert report.strip() == "", report
    assert "[192.0.2.7]" in srv.new_files("postmaster")[0].read_text()
