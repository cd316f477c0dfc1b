#!/usr/bin/env python3
"""CQL over TLS on a real Cassandra 5.0 (Java 17) that requires it.

    python3 bench/tls.py [--runs 3] [--idle 30] [--windows 3] [--no-build]

Per boot (`--runs`), a node whose cassandra.yaml sets client_encryption_options
enabled (not optional) starts with the release agent and no TLS option (the
agent finds TLS in the yaml), while tests/cassandra/cql_loop.py (cassandra-driver
over TLS, a fresh connection every 20 ms) queries it. It reports:

  * READY=1 (datagram arrival, CLOCK_MONOTONIC) minus the end of the driver's
    first successful query: goal <= 250 ms, and never before a query can succeed;
  * once ready, at the default check=1s: the agent thread's CPU over `--idle` s
    (schedstat ns), as a share of one core: boot 0 as shipped (`tls_keep=1m`,
    the connection kept between checks), boot 1 with `tls_keep=0s` (a new
    connection, a resumed handshake, every check);
  * Cassandra's CPU per check, three ways (after a warm-up of each, then
    `--windows` rounds of 10 s windows interleaving none/full/resumed/kept,
    each minus the median window without checks, divided by the checks it
    ran; a Python ssl client makes up to 50 checks a second): a new
    connection with a full TLS handshake, a new connection resuming the last
    session (what `tls_keep=0s` does), and `OPTIONS` on one kept connection
    (what the agent does between renewals);
  * what the agent's `/status` says of its own checks (`kept`, `resumed`).

stdlib only; results as a Markdown table on stdout, progress on stderr.
"""

import argparse
import json
import os
import socket
import ssl
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


OPTIONS = bytes([0x04, 0, 0, 0, 0x05, 0, 0, 0, 0])  # CQL v4 OPTIONS, stream 0


def options_over(conn):
    """OPTIONS out, SUPPORTED (opcode 6) back."""
    conn.sendall(OPTIONS)
    head = b""
    while len(head) < 9:
        chunk = conn.recv(9 - len(head))
        if not chunk:
            raise SystemExit("Cassandra closed the TLS connection")
        head += chunk
    if head[4] != 0x06:
        raise SystemExit(f"expected SUPPORTED, got opcode {head[4]}")
    left = int.from_bytes(head[5:9], "big")
    while left:
        left -= len(conn.recv(min(left, 65536)))


def checks(port, how, stop, count):
    """Up to 50 checks a second until `stop`, counted in `count`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    kept, session = None, None
    while not stop.is_set():
        t = time.monotonic()
        if how == "kept":
            if kept is None:
                kept = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
            options_over(kept)
        else:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                 session=session if how == "resumed" else None) as c:
                options_over(c)
                count["resumed"] += c.session_reused
                session = c.session
        count["n"] += 1
        time.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
    if kept is not None:
        kept.close()


MODES = ("full", "resumed", "kept")


def window(pid, port, how, secs):
    """One window of `secs`: (Cassandra CPU s, wall s, checks run, resumed);
    `how` None is a window without checks."""
    stop, count = threading.Event(), {"n": 0, "resumed": 0}
    th = None
    if how:
        th = threading.Thread(target=checks, args=(port, how, stop, count))
        th.start()
        time.sleep(1)  # a kept connection's own handshake is not counted
    n0, r0, p0, w0 = count["n"], count["resumed"], process_ticks(pid), time.monotonic()
    time.sleep(secs)
    n, r = count["n"] - n0, count["resumed"] - r0
    cpu, dt = (process_ticks(pid) - p0) / CLK_TCK, time.monotonic() - w0
    stop.set()
    if th:
        th.join()
    return cpu, dt, n, r


def per_check_ms(pid, port, windows, secs=10.0):
    """Cassandra's CPU per check (ms) for each of MODES: windows with checks
    minus windows without, interleaved so that drift cancels, after a
    warm-up of every mode (the JIT compiles the TLS code on first use)."""
    for how in MODES:
        window(pid, port, how, 5)
    seen = {how: [] for how in (None,) + MODES}
    for _ in range(windows):
        for how in (None,) + MODES:
            seen[how].append(window(pid, port, how, secs))
    idle = median([cpu / dt for cpu, dt, _, _ in seen[None]])
    out = {}
    for how in MODES:
        per = [max(cpu - idle * dt, 0.0) / max(n, 1) for cpu, dt, n, _ in seen[how]]
        ran, resumed = sum(w[2] for w in seen[how]), sum(w[3] for w in seen[how])
        out[how] = (median(per) * 1e3, ran, resumed)
        log(f"{how}: {ran} checks ({resumed} resumed), Cassandra idle {idle * 100:.2f} % "
            f"of a core; per check {median(per) * 1e3:.3f} ms")
    return out


def agent_ns(pid):
    return sum(ns or 0 for comm, _t, ns in thread_cpu(pid).values() if comm == "cqlready")


def one_boot(b, venv, d, i, args):
    native, storage, jmx = free_port(), free_port(pair=True), free_port()
    sock = f"{d}/s{i}.sock"
    notify = Notify(f"{d}/notify{i}")
    env = b.env()
    env.update(NOTIFY_SOCKET=notify.path, CASSANDRA_YAML_EXTRA=f"{d}/tls.yaml",
               JVM_EXTRA_OPTS=f"-agentpath:{AGENT_LIB}=socket={sock}"
               + (",tls_keep=0s" if i == 1 else ""))
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
    # Ready, at check=1s: the agent thread's CPU (boot 1: tls_keep=0s, a
    # new connection every check).
    time.sleep(2)
    a0, w0 = agent_ns(node.pid), time.monotonic()
    time.sleep(args.idle)
    a1, w1 = agent_ns(node.pid), time.monotonic()
    result["agent_pct"] = (a1 - a0) / 1e9 / (w1 - w0) * 100
    st = json.loads(subprocess.run([CLI, "status", "--socket", sock, "--json"],
                                   capture_output=True, text=True, check=True).stdout)
    result["tls"] = st["cql"]["tls"]
    if i == 0:
        result["per_check"] = per_check_ms(node.pid, native, args.windows)
    b.kill(node)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--windows", type=int, default=3)
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
    first, fresh = runs[0], runs[1] if len(runs) > 1 else None
    pc = first["per_check"]
    print("| figure | goal | measured |")
    print("|---|---|---|")
    print(f"| `READY=1` after the first TLS query answered, median / max of {len(runs)} boots | ≤ 250 ms, never before | "
          f"{median(lags):+.0f} / {max(lags):+.0f} ms; failed client attempts after `READY=1`: "
          f"{sum(r['bad_after'] for r in runs)} |")
    for name, what in (("full", "a new connection, full TLS handshake, OPTIONS (Python ssl, no session passed on)"),
                       ("resumed", "a new connection resuming a TLS session, OPTIONS (Python ssl, the last session passed on)"),
                       ("kept", "OPTIONS on a kept TLS connection (Python ssl)")):
        ms_, ran, resumed = pc[name]
        note = f"; {resumed} of {ran} sessions resumed" if name != "kept" else f"; {ran} checks"
        print(f"| Cassandra's CPU per check: {what} | — | {ms_:.3f} ms{note} |")
    kept = first["tls"].get("kept")
    print(f"| the agent's thread while ready, `check=1s`, {args.idle:.0f} s, as shipped (`tls_keep=1m`; "
          f"`/status` `kept`: {kept}) | — | {first['agent_pct']:.3f} % of a core |")
    # As shipped: OPTIONS on the kept connection every second, a new
    # (resumed) connection once a minute. ms per second / 10 = % of a core.
    shipped = first["agent_pct"] + (pc["kept"][0] + pc["resumed"][0] / 60) / 10
    print(f"| agent + Cassandra at `check=1s`, as shipped | ≤ 0.2 % of a core | {shipped:.3f} % |")
    if fresh:
        print(f"| the agent's thread, `tls_keep=0s` (a new connection every check; `/status` `resumed`: "
              f"{fresh['tls'].get('resumed')}) | — | {fresh['agent_pct']:.3f} % of a core |")
        every = fresh["agent_pct"] + pc["resumed"][0] / 10
        print(f"| agent + Cassandra at `check=1s`, `tls_keep=0s` | — | {every:.3f} % |")

if __name__ == "__main__":
    main()
