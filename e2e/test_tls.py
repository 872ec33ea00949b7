"""TLS (issue 12): STARTTLS (RFC 3207) and implicit TLS (RFC 8314) with
real clients (swaks, curl, msmtp, openssl s_client, Python's smtplib),
each message checked byte for byte in the Maildir; the exact replies of
STARTTLS, AUTH and MAIL around TLS; the start-up checks of the TLS
options; certificate reload on SIGHUP; the build without TLS."""
import re
import signal
import smtplib
import socket
import struct
import subprocess
import time

import pytest

from conftest import SMTPD_BIN, free_port, only_file, parse_trace, raw_reply
from tls_helpers import (TlsClient, certs, client_context, need_tls,  # noqa: F401
                         need_tool, pem_to_der, peer_cert, smtps_port,
                         smtpd_version, tls_args, tls_built)

PASS = "s3cr3t-Pa55"
USERS = ("-u", "alice:" + PASS)
MSG = (b"Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n"
       b"Message-ID: <tls-test@b.test>\r\n"
       b"From: a@b.test\r\nTo: alice@localhost\r\nSubject: over TLS\r\n\r\n"
       b"line one\r\n.a line that starts with a dot\r\nlast line\r\n")


def run(cmd, timeout=30, **kw):
    return subprocess.run(cmd, capture_output=True, timeout=timeout,
                          stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)


def tls_server(start_server, certs, *extra, smtps=True):
    args = tls_args(certs, *extra)
    if smtps:
        args += ("--smtps-port", str(free_port()))
    return start_server(*args)


def stored(srv, proto="ESMTPSA", user="alice"):
    """The one message in user's new/, its trace checked; the message."""
    _, data = only_file(srv, user)
    rp, f, msg = parse_trace(data)
    assert rp == "<a@b.test>"
    assert f["proto"] == proto, f
    return msg


def ehlo_keywords(c):
    c.send("EHLO client.test\r\n")
    lines = raw_reply(c)
    assert lines[0].startswith("250-")
    return [l[4:] for l in lines[1:]]


# ---- the build -------------------------------------------------------------

def test_build_without_tls_refuses_tls_options(tmp_path):
    if tls_built():
        pytest.skip("smtpd built with TLS (the TLS=0 build runs this)")
    assert "built without TLS" in smtpd_version()
    for args in (["--tls-cert", "x.pem"], ["--smtps-port", "4650"],
                 ["--require-tls"]):
        p = run([SMTPD_BIN, "-f", str(tmp_path / "m")] + args)
        assert p.returncode == 2, p
        err = p.stderr.decode()
        assert "built without TLS" in err and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists()
    # and its usage does not offer them
    usage = run([SMTPD_BIN, "-h"]).stdout.decode()
    assert "--passwd-file" in usage
    for opt in ("--tls-cert", "--tls-key", "--smtps-port", "--require-tls"):
        assert opt not in usage, usage


def test_usage_lists_tls_options_when_built_with_tls():
    need_tls()
    usage = run([SMTPD_BIN, "-h"]).stdout.decode()
    for opt in ("--tls-cert", "--tls-key", "--smtps-port", "--require-tls"):
        assert opt in usage, usage


def test_version_names_openssl():
    need_tls()
    assert "TLS: OpenSSL 3" in smtpd_version()


@pytest.mark.parametrize("bad", ["missing", "mismatch", "not-pem",
                                 "smtps-no-cert", "require-no-cert",
                                 "key-no-cert"])
def test_bad_tls_options_exit_2(tmp_path, certs, bad):
    a, b = certs["a"], certs["b"]
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    args = {
        "missing": ["--tls-cert", str(tmp_path / "none.pem")],
        "mismatch": ["--tls-cert", a[0], "--tls-key", b[1]],
        "not-pem": ["--tls-cert", str(junk)],
        "smtps-no-cert": ["--smtps-port", "4650"],
        "require-no-cert": ["--require-tls"],
        "key-no-cert": ["--tls-key", a[1]],
    }[bad]
    p = run([SMTPD_BIN, "-s", str(free_port()), "-f", str(tmp_path / "m")] + args)
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err)
    assert err.startswith("smtpd: ") and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists()


def test_certificate_without_key_names_the_certificate(tmp_path, certs):
    """No --tls-key given and no key in the certificate file: the message
    names the file and how to give a key, not a flag never used."""
    p = run([SMTPD_BIN, "-s", str(free_port()), "-f", str(tmp_path / "m"),
             "--tls-cert", certs["a"][0]])
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert err.startswith("smtpd: --tls-cert %s: no private key in it "
                          "(give the key file with --tls-key)" % certs["a"][0]), err
    assert err.count("\n") == 1, err


def test_key_defaults_to_the_certificate_file(start_server, certs):
    srv = start_server("--tls-cert", certs["combined"])
    c = TlsClient(srv.port)
    c.greet()
    c.starttls()
    assert "AUTH PLAIN LOGIN" not in ehlo_keywords(c)   # no users
    c.close()


# ---- replies ---------------------------------------------------------------

def test_without_certificate_starttls_is_unknown(start_server, connect):
    srv = start_server(*USERS)
    c = connect(srv.port)
    keywords = c.greet()
    assert "STARTTLS" not in keywords and "AUTH PLAIN LOGIN" in keywords
    assert c.cmd("STARTTLS") == "500 5.5.2 Command unrecognized"
    assert c.cmd("STARTTLS now") == "500 5.5.2 Command unrecognized"


def test_ehlo_lists_starttls_then_auth(start_server, certs):
    srv = tls_server(start_server, certs, *USERS, smtps=False)
    c = TlsClient(srv.port)
    assert c.reply_line() == "220 localhost ESMTP"
    kw = ehlo_keywords(c)
    assert kw == ["PIPELINING", "SIZE 10485760", "8BITMIME",
                  "ENHANCEDSTATUSCODES", "CHUNKING", "SMTPUTF8", "STARTTLS",
                  "HELP"], kw
    assert c.cmd("AUTH PLAIN " + "AGFsaWNlAHM=") == (
        "538 5.7.11 Encryption required for requested authentication mechanism")
    assert c.cmd("STARTTLS x") == "501 5.5.4 No arguments allowed"
    c.starttls()
    kw = ehlo_keywords(c)
    assert kw == ["PIPELINING", "SIZE 10485760", "8BITMIME",
                  "ENHANCEDSTATUSCODES", "CHUNKING", "SMTPUTF8", "REQUIRETLS",
                  "AUTH PLAIN LOGIN", "HELP"], kw
    assert c.cmd("STARTTLS") == "503 5.5.1 Bad sequence of commands"
    c.close()


def test_session_starts_over_after_starttls(start_server, certs):
    srv = tls_server(start_server, certs, smtps=False)
    c = TlsClient(srv.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    c.starttls()
    # no HELO, no sender any more
    assert c.cmd("MAIL FROM:<a@b.test>") == "503 5.5.1 Bad sequence of commands"
    ehlo_keywords(c)
    assert c.cmd("RCPT TO:<postmaster@localhost>") == "503 5.5.1 MAIL first"
    c.close()


def test_require_tls(start_server, certs):
    srv = tls_server(start_server, certs, "--require-tls", smtps=False)
    c = TlsClient(srv.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@b.test>") == (
        "530 5.7.0 Must issue a STARTTLS command first")
    c.starttls()
    ehlo_keywords(c)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    c.close()


def test_received_esmtps_and_log_line(start_server, certs):
    srv = tls_server(start_server, certs, smtps=False)
    c = TlsClient(srv.port)
    c.greet()
    c.starttls()
    ehlo_keywords(c)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250")
    assert c.cmd("DATA").startswith("354")
    c.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
    line = c.reply_line()
    assert line.startswith("250 2.0.0 Ok: queued as ")
    msg_id = line.split()[-1]
    assert stored(srv, "ESMTPS", "postmaster") == b"Subject: x\r\n\r\nhi\r\n"
    version = c.sock.version()
    cipher = c.sock.cipher()[0]
    c.close()
    log = [l for l in srv.log_text().splitlines() if "message id=" + msg_id in l]
    assert log and "tls=%s:%s " % (version, cipher) in log[0], log


# ---- real clients ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["--tls", "--tls-on-connect"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks(start_server, certs, tmp_path, mode, mech):
    swaks = need_tool("swaks")
    srv = tls_server(start_server, certs, *USERS)
    port = smtps_port(srv) if mode == "--tls-on-connect" else srv.port
    data = tmp_path / "msg.eml"
    data.write_bytes(MSG)
    p = run([swaks, "--server", "127.0.0.1", "--port", str(port), mode,
             "--auth", mech, "--auth-user", "alice", "--auth-password", PASS,
             "--from", "a@b.test", "--to", "alice@localhost",
             "--data", str(data)])
    out = p.stdout.decode()
    assert p.returncode == 0, out[-3000:] + p.stderr.decode()
    assert "235 2.7.0" in out
    # swaks ends the data with CRLF . CRLF after the file: one more CRLF
    assert stored(srv) == MSG + b"\r\n"


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_curl(start_server, certs, tmp_path, scheme):
    curl = need_tool("curl")
    srv = tls_server(start_server, certs, *USERS)
    port = smtps_port(srv) if scheme == "smtps" else srv.port
    data = tmp_path / "msg.eml"
    data.write_bytes(MSG)
    p = run([curl, "-sS", "--ssl-reqd", "-k",
             "%s://127.0.0.1:%d/client.test" % (scheme, port),
             "--mail-from", "a@b.test", "--mail-rcpt", "alice@localhost",
             "--user", "alice:" + PASS, "--upload-file", str(data)])
    assert p.returncode == 0, p.stderr.decode()
    assert stored(srv) == MSG


@pytest.mark.parametrize("starttls", ["on", "off"])
def test_msmtp(start_server, certs, tmp_path, starttls):
    msmtp = need_tool("msmtp")
    srv = tls_server(start_server, certs, *USERS)
    port = srv.port if starttls == "on" else smtps_port(srv)
    conf = tmp_path / "msmtprc"
    conf.write_text("account default\nhost 127.0.0.1\nport %d\nfrom a@b.test\n"
                    "tls on\ntls_starttls %s\ntls_certcheck off\nauth on\n"
                    "user alice\npassword %s\n" % (port, starttls, PASS))
    conf.chmod(0o600)
    p = run([msmtp, "-C", str(conf), "alice@localhost"], input=MSG, stdin=None)
    assert p.returncode == 0, p.stderr.decode()
    assert stored(srv) == MSG


def test_openssl_s_client_starttls(start_server, certs):
    openssl = need_tool("openssl")
    srv = tls_server(start_server, certs, smtps=False)
    script = (b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\n"
              b"RCPT TO:<postmaster@localhost>\r\nDATA\r\n")
    # s_client sends each stdin line as read; a pause lets DATA's 354 come
    proc = subprocess.Popen([openssl, "s_client", "-starttls", "smtp",
                             "-connect", "127.0.0.1:%d" % srv.port, "-quiet",
                             "-crlf"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    body = b"Subject: s_client\n\nfrom openssl\n.\nQUIT\n"
    try:
        proc.stdin.write(script.replace(b"\r\n", b"\n"))
        proc.stdin.flush()
        time.sleep(0.5)
        out, err = proc.communicate(input=body, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"250 2.0.0 Ok: queued as" in out, (out, err)
    assert stored(srv, "ESMTPS", "postmaster") == (
        b"Subject: s_client\r\n\r\nfrom openssl\r\n")


@pytest.mark.parametrize("implicit", [False, True])
def test_python_smtplib(start_server, certs, implicit):
    srv = tls_server(start_server, certs, *USERS)
    ctx = client_context()
    if implicit:
        s = smtplib.SMTP_SSL("127.0.0.1", smtps_port(srv), context=ctx,
                             timeout=10)
    else:
        s = smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s.starttls(context=ctx)
    s.ehlo()
    assert s.has_extn("auth") and not s.has_extn("starttls")
    s.login("alice", PASS)
    assert s.sendmail("a@b.test", ["alice@localhost"], MSG) == {}
    s.quit()
    assert stored(srv) == MSG


# ---- counters, reload ------------------------------------------------------

def monitor_counter(srv, cmd):
    req = b"\xff\xfe\x00\x00\x01smtpd\x00\x00\x00" + bytes([cmd])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(3)
        u.sendto(req, ("127.0.0.1", srv.monitor_port))
        res = u.recv(64)
    assert res[5] == 0, res
    return struct.unpack(">Q", res[6:14])[0]


def test_monitor_counts_tls_sessions(start_server, certs):
    srv = tls_server(start_server, certs)
    assert monitor_counter(srv, 0x0D) == 0
    before = monitor_counter(srv, 0x02)
    c = TlsClient(smtps_port(srv), implicit=True)
    assert c.reply_line() == "220 localhost ESMTP"
    c2 = TlsClient(srv.port)
    c2.greet()
    c2.starttls()
    ehlo_keywords(c2)
    assert monitor_counter(srv, 0x0D) == 2
    # the socket's bytes: the handshakes count, not only the plaintext
    assert monitor_counter(srv, 0x02) - before > 1000
    c.close()
    c2.close()


def test_sighup_reloads_certificate(start_server, certs, tmp_path):
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_bytes(open(certs["a"][0], "rb").read())
    key.write_bytes(open(certs["a"][1], "rb").read())
    srv = start_server("--tls-cert", str(cert), "--tls-key", str(key),
                       "--smtps-port", str(free_port()))
    port = smtps_port(srv)
    assert peer_cert(port) == pem_to_der(certs["a"][0])
    # a bad pair (new certificate, old key): the old one stays in use
    cert.write_bytes(open(certs["b"][0], "rb").read())
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "not reloaded" not in srv.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "TLS certificate not reloaded, keeping the old one" in srv.log_text()
    assert peer_cert(port) == pem_to_der(certs["a"][0])
    # the whole new pair: served from the next handshake on
    key.write_bytes(open(certs["b"][1], "rb").read())
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "certificate reloaded" not in srv.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert peer_cert(port) == pem_to_der(certs["b"][0])


def test_plaintext_auth_warning(start_server):
    srv = start_server("-a", "0.0.0.0", *USERS)
    assert "passwords cross the network in clear" in srv.log_text()
    srv2 = start_server(*USERS)     # loopback only: no warning
    assert "in clear" not in srv2.log_text()


# ---- TLS keeps input the selector cannot see --------------------------------

def tls_greeted(srv):
    c = TlsClient(srv.port)
    c.greet()
    c.starttls()
    ehlo_keywords(c)
    return c


def test_pipelined_batch_in_one_record(start_server, certs):
    """3 KB of commands in one TLS record: more than the session's small
    input buffer holds, so most of it waits decrypted inside OpenSSL."""
    srv = tls_server(start_server, certs, smtps=False)
    c = tls_greeted(srv)
    c.send(b"NOOP\r\n" * 500)
    for _ in range(500):
        assert c.reply_line() == "250 2.0.0 Ok"
    assert c.cmd("QUIT") == "221 2.0.0 Bye"


def test_large_message_and_byte_at_a_time(start_server, certs):
    srv = tls_server(start_server, certs, smtps=False)
    c = tls_greeted(srv)
    for ch in b"MAIL FROM:<a@b.test>\r\n":
        c.send(bytes([ch]))
    assert c.reply_line().startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    body = b"".join(b"line %06d " % i + b"x" * 90 + b"\r\n" for i in range(20000))
    c.send(body + b".\r\n")
    assert c.reply_line().startswith("250 2.0.0 Ok: queued as ")
    assert stored(srv, "ESMTPS", "postmaster") == body


# ---- documentation ---------------------------------------------------------

def test_long_options_are_documented():
    from conftest import ROOT
    usage = subprocess.run([SMTPD_BIN, "-h"], capture_output=True, text=True,
                           timeout=10).stdout
    longs = sorted(set(re.findall(r"^\s+--([a-z-]+)", usage, re.M)))
    if tls_built():
        assert {"require-tls", "smtps-port", "tls-cert", "tls-key"} <= \
            set(longs), longs
    readme = (ROOT / "README.md").read_text()
    man = (ROOT / "smtpd.8").read_text()
    for opt in longs:
        assert re.search(r"^\| `--%s\b" % opt, readme, re.M), opt
        roff = "\\-\\-" + opt.replace("-", "\\-")
        assert re.search(r"^\.BI? %s\b" % re.escape(roff), man, re.M), opt
