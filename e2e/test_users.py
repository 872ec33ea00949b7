"""Users from a password file (--passwd-file, Dovecot's passwd-file format):
every scheme logs in, -u users beside them, mailboxes made, SIGHUP rereads
the file (removed users are out, logged-in sessions go on, a bad file
keeps the old users), and every kind of bad file stops the start with
exit 2 and FILE:LINE: reason."""
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import (SANITIZED, SMTPD_BIN, b64, free_port, greeted, queue_id,
                      send_mail)

BODY = b"Subject: users\r\n\r\nfrom a password file\r\n"


def plain(user, password):
    return b64("\0%s\0%s" % (user, password))


def sha512(password):
    if shutil.which("doveadm"):
        out = subprocess.run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p",
                              password], capture_output=True, text=True,
                             check=True).stdout.strip()
        assert out.startswith("{SHA512-CRYPT}$6$"), out
        return out
    return "{SHA512-CRYPT}" + subprocess.run(
        ["openssl", "passwd", "-6", password], capture_output=True,
        text=True, check=True).stdout.strip()


def yescrypt(password):
    if not shutil.which("mkpasswd"):
        pytest.skip("mkpasswd (Debian's whois) missing; make test-deps")
    out = subprocess.run(["mkpasswd", "-m", "yescrypt", password],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("$y$"), out.stdout
    return out.stdout.strip()


def sha256(password):
    return "{SHA256-CRYPT}" + subprocess.run(
        ["openssl", "passwd", "-5", password], capture_output=True,
        text=True, check=True).stdout.strip()


def write_passwd(path, lines, mode=0o600):
    path = pathlib.Path(path)
    data = "".join(l + "\n" for l in lines)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


def auth(c, user, password):
    return c.cmd("AUTH PLAIN " + plain(user, password))


def wait_log(srv, text, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in srv.log_text():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def users_file(tmp_path):
    return write_passwd(tmp_path / "users", [
        "# smtpd and Dovecot users",
        "",
        "alice:" + sha512("alice-pw") + ":1000:1000::/home/alice::",
        "bob:" + yescrypt("bob-pw"),
        "carol:" + sha256("carol-pw"),
        "dave:{PLAIN}dave-pw",
    ])


def test_every_scheme_logs_in(start_server, connect, users_file):
    srv = start_server("--passwd-file", str(users_file), "-u", "erin:erin-pw")
    for user in ("alice", "bob", "carol", "dave", "erin"):
        c = greeted(connect, srv)
        assert auth(c, user, user + "-pw") == \
            "235 2.7.0 Authentication successful", user
        assert auth(c, user, user + "-pw").startswith("503 5.5.1")
    for user in ("Alice", "BOB"):       # names match in any case
        c = greeted(connect, srv)
        assert auth(c, user, user.lower() + "-pw").startswith("235 2.7.0")
    for user in ("alice", "bob", "carol", "dave", "erin", "postmaster"):
        assert sorted(os.listdir(srv.maildir(user))) == ["cur", "new", "tmp"]
    log = srv.log_text()
    assert "1 users with {PLAIN} passwords" in log, log
    assert "readable by group or others" not in log


def test_wrong_password_and_unknown_user_fail_alike(start_server, connect,
                                                    users_file):
    srv = start_server("--passwd-file", str(users_file))
    for user, password in (("bob", "Xq7-guess"), ("nobody", "bob-pw"),
                           ("alice", "bob-pw")):
        c = greeted(connect, srv)
        assert auth(c, user, password) == \
            "535 5.7.8 Authentication credentials invalid"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    log = srv.log_text()
    for user in ("bob", "nobody", "alice"):
        assert "AUTH failed for user '%s' from 127.0.0.1" % user in log
    assert "Xq7-guess" not in log and "bob-pw" not in log


def test_login_then_mail_says_esmtpa(start_server, connect, users_file):
    srv = start_server("-A", "--passwd-file", str(users_file))
    c = greeted(connect, srv)
    assert c.cmd("MAIL FROM:<bob@localhost>").startswith("530 5.7.0")
    c.send("AUTH LOGIN\r\n")
    assert c.reply_line().startswith("334 ")
    assert c.cmd(b64("bob")).startswith("334 ")
    assert c.cmd(b64("bob-pw")).startswith("235 2.7.0")
    queue_id(send_mail(c, "bob@localhost", ["alice@localhost"], BODY))
    files = srv.wait_new("alice")
    assert len(files) == 1 and b"with ESMTPA id" in files[0].read_bytes()


def test_file_with_no_users_offers_no_auth(start_server, connect, tmp_path):
    f = write_passwd(tmp_path / "empty", ["# nobody yet"])
    srv = start_server("--passwd-file", str(f))
    c = connect(srv.port)
    lines = c.greet()
    assert not any(l.startswith("AUTH") for l in lines), lines
    assert c.cmd("AUTH PLAIN " + plain("a", "b")).startswith("504 5.5.4")


def test_group_readable_file_is_warned_about(start_server, connect, tmp_path):
    f = write_passwd(tmp_path / "users", ["dave:{PLAIN}dave-pw"], mode=0o644)
    srv = start_server("--passwd-file", str(f))
    assert "readable by group or others" in srv.log_text()
    c = greeted(connect, srv)
    assert auth(c, "dave", "dave-pw").startswith("235 2.7.0")


# ---- SIGHUP ------------------------------------------------------------

def test_sighup_rereads_the_file(start_server, connect, tmp_path):
    f = write_passwd(tmp_path / "users", ["alice:{PLAIN}a1", "bob:{PLAIN}b1"])
    srv = start_server("--passwd-file", str(f))
    inside = greeted(connect, srv)
    assert auth(inside, "bob", "b1").startswith("235 2.7.0")

    write_passwd(f, ["alice:{PLAIN}a2", "carol:" + sha256("c2")])
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_log(srv, "password files reloaded: 2 users"), srv.log_text()
    assert sorted(os.listdir(srv.maildir("carol"))) == ["cur", "new", "tmp"]
    for user, password, want in (("bob", "b1", "535 5.7.8"),
                                 ("alice", "a1", "535 5.7.8"),
                                 ("alice", "a2", "235 2.7.0"),
                                 ("carol", "c2", "235 2.7.0")):
        c = greeted(connect, srv)
        assert auth(c, user, password).startswith(want), (user, password)
    # bob's session from before the reload goes on
    assert send_mail(inside, "bob@localhost", ["alice@localhost"],
                     BODY).startswith("250 2.0.0")

    # a bad file: logged, and the users stay as they were
    write_passwd(f, ["alice:{PLAIN}a3", "broken line"])
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_log(srv, "not reloaded"), srv.log_text()
    assert "%s:2: no ':'" % f in srv.log_text()
    c = greeted(connect, srv)
    assert auth(c, "carol", "c2").startswith("235 2.7.0")


# ---- bad files: exit 2 before anything else ------------------------------

def start_fails(tmp_path, *args, user=None):
    """Runs smtpd expecting it to refuse to start; returns its stderr."""
    cmd = [SMTPD_BIN, "-s", str(free_port()), "-p", str(free_port()),
           "-a", "127.0.0.1", "-m", "127.0.0.1",
           "-f", str(tmp_path / "mail")] + list(args)
    if user:
        cmd = ["setpriv", "--reuid=%s" % user, "--regid=nogroup",
               "--clear-groups", "--"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    # one error line; warnings about lines read before it may come first
    errors = [l for l in r.stderr.splitlines() if l.startswith("smtpd: ")]
    assert len(errors) == 1 and r.stderr.endswith(errors[0] + "\n"), r.stderr
    assert not (tmp_path / "mail").exists(), "touched the mailbox root"
    return r.stderr


GOOD = "alice:{PLAIN}pw"


@pytest.mark.parametrize("line,reason", [
    ("bob", "no ':'"),
    ("bob:{MD4}abc", "unknown password scheme"),
    ("bob:{SHA512-CRYPT}$6$Yb9KkUVKgMjzIIyJ$KfA0E6ZA2WIlbIRNv1M3LP",
     "does not have its scheme's form"),
    ("bob:$y$j9T$XPQnG2PVNATkq6MJBHh.z1$0hmvWOx", "does not have"),
    ("bob:{SHA256-CRYPT}$6$salt$" + "a" * 86, "not of the scheme"),
    ("bob:secret", "neither {SCHEME}hash nor a crypt(3) string"),
    ("bo/b:{PLAIN}x", "not a valid local-part"),
    ("..:{PLAIN}x", "not a valid local-part"),
    ("b" * 65 + ":{PLAIN}x", "not a valid local-part"),
    ("bob@example.org:{PLAIN}x", "not a valid local-part"),
    ("bob:", "empty password"),
    ("alice:{PLAIN}again", "listed twice"),
])
def test_bad_line_stops_the_start(tmp_path, line, reason):
    f = write_passwd(tmp_path / "users", ["# users", GOOD, line])
    err = start_fails(tmp_path, "--passwd-file", str(f))
    if reason == "listed twice":
        assert "smtpd: %s:3: user 'alice' is listed twice (also at %s:2)" \
            % (f, f) in err, err
    else:
        assert "smtpd: %s:3: " % f in err and reason in err, err


def test_user_of_a_file_and_of_u_is_named_with_its_line(tmp_path):
    f = write_passwd(tmp_path / "users", ["# users", "bob:{PLAIN}x", GOOD])
    err = start_fails(tmp_path, "--passwd-file", str(f), "-u", "alice:other")
    assert "smtpd: %s:3: user 'alice' is listed twice (also given with -u)" \
        % f in err, err


def test_crlf_line_ends_are_line_ends(start_server, connect, tmp_path):
    """A file saved with CRLF line ends (a Windows editor): the CR is not
    part of the password."""
    f = tmp_path / "users"
    f.write_bytes(b"# users\r\nalice:{PLAIN}pw\r\nbob:" +
                  sha512("bob-pw").encode() + b"\r\n")
    os.chmod(f, 0o600)
    srv = start_server("--passwd-file", str(f))
    for user, password in (("alice", "pw"), ("bob", "bob-pw")):
        c = connect(srv.port)
        c.greet()
        assert auth(c, user, password).startswith("235 2.7.0"), user


def test_nul_byte_stops_the_start(tmp_path):
    f = tmp_path / "users"
    f.write_bytes(b"alice:{PLAIN}pw\nbob:{PLAIN}p\0w\n")
    os.chmod(f, 0o600)
    err = start_fails(tmp_path, "--passwd-file", str(f))
    assert "%s:2: NUL byte" % f in err, err


def test_missing_file_and_directory(tmp_path):
    err = start_fails(tmp_path, "--passwd-file", str(tmp_path / "nope"))
    assert err.strip() == "smtpd: %s: No such file or directory" % (
        tmp_path / "nope"), err
    err = start_fails(tmp_path, "--passwd-file", str(tmp_path))
    assert err.strip() == "smtpd: %s: not a regular file" % tmp_path, err


def test_unreadable_file(tmp_path):
    if os.getuid() != 0:
        f = write_passwd(tmp_path / "users", [GOOD], mode=0o000)
        err = start_fails(tmp_path, "--passwd-file", str(f))
        assert err.strip() == "smtpd: %s: Permission denied" % f, err
        return
    # Root reads any file: run smtpd as nobody instead, against a root-owned
    # file of mode 000 in a directory nobody can reach (pytest's tmp_path,
    # under /tmp/pytest-of-root, is not).
    if not shutil.which("setpriv"):
        pytest.skip("setpriv missing: cannot drop root to test this")
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                            "--clear-groups", "--", SMTPD_BIN, "-v"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("the smtpd binary is not runnable as nobody here")
    d = pathlib.Path(tempfile.mkdtemp(prefix="smtpd-e2e-users-"))
    try:
        os.chmod(d, 0o755)
        f = write_passwd(d / "users", [GOOD], mode=0o000)
        err = start_fails(d, "--passwd-file", str(f), user="nobody")
        assert err.strip() == "smtpd: %s: Permission denied" % f, err
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_option_needs_a_value(tmp_path):
    r = subprocess.run([SMTPD_BIN, "--passwd-file"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2
    assert "option --passwd-file needs a value" in r.stderr, r.stderr
    r = subprocess.run([SMTPD_BIN, "--passwd-files=x"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "unknown option" in r.stderr, r.stderr


@pytest.mark.slow
def test_100000_line_file(connect, tmp_path):
    """Starts with 100,000 users, making their 100,000 mailboxes (one
    syncfs for all); users from the end and the middle of the file log in.
    Making that many directories takes a while on a cold start, so this
    test waits up to 3 minutes for the server (10 under ASan, whose start
    took close to 3 on a busy 2-core machine), longer than the fixture
    does. The time is printed, not judged (docs/benchmarks.md)."""
    f = tmp_path / "users"
    with open(f, "w") as out:
        for i in range(99999):
            out.write("user%05d:{PLAIN}pw%d\n" % (i, i))
        out.write("zed:%s\n" % sha256("last-pw"))
    os.chmod(f, 0o600)
    port, log = free_port(), tmp_path / "smtpd.log"
    t0, limit = time.monotonic(), (600 if SANITIZED else 180)
    proc = subprocess.Popen([SMTPD_BIN, "-s", str(port), "-p", str(free_port()),
                             "-a", "127.0.0.1", "-m", "127.0.0.1", "-l", str(log),
                             "-f", str(tmp_path / "mail"), "--passwd-file", str(f)],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while "smtpd ready" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() - t0 < limit, "not ready in %d s" % limit
            time.sleep(0.05)
        print("\n100,000-line password file, cold start: ready in %.2f s"
              % (time.monotonic() - t0))
        for user, password in (("zed", "last-pw"), ("user54321", "pw54321")):
            c = greeted(connect, type("S", (), {"port": port}))
            assert auth(c, user, password).startswith("235 2.7.0")
        assert "100000 users may log in" in log.read_text()
        assert (tmp_path / "mail" / "user99998" / "new").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
        proc.stderr.close()


def test_long_password_is_never_cut_short(start_server, connect):
    """AUTH LOGIN takes long responses; a password longer than the server
    keeps must fail, not be compared by its first 255 characters."""
    srv = start_server("-u", "long:" + "p" * 255)
    for password, want in (("p" * 255 + "q", "535 5.7.8"),
                           ("p" * 255, "235 2.7.0")):
        c = greeted(connect, srv)
        assert c.cmd("AUTH LOGIN " + b64("long")).startswith("334 ")
        assert c.cmd(b64(password)).startswith(want)
