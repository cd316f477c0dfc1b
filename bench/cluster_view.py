#!/usr/bin/env python3
"""What the cluster view costs on a running node with the agent.

    python3 bench/cluster_view.py --socket PATH [--requests 300] [--cpu-seconds 60]

1. Latency of `GET /cluster?cl=QUORUM` and `GET /ready?scope=cluster` over the
   status socket (one connection per request, as the command makes them),
   after one warm-up request that starts the view's reading: p50, p99, max.
2. The CPU time of the agent's monitor thread ("cqlready" in
   /proc/PID/task/*/comm) over --cpu-seconds while the view is read at every
   check (the script keeps asking every 10 s), as a share of one core.

Stdlib only. Prints a Markdown table.
"""

import argparse
import json
import os
import time

from _common import http_get


def get(path, sock_path):
    """(seconds, (code, body)) of one request."""
    t = time.perf_counter()
    answer = http_get(sock_path, path, timeout=30)
    return time.perf_counter() - t, answer


def percentiles(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2], xs[min(len(xs) - 1, int(len(xs) * 0.99))], xs[-1]


def thread_cpu(pid):
    ticks = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != "cqlready":
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--cpu-seconds", type=float, default=60.0)
    args = ap.parse_args()
    pid = json.loads(get("/status", args.socket)[1][1])["pid"]
    get("/cluster", args.socket)  # starts the reading, waits for one view
    rows = []
    for path in ("/cluster?cl=QUORUM", "/ready?scope=cluster"):
        times = [get(path, args.socket)[0] for _ in range(args.requests)]
        p50, p99, mx = percentiles(times)
        rows.append(f"| `GET {path}` | {args.requests} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} | {mx * 1e3:.2f} |")
    view = json.loads(get("/cluster", args.socket)[1][1])
    c0, t0 = thread_cpu(pid), time.monotonic()
    while time.monotonic() - t0 < args.cpu_seconds:
        time.sleep(10)
        get("/ready?scope=cluster", args.socket)
    share = (thread_cpu(pid) - c0) / (time.monotonic() - t0)
    print(f"view: {len(view['nodes'])} nodes, one read {view['read_ms']} ms\n")
    print("| request | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nmonitor thread CPU while the view is read every check: {share * 100:.3f} % of a core "
          f"over {args.cpu_seconds:.0f} s")


if __name__ == "__main__":
    main()
