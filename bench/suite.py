#!/usr/bin/env python3
"""The test command's time, as a user meets it: a fresh clone, `bash tests/run.sh`.

    python3 bench/suite.py [--runs N] [--ref REF] [--out FILE]
    python3 bench/suite.py --from target/test-summary.tsv [--out FILE]   # tables of a run already made

Clones REF (default HEAD) of this repository into a new directory, runs the
test command there N times in a row (default 2: the second run shows it is
repeatable on the same machine), reads each run's target/test-summary.tsv
(written by tests/run.sh), then commits an empty change in the clone and times
`cargo build` after it (a commit must not rebuild the crate). Writes the
tables to --out (default bench/results-suite.md); docs/testing.md shows them
(tests/docs.rs checks the copy).
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import log  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_summary(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def run_once(clone, n):
    log(f"run {n}: bash tests/run.sh in {clone}")
    t0 = time.monotonic()
    with open(os.path.join(clone, f"target-run-{n}.log"), "w") as out:
        rc = subprocess.call(["bash", "tests/run.sh"], cwd=clone, stdout=out, stderr=subprocess.STDOUT)
    took = time.monotonic() - t0
    rows = read_summary(os.path.join(clone, "target", "test-summary.tsv"))
    log(f"run {n}: exit {rc} in {took:.0f} s")
    return rc, rows


def build_after_commit(clone):
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost")
    subprocess.check_call(["cargo", "build", "--quiet"], cwd=clone)
    subprocess.check_call(["git", "commit", "--quiet", "--allow-empty", "-m", "bench"], cwd=clone, env=env)
    t0 = time.monotonic()
    subprocess.check_call(["cargo", "build", "--quiet"], cwd=clone)
    return time.monotonic() - t0


def tables(runs, build_secs):
    lines = ["| run | result | whole command | setup | tests | asan | fuzz | release sizes | skips |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for i, (rc, rows) in enumerate(runs, 1):
        step = {r["name"]: r for r in rows if r["kind"] == "step"}
        whole = next(r for r in rows if r["kind"] == "run")
        skips = sum(1 for r in rows if r["kind"] == "skip")
        cell = lambda name: f"{step[name]['seconds']} s" if name in step else "—"  # noqa: E731
        lines.append(f"| {i} | {'passed' if rc == 0 else 'FAILED'} | {whole['seconds']} s | {cell('setup')} | "
                     f"{cell('tests')} | {cell('asan')} | {cell('fuzz')} | {cell('release sizes')} | {skips} |")
    lines += ["", "| run | the five slowest tests | seconds |", "|---|---|---:|"]
    for i, (_, rows) in enumerate(runs, 1):
        tests = sorted((r for r in rows if r["kind"] == "test"), key=lambda r: -float(r["seconds"]))[:5]
        for t in tests:
            lines.append(f"| {i} | `{t['name']}` | {float(t['seconds']):.0f} |")
    if build_secs is not None:
        lines += ["", "| after a commit | seconds |", "|---|---:|",
                  f"| `cargo build` (debug, warm) | {build_secs:.1f} |"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--ref", default="HEAD")
    ap.add_argument("--from", dest="summary", help="a test-summary.tsv to tabulate instead of running")
    ap.add_argument("--commit", help="with --from: the commit that run tested")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results-suite.md"))
    ap.add_argument("--keep", action="store_true", help="keep the clone")
    args = ap.parse_args()
    commit = subprocess.check_output(["git", "rev-parse", "--short", args.ref], cwd=ROOT, text=True).strip()
    load = open("/proc/loadavg").read().split()[:3]
    if args.summary:
        runs, build_secs = [(0, read_summary(args.summary))], None
        commit = args.commit or "an unnamed commit"
        how = f"`python3 bench/suite.py --from {args.summary} --commit {commit}`"
        if any(r["kind"] == "run" and r["result"] != "ok" for r in runs[0][1]):
            runs = [(1, runs[0][1])]
    else:
        # Beside this checkout, and 0755 as a plain `git clone` makes it (the
        # tests run some processes as other users).
        clone = tempfile.mkdtemp(prefix="cqlready-suite-", dir=os.path.dirname(ROOT))
        os.chmod(clone, 0o755)
        subprocess.check_call(["git", "clone", "--quiet", ROOT, clone])
        subprocess.check_call(["git", "checkout", "--quiet", commit], cwd=clone)
        runs = [run_once(clone, n) for n in range(1, args.runs + 1)]
        build_secs = build_after_commit(clone)
        how = f"`python3 bench/suite.py --runs {args.runs}`"
        if not args.keep:
            shutil.rmtree(clone, ignore_errors=True)
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    context = (f"tabulated {when} from that run's summary" if args.summary
               else f"load average at the start {' '.join(load)}; {when}")
    text = (f"# The test command on a fresh clone\n\n{how}: a fresh clone of {commit}, `bash tests/run.sh` "
            f"run {len(runs)} time(s) in a row on the same machine (2 cores), with this machine's caches "
            f"(`~/.cache/cqlready`, Podman's images) as they were; {context}.\n\n{tables(runs, build_secs)}\n")
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    sys.exit(0 if all(rc == 0 for rc, _ in runs) else 1)


if __name__ == "__main__":
    main()
