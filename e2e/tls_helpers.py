"""Helpers for the TLS suites: which build this is, throw-away
certificates made with the openssl command line, and a raw SMTP client
that can switch to TLS in the middle (STARTTLS) or start in it."""
import os
import shutil
import socket
import ssl
import subprocess

import pytest

from conftest import SMTPD_BIN, Client, fd_count  # noqa: F401  (tests import it from here)

_version = None


def smtpd_version():
    global _version
    if _version is None:
        p = subprocess.run([SMTPD_BIN, "-v"], capture_output=True, text=True,
                           timeout=10)
        _version = p.stdout.strip()
    return _version


def tls_built():
    return "TLS:" in smtpd_version()


def need_tls():
    """Skips (with the reason printed) on a server built with TLS=0."""
    if not tls_built():
        print("smtpd is built without TLS (make TLS=0): TLS test skipped")
        pytest.skip("smtpd built without TLS")


def need_tool(tool):
    path = shutil.which(tool)
    if not path:
        print("%s is not installed (make test-deps installs it)" % tool)
        pytest.skip("%s is not installed" % tool)
    return path


def make_cert(directory, name, cn="localhost"):
    """(cert, key) paths: a self-signed ECDSA P-256 certificate."""
    cert = os.path.join(str(directory), name + ".crt")
    key = os.path.join(str(directory), name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "30",
                    "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """Two certificate/key pairs (a, b) and a file holding both cert a and
    its key (combined)."""
    need_tls()
    d = tmp_path_factory.mktemp("certs")
    a = make_cert(d, "a")
    b = make_cert(d, "b", cn="other.test")
    combined = os.path.join(str(d), "combined.pem")
    with open(combined, "w") as out:
        out.write(open(a[0]).read() + open(a[1]).read())
    return {"a": a, "b": b, "combined": combined, "dir": d}


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_args(certs, *extra):
    return ("--tls-cert", certs["a"][0], "--tls-key", certs["a"][1]) + extra


class TlsClient(Client):
    """conftest's Client whose socket can be wrapped in TLS."""

    def __init__(self, port, host="127.0.0.1", timeout=10, implicit=False,
                 ctx=None):
        super().__init__(port, host, timeout)
        self.ctx = ctx or client_context()
        if implicit:
            self.wrap()

    def wrap(self):
        assert not self.buf, "bytes after STARTTLS: %r" % self.buf
        self.sock = self.ctx.wrap_socket(self.sock, server_hostname="localhost")
        return self.sock

    def starttls(self):
        assert self.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
        return self.wrap()


def smtps_port(srv):
    """The --smtps-port a server was started with."""
    i = srv.cmd.index("--smtps-port")
    return int(srv.cmd[i + 1])


def peer_cert(port, implicit=True):
    """The DER certificate the server presents now."""
    c = TlsClient(port, implicit=implicit)
    der = c.sock.getpeercert(binary_form=True)
    c.close()
    return der


def pem_to_der(path):
    return ssl.PEM_cert_to_DER_cert(open(path).read())


