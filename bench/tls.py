#!/usr/bin/env python3
"""CQL over TLS on a real Cassandra 5.0 (Java 17) that requires it.

    python3 bench/tls.py [--runs 3] [--idle 30] [--handshakes 100] [--no-build]

Per boot (`--runs`), a node whose cassandra.yaml sets client_encryption_options
enabled (not optional) starts with the release agent and no TLS option (the
agent finds TLS in the yaml), while tests/cassandra/cql_loop.py (cassandra-driver
over TLS, a fresh connection every 20 ms) queries it. It reports:

  * READY=1 (datagram arrival, CLOCK_MONOTONIC) minus the end of the driver's
    first successful query: goal <= 250 ms, and never before a query can succeed;
  * once ready, at the default check=1s: the agent thread's CPU over `--idle` s
    (schedstat ns), as a share of one core;
  * Cassandra's CPU for one full TLS handshake + OPTIONS, from `--handshakes`
    `cqlready probe --port P --tls` calls (each a new process, so a full
    handshake), minus the idle rate: the upper bound of what the agent's
    checks cost Cassandra per second (the agent itself resumes sessions
    where the server allows it).

stdlib only; results as a Markdown table on stdout, progress on stderr.
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import CLI, AGENT_LIB, build, log, median, percentile, thread_cpu, process_ticks, CLK_TCK  # noqa: E402
from cassandra import Bench, CASS, find_java17, free_port, script_last_line  # noqa: E402


def pki(d):
    """CA, server and client certificates (openssl), then the Java keystores."""
    subprocess.run(["bash", os.path.join(CASS, "keystores.sh"), d], check=True,
                   capture_output=True)
    with open(f"{d}/tls.yaml", "w") as f:
        f.write("client_encryption_options:\n  enabled: true\n  optional: false\n"
                f"  keystore: {d}/keystore.p12\n  keystore_password: cassandra\n")


class Notify:
    """A datagram socket standing in for systemd's: (monotonic time, text)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.msgs = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            data = self.sock.recv(4096)
            self.msgs.append((time.monotonic(), data.decode(errors="replace")))

    def wait(self, word, limit):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for t, text in self.msgs:
                if word in text.split("\n"):
                    return t, text
            time.sleep(0.01)
        raise SystemExit(f"no {word} within {limit} s")


def agent_ns(pid):
    return sum(ns or 0 for comm, _t, ns in thread_cpu(pid).values() if comm == "cqlready")


def one_boot(b, venv, d, i, args):
    native, storage, jmx = free_port(), free_port(pair=True), free_port()
    sock = f"{d}/s{i}.sock"
    notify = Notify(f"{d}/notify{i}")
    env = b.env()
    env.update(NOTIFY_SOCKET=notify.path, CASSANDRA_YAML_EXTRA=f"{d}/tls.yaml",
               JVM_EXTRA_OPTS=f"-agentpath:{AGENT_LIB}=socket={sock}")
    log_path = b.path(f"node{i}.log")
    node = b.spawn(["bash", os.path.join(CASS, "run.sh"), "--fast", "--base", b.path(f"node{i}"),
                    "--native-port", str(native), "--storage-port", str(storage),
                    "--jmx-port", str(jmx)], env=env, stdout=open(log_path, "w"),
                   stderr=subprocess.STDOUT)
    client = subprocess.Popen([os.path.join(venv, "python"), os.path.join(CASS, "cql_loop.py"),
                               "--port", str(native), "--pid", str(node.pid), "--after-ok", "2",
                               "--tls-ca", f"{d}/ca.pem"], stdout=subprocess.PIPE, text=True)
    t_ready, status = notify.wait("READY=1", 300)
    out, _ = client.communicate(timeout=120)
    attempts = [l.split() for l in out.splitlines() if l.startswith("attempt")]
    ok = [(float(a[1]), float(a[2])) for a in attempts if a[3] == "ok"]
    bad_after = [a for a in attempts if a[3] != "ok" and float(a[1]) >= t_ready]
    lag = t_ready - ok[0][1]
    log(f"boot {i}: READY=1 {lag * 1e3:+.0f} ms after the first TLS query answered; "
        f"{len(bad_after)} failed attempts after READY=1")
    result = {"lag": lag, "bad_after": len(bad_after)}
    if i == 0:
        # Idle at check=1s: the agent thread's CPU.
        a0, w0 = agent_ns(node.pid), time.monotonic()
        time.sleep(args.idle)
        a1, w1 = agent_ns(node.pid), time.monotonic()
        result["agent_pct"] = (a1 - a0) / 1e9 / (w1 - w0) * 100
        # Cassandra's own idle rate, then with full handshakes.
        p0, w0 = process_ticks(node.pid), time.monotonic()
        time.sleep(10)
        idle_rate = (process_ticks(node.pid) - p0) / CLK_TCK / (time.monotonic() - w0)
        p0, w0 = process_ticks(node.pid), time.monotonic()
        for _ in range(args.handshakes):
            r = subprocess.run([CLI, "probe", "--port", str(native), "--tls"], capture_output=True)
            if r.returncode != 0:
                raise SystemExit("probe --tls failed: " + r.stdout.decode())
        dt = time.monotonic() - w0
        busy = (process_ticks(node.pid) - p0) / CLK_TCK - idle_rate * dt
        result["handshake_ms"] = max(busy, 0.0) / args.handshakes * 1e3
        result["idle_pct"] = idle_rate * 100
    b.kill(node)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--handshakes", type=int, default=100)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    build(args.no_build)
    java = find_java17()
    env = dict(os.environ, JAVA=java)
    script_last_line("fetch.sh", env)
    venv = script_last_line("pyclients.sh", env)
    b = Bench(java, venv)
    try:
        d = b.path("pki")
        os.makedirs(d)
        pki(d)
        runs = [one_boot(b, venv, d, i, args) for i in range(args.runs)]
    finally:
        b.close()
    lags = [r["lag"] * 1e3 for r in runs]
    first = runs[0]
    total = first["agent_pct"] + first["handshake_ms"] / 10  # one check a second
    print("| figure | goal | measured |")
    print("|---|---|---|")
    print(f"| `READY=1` after the first TLS query answered, median / max of {len(runs)} boots | ≤ 250 ms, never before | "
          f"{median(lags):+.0f} / {max(lags):+.0f} ms; failed client attempts after `READY=1`: "
          f"{sum(r['bad_after'] for r in runs)} |")
    print(f"| agent thread CPU while ready, `check=1s`, {args.idle:.0f} s | — | {first['agent_pct']:.3f} % of a core |")
    print(f"| Cassandra's CPU for one full TLS handshake + OPTIONS ({args.handshakes} `probe --tls`) | — | "
          f"{first['handshake_ms']:.2f} ms (idle Cassandra: {first['idle_pct']:.2f} % of a core) |")
    print(f"| agent + Cassandra per second at `check=1s`, full handshakes (upper bound) | ≤ 0.2 % | {total:.3f} % of a core |")


if __name__ == "__main__":
    main()
