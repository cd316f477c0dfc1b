#!/usr/bin/env python3
"""The shape of src/: which module imports which, the import circles, the
imports that run from a lower layer up, and the longest functions.

    python3 tools/structure.py            # print the report
    python3 tools/structure.py --write    # rewrite the generated part of docs/design.md
    python3 tools/structure.py --check    # exit 1 on a circle, an upward import, a
                                          # function over the limit, a stale docs/design.md,
                                          # or a file in src/ that docs/design.md does not name
                                          # (or a path it names that is not there)

A module is a file (`src/probe/cql.rs` is `probe::cql`; `mod.rs` is its
directory), except that every file under `src/bin/` is the one module `cli`
(the command's own modules: the library never imports them). An import is any `crate::a::b` path (or `super::x`) in product
code: comments and `#[cfg(test)]` modules are left out. `mod x;` lines are
declarations, not imports. Layers are listed bottom first in LAYERS: a module
may use its own layer's modules and any below, never one above.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
DOC = ROOT / "docs" / "design.md"
LIMIT = 60  # lines, signature to closing brace
BEGIN, END = "<!-- structure.py: begin -->", "<!-- structure.py: end -->"

# Bottom first. A module (or its parent) is matched by its longest prefix.
LAYERS = [
    ["text", "log", "process", "netif", "agent_process"],
    ["status::model", "status::view", "notify", "attach"],
    ["probe", "discovery", "cassandra::progress", "cassandra::holder"],
    ["cassandra", "cassandra::cluster", "status::store"],
    ["cassandra::node", "options"],
    ["monitor", "status::routes", "status::cluster"],
    ["status::event_loop", "status::server", "status", "config"],
    ["agent", "status::client"],
    ["jvm"],
    ["cli", "lib"],
]


def module_of(path):
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts and parts[0] == "bin":
        return "cli"
    return "::".join(parts) or "lib"


def product_lines(text):
    """The file's lines outside comments and #[cfg(test)] modules, numbered."""
    out, skip_from = [], None
    lines = text.split("\n")
    for i, line in enumerate(lines):
        s = line.strip()
        if skip_from is not None:
            if line.startswith(skip_from + "}"):
                skip_from = None
            continue
        if s == "#[cfg(test)]" and i + 1 < len(lines) and re.match(r"\s*(pub(\(crate\))? )?mod \w+ \{", lines[i + 1]):
            skip_from = re.match(r"\s*", lines[i + 1]).group(0)
            continue
        if s.startswith("//"):
            continue
        out.append((i + 1, line.split("//")[0] if "://" not in line else line))
    return out


def layer_of(module):
    best, rank = None, None
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + "::")) and (best is None or len(n) > len(best)):
                best, rank = n, i
    return rank


def resolve(path, modules):
    """The longest known module that `path` (a::b::c) names."""
    parts = path.split("::")
    for k in range(len(parts), 0, -1):
        cand = "::".join(parts[:k])
        if cand in modules:
            return cand
    return None


def graph():
    files = sorted(SRC.rglob("*.rs"))
    modules = {}
    for f in files:
        modules.setdefault(module_of(f), []).append(f)
    edges = {}
    for m, fs in modules.items():
        deps = set()
        for _, line in (l for f in fs for l in product_lines(f.read_text())):
            if re.match(r"\s*(pub(\(crate\))? )?mod \w+;", line):
                continue
            for p in re.findall(r"\b(?:crate|cqlready)::((?:\w+::)*\w+)", line):
                t = resolve(p, modules)
                if t and t != m:
                    deps.add(t)
            for p in re.findall(r"\bsuper::((?:\w+::)*\w+)", line):
                parent = m.rsplit("::", 1)[0] if "::" in m else "lib"
                t = resolve(parent + "::" + p, modules) or parent
                if t != m:
                    deps.add(t)
        edges[m] = deps
    return modules, edges


def circles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def upward(edges):
    bad = []
    for a, deps in sorted(edges.items()):
        for b in sorted(deps):
            la, lb = layer_of(a), layer_of(b)
            if la is None or lb is None or lb > la:
                bad.append((a, b))
    return bad


def functions():
    """(lines, module, name, line) of every product function."""
    out = []
    for f in sorted(SRC.rglob("*.rs")):
        lines = f.read_text().split("\n")
        kept = {n for n, _ in product_lines("\n".join(lines))}
        for i, line in enumerate(lines):
            m = re.match(r'(\s*)(?:pub(?:\([\w:]+\))? )?(?:const )?(?:unsafe )?(?:extern "C" )?fn (\w+)', line)
            if not m or (i + 1) not in kept:
                continue
            indent = m.group(1)
            for j in range(i, len(lines)):
                body = lines[j].rstrip()
                if body.endswith(";") and "{" not in "".join(lines[i:j + 1]):
                    break  # a declaration without a body
                if body.endswith("}") and (j == i or body == indent + "}"):
                    out.append((j - i + 1, module_of(f), m.group(2), i + 1))
                    break
    return sorted(out, reverse=True)


def report():
    modules, edges = graph()
    circ, up, fns = circles(edges), upward(edges), functions()
    over = [f for f in fns if f[0] > LIMIT]
    lines = [
        BEGIN,
        "| measure (`python3 tools/structure.py`) | value |",
        "|---|---|",
        f"| files in `src/` | {sum(len(fs) for fs in modules.values())} |",
        f"| modules (`src/bin/` is one, `cli`) | {len(modules)} |",
        f"| import circles | {len(circ)} |",
        f"| imports from a lower layer up | {len(up)} |",
        f"| longest function | {fns[0][0]} lines (`{fns[0][1]}::{fns[0][2]}`) |" if fns else "| longest function | none |",
        f"| functions over {LIMIT} lines | {len(over)} |",
        "",
        "| layer (bottom first) | modules |",
        "|---|---|",
    ]
    for i, names in enumerate(LAYERS):
        present = [n for n in names if any(m == n or m.startswith(n + "::") for m in modules)]
        lines.append(f"| {i} | {', '.join('`' + n + '`' for n in present)} |")
    lines.append(END)
    return "\n".join(lines), circ, up, over, modules


def unnamed(doc):
    """The files of src/ whose path (`src/status/store.rs`) `doc` never names."""
    paths = sorted(str(f.relative_to(ROOT)) for f in SRC.rglob("*.rs"))
    return [p for p in paths if not re.search(r"(?<![\w/])" + re.escape(p) + r"(?![\w.])", doc)]


def main():
    text, circ, up, over, modules = report()
    unplaced = [m for m in modules if layer_of(m) is None]
    problems = [f"circle: {' <-> '.join(c)}" for c in circ]
    problems += [f"upward import: {a} -> {b}" for a, b in up]
    problems += [f"{n} lines: {m}::{f} (src line {l})" for n, m, f, l in over]
    problems += [f"module in no layer: {m}" for m in unplaced]
    if "--write" in sys.argv:
        doc = DOC.read_text()
        a, b = doc.index(BEGIN), doc.index(END) + len(END)
        DOC.write_text(doc[:a] + text + doc[b:])
    print(text)
    for p in problems:
        print(p)
    if "--check" in sys.argv:
        doc = DOC.read_text() if DOC.exists() else ""
        if text not in doc:
            problems.append("docs/design.md's generated table is stale: python3 tools/structure.py --write")
            print(problems[-1])
        for path in unnamed(doc):
            problems.append(f"docs/design.md does not name {path} (its module table lists every file)")
            print(problems[-1])
        for path in sorted(set(re.findall(r"(?<![\w/])src/[\w/]+\.rs\b", doc))):
            if not (ROOT / path).is_file():
                problems.append(f"docs/design.md names {path}, which does not exist")
                print(problems[-1])
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
