#!/usr/bin/env python3
"""Which gate keeps a rolling restart error-free? A 4-node Cassandra 5.0 cluster
on 127.0.0.1-.4 (tests/cassandra/run.sh, 512 MiB heaps), a keyspace with RF=3,
node 4 already down (for maintenance, or partitioned) when a rolling restart
of nodes 1-3 begins, under QUORUM load (tests/cassandra/quorum_load.py, all
contact points). For each gate, in the same run:

  cqlready      before each stop `cqlready probe --safe-to-stop --cl QUORUM`
                (stop the rolling restart when it says no), after each start
                `cqlready wait --cluster` (here: every node but the one
                known down UP and NORMAL, read from /cluster)
  cql-port      after each start, until the node's CQL port accepts TCP
  local-ready   after each start, `cqlready wait` (this node ready)
  nodetool-UN   after each start, until `nodetool status` shows the node UN
  none          no wait at all

Reports failed requests, how far each rolling restart got and its total time.

    python3 bench/cluster.py [--out bench/results-cluster.md] [--gates cqlready,none,...]
    python3 bench/cluster.py --all-up   # node 4 stays up: bench/results-cluster-all-up.md
    python3 bench/cluster.py --two-dc   # bench/results-cluster-two-dc.md, below

--two-dc: 5 nodes in two datacenters (GossipingPropertyFileSnitch; dc1 on
127.0.0.1-.3, dc2 on .4 and .5), keyspace {dc1: 3, dc2: 2}, LOCAL_QUORUM load
from dc1 (DC-aware driver, dc1 contact points), node 5 (dc2) down; a rolling
restart of dc1 per gate:

  cqlready-local-quorum  `probe --safe-to-stop --cl LOCAL_QUORUM` before each
                         stop, `wait --cluster --cl LOCAL_QUORUM` after each start
  cqlready-each-quorum   the same at EACH_QUORUM (refuses: dc2 is short)
  cqlready-all-up        `probe --safe-to-stop --cl LOCAL_QUORUM`, then `wait
                         --cluster` (every node UP, blocks on node 5) for 120 s

Needs `cargo build` first (uses target/debug unless CQLREADY_LIB/CQLREADY_CLI
are set), Java 17, Maven Central and PyPI (fetch.sh, pyclients.sh). Takes
some 30-40 minutes on two busy cores. Every process runs in its own process
group and is killed at the end; the temporary directory is removed.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.environ.get("CQLREADY_LIB") or os.path.join(ROOT, "target/debug/libcqlready.so")
CLI = os.environ.get("CQLREADY_CLI") or os.path.join(ROOT, "target/debug/cqlready")
NODES = 4
BOOT = 600


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_line(script):
    out = subprocess.run(["bash", os.path.join(ROOT, script)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


class Cluster:
    def __init__(self, tmp, nodes=NODES, dcs=None):
        """`dcs`: each node's datacenter (GossipingPropertyFileSnitch), or None."""
        self.tmp = tmp
        self.native = free_port()
        self.storage = free_port()
        self.jmx = [free_port() for _ in range(nodes)]
        self.procs = [None] * nodes
        self.dcs = dcs

    def addr(self, i):
        return f"127.0.0.{i + 1}"

    def sock(self, i):
        return os.path.join(self.tmp, f"n{i + 1}.sock")

    def start(self, i):
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "RUNTIME_DIRECTORY", "JAVA_TOOL_OPTIONS"):
            env.pop(k, None)
        env.update({
            "JVM_EXTRA_OPTS": f"-agentpath:{LIB}=socket={self.sock(i)}",
            "CASSANDRA_SEEDS": f"127.0.0.1:{self.storage}",
            "CASSANDRA_CLUSTER_NAME": f"bench-{self.native}",
            "CASSANDRA_AUTO_BOOTSTRAP": "false",
            # A busy seed may take seconds to answer the others' first gossip.
            "CASSANDRA_RING_DELAY_MS": "0" if i == 0 else "60000",
        })
        if self.dcs:
            env["CASSANDRA_DC"] = self.dcs[i]
        log = open(os.path.join(self.tmp, f"n{i + 1}.log"), "ab")
        self.procs[i] = subprocess.Popen(
            ["bash", os.path.join(ROOT, "tests/cassandra/run.sh"), "--fast",
             "--base", os.path.join(self.tmp, f"n{i + 1}"), "--address", self.addr(i),
             "--native-port", str(self.native), "--storage-port", str(self.storage),
             "--jmx-port", str(self.jmx[i]), "--heap", "512M"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

    def stop(self, i):
        p = self.procs[i]
        if p is None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        self.procs[i] = None

    def kill_all(self):
        for p in self.procs:
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()

    def get(self, i, path):
        try:
            out = subprocess.run(["curl", "-s", "--max-time", "30", "-w", "\n%{http_code}",
                                  "--unix-socket", self.sock(i), f"http://-{path}"],
                                 stdout=subprocess.PIPE, text=True, timeout=40).stdout
            body, _, code = out.rpartition("\n")
            return int(code or 0), body
        except (subprocess.TimeoutExpired, ValueError):
            return 0, ""

    def cli(self, i, *args, timeout=BOOT + 60):
        r = subprocess.run([CLI, *args, "--socket", self.sock(i)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        return r.returncode, r.stdout.strip()

    def sees_up(self, i, who):
        """Node i's view has every node in `who` UP and NORMAL."""
        code, body = self.get(i, "/cluster")
        if code != 200:
            return False
        nodes = {n["address"]: n for n in json.loads(body)["nodes"]}
        return all(nodes.get(self.addr(j), {}).get("status") == "UP"
                   and nodes.get(self.addr(j), {}).get("state") == "NORMAL" for j in who)

    def nodetool_un(self, i):
        r = subprocess.run(["bash", os.path.join(ROOT, "tests/cassandra/nodetool.sh"),
                            "-p", str(self.jmx[i]), "status"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=120)
        return any(line.startswith("UN") and f" {self.addr(i)} " in f" {line} "
                   for line in r.stdout.splitlines())

    def port_open(self, i):
        try:
            with socket.create_connection((self.addr(i), self.native), timeout=1):
                return True
        except OSError:
            return False


def until(pred, limit, what):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def load(c, venv, tag, setup=False, duration=None, extra=()):
    stop = os.path.join(c.tmp, f"stop-{tag}")
    hosts = [i for i in range(len(c.procs)) if not c.dcs or c.dcs[i] == "dc1"]
    args = [os.path.join(venv, "python"), os.path.join(ROOT, "tests/cassandra/quorum_load.py"),
            "--hosts", ",".join(c.addr(i) for i in hosts), "--port", str(c.native),
            "--rate", "150", "--threads", "16", "--stop-file", stop, *extra]
    if setup:
        args.append("--setup")
    if duration:
        args += ["--duration", str(duration)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    assert p.stdout.readline().strip() == "ready", "quorum_load.py did not start"
    return p, stop


def finish(p, stop):
    open(stop, "w").close()
    out = p.communicate(timeout=120)[0]
    summary = next((l for l in out.splitlines() if l.startswith("summary")), "summary ?")
    errors = [l for l in out.splitlines() if l.startswith("error")]
    if errors:
        summary += f"; first errors: {errors[:3]}"
    fields = dict(kv.split("=") for kv in summary.split(";")[0].split()[1:] if "=" in kv)
    return int(fields.get("ok", 0)), int(fields.get("failed", -1)), summary


DC_GATES = {"cqlready-local-quorum": "LOCAL_QUORUM", "cqlready-each-quorum": "EACH_QUORUM",
            "cqlready-all-up": "LOCAL_QUORUM"}


def rolling_dc(c, gate):
    """Restarts dc1 (nodes 0-2) gated by `gate` of DC_GATES; returns
    (restarted, note, seconds per restarted node)."""
    done, per_node = 0, []
    cl = DC_GATES[gate]
    for i in range(3):
        t = time.monotonic()
        code, text = c.cli(i, "probe", "--safe-to-stop", "--cl", cl, timeout=60)
        if code != 0:
            return done, f"refused before node {i + 1}: {text[:160]}", per_node
        c.stop(i)
        c.start(i)
        if gate == "cqlready-all-up":
            until(lambda: c.get(i, "/ready")[0] == 200, BOOT, f"node {i + 1} ready")
            code, text = c.cli(i, "wait", "--cluster", "--timeout", "120s", timeout=200)
        else:
            code, text = c.cli(i, "wait", "--cluster", "--cl", cl, "--timeout", f"{BOOT}s")
        if code != 0:
            return done, f"blocked after node {i + 1}: {text[:160]}", per_node
        done += 1
        per_node.append(time.monotonic() - t)
    return done, "all 3", per_node


def two_dc(args, venv, tmp):
    """The two-datacenter runs; returns the results file's text."""
    dcs = ["dc1", "dc1", "dc1", "dc2", "dc2"]
    c = Cluster(tmp, nodes=5, dcs=dcs)
    rows = []
    extra = ("--cl", "LOCAL_QUORUM", "--local-dc", "dc1", "--replication",
             "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}")
    try:
        for i in range(5):
            c.start(i)
            until(lambda: c.get(i, "/ready")[0] == 200, BOOT, f"node {i + 1} ready")
        for i in range(5):
            until(lambda: c.sees_up(i, range(5)), BOOT, f"node {i + 1} to see all UP")
        p, stop = load(c, venv, "setup", setup=True, duration=3, extra=extra)
        finish(p, stop)
        c.stop(4)
        up = [0, 1, 2, 3]
        for gate in args.gates.split(","):
            bring_up(c, up)
            p, stop = load(c, venv, gate, extra=extra)
            t = time.monotonic()
            done, note, per_node = rolling_dc(c, gate)
            time.sleep(10)
            secs = time.monotonic() - t
            ok, failed, summary = finish(p, stop)
            per = " / ".join(f"{x:.0f}" for x in per_node) or "-"
            rows.append((gate, ok + max(failed, 0), failed, done, note, per, secs))
            print(f"{gate}: {summary}; restarted {done} ({note}); {secs:.0f} s", flush=True)
    finally:
        c.kill_all()
    lines = [
        "# Rolling restart of one datacenter (python3 bench/cluster.py --two-dc)",
        "",
        "5 nodes (Cassandra 5.0.9, GossipingPropertyFileSnitch: dc1 on 127.0.0.1-.3, dc2 on .4-.5,",
        "512 MiB heaps), keyspace {dc1: 3, dc2: 2}, node 5 (dc2) down before the rolling restart of",
        "dc1 begins; LOCAL_QUORUM writes and read-backs from cassandra-driver in dc1 (DC-aware,",
        "token-aware; 16 threads, target 150 ops/s). Two cores shared with other work.",
        "",
        "| gate | LOCAL_QUORUM operations | failed | nodes restarted | note | seconds per node | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for gate, total, failed, done, note, per, secs in rows:
        lines.append(f"| {gate} | {total} | {failed} | {done} of 3 | {note} | {per} | {secs:.0f} |")
    return "\n".join(lines) + "\n"


def rolling(c, gate, up):
    """Restarts nodes 0-2 gated by `gate`; returns (restarted, note)."""
    done = 0
    for i in range(3):
        if gate == "cqlready":
            code, text = c.cli(i, "probe", "--safe-to-stop", "--cl", "QUORUM", timeout=60)
            if code != 0:
                return done, f"refused before node {i + 1}: {text[:160]}"
        c.stop(i)
        c.start(i)
        if gate == "cqlready":
            until(lambda: c.sees_up(i, up), BOOT, f"node {i + 1} to see {up} UP")
        elif gate == "cql-port":
            until(lambda: c.port_open(i), BOOT, f"node {i + 1}'s CQL port")
        elif gate == "local-ready":
            code, text = c.cli(i, "wait", "--timeout", f"{BOOT}s")
            if code != 0:
                raise RuntimeError(text)
        elif gate == "nodetool-UN":
            until(lambda: c.nodetool_un(i), BOOT, f"node {i + 1} UN")
        done += 1
    return done, "all 3"



def bring_up(c, up):
    """Starts the nodes of `up` that are not running and waits until each
    sees all of them UP, then lets gossip settle for a moment."""
    for i in up:
        if c.procs[i] is None or c.procs[i].poll() is not None:
            c.start(i)
    for i in up:
        until(lambda: c.sees_up(i, up), BOOT, f"node {i + 1} to see {up} UP")
    time.sleep(5)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-cluster.md"))
    ap.add_argument("--gates", default="cqlready,cql-port,local-ready,nodetool-UN,none")
    ap.add_argument("--all-up", action="store_true",
                    help="leave node 4 up: the case where the simpler gates are enough")
    ap.add_argument("--two-dc", action="store_true",
                    help="5 nodes in two datacenters, dc1 restarted: bench/results-cluster-two-dc.md")
    args = ap.parse_args()
    if args.all_up and args.out == ap.get_default("out"):
        args.out = os.path.join(ROOT, "bench/results-cluster-all-up.md")
    if args.two_dc:
        if args.out == ap.get_default("out"):
            args.out = os.path.join(ROOT, "bench/results-cluster-two-dc.md")
        if args.gates == ap.get_default("gates"):
            args.gates = ",".join(DC_GATES)
    # SIGTERM (and SIGINT, also when started in the background) end the run
    # through the `finally` that kills the nodes.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(1))
    setup_line("tests/cassandra/fetch.sh")
    venv = setup_line("tests/cassandra/pyclients.sh")
    tmp = tempfile.mkdtemp(prefix="cqlb-clu-")
    if args.two_dc:
        try:
            text = two_dc(args, venv, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(text)
        with open(args.out, "w") as f:
            f.write(text)
        return 0
    c = Cluster(tmp)
    rows = []
    t_all = time.monotonic()
    try:
        c.start(0)
        until(lambda: c.get(0, "/ready")[0] == 200, BOOT, "node 1 ready")
        # One at a time: nodes joining at once allocate the same tokens.
        for i in range(1, NODES):
            c.start(i)
            until(lambda: c.get(i, "/ready")[0] == 200, BOOT, f"node {i + 1} ready")
        everyone = list(range(NODES))
        for i in range(NODES):
            until(lambda: c.sees_up(i, everyone), BOOT, f"node {i + 1} to see all UP")
        p, stop = load(c, venv, "setup", setup=True, duration=3)
        finish(p, stop)
        print(f"4 nodes up after {time.monotonic() - t_all:.0f} s", flush=True)
        if args.all_up:
            up = [0, 1, 2, 3]
        else:
            c.stop(3)
            up = [0, 1, 2]
        for gate in args.gates.split(","):
            bring_up(c, up)
            p, stop = load(c, venv, gate)
            t = time.monotonic()
            try:
                done, note = rolling(c, gate, up)
            except RuntimeError as e:
                done, note = -1, str(e)
            # Let the last restart settle under load, so its failures count.
            if gate == "none":
                for i in up:
                    until(lambda: c.port_open(i), BOOT, f"node {i + 1}'s CQL port")
            time.sleep(10)
            secs = time.monotonic() - t
            ok, failed, summary = finish(p, stop)
            row = (gate, ok + max(failed, 0), failed, done, note, secs)
            rows.append(row)
            print(f"{gate}: {summary}; restarted {done} ({note}); {secs:.0f} s", flush=True)
    finally:
        c.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        "# Rolling restart gates (python3 bench/cluster.py)",
        "",
        "4 nodes (Cassandra 5.0.9, 127.0.0.1-.4, 512 MiB heaps), RF=3, "
        + ("all 4 up when the rolling" if args.all_up else "node 4 down before the rolling"),
        "restart of nodes 1-3 begins, QUORUM writes and read-backs from cassandra-driver (16 threads,",
        "target 150 ops/s). Two cores shared with other work.",
        "",
        "| gate | QUORUM operations | failed | nodes restarted | note | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for gate, total, failed, done, note, secs in rows:
        lines.append(f"| {gate} | {total} | {failed} | {done} of 3 | {note} | {secs:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
