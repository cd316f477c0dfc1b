#!/usr/bin/env python3
"""What the cluster view costs on a running node with the agent.

    python3 bench/cluster_view.py --socket PATH [--requests 300] [--cpu-seconds 60]
    python3 bench/cluster_view.py --boot [--out bench/results-cluster-view.md]

0. (--boot) Builds the release agent and command (or takes CQLREADY_LIB and
   CQLREADY_CLI), starts five Cassandra 5.0 nodes in two datacenters one at
   a time with bench/cluster.py's --two-dc set-up (dc1 on 127.0.0.1-.3, dc2
   on .4 and .5, a keyspace {dc1: 3, dc2: 2}), measures node 2, writes the
   table to --out and removes it all.

1. Latency of `GET /cluster?cl=EACH_QUORUM` and the cluster gates
   (`/ready?scope=cluster` with and without `cl=`, `scope=dc`) over the
   status socket (one connection per request, as the command makes them),
   after one warm-up request that starts the view's reading: p50, p99, max.
   Goal: p99 <= 5 ms.
2. The CPU time of the agent's monitor thread ("cqlready" in
   /proc/PID/task/*/comm) over --cpu-seconds, as a share of one core: first
   before anyone asked for the view (off, the default), then while the view
   is read at every check (the script keeps asking every 10 s).

Stdlib only. Prints a Markdown table.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

from _common import AGENT_LIB, CLI, build, http_get


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


def boot_two_dc():
    """bench/cluster.py's two-datacenter cluster with its keyspace: (cluster, tmp dir)."""
    import cluster as bc
    bc.setup_line("tests/cassandra/fetch.sh")
    venv = bc.setup_line("tests/cassandra/pyclients.sh")
    tmp = tempfile.mkdtemp(prefix="cqlb-view-")
    c = bc.Cluster(tmp, nodes=5, dcs=["dc1", "dc1", "dc1", "dc2", "dc2"])
    everyone = range(5)
    try:
        # One at a time: nodes joining at once allocate the same tokens.
        for i in everyone:
            c.start(i)
            bc.until(lambda: c.get(i, "/ready")[0] == 200, bc.BOOT, f"node {i + 1} ready")
        for i in everyone:
            bc.until(lambda: c.sees_up(i, everyone), bc.BOOT, f"node {i + 1} to see all UP")
        p, stop = bc.load(c, venv, "setup", setup=True, duration=3, extra=(
            "--cl", "LOCAL_QUORUM", "--local-dc", "dc1", "--replication",
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"))
        bc.finish(p, stop)
    except BaseException:
        c.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return c, tmp


def monitor_share(pid, seconds, ask):
    """The monitor thread's CPU over `seconds`, asking every 10 s if `ask`."""
    c0, t0 = thread_cpu(pid), time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(min(10, max(0.0, seconds - (time.monotonic() - t0))))
        if ask:
            ask()
    return (thread_cpu(pid) - c0) / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket")
    ap.add_argument("--boot", action="store_true", help="boot a 5-node two-DC cluster and measure node 2")
    ap.add_argument("--out", help="also write the table here (with --boot: bench/results-cluster-view.md)")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--cpu-seconds", type=float, default=60.0)
    ap.add_argument("--no-build", action="store_true", help="with --boot: use the release build as it is")
    args = ap.parse_args()
    if args.boot == bool(args.socket):
        ap.error("give exactly one of --socket PATH and --boot")
    if args.boot:
        # The release agent and command (what operators run), unless told.
        if not os.environ.get("CQLREADY_LIB"):
            build(args.no_build)
            os.environ.update(CQLREADY_LIB=AGENT_LIB, CQLREADY_CLI=CLI)
        args.out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "results-cluster-view.md")
        c, tmp = boot_two_dc()
        try:
            # The boot asked every node for its view: let that minute pass.
            time.sleep(65)
            measure(c.sock(1), args)
        finally:
            c.kill_all()
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        measure(args.socket, args)


PATHS = ("/cluster?cl=EACH_QUORUM", "/ready?scope=cluster",
         "/ready?scope=cluster&cl=LOCAL_QUORUM", "/ready?scope=cluster&cl=EACH_QUORUM",
         "/ready?scope=dc")


def measure(sock_path, args):
    args.socket = sock_path
    pid = json.loads(get("/status", args.socket)[1][1])["pid"]
    off = monitor_share(pid, args.cpu_seconds, None)
    get("/cluster", args.socket)  # starts the reading, waits for one view
    rows = []
    for path in PATHS:
        times = [get(path, args.socket)[0] for _ in range(args.requests)]
        p50, p99, mx = percentiles(times)
        rows.append(f"| `GET {path}` | {args.requests} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} | {mx * 1e3:.2f} |")
    view = json.loads(get("/cluster", args.socket)[1][1])
    share = monitor_share(pid, args.cpu_seconds, lambda: get("/ready?scope=cluster", args.socket))
    dcs = sorted({n["dc"] for n in view["nodes"]})
    lines = [
        "# Cluster view cost (python3 bench/cluster_view.py --boot)",
        "",
        f"{len(view['nodes'])} nodes in {len(dcs)} datacenters ({', '.join(dcs)}), measured on node 2 "
        f"({view['local']}), release agent; load average {os.getloadavg()[0]:.1f} at the end "
        "(two cores shared with other work). Goal: p99 <= 5 ms.",
        "",
        f"view: one read {view['read_ms']} ms",
        "",
        "| request | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"monitor thread CPU, {args.cpu_seconds:.0f} s each: view off (nobody asked) "
        f"{off * 100:.3f} % of a core; view read every check {share * 100:.3f} %",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
