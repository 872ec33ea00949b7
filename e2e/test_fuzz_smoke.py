"""Fuzzing smoke run (docs/reliability.md): when clang and libFuzzer are
here, builds every harness exactly as `make fuzz` does (into a scratch
directory) and runs each for 10 s from a copy of its seed corpus, both at
once; any crash, leak, sanitizer report or UB fails the test.  The long
runs are `make fuzz FUZZ_TIME=...`.
"""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FUZZ_CC = os.environ.get("FUZZ_CC", "clang")
# the Makefile's FUZZ_FLAGS
FLAGS = ["-std=c11", "-D_GNU_SOURCE", "-Iinclude", "-g", "-O1",
         "-fsanitize=fuzzer,address,undefined"]
HARNESSES = {
    "parser": ["fuzz/fuzz_parser.c", "parser.c", "smtp_utf8.c", "auth_sasl.c"],
    "monitor": ["fuzz/fuzz_monitor.c", "monitor.c"],
    "users": ["fuzz/fuzz_users.c", "auth_users.c", "parser.c", "smtp_utf8.c",
              "maildir_quota_rule.c"],
    "proxy": ["fuzz/fuzz_proxy.c", "smtp_proxy.c"],
    "http": ["fuzz/fuzz_http.c", "metrics_http.c"],
    "aliases": ["fuzz/fuzz_aliases.c", "addr_aliases.c"],
    "bdat": ["fuzz/fuzz_bdat.c", "smtp_bdat.c", "parser.c", "smtp_utf8.c"],
    "journal": ["fuzz/fuzz_journal.c", "maildir_journal_record.c",
                "maildir_sha256.c"],
}
SECONDS = 10


@pytest.fixture(scope="module")
def fuzzer_ok(tmp_path_factory):
    if shutil.which(FUZZ_CC) is None:
        pytest.skip("%s not found: no fuzzing here" % FUZZ_CC)
    d = tmp_path_factory.mktemp("fuzzcheck")
    src = d / "tiny.c"
    src.write_text("int LLVMFuzzerTestOneInput(const unsigned char *d, "
                   "unsigned long n) { (void)d; (void)n; return 0; }\n")
    r = subprocess.run([FUZZ_CC, "-fsanitize=fuzzer", str(src), "-o",
                        str(d / "tiny")], capture_output=True, timeout=120)
    if r.returncode != 0:
        pytest.skip("%s -fsanitize=fuzzer does not link (no libFuzzer "
                    "runtime): %s" % (FUZZ_CC, r.stderr.decode()[-300:]))


@pytest.mark.slow
def test_every_harness_runs_clean_for_ten_seconds(fuzzer_ok, tmp_path):
    procs = {}
    env = dict(os.environ)
    # recoverable UBSan checks only print by default: make them fatal
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    env.pop("ASAN_OPTIONS", None)
    builds = {name: subprocess.Popen(
        [FUZZ_CC] + FLAGS + sources + ["-o", str(tmp_path / ("fuzz_" + name))],
        cwd=ROOT) for name, sources in HARNESSES.items()}
    for name, b in builds.items():
        assert b.wait(timeout=300) == 0, "building fuzz_%s failed" % name
    for name in HARNESSES:
        exe = tmp_path / ("fuzz_" + name)
        corpus = tmp_path / ("corpus-" + name)
        shutil.copytree(ROOT / "fuzz" / "corpus" / name, corpus)
        log = open(tmp_path / (name + ".log"), "wb")
        procs[name] = (subprocess.Popen(
            [str(exe), "-max_total_time=%d" % SECONDS, "-max_len=16384",
             "-artifact_prefix=%s/" % tmp_path, str(corpus)],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    for name, (proc, log) in procs.items():
        try:
            rc = proc.wait(timeout=SECONDS + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        out = (tmp_path / (name + ".log")).read_text(errors="replace")
        runs = re.findall(r"Done (\d+) runs", out)
        print("fuzz_%s: %s runs in %d s, exit %d"
              % (name, runs[-1] if runs else "?", SECONDS, rc))
        assert rc == 0, out[-3000:]
        assert runs, out[-3000:]
        assert "runtime error:" not in out, out[-3000:]
        assert not list(tmp_path.glob("crash-*")), out[-3000:]
