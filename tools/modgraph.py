#!/usr/bin/python3
"""modgraph.py - the file-level module graph, read from the build's objects.

Each object's undefined symbols (nm -u) are matched to the object that
defines them (nm --defined-only): an edge a -> b means a.c calls or uses
something of b.c.  Prints the edges, then every cycle (a strongly connected
component of more than one file), and with --dot FILE writes a Graphviz
source with one cluster per name family (docs/design.md, section 1).

    tools/modgraph.py [--dot FILE] [BUILD_DIR]     (default build/epoll)

Only the objects of sources at the root count, so that objects left in
BUILD_DIR by an older layout do not.  Exit status 0; 1 if the objects
cannot be read.  `make graph` runs it and redraws docs/diagrams/modules.svg;
e2e/test_modules.py fails when a cycle leaves the SMTP session family.
"""
import os
import subprocess
import sys

# name family -> (label, the files' stems); a stem not listed falls in
# the family of its longest listed prefix.
FAMILIES = [
    ("smtp", "SMTP session", ["smtp_", "parser"]),
    ("auth", "users and AUTH", ["auth_"]),
    ("addr", "addresses", ["addr_"]),
    ("maildir", "storage", ["maildir"]),
    ("transport", "transport", ["transport"]),
    ("loop", "event loop and threads", ["selector", "worker", "buffer"]),
    ("program", "program", ["smtpd", "log", "stats"]),
    ("filter", "filter", ["transform"]),
    ("monitor", "monitor", ["monitor"]),
    ("metrics", "metrics over HTTP", ["metrics"]),
    ("manager", "manager", ["manager"]),
]


def family(stem):
    best, length = "other", 0
    for name, _, prefixes in FAMILIES:
        for p in prefixes:
            if stem.startswith(p) and len(p) > length:
                best, length = name, len(p)
    return best


def nm(path, *flags):
    out = subprocess.run(["nm", "-P", *flags, path], check=True,
                         capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_objects(build):
    objs = sorted(f for f in os.listdir(build) if f.endswith(".o")
                  and os.path.exists(os.path.join(ROOT, f[:-2] + ".c")))
    if not objs:
        sys.exit(f"modgraph: no objects in {build} (run make first)")
    defined, undefined = {}, {}
    for f in objs:
        stem = f[:-2]
        path = os.path.join(build, f)
        undefined[stem] = set(nm(path, "-u"))
        for sym in nm(path, "--defined-only", "-g"):
            defined[sym] = stem
    return defined, undefined


def edges_of(defined, undefined):
    edges = set()
    for stem, syms in undefined.items():
        for sym in syms:
            dst = defined.get(sym)
            if dst and dst != stem:
                edges.add((stem, dst))
    return sorted(edges)


def cycles(nodes, edges):
    """Tarjan's strongly connected components, those of two files or more."""
    succ = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return sorted(comps)


# Used by nearly every file: their edges are printed, not drawn.
UNDRAWN = {"log", "stats"}


def write_dot(path, nodes, edges, comps):
    in_cycle = {n for c in comps for n in c}
    lines = ["// generated from the objects by tools/modgraph.py: do not edit; `make graph`\n"
             "// rewrites it and runs dot -Tsvg docs/diagrams/modules.dot -o docs/diagrams/modules.svg",
             "digraph modules {",
             '  label="arrow: calls or uses; log.c and stats.c, used by '
             'nearly every file, without their arrows; red: a cycle";',
             "  rankdir=TB; newrank=true; fontname=Helvetica; fontsize=10;",
             "  node [shape=box, fontname=Helvetica, fontsize=10];",
             "  edge [color=gray40, arrowsize=0.6];"]
    for name, label, _ in FAMILIES + [("other", "other", [])]:
        members = sorted(n for n in nodes if family(n) == name)
        if not members:
            continue
        lines.append(f'  subgraph cluster_{name} {{ label="{label}"; '
                     'style=rounded; color=gray60;')
        for n in members:
            extra = ", color=red" if n in in_cycle else ""
            lines.append(f'    "{n}" [label="{n}.c"{extra}];')
        lines.append("  }")
    for a, b in edges:
        if b in UNDRAWN:
            continue
        both = any(a in c and b in c for c in comps)
        lines.append(f'  "{a}" -> "{b}"{" [color=red]" if both else ""};')
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    dot = None
    if len(argv) > 1 and argv[0] == "--dot":
        dot, argv = argv[1], argv[2:]
    build = argv[0] if argv else "build/epoll"
    defined, undefined = read_objects(build)
    nodes = set(undefined)
    edges = edges_of(defined, undefined)
    comps = cycles(nodes, edges)
    print(f"{len(nodes)} files, {len(edges)} edges")
    for a, b in edges:
        print(f"  {a} -> {b}")
    print(f"{len(comps)} cycle(s)")
    for c in comps:
        print(f"  cycle [{family(c[0])}]: " + " ".join(f + ".c" for f in c))
    if dot:
        write_dot(dot, nodes, edges, comps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
