#!/usr/bin/env python3
"""Availability of a 1,000-node ring: the agent's per-level count in a
release build. A ring of 1,000 nodes in 3 datacenters, 256 tokens each
(256,000 ranges), one NetworkTopologyStrategy keyspace {dc1: 3, dc2: 3,
dc3: 3}, one node down: all eight levels, now and without this node, as the
view computes them at each read (src/cassandra/cluster.rs, test
bench_availability), and the parsing of that keyspace's range map.

    python3 bench/availability.py [--out bench/results-availability.md]

Runs `cargo test --release --lib ... bench_availability -- --ignored` and
writes its `result|what|value` lines as a Markdown table. Goal: <= 20 ms.
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST = "cassandra::cluster::tests::bench_availability"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-availability.md"))
    args = ap.parse_args()
    out = subprocess.run(
        ["cargo", "test", "--release", "--lib", TEST, "--", "--ignored", "--exact", "--nocapture"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rows = [line.split("|")[1:] for line in out.stdout.splitlines() if line.startswith("result|")]
    if out.returncode != 0 or not rows:
        sys.exit(f"availability.py: the benchmark failed:\n{out.stdout[-2000:]}")
    load = os.getloadavg()[0]
    lines = [
        "# Availability of a 1,000-node ring (python3 bench/availability.py)",
        "",
        "1,000 nodes in 3 datacenters, 256 tokens each (256,000 ranges), NetworkTopologyStrategy",
        "{dc1: 3, dc2: 3, dc3: 3}, one node down; all 8 levels (ONE, TWO, THREE, QUORUM, ALL,",
        "LOCAL_ONE, LOCAL_QUORUM, EACH_QUORUM), now and without this node, in one pass. Release",
        f"build; two cores shared with other work (load average {load:.1f} at the end). Goal: <= 20 ms.",
        "",
        "| what | time |",
        "|---|---|",
    ] + [f"| {what} | {value} |" for what, value in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
