"""The documentation stays true to the programs.

The man pages format without a single groff warning; every flag that
`smtpd -h` and `manager -h` list is documented in README.md and in the man
pages; README.md gives the two commands; every relative link in README.md
and docs/design.md leads to a file; every diagram source has its SVG.
"""
import re
import shutil
import subprocess

import pytest

from conftest import MANAGER_BIN, ROOT, SMTPD_BIN

README = ROOT / "README.md"
SMTPD_MAN = ROOT / "smtpd.8"
MANAGER_MAN = ROOT / "manager.1"
DESIGN = ROOT / "docs" / "design.md"
DIAGRAMS = ROOT / "docs" / "diagrams"


def usage(binary):
    p = subprocess.run([binary, "-h"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout


def option_lines(text):
    """{letter: the text of its entry} from a -h listing: lines that start
    with spaces then -X, plus their indented continuation lines."""
    entries, last = {}, None
    for line in text.splitlines():
        m = re.match(r"^\s+-([A-Za-z])\b(.*)$", line)
        if m:
            last = m.group(1)
            entries[last] = m.group(2)
        elif last and re.match(r"^\s{6,}\S", line):
            entries[last] += " " + line.strip()
        else:
            last = None
    return entries


def smtpd_flags():
    flags = option_lines(usage(SMTPD_BIN))
    assert len(flags) >= 17, flags     # the usage lists 17 letters
    return flags


def manager_flags():
    text = usage(MANAGER_BIN)
    flags = option_lines(text.split("COMMAND (")[0])
    assert set("ipkhv") <= set(flags), flags
    return flags


def readme_rows(flag):
    """README table rows documenting flag: lines starting '| `-X'."""
    pat = re.compile(r"^\|\s*`-%s\b" % re.escape(flag))
    return [l for l in README.read_text().splitlines() if pat.match(l)]


def man_mentions(page, flag):
    """The flag as roff writes it (\\-X), in an option entry (.BI/.B)."""
    text = page.read_text()
    return re.search(r"^\.(?:BI|B|BR|IP|TP)\s+\\-%s\b" % re.escape(flag),
                     text, re.M) is not None


# ---- man pages -----------------------------------------------------------

@pytest.mark.parametrize("page", [SMTPD_MAN, MANAGER_MAN],
                         ids=["smtpd.8", "manager.1"])
def test_man_page_has_no_groff_warnings(page):
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (apt-get install groff-base)")
    p = subprocess.run(["groff", "-man", "-ww", "-z", str(page)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", \
        p.stdout + p.stderr


@pytest.mark.parametrize("page", [SMTPD_MAN, MANAGER_MAN],
                         ids=["smtpd.8", "manager.1"])
def test_man_page_has_the_usual_sections(page):
    text = page.read_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS",
                    "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert re.search(r"^\.SH %s$" % section, text, re.M), section
    if page == SMTPD_MAN:
        for section in ("SIGNALS", "FILES"):
            assert re.search(r"^\.SH %s$" % section, text, re.M), section


def test_smtpd_man_page_lists_every_flag():
    missing = [f for f in smtpd_flags() if not man_mentions(SMTPD_MAN, f)]
    assert not missing, "smtpd.8 lacks -%s" % ", -".join(missing)


def test_manager_man_page_lists_every_flag_and_command():
    missing = [f for f in manager_flags() if not man_mentions(MANAGER_MAN, f)]
    assert not missing, "manager.1 lacks -%s" % ", -".join(missing)
    text = MANAGER_MAN.read_text()
    commands = re.findall(r"^  ([a-z]+)\s{2,}", usage(MANAGER_BIN).split(
        "COMMAND (")[1].split("Without COMMAND")[0], re.M)
    assert {"hist", "conc", "bytes", "status", "on", "off", "stats"} <= \
        set(commands), commands
    for c in commands:
        assert re.search(r"^\.B %s$" % c, text, re.M), c


def test_smtpd_man_page_signals_and_exit_status():
    text = SMTPD_MAN.read_text()
    for word in ("SIGTERM", "SIGINT", "SIGHUP", "SIGPIPE"):
        assert word in text, word
    exit_status = text.split(".SH EXIT STATUS")[1].split(".SH")[0]
    for code in ("0", "1", "2"):
        assert re.search(r"^\.B %s$" % code, exit_status, re.M), code


# ---- README.md -----------------------------------------------------------

def test_readme_gives_the_two_commands():
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
    # the two lines come first, before the tour
    assert text.index("make run") < text.index("## A quick tour")


def test_readme_has_a_row_for_every_smtpd_flag():
    missing = [f for f in smtpd_flags() if not readme_rows(f)]
    assert not missing, "README.md has no table row for -%s" % \
        ", -".join(missing)


def test_readme_has_a_row_for_every_manager_flag():
    missing = [f for f in manager_flags() if not readme_rows(f)]
    assert not missing, "README.md has no table row for -%s" % \
        ", -".join(missing)


def test_readme_defaults_match_smtpd_help():
    """A number in parentheses in `smtpd -h` is a default; the README row
    of that flag must say the same number."""
    for flag, entry in smtpd_flags().items():
        m = re.search(r"\((\d+)\)", entry)
        if not m:
            continue
        rows = readme_rows(flag)
        assert any("`%s`" % m.group(1) in r for r in rows), \
            "-%s: default %s not in %r" % (flag, m.group(1), rows)


def test_readme_and_design_links_lead_somewhere():
    for doc in (README, DESIGN):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue        # http:, https:, mailto:
            path = (doc.parent / target).resolve()
            assert path.exists(), "%s links to missing %s" % (doc.name, target)


# ---- design.md and its diagrams -------------------------------------------

def test_every_diagram_source_has_its_svg():
    sources = sorted(DIAGRAMS.glob("*.dot"))
    assert len(sources) >= 2, sources
    design = DESIGN.read_text()
    for dot in sources:
        svg = dot.with_suffix(".svg")
        assert svg.exists(), "%s has no SVG; see docs/design.md" % dot.name
        assert svg.read_text().lstrip().startswith(("<?xml", "<svg")), svg
        assert "diagrams/%s" % svg.name in design, svg.name
        assert "dot -Tsvg" in dot.read_text(), \
            "%s should say how to regenerate it" % dot.name


def test_diagram_sources_are_valid_graphviz():
    if shutil.which("dot") is None:
        pytest.skip("graphviz is not installed")
    for dot in sorted(DIAGRAMS.glob("*.dot")):
        p = subprocess.run(["dot", "-Tsvg", str(dot), "-o", "/dev/null"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stderr == "", (dot.name, p.stderr)
