"""Password file reloads that go wrong (SIGHUP): a FIFO at the path, a
file rewritten in place while it is reread, an empty file; the server goes
on answering, the old users keep logging in, the error is logged, and a
good file that appears within 10 s is loaded by the retry. Weak hashes
(DES, MD5-crypt) are warned about at load."""
import ctypes
import errno
import os
import signal
import threading
import time

from conftest import b64, greeted

BODY = b"Subject: reload\r\n\r\nhi\r\n"


def plain(user, password):
    return b64("\0%s\0%s" % (user, password))


def write_passwd(path, lines, mode=0o600):
    path.write_text("".join(l + "\n" for l in lines))
    os.chmod(path, mode)
    return path


def auth(c, user, password):
    return c.cmd("AUTH PLAIN " + plain(user, password))


def wait_log(srv, text, count=1, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.log_text().count(text) >= count:
            return True
        time.sleep(0.05)
    return False


def crypt(password, salt):
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib.crypt(password.encode(), salt.encode()).decode()


def test_fifo_at_the_path_is_refused_and_the_server_goes_on(
        start_server, connect, tmp_path):
    f = write_passwd(tmp_path / "users", ["alice:{PLAIN}a1"])
    srv = start_server("--passwd-file", str(f))
    f.unlink()
    os.mkfifo(f)
    srv.proc.send_signal(signal.SIGHUP)
    c = greeted(connect, srv)
    assert c.cmd("NOOP").startswith("250")
    assert wait_log(srv, "%s: not a regular file" % f), srv.log_text()
    assert "password files not reloaded, the old users stay" in srv.log_text()
    assert auth(c, "alice", "a1").startswith("235 2.7.0")
    # a writer that opens the FIFO later finds no reader waiting on it
    fd = None
    try:
        fd = os.open(f, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        assert e.errno == errno.ENXIO   # nobody has it open for reading
    finally:
        if fd is not None:
            os.close(fd)
    assert fd is None


def test_fifo_at_start_exits_2(tmp_path):
    import subprocess
    from conftest import SMTPD_BIN, free_port
    fifo = tmp_path / "users"
    os.mkfifo(fifo)
    r = subprocess.run([SMTPD_BIN, "-s", str(free_port()), "-p",
                        str(free_port()), "-a", "127.0.0.1", "-m", "127.0.0.1",
                        "-f", str(tmp_path / "mail"), "--passwd-file",
                        str(fifo)], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == \
        (2, "smtpd: %s: not a regular file\n" % fifo)


def test_rewrites_during_reloads_never_lose_an_unchanged_user(
        start_server, connect, tmp_path):
    """A writer rewrites the file in place (truncate, then line by line),
    SIGHUPs come all the while: a reload may only ever see the whole file
    or keep the old users, so alice's correct password always works."""
    filler = ["user%03d:{PLAIN}pw%03d" % (i, i) for i in range(300)]

    def content(gen):
        return filler + ["changing:{PLAIN}gen%d" % gen, "alice:{PLAIN}a1"]

    f = write_passwd(tmp_path / "users", content(0))
    srv = start_server("--passwd-file", str(f))
    stop = threading.Event()
    gens = [0]

    def writer():
        while not stop.is_set():
            gens[0] += 1
            lines = content(gens[0])
            with open(f, "r+") as out:
                out.truncate(0)
                for i in range(0, len(lines), 50):
                    out.write("".join(l + "\n" for l in lines[i:i + 50]))
                    out.flush()
                    time.sleep(0.002)
            time.sleep(0.01)

    def hupper():
        while not stop.is_set():
            srv.proc.send_signal(signal.SIGHUP)
            time.sleep(0.02)

    threads = [threading.Thread(target=writer), threading.Thread(target=hupper)]
    for t in threads:
        t.start()
    answers = []

    def outcomes():
        log = srv.log_text()
        return (log.count("password files not reloaded")
                + log.count("password files reloaded"))
    try:
        # logins until a good number of reloads have ended, either way
        while outcomes() < 10 and len(answers) < 5000:
            c = greeted(connect, srv)
            answers.append(auth(c, "alice", "a1")[:9])
            c.close()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert answers == ["235 2.7.0"] * len(answers), answers
    assert "not reloaded" in srv.log_text()     # some reloads were refused
    # once the file is left alone, the last version goes in
    marker = srv.log_text().count("password files reloaded")
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_log(srv, "password files reloaded", marker + 1)
    c = greeted(connect, srv)
    assert auth(c, "changing", "gen%d" % gens[0]).startswith("235 2.7.0")


def test_empty_file_keeps_the_users_and_the_retry_loads_a_good_one(
        start_server, connect, tmp_path):
    f = write_passwd(tmp_path / "users", ["alice:{PLAIN}a1"])
    srv = start_server("--passwd-file", str(f))
    write_passwd(f, [])
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_log(srv, "%s: empty file (trying again in a second)" % f), \
        srv.log_text()
    c = greeted(connect, srv)
    assert auth(c, "alice", "a1").startswith("235 2.7.0")
    # comments only: no users, refused too
    write_passwd(f, ["# nobody yet"])
    assert wait_log(srv, "%s: no users in the file" % f), srv.log_text()
    assert "password files reloaded" not in srv.log_text()
    # a good file, no new SIGHUP: the retry loads it
    write_passwd(f, ["alice:{PLAIN}a2", "bob:{PLAIN}b2"])
    assert wait_log(srv, "password files reloaded: 2 users"), srv.log_text()
    assert sorted(os.listdir(srv.maildir("bob"))) == ["cur", "new", "tmp"]
    for user, password, want in (("alice", "a1", "535 5.7.8"),
                                 ("alice", "a2", "235 2.7.0"),
                                 ("bob", "b2", "235 2.7.0")):
        c = greeted(connect, srv)
        assert auth(c, user, password).startswith(want), (user, password)


def test_des_and_md5_crypt_are_warned_about(start_server, connect, tmp_path):
    des, md5 = crypt("des-pw", "ab"), crypt("md5-pw", "$1$saltsalt")
    assert len(des) == 13 and md5.startswith("$1$")
    f = write_passwd(tmp_path / "users", [
        "olddes:{CRYPT}" + des, "bare:" + crypt("bare-pw", "cd"),
        "oldmd5:{CRYPT}" + md5, "modern:" + crypt("new-pw", "$6$saltsalt"),
    ])
    srv = start_server("--passwd-file", str(f))
    log = srv.log_text()
    assert "%s: 2 users with DES crypt passwords" % f in log, log
    assert "%s: 1 users with MD5-crypt ($1$) passwords" % f in log, log
    c = greeted(connect, srv)
    assert auth(c, "olddes", "des-pw").startswith("235 2.7.0")
    c = greeted(connect, srv)
    assert auth(c, "oldmd5", "md5-pw").startswith("235 2.7.0")
    # a reload warns again
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_log(srv, "password files reloaded")
    assert srv.log_text().count("users with MD5-crypt") == 2
