"""A real sender: a private Postfix (bench/postfix.sh's instance, its own
configuration and queue in a directory of its own, loopback only) relays
to smtpd through `relayhost`. It sends SMTPUTF8 for a UTF-8 address and
dot-stuffs the other message: both arrive whole. Postfix 3.7's SMTP
client has no BDAT (only its server takes it), so it keeps to DATA even
though CHUNKING is offered: the test checks that too, so that a Postfix
that starts using BDAT is noticed and the check can turn around."""
import os
import pathlib
import shutil
import smtplib
import subprocess
import tempfile

import pytest

from conftest import free_port, wait_for

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "postfix.sh"
JORG = "j\u00f6rg"


@pytest.fixture
def postfix():
    if shutil.which("postfix") is None and not os.path.exists("/usr/sbin/postfix"):
        pytest.fail("postfix is not installed: run e2e/deps.sh as root")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root")
    # Postfix's own users must reach it: pytest's directories are 0700
    top = pathlib.Path(tempfile.mkdtemp(prefix="smtpd-postfix-"))
    top.chmod(0o755)
    d = top / "postfix"
    port = free_port()
    r = subprocess.run(["bash", str(SCRIPT), "start", str(d), str(port),
                        "unused.invalid", "nobody"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(d)], timeout=60)
        shutil.rmtree(top, ignore_errors=True)
        pytest.fail("postfix did not start: %s%s" % (r.stdout, r.stderr))
    try:
        yield d, port
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(d)], timeout=60)
        shutil.rmtree(top, ignore_errors=True)


def relay_to(d, port):
    subprocess.run(["postconf", "-c", str(d / "etc"), "-e",
                    "relayhost = [127.0.0.1]:%d" % port,
                    "smtp_tls_security_level = none"],
                   check=True, capture_output=True, timeout=30)
    subprocess.run(["postfix", "-c", str(d / "etc"), "reload"],
                   check=True, capture_output=True, timeout=30)


@pytest.mark.slow
def test_postfix_relays_with_smtputf8(start_server, postfix):
    d, pf_port = postfix
    srv = start_server("-u", JORG + ":secret")
    relay_to(d, srv.port)
    body = (b"Subject: through postfix\r\n\r\n"
            b".a line with a leading dot\r\n\r\n.\r\nlast\r\n")
    s = smtplib.SMTP("127.0.0.1", pf_port, timeout=30)
    try:
        assert s.sendmail("a@b.test", ["postmaster@localhost"], body) == {}
        assert s.sendmail("a@b.test", [JORG + "@localhost"],
                          b"Subject: utf-8\r\n\r\nhallo\r\n",
                          mail_options=["SMTPUTF8"]) == {}
    finally:
        s.quit()
    assert wait_for(lambda: srv.new_files("postmaster")
                    and srv.new_files(JORG), 60), \
        (d / "maillog").read_text(errors="replace")[-3000:]
    data = srv.new_files("postmaster")[0].read_bytes()
    assert data.endswith(b"\r\n\r\n.a line with a leading dot\r\n\r\n.\r\nlast\r\n")
    assert b"Subject: through postfix\r\n" in data
    utf8 = srv.new_files(JORG)[0].read_bytes()
    assert b" with UTF8SMTP id " in utf8
    assert utf8.endswith(b"\r\nhallo\r\n")
    log = srv.log_text()
    assert log.count("helo=bench.invalid") == 2, log[-3000:]
    assert ("to=<%s@localhost>" % JORG) in log
    smtp = pathlib.Path("/usr/lib/postfix/sbin/smtp")
    if smtp.exists() and b"BDAT" not in smtp.read_bytes():
        assert "comes in BDAT chunks" not in log
