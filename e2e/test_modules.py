"""The module graph (tools/modgraph.py, `make graph`): read from the
objects of the binary under test, it has no cycle outside the SMTP session
family, and that family's cycle holds at most four files (the session,
its TLS step, its commands, its DATA path). docs/design.md, section 1."""
import functools
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "modgraph.py"


def objects_dir():
    binary = os.environ.get("SMTPD_BIN")
    build = pathlib.Path(binary).parent if binary else ROOT / "build" / "epoll"
    if not (build / "smtp_session.o").exists():
        pytest.skip("no objects beside the binary under test in %s" % build)
    return build


@functools.lru_cache(maxsize=None)
def graph():
    out = subprocess.run([sys.executable, str(SCRIPT), str(objects_dir())],
                         check=True, capture_output=True, text=True).stdout
    cycles = [line.split(":", 1)[1].split()
              for line in out.splitlines() if line.startswith("  cycle ")]
    return out, cycles


def test_only_the_session_family_has_a_cycle_of_at_most_four_files():
    out, cycles = graph()
    for files in cycles:
        assert all(f.startswith("smtp_") for f in files), out
        assert len(files) <= 4, out


def test_the_auth_family_knows_no_session_and_no_loop():
    out, _ = graph()
    edges = [line.split() for line in out.splitlines()
             if line.startswith("  ") and " -> " in line]
    for src, _, dst in edges:
        if src.startswith("auth_"):
            assert not dst.startswith(("smtp_", "selector")), out


def test_the_graph_prints_every_edge():
    out, _ = graph()
    assert "smtp_session -> smtp_state" in out
    first = out.splitlines()[0]
    edges = sum(1 for line in out.splitlines() if " -> " in line)
    assert first.endswith("%d edges" % edges)


def test_the_addr_family_knows_no_session_and_its_parser_nothing():
    out, _ = graph()
    edges = [line.split() for line in out.splitlines()
             if line.startswith("  ") and " -> " in line]
    assert "smtp_envelope -> addr_resolve" in out
    for src, _, dst in edges:
        if src.startswith("addr_"):
            assert not dst.startswith(("smtp_", "selector")), out
        if src == "addr_aliases":
            assert dst in ("log", "stats"), out
