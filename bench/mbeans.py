#!/usr/bin/env python3
"""The agent thread's CPU per check, Cassandra's MBean view on, in a real Cassandra 5.0.9.

    python3 bench/mbeans.py [--lib NAME=PATH]... [--rounds 2] [--idle 60] [--heap 1G] [--no-build]

Builds the release agent (unless --no-build), then for each round and each
library (default: this=target/release/libcqlready.so; give another build with
--lib before=/path/to/libcqlready.so to compare), in alternating order, boots
one node with the agent at its defaults (check=1s, cassandra=auto: every
check is a CQL OPTIONS plus the StorageService and Storage Load MBean reads),
waits for READY=1, and measures the CPU time of the agent's thread
("cqlready") over --idle seconds, divided by the checks /status counted in
that window: the same method as bench/cassandra.py's idle figure, which this
reuses (less its per-call timings). Prints a Markdown table. Takes ~1.5
minutes per boot on 2 cores.
"""

import argparse
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "bench_cassandra", os.path.join(os.path.dirname(os.path.abspath(__file__)), "cassandra.py"))
B = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(B)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", action="append", default=[], metavar="NAME=PATH",
                    help="a library to measure (repeatable); default this=target/release")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle", type=int, default=60, help="window per boot, seconds")
    ap.add_argument("--heap", default="1G")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    C.install_signal_handlers()
    libs = []
    for spec in args.lib or ["this=" + C.AGENT_LIB]:
        name, _, path = spec.partition("=")
        if not path or not os.path.isfile(path):
            raise SystemExit("--lib %s: expected NAME=PATH of a libcqlready.so" % spec)
        libs.append((name, os.path.abspath(path)))
    C.build(args.no_build)
    java = B.find_java17()
    env = dict(os.environ, JAVA=java)
    B.script_last_line("fetch.sh", env)
    venv = B.script_last_line("pyclients.sh", env)
    results = {name: [] for name, _ in libs}
    b = B.Bench(java, venv)
    # Only the idle window counts here: skip the per-call timings service_node also takes.
    b.timed_calls = lambda *_a, **_k: None
    try:
        for r in range(args.rounds):
            order = libs if r % 2 == 0 else list(reversed(libs))
            for name, path in order:
                C.AGENT_LIB = path
                svc = b.service_node(args.heap, args.idle)
                cpu = svc["cpu_cqlready"]["ms"]
                per = cpu / max(svc["checks"], 1)
                mode = (svc["status"].get("cassandra") or {}).get("mode")
                C.log("round %d %s: %.1f ms over %d checks = %.3f ms per check (mode %s)" % (
                    r + 1, name, cpu, svc["checks"], per, mode))
                results[name].append((per, svc["checks"], mode))
    finally:
        b.close()
    print("| library | agent thread CPU per check (each boot) | median | checks | mode |")
    print("|---|---|---|---|---|")
    for name, _ in libs:
        runs = results[name]
        print("| %s | %s | **%.3f ms** | %s | %s |" % (
            name, ", ".join("%.3f ms" % p for p, _, _ in runs), C.median([p for p, _, _ in runs]),
            ", ".join(str(c) for _, c, _ in runs), ", ".join(str(m) for _, _, m in runs)))


if __name__ == "__main__":
    main()
