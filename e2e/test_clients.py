"""Real mail programs against the server: swaks, curl and
msmtp (installed by `make test-deps`; skipped with a reason when missing)
and Python's smtplib, with and without AUTH."""
import shutil
import smtplib
import subprocess

import pytest

from conftest import only_file, parse_trace, strip_trace

PASS = "s3cr3t-Pa55"
USERS = ("-u", "alice:" + PASS, "-u", "bob:pw")


def need(tool):
    path = shutil.which(tool)
    if not path:
        print("%s is not installed (make test-deps installs it)" % tool)
        pytest.skip("%s is not installed" % tool)
    return path


def run(cmd, timeout=30, **kw):
    p = subprocess.run(cmd, capture_output=True, timeout=timeout,
                       stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
    return p


def swaks(srv, *extra, to="postmaster@localhost", server="127.0.0.1"):
    cmd = [need("swaks"), "--server", server, "--port", str(srv.port),
           "--to", to, "--from", "a@b.test", "--ehlo", "swaks.test",
           "--header", "Subject: swaks test",
           "--body", "hello from swaks"] + list(extra)
    return run(cmd)


# ---- swaks -----------------------------------------------------------------

def test_swaks_delivers(server):
    p = swaks(server)
    assert p.returncode == 0, p.stdout.decode()[-2000:]
    rp, f, msg = parse_trace(only_file(server, "postmaster")[1])
    assert rp == "<a@b.test>" and f["proto"] == "ESMTP"
    assert f["helo"] == "swaks.test"
    assert b"Subject: swaks test" in msg and b"hello from swaks" in msg


def test_swaks_pipelining_over_ipv6(server):
    p = swaks(server, "--pipeline", "-6", server="::1")
    assert p.returncode == 0, p.stdout.decode()[-2000:]
    _, f, _ = parse_trace(only_file(server, "postmaster")[1])
    assert f["ip"] == "IPv6:::1"


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_auth(start_server, mech):
    srv = start_server("-A", *USERS)
    p = swaks(srv, "--auth", mech, "--auth-user", "alice",
              "--auth-password", PASS, to="alice@localhost")
    out = p.stdout.decode()
    assert p.returncode == 0, out[-2000:]
    assert "235 2.7.0" in out
    _, f, msg = parse_trace(only_file(srv, "alice")[1])
    assert f["proto"] == "ESMTPA" and b"hello from swaks" in msg


def test_swaks_wrong_password_delivers_nothing(start_server):
    srv = start_server("-A", *USERS)
    p = swaks(srv, "--auth", "PLAIN", "--auth-user", "alice",
              "--auth-password", "wrong", to="alice@localhost")
    assert p.returncode != 0
    assert "535 5.7.8" in p.stdout.decode()
    assert srv.new_files("alice") == []


def test_swaks_without_auth_when_required(start_server):
    srv = start_server("-A", *USERS)
    p = swaks(srv, to="alice@localhost")
    assert p.returncode != 0
    assert "530 5.7.0" in p.stdout.decode()
    assert srv.new_files("alice") == []


# ---- curl ------------------------------------------------------------------

MESSAGE = (b"From: a@b.test\r\nTo: postmaster@localhost\r\n"
           b"Subject: curl test\r\n\r\nline one\r\n.line with a dot\r\n"
           b"last line\r\n")


def curl(srv, tmp_path, *extra, rcpts=("postmaster@localhost",)):
    msg = tmp_path / "message.eml"
    msg.write_bytes(MESSAGE)
    cmd = [need("curl"), "-sS", "smtp://127.0.0.1:%d" % srv.port,
           "--mail-from", "a@b.test", "-T", str(msg)] + list(extra)
    for r in rcpts:
        cmd += ["--mail-rcpt", r]
    return run(cmd)


def test_curl_delivers_byte_exact(server, tmp_path):
    p = curl(server, tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert strip_trace(only_file(server, "postmaster")[1]) == MESSAGE


def test_curl_several_recipients(start_server, tmp_path):
    srv = start_server(*USERS)
    p = curl(srv, tmp_path, rcpts=("alice@localhost", "bob@localhost"))
    assert p.returncode == 0, p.stderr.decode()
    a = only_file(srv, "alice")[1]
    assert a == only_file(srv, "bob")[1]
    assert strip_trace(a) == MESSAGE


def test_curl_with_user(start_server, tmp_path):
    srv = start_server("-A", *USERS)
    p = curl(srv, tmp_path, "--user", "alice:" + PASS,
             rcpts=("bob@localhost",))
    assert p.returncode == 0, p.stderr.decode()
    _, f, msg = parse_trace(only_file(srv, "bob")[1])
    assert f["proto"] == "ESMTPA" and msg == MESSAGE


def test_curl_with_wrong_user_fails(start_server, tmp_path):
    srv = start_server("-A", *USERS)
    p = curl(srv, tmp_path, "--user", "alice:nope",
             rcpts=("bob@localhost",))
    assert p.returncode != 0
    assert srv.new_files("bob") == []


# ---- msmtp -----------------------------------------------------------------

def msmtp(srv, tmp_path, rcpt, auth):
    conf = tmp_path / "msmtprc"
    lines = ["defaults", "tls off", "logfile %s" % (tmp_path / "msmtp.log"),
             "account test", "host 127.0.0.1", "port %d" % srv.port,
             "from alice@localhost", "domain laptop.test"]
    if auth:
        # "auth on" lets msmtp pick, and it will not pick a plain-text
        # method without TLS; a named method is what a user sets up here
        lines += ["auth %s" % auth, "user alice", "password %s" % PASS]
    else:
        lines += ["auth off"]
    lines.append("account default : test")
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o600)
    msg = (b"From: alice@localhost\nTo: %s\nSubject: msmtp test\n\n"
           b"sent by msmtp\n.dot line\n" % rcpt.encode())
    return run([need("msmtp"), "-C", str(conf), rcpt], input=msg,
               stdin=None)


def test_msmtp_delivers(server, tmp_path):
    p = msmtp(server, tmp_path, "postmaster@localhost", auth=False)
    assert p.returncode == 0, p.stderr.decode()
    _, f, msg = parse_trace(only_file(server, "postmaster")[1])
    assert f["helo"] == "laptop.test"
    assert b"sent by msmtp\r\n.dot line\r\n" in msg


@pytest.mark.parametrize("mech", ["plain", "login"])
def test_msmtp_logs_in(start_server, tmp_path, mech):
    srv = start_server("-A", *USERS)
    p = msmtp(srv, tmp_path, "alice@localhost", auth=mech)
    assert p.returncode == 0, p.stderr.decode()
    rp, f, msg = parse_trace(only_file(srv, "alice")[1])
    assert rp == "<alice@localhost>" and f["proto"] == "ESMTPA"
    assert b"Subject: msmtp test" in msg


# ---- Python's smtplib ---------------------------------------------------

def test_smtplib_sendmail(server):
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.ehlo("py.test")
        assert s.has_extn("pipelining") and s.has_extn("8bitmime")
        assert int(s.esmtp_features["size"]) == 10485760
        refused = s.sendmail("a@b.test", ["postmaster@localhost"],
                             b"Subject: py\r\n\r\n\xe9t\xe9\r\n")
        assert refused == {}
    assert strip_trace(only_file(server, "postmaster")[1]) == (
        b"Subject: py\r\n\r\n\xe9t\xe9\r\n")


def test_smtplib_login_and_refused_recipient(start_server):
    srv = start_server("-A", *USERS)
    with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
        s.login("alice", PASS)
        refused = s.sendmail("alice@localhost",
                             ["bob@localhost", "nobody@localhost"],
                             b"Subject: py\r\n\r\nhi\r\n")
        assert set(refused) == {"nobody@localhost"}
        assert refused["nobody@localhost"][0] == 550
    _, f, _ = parse_trace(only_file(srv, "bob")[1])
    assert f["proto"] == "ESMTPA"


def test_smtplib_bad_login(start_server):
    srv = start_server(*USERS)
    with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice", "wrong")
        assert e.value.smtp_code == 535
