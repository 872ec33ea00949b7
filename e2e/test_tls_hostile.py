"""Hostile TLS clients (issue 12): the STARTTLS command injection,
garbage instead of a ClientHello, a ClientHello trickled a byte a second,
a thousand clients idle on the implicit-TLS port, a handshake cut in the
middle, a client certificate, renegotiation. The server survives each,
keeps no descriptor of the client, logs a reason, and goes on serving."""
import resource
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import SMTPD_BIN, free_port, no_reply, wait_for
from test_valgrind import valgrind_bin  # noqa: F401  (the fixture)
from tls_helpers import (TlsClient, certs, client_context, fd_count,  # noqa: F401
                         need_tool, smtps_port, tls_args)


# select() cannot watch descriptors >= 1024: a select build holds 900
IDLE_CLIENTS = 900 if "/select" in SMTPD_BIN else 1000


def tls_server(start_server, certs, *extra):
    return start_server(*tls_args(certs, "--smtps-port", str(free_port()),
                                  *extra))


def client_hello():
    """The bytes of a real ClientHello (Python's ssl, TLS 1.2 and 1.3)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert hello[:1] == b"\x16" and len(hello) > 100
    return hello


def wait_log(srv, text, timeout=5):
    assert wait_for(lambda: text in srv.log_text(), timeout), srv.log_text()[-2000:]


def settled_fds(srv):
    """The server's descriptor count once the start-up probe is gone and
    one TLS transaction has been served (its spare descriptor is open)."""
    still_serves(srv)
    last = -1
    for _ in range(50):
        now = fd_count(srv.pid)
        if now == last:
            return now
        last = now
        time.sleep(0.1)
    return last


def assert_no_fd_leak(srv, before):
    assert wait_for(lambda: fd_count(srv.pid) == before, 5), (
        fd_count(srv.pid), before)


def still_serves(srv):
    """A whole TLS transaction, after whatever came before."""
    s = smtplib.SMTP_SSL("127.0.0.1", smtps_port(srv), context=client_context(),
                         timeout=10)
    assert s.sendmail("a@b.test", ["postmaster@localhost"],
                      b"Subject: still here\r\n\r\nok\r\n") == {}
    s.quit()


def closed_by_server(sock, timeout=5):
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_starttls_injection_is_not_answered(start_server, certs):
    srv = tls_server(start_server, certs)
    c = TlsClient(srv.port)
    c.greet()
    c.send(b"STARTTLS\r\nRSET\r\n")          # one packet
    assert c.reply_line() == "220 2.0.0 Ready to start TLS"
    c.wrap()
    assert no_reply(c, 1.0), c.buf           # the RSET is gone
    assert c.cmd("NOOP") == "250 2.0.0 Ok"   # not "250 2.0.0 Reset"
    c.close()


@pytest.mark.parametrize("where", ["smtps", "starttls"])
def test_garbage_instead_of_client_hello(start_server, certs, where):
    srv = tls_server(start_server, certs)
    before = settled_fds(srv)
    if where == "smtps":
        sock = socket.create_connection(("127.0.0.1", smtps_port(srv)))
    else:
        c = TlsClient(srv.port)
        c.greet()
        assert c.cmd("STARTTLS").startswith("220 2.0.0")
        sock = c.sock
    sock.sendall(b"EHLO i.do.not.speak.tls\r\n" * 20)
    assert closed_by_server(sock)
    sock.close()
    wait_log(srv, "TLS handshake failed: ")
    assert_no_fd_leak(srv, before)
    still_serves(srv)


def test_client_hello_trickled_is_closed_by_timeout(start_server, certs):
    srv = tls_server(start_server, certs, "-T", "2")
    before = settled_fds(srv)
    hello = client_hello()
    sock = socket.create_connection(("127.0.0.1", smtps_port(srv)))
    start = time.monotonic()
    sent = 0
    try:
        while sent < len(hello) and time.monotonic() - start < 8:
            sock.sendall(hello[sent:sent + 1])
            sent += 1
            time.sleep(1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert closed_by_server(sock, 3)
    elapsed = time.monotonic() - start
    sock.close()
    # cut off by -T before the whole ClientHello was out
    assert sent < len(hello), (sent, elapsed)
    wait_log(srv, "TLS handshake not done within 2 s")
    assert_no_fd_leak(srv, before)
    still_serves(srv)


@pytest.mark.parametrize("cut", ["half-hello", "after-server-hello"])
def test_handshake_cut_in_the_middle(start_server, certs, cut):
    srv = tls_server(start_server, certs)
    before = settled_fds(srv)
    hello = client_hello()
    sock = socket.create_connection(("127.0.0.1", smtps_port(srv)))
    if cut == "half-hello":
        sock.sendall(hello[:len(hello) // 2])
        time.sleep(0.2)
    else:
        sock.sendall(hello)
        sock.settimeout(5)
        assert sock.recv(4096)[:1] == b"\x16"      # ServerHello ...
    sock.close()
    wait_log(srv, "TLS handshake failed: ")
    assert_no_fd_leak(srv, before)
    still_serves(srv)


def test_client_certificate_offered(start_server, certs):
    srv = tls_server(start_server, certs)
    ctx = client_context()
    ctx.load_cert_chain(certs["b"][0], certs["b"][1])
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
    s.starttls(context=ctx)
    assert s.sendmail("a@b.test", ["postmaster@localhost"],
                      b"Subject: client cert\r\n\r\nok\r\n") == {}
    s.quit()


def test_renegotiation_refused(start_server, certs):
    openssl = need_tool("openssl")
    srv = tls_server(start_server, certs)
    before = settled_fds(srv)
    proc = subprocess.Popen(
        [openssl, "s_client", "-connect", "127.0.0.1:%d" % smtps_port(srv),
         "-tls1_2", "-crlf"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        proc.stdin.write(b"EHLO renegotiate.test\n")
        proc.stdin.flush()
        time.sleep(0.5)
        proc.stdin.write(b"R\n")               # s_client: renegotiate
        proc.stdin.flush()
        time.sleep(0.5)
        out, _ = proc.communicate(input=b"NOOP\nQUIT\n", timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"RENEGOTIATING" in out, out[-2000:]
    assert b"no renegotiation" in out, out[-2000:]
    wait_log(srv, "the client asked to renegotiate, refused")
    wait_log(srv, "TLS error on fd ")
    assert_no_fd_leak(srv, before)
    still_serves(srv)


@pytest.mark.slow
def test_thousand_idle_tls_clients(start_server, certs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.skip("open-files limit %d is below 1200" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    srv = tls_server(start_server, certs)
    before = settled_fds(srv)
    idle = []
    try:
        for _ in range(IDLE_CLIENTS):
            idle.append(socket.create_connection(("127.0.0.1", smtps_port(srv))))
        assert wait_for(lambda: fd_count(srv.pid) >= before + IDLE_CLIENTS, 10)
        start = time.monotonic()
        still_serves(srv)
        elapsed = time.monotonic() - start
        # how long it takes is bench/tls_idle.py's to measure
        print("one TLS transaction beside %d idle TLS clients: %.3f s"
              % (IDLE_CLIENTS, elapsed))
    finally:
        for s in idle:
            s.close()
    assert_no_fd_leak(srv, before)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_tls_sessions_under_valgrind(valgrind_bin, start_server, certs):
    """OpenSSL's memory too: good and broken TLS sessions and a reload,
    with the server under valgrind memcheck (no error, no definite leak)."""
    import signal
    srv = tls_server(start_server, certs, "-u", "alice:pw")
    s = smtplib.SMTP("127.0.0.1", srv.port, timeout=30)
    s.starttls(context=client_context())
    s.login("alice", "pw")
    assert s.sendmail("a@b.test", ["alice@localhost"],
                      b"Subject: valgrind\r\n\r\nover TLS\r\n") == {}
    s.quit()
    bad = socket.create_connection(("127.0.0.1", smtps_port(srv)))
    bad.sendall(b"not a handshake\r\n" * 10)
    assert closed_by_server(bad, 30)
    bad.close()
    cut = socket.create_connection(("127.0.0.1", smtps_port(srv)))
    cut.sendall(client_hello()[:40])
    cut.close()
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(srv, "TLS certificate reloaded", 30)
    s = smtplib.SMTP_SSL("127.0.0.1", smtps_port(srv), context=client_context(),
                         timeout=30)
    assert s.sendmail("a@b.test", ["alice@localhost"],
                      b"Subject: valgrind 2\r\n\r\nimplicit\r\n") == {}
    s.quit()
    assert len(srv.wait_new("alice", 2, 30)) == 2
    assert srv.cmd[0].endswith("smtpd-valgrind")
    code = srv.stop(timeout=60)
    report = valgrind_bin.read_text(errors="replace")
    assert code == 0, report
    assert report.strip() == "", report


# ---- TLS 1.2: AEAD suites with forward secrecy only ----------------------

def rsa_cert(directory):
    """(cert, key): a self-signed RSA 2048 certificate, so that the static
    RSA and ECDHE-RSA suites could be chosen if the server offered them."""
    cert = str(directory / "rsa.crt")
    key = str(directory / "rsa.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "30",
                    "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=120)
    return cert, key


def s_client(port, *args):
    """(exit code, output) of one openssl s_client handshake on the
    implicit-TLS port; its input ends at once, so it leaves after it."""
    openssl = need_tool("openssl")
    p = subprocess.run([openssl, "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost"] + list(args),
                       input=b"", capture_output=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).decode("latin-1")


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_tls12_offers_only_aead_with_forward_secrecy(start_server, certs,
                                                     tmp_path, kind):
    """LUCKY13 and friends: no CBC suite (with or without ECDHE) and no
    static RSA key exchange is accepted in TLS 1.2; ECDHE with AES-GCM or
    ChaCha20-Poly1305 is, and TLS 1.3 as OpenSSL has it."""
    need_tool("openssl")
    cert, key = rsa_cert(tmp_path) if kind == "rsa" else certs["a"]
    au = "RSA" if kind == "rsa" else "ECDSA"
    srv = start_server("--tls-cert", cert, "--tls-key", key,
                       "--smtps-port", str(free_port()))
    port = smtps_port(srv)
    refused = ["ECDHE-%s-AES128-SHA" % au, "ECDHE-%s-AES256-SHA384" % au]
    if kind == "rsa":
        refused += ["AES128-SHA", "AES128-GCM-SHA256", "AES256-SHA256"]
    for suite in refused:
        code, out = s_client(port, "-tls1_2", "-cipher", suite)
        assert code != 0, (suite, out[-1500:])
        assert "Cipher is %s" % suite not in out, (suite, out[-1500:])
    for suite in ["ECDHE-%s-AES128-GCM-SHA256" % au,
                  "ECDHE-%s-AES256-GCM-SHA384" % au,
                  "ECDHE-%s-CHACHA20-POLY1305" % au]:
        code, out = s_client(port, "-tls1_2", "-cipher", suite)
        assert code == 0, (suite, out[-1500:])
        assert "Cipher is %s" % suite in out, (suite, out[-1500:])
    code, out = s_client(port, "-tls1_3")
    assert code == 0 and "TLSv1.3" in out, out[-1500:]
    wait_log(srv, "TLS handshake failed: ")
    still_serves(srv)


# ---- a 10 s handshake deadline (or -T if shorter) -------------------------

def test_silent_tls_client_closed_at_the_handshake_deadline(start_server,
                                                            certs):
    """-T 300: a client on the implicit-TLS port that sends nothing is
    closed after 10 s, not 300, and the log says so."""
    srv = tls_server(start_server, certs)
    before = settled_fds(srv)
    sock = socket.create_connection(("127.0.0.1", smtps_port(srv)))
    assert closed_by_server(sock, 60)
    sock.close()
    wait_log(srv, "TLS handshake not done within 10 s, closing")
    assert_no_fd_leak(srv, before)
    still_serves(srv)


@pytest.mark.parametrize("where", ["smtps", "starttls"])
def test_handshake_deadline_is_t_when_shorter(start_server, certs, where):
    """-T 3: the handshake's limit is -T, for implicit TLS and STARTTLS."""
    srv = tls_server(start_server, certs, "-T", "3")
    before = settled_fds(srv)
    if where == "smtps":
        sock = socket.create_connection(("127.0.0.1", smtps_port(srv)))
    else:
        c = TlsClient(srv.port)
        c.greet()
        assert c.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
        sock = c.sock
    assert closed_by_server(sock, 60)
    sock.close()
    wait_log(srv, "TLS handshake not done within 3 s, closing")
    assert_no_fd_leak(srv, before)


def test_silent_client_after_starttls_closed_after_10_s(start_server, certs):
    """-T 300: a client that says STARTTLS and then nothing is closed
    after the 10 s handshake deadline too."""
    srv = tls_server(start_server, certs)
    c = TlsClient(srv.port)
    c.greet()
    assert c.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
    assert closed_by_server(c.sock, 60)
    c.close()
    wait_log(srv, "TLS handshake not done within 10 s, closing")
