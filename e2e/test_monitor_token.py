"""The monitor token kept from other local users: -k is blanked from the
process's command line, --monitor-token-file reads it from a file (first
line, up to 8 bytes; group- or world-readable files are warned about), and
every bad token file stops the start with exit 2 and FILE: reason."""
import os
import socket
import subprocess

import pytest

from conftest import MANAGER_BIN, SMTPD_BIN, free_port


def manager(srv, *args):
    return subprocess.run([MANAGER_BIN, "-p", str(srv.monitor_port)]
                          + [str(a) for a in args],
                          capture_output=True, text=True, timeout=30)


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


def token_file(path, data, mode=0o600):
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def test_k_is_blanked_from_the_command_line(start_server):
    srv = start_server("-k", "Zq7sEcrt")
    args = cmdline(srv.pid).split(b"\0")
    assert b"Zq7sEcrt" not in cmdline(srv.pid), args
    assert args[args.index(b"-k") + 1] == b"xxxxxxxx", args
    r = manager(srv, "-k", "Zq7sEcrt", "hist")
    assert r.returncode == 0 and r.stderr == "", r


def test_token_file_works_with_manager(start_server, tmp_path):
    f = token_file(tmp_path / "token", b"Fi1eTok\n")
    srv = start_server("--monitor-token-file", str(f))
    assert b"Fi1eTok" not in cmdline(srv.pid)
    r = manager(srv, "-k", "Fi1eTok", "status")
    assert (r.returncode, r.stdout, r.stderr) == \
        (0, "transformations: OFF\n", ""), r
    for wrong in ("smtpd", "Fi1eTo", "Fi1eTokx"):
        r = manager(srv, "-k", wrong, "status")
        assert r.returncode == 1 and r.stdout == "", (wrong, r)
        assert r.stderr == "manager: authentication failed (wrong token)\n"
    assert "readable by group or others" not in srv.log_text()


def test_token_file_of_eight_bytes_without_newline(start_server, tmp_path):
    f = token_file(tmp_path / "token", b"12345678")
    srv = start_server("--monitor-token-file", str(f))
    assert manager(srv, "-k", "12345678", "hist").returncode == 0
    assert manager(srv, "-k", "1234567", "hist").returncode == 1


def test_only_the_first_line_counts(start_server, tmp_path):
    f = token_file(tmp_path / "token", b"first\r\nsecond line\n")
    srv = start_server("--monitor-token-file", str(f))
    assert manager(srv, "-k", "first", "hist").returncode == 0
    assert manager(srv, "-k", "second", "hist").returncode == 1


def test_group_readable_token_file_is_warned_about(start_server, tmp_path):
    f = token_file(tmp_path / "token", b"grpread\n", mode=0o640)
    srv = start_server("--monitor-token-file", str(f))
    assert "%s: readable by group or others" % f in srv.log_text()
    assert manager(srv, "-k", "grpread", "hist").returncode == 0


def start_fails(tmp_path, *args):
    cmd = [SMTPD_BIN, "-s", str(free_port()),
           "-p", str(free_port(socket.SOCK_DGRAM)), "-a", "127.0.0.1",
           "-m", "127.0.0.1", "-f", str(tmp_path / "mail")] + list(args)
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "mail").exists(), "touched the mailbox root"
    return r.stderr


@pytest.mark.parametrize("data,reason", [
    (b"123456789\n", "the token on the first line is longer than 8 bytes"),
    (b"a much longer first line than any token\n",
     "the token on the first line is longer than 8 bytes"),
    (b"\nsecond\n", "no token on the first line"),
    (b"", "no token on the first line"),
    (b"ab\0cd\n", "NUL byte in the token"),
])
def test_bad_token_file_stops_the_start(tmp_path, data, reason):
    f = token_file(tmp_path / "token", data)
    err = start_fails(tmp_path, "--monitor-token-file", str(f))
    assert err == "smtpd: %s: %s\n" % (f, reason)


def test_fifo_directory_and_missing_token_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert start_fails(tmp_path, "--monitor-token-file", str(fifo)) == \
        "smtpd: %s: not a regular file\n" % fifo
    assert start_fails(tmp_path, "--monitor-token-file", str(tmp_path)) == \
        "smtpd: %s: not a regular file\n" % tmp_path
    missing = tmp_path / "missing"
    assert start_fails(tmp_path, "--monitor-token-file", str(missing)) == \
        "smtpd: %s: No such file or directory\n" % missing


def test_k_and_token_file_exclude_each_other(tmp_path):
    f = token_file(tmp_path / "token", b"tok\n")
    err = start_fails(tmp_path, "-k", "other", "--monitor-token-file", str(f))
    assert "-k and --monitor-token-file exclude each other" in err


def test_too_long_k_is_not_echoed(tmp_path):
    err = start_fails(tmp_path, "-k", "Secret-But-Too-Long")
    assert "longer than 8 bytes" in err and "Secret" not in err
