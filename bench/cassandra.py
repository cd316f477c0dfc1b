#!/usr/bin/env python3
"""The agent's cost and timing inside a real Apache Cassandra 5.0.9.

    python3 bench/cassandra.py [--runs N] [--out FILE] [--heap 1G] [--idle 60] [--no-build]

Builds the release agent (cargo build --release), fetches Cassandra's jars and
the Python clients (tests/cassandra/fetch.sh, pyclients.sh), then:

1. N interleaved pairs of fresh single-node boots (run.sh --fast, same heap,
   -XX:+AlwaysPreTouch as Cassandra ships), with and without
   `-agentpath:.../libcqlready.so` (order alternates per pair). For each boot:
   start to the first successful `SELECT release_version FROM system.local`
   by a real client (cassandra-driver, a fresh connection per attempt, every
   ~25 ms: tests/cassandra/cql_loop.py), the JVM's peak RSS (VmHWM) 3 s after
   that, and with the agent the time of READY=1 on our notify socket, against
   the client's first success on the same clock (CLOCK_MONOTONIC).
2. One more boot with the agent, left idle: the CPU time of the agent's
   thread ("cqlready" in /proc/PID/task/*/comm) over --idle seconds at the
   default check period (1 s); then the cost of one readiness check as a
   whole process: `cqlready probe --socket` (200 calls), `cqlready probe
   --port` (200), `nodetool statusbinary` (10), `cqlsh -e "SELECT now() FROM
   system.local"` (10).

Prints a Markdown report and writes it to --out (default
bench/results-cassandra.md). Every process runs in its own process group and
is killed (group) and reaped at the end, and the temporary directory removed,
whatever happens. Takes ~5 minutes with --runs 5 on 2 cores.
"""

import argparse
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

CASS = os.path.join(C.ROOT, "tests", "cassandra")
RUN_SH = os.path.join(CASS, "run.sh")
NODETOOL = os.path.join(CASS, "nodetool.sh")
CQL_LOOP = os.path.join(CASS, "cql_loop.py")
BOOT_TIMEOUT = 180.0
SETTLE = 3.0  # seconds after CQL answers before reading VmHWM


def free_port(pair=False):
    """A free TCP port on 127.0.0.1 (and port+1 too when pair)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if not pair:
            return port
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
        finally:
            t.close()


def script_last_line(script, env):
    r = subprocess.run(["bash", os.path.join(CASS, script)], env=env, stdout=subprocess.PIPE,
                       text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit("%s failed (exit %d)" % (script, r.returncode))
    return r.stdout.strip().splitlines()[-1].strip()


def find_java17():
    cands = []
    if os.environ.get("JAVA"):
        cands.append(os.environ["JAVA"])
    if os.environ.get("JAVA_HOME"):
        cands.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    if shutil.which("java"):
        cands.append(shutil.which("java"))
    if os.path.isdir("/usr/lib/jvm"):
        cands += sorted(os.path.join("/usr/lib/jvm", d, "bin", "java")
                        for d in os.listdir("/usr/lib/jvm") if "17" in d)
    for c in cands:
        if os.path.isfile(c):
            r = subprocess.run([c, "-version"], capture_output=True, text=True)
            if 'version "17' in r.stderr:
                return c
    raise SystemExit("no Java 17 found (JAVA, JAVA_HOME, PATH, /usr/lib/jvm): Cassandra 5.0 needs it")


def lib_rss_kib(pid, name="libcqlready.so"):
    """Rss of the mappings of `name` in /proc/PID/smaps (KiB)."""
    total, inside = 0, False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip().endswith(name)
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total


class Bench:
    """Owns every process and the temporary directory."""

    def __init__(self, java, venv):
        self.java = java
        self.venv = venv
        self.tmp = tempfile.mkdtemp(prefix="cqlready-cass-bench-")
        self.procs = []
        self.n = 0

    def path(self, name):
        return os.path.join(self.tmp, name)

    def env(self):
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "RUNTIME_DIRECTORY",
                  "JVM_EXTRA_OPTS", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS",
                  "CASSANDRA_BASE", "CASSANDRA_LIB"):
            env.pop(k, None)
        env["JAVA"] = self.java
        return env

    def spawn(self, cmd, **kw):
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    @staticmethod
    def kill(p):
        """SIGKILL the process group while its leader is unreaped, then reap."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            C.log("warning: pid %d did not die" % p.pid)
        for s in (p.stdin, p.stdout, p.stderr):
            if s:
                try:
                    s.close()
                except OSError:
                    pass

    def stop(self, p, timeout=30.0):
        """SIGTERM (as systemd would), wait, then kill what is left."""
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                C.log("warning: pid %d ignored SIGTERM for %.0fs" % (p.pid, timeout))
        self.kill(p)

    def close(self):
        for p in self.procs:
            self.kill(p)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------- one boot

    def start_node(self, agent, heap, notify_path=None):
        """Starts a fresh --fast node; returns (proc, ports dict, base, status socket, t_spawn)."""
        self.n += 1
        base = self.path("node-%d" % self.n)
        ports = {"native": free_port(), "storage": free_port(pair=True), "jmx": free_port()}
        env = self.env()
        sock = None
        if agent:
            sock = self.path("s%d.sock" % self.n)
            env["JVM_EXTRA_OPTS"] = "-agentpath:%s=socket=%s" % (C.AGENT_LIB, sock)
        if notify_path:
            env["NOTIFY_SOCKET"] = notify_path
        log = open(self.path("node-%d.log" % self.n), "wb")
        cmd = ["bash", RUN_SH, "--fast", "--heap", heap, "--base", base,
               "--native-port", str(ports["native"]), "--storage-port", str(ports["storage"]),
               "--jmx-port", str(ports["jmx"])]
        t_spawn = time.monotonic()
        p = self.spawn(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        return p, ports, base, sock, t_spawn

    def boot(self, agent, heap):
        """One measured boot; returns a dict of figures."""
        notify = C.NotifySocket(self.path("notify-%d.sock" % (self.n + 1)))
        client = None
        node = None
        try:
            node, ports, base, sock, t_spawn = self.start_node(agent, heap, notify.path)
            client = self.spawn([os.path.join(self.venv, "python"), CQL_LOOP,
                                 "--port", str(ports["native"]), "--pid", str(node.pid),
                                 "--after-ok", "1.0", "--timeout", str(BOOT_TIMEOUT)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=self.env())
            out_fd = client.stdout.fileno()
            buf = b""
            ready = None  # (monotonic, pid, text)
            deadline = time.monotonic() + BOOT_TIMEOUT + 30
            client_open = True
            while client_open or (agent and ready is None):
                if time.monotonic() > deadline:
                    raise C.Timeout("boot: no CQL answer / READY=1 in time (agent=%s)" % agent)
                if node.poll() is not None:
                    raise RuntimeError("Cassandra exited (%s); see %s" % (node.returncode, base))
                fds = [notify.sock] + ([out_fd] if client_open else [])
                r, _, _ = select.select(fds, [], [], 0.5)
                if notify.sock in r:
                    while True:
                        got = notify.recv_nowait()
                        if got is None:
                            break
                        if ready is None and "READY=1" in got[0].splitlines():
                            ready = (time.monotonic(), got[1], got[0])
                if out_fd in r:
                    chunk = os.read(out_fd, 65536)
                    if chunk:
                        buf += chunk
                    else:
                        client_open = False
            client.wait(timeout=30)
            attempts = []
            for line in buf.decode().splitlines():
                w = line.split()
                if w and w[0] == "attempt":
                    attempts.append((float(w[1]), float(w[2]), w[3] == "ok"))
            oks = [a for a in attempts if a[2]]
            if not oks:
                raise RuntimeError("the client never got an answer (agent=%s)" % agent)
            first_ok = oks[0]
            res = {"agent": agent, "pid": node.pid, "cql_s": first_ok[1] - t_spawn,
                   "attempts": len(attempts)}
            if agent:
                t_ready, rpid, _text = ready
                res["ready_pid_ok"] = rpid == node.pid
                res["lag_ms"] = (t_ready - first_ok[1]) * 1e3
                res["lag_start_ms"] = (t_ready - first_ok[0]) * 1e3
                after = [a for a in attempts if a[0] >= t_ready]
                res["after_ready"] = len(after)
                res["after_ready_failed"] = sum(1 for a in after if not a[2])
            # Peak RSS a few seconds after CQL answers (same point for both arms).
            time.sleep(max(0.0, first_ok[1] + SETTLE - time.monotonic()))
            st = C.proc_status(node.pid)
            res["hwm_kib"] = st["VmHWM"]
            res["rss_kib"] = st["VmRSS"]
            if agent:
                res["lib_rss_kib"] = lib_rss_kib(node.pid)
                res["threads"] = sorted(c for c, _t, _n in C.thread_cpu(node.pid).values()
                                        if c.startswith("cqlready"))
            return res
        finally:
            if client is not None:
                self.kill(client)
            if node is not None:
                self.stop(node)
            notify.close()
            if node is not None:
                shutil.rmtree(base, ignore_errors=True)

    # ------------------------------------------------- idle CPU and check cost

    def timed_calls(self, cmd, n, warmup=1, timeout=120):
        """Wall seconds and CPU seconds (user+sys, from wait4) of n runs of cmd."""
        walls, cpus, codes = [], [], []
        for i in range(warmup + n):
            t0 = time.monotonic()
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=self.env(), start_new_session=True)
            self.procs.append(p)
            deadline = t0 + timeout
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    self.kill(p)
                    raise C.Timeout("%s took more than %ds" % (cmd[0], timeout))
                time.sleep(0.0005)
            wall = time.monotonic() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            self.procs.remove(p)
            if i >= warmup:
                walls.append(wall)
                cpus.append(ru.ru_utime + ru.ru_stime)
                codes.append(p.returncode)
        return walls, cpus, codes

    def service_node(self, heap, idle):
        notify = C.NotifySocket(self.path("notify-svc.sock"))
        node = None
        try:
            node, ports, base, sock, t_spawn = self.start_node(True, heap, notify.path)
            notify.wait_for(lambda t: "READY=1" in t.splitlines(), time.monotonic() + BOOT_TIMEOUT)
            C.log("service node ready after %.1fs; settling 5s" % (time.monotonic() - t_spawn))
            time.sleep(5)
            out = {}
            threads = {tid: v for tid, v in C.thread_cpu(node.pid).items()
                       if v[0].startswith("cqlready")}
            if not any(v[0] == "cqlready" for v in threads.values()):
                raise RuntimeError("no thread named cqlready in %d" % node.pid)
            status0 = C.status_json(sock)
            jvm0 = C.process_ticks(node.pid)
            t0 = time.monotonic()
            C.log("idle window: %ds" % idle)
            time.sleep(idle)
            t1 = time.monotonic()
            after = C.thread_cpu(node.pid)
            jvm1 = C.process_ticks(node.pid)
            status1 = C.status_json(sock)
            for tid, (comm, ticks, ns) in threads.items():
                _c, ticks1, ns1 = after[tid]
                out["cpu_" + comm] = {"ticks": ticks1 - ticks,
                                      "ms": (ns1 - ns) / 1e6 if ns is not None else None}
            out["window_s"] = t1 - t0
            out["jvm_ms"] = (jvm1 - jvm0) * 1000.0 / C.CLK_TCK
            out["checks"] = status1["checks"]["total"] - status0["checks"]["total"]
            out["status"] = status1

            C.log("cost of one readiness check")
            cqlsh = os.path.join(self.venv, "cqlsh")
            out["probe_socket"] = self.timed_calls([C.CLI, "probe", "--socket", sock], 200, warmup=5)
            out["probe_port"] = self.timed_calls(
                [C.CLI, "probe", "--port", str(ports["native"])], 200, warmup=5)
            out["nodetool"] = self.timed_calls(
                ["bash", NODETOOL, "-p", str(ports["jmx"]), "statusbinary"], 10)
            out["cqlsh"] = self.timed_calls(
                [cqlsh, "127.0.0.1", str(ports["native"]), "-e", "SELECT now() FROM system.local"], 10)
            return out
        finally:
            if node is not None:
                self.stop(node)
            notify.close()
            if node is not None:
                shutil.rmtree(base, ignore_errors=True)


def ms(x):
    return "%.1f ms" % (x * 1e3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="boot pairs (with/without agent), >= 5")
    ap.add_argument("--out", default=os.path.join(C.ROOT, "bench", "results-cassandra.md"))
    ap.add_argument("--heap", default="1G", help="-Xms/-Xmx of every node (default 1G)")
    ap.add_argument("--idle", type=int, default=60, help="idle CPU window, seconds")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    C.install_signal_handlers()
    load_start = " ".join("%.2f" % x for x in os.getloadavg())
    C.build(args.no_build)
    java = find_java17()
    env = dict(os.environ, JAVA=java)
    lib = script_last_line("fetch.sh", env)
    venv = script_last_line("pyclients.sh", env)
    C.log("jars %s, clients %s, java %s" % (lib, venv, java))

    b = Bench(java, venv)
    boots = []
    svc = None
    t_start = time.monotonic()
    try:
        for i in range(args.runs):
            order = (True, False) if i % 2 == 0 else (False, True)
            for agent in order:
                r = b.boot(agent, args.heap)
                boots.append(r)
                C.log("run %d agent=%-5s CQL after %.2fs, VmHWM %.1f MiB%s" % (
                    i + 1, agent, r["cql_s"], r["hwm_kib"] / 1024.0,
                    ", READY=1 lag %+.0f ms" % r["lag_ms"] if agent else ""))
        svc = b.service_node(args.heap, args.idle)
    finally:
        b.close()
    total = time.monotonic() - t_start

    w = [r for r in boots if r["agent"]]
    wo = [r for r in boots if not r["agent"]]
    cql_w, cql_wo = [r["cql_s"] for r in w], [r["cql_s"] for r in wo]
    ratio = C.median(cql_w) / C.median(cql_wo)
    ratio_ci = C.bootstrap_ci(lambda a, bb: C.median(a) / C.median(bb), [cql_w, cql_wo])
    # Per pair (same moment, same machine load): agent / no agent.
    pairs = [boots[i:i + 2] for i in range(0, len(boots) - 1, 2)]
    paired = [[r for r in pr if r["agent"]][0]["cql_s"] / [r for r in pr if not r["agent"]][0]["cql_s"]
              for pr in pairs]
    hwm_w, hwm_wo = [r["hwm_kib"] for r in w], [r["hwm_kib"] for r in wo]
    dhwm = (C.median(hwm_w) - C.median(hwm_wo)) / 1024.0
    dhwm_ci = C.bootstrap_ci(lambda a, bb: (C.median(a) - C.median(bb)) / 1024.0, [hwm_w, hwm_wo])
    lags = [r["lag_ms"] for r in w]
    early = [r for r in w if r["after_ready_failed"]]
    pid_ok = all(r["ready_pid_ok"] for r in w)
    ps_wall = svc["probe_socket"][0]
    pp_wall = svc["probe_port"][0]
    nt_wall = svc["nodetool"][0]
    cq_wall = svc["cqlsh"][0]
    nt_ratio = C.median(nt_wall) / C.median(ps_wall)
    bad_codes = {k: sorted(set(svc[k][2]) - {0}) for k in ("probe_socket", "probe_port", "nodetool", "cqlsh")
                 if set(svc[k][2]) - {0}}
    agent_cpu = svc["cpu_cqlready"]
    agent_ms = agent_cpu["ms"] if agent_cpu["ms"] is not None else agent_cpu["ticks"] * 1000.0 / C.CLK_TCK
    share = agent_ms / (svc["window_s"] * 1000.0)

    rows = [
        ("Start to CQL answering, with / without agent (median of %d each)" % len(w), "ratio <= 1.02",
         "%.2f s / %.2f s = **%.3f** (95%% CI %.3f-%.3f); median of per-pair ratios %.3f "
         "(min %.3f, max %.3f)" % (
             C.median(cql_w), C.median(cql_wo), ratio, ratio_ci[0], ratio_ci[1],
             C.median(paired), min(paired), max(paired)),
         C.verdict(ratio <= 1.02)),
        ("Peak RSS (VmHWM) with / without agent, -Xms=-Xmx=%s" % args.heap, "<= +2 MiB",
         "%.1f / %.1f MiB: **%+.1f MiB** (95%% CI %+.1f..%+.1f)" % (
             C.median(hwm_w) / 1024.0, C.median(hwm_wo) / 1024.0, dhwm, dhwm_ci[0], dhwm_ci[1]),
         C.verdict(dhwm <= 2.0)),
        ("READY=1 behind the driver's first successful query (p50 / max over %d boots)" % len(w),
         "<= 250 ms, never before",
         "p50 %+.0f ms / max %+.0f ms (min %+.0f); READY=1 from the JVM pid: %s; client attempts "
         "started after READY=1 that failed: %d" % (
             C.median(lags), max(lags), min(lags), "yes" if pid_ok else "**NO**",
             sum(r["after_ready_failed"] for r in w)),
         C.verdict(max(lags) <= 250 and not early and pid_ok)),
        ("`cqlready probe --socket` (whole process, 200 calls)", "",
         "median %s, p99 %s; CPU %s" % (ms(C.median(ps_wall)), ms(C.percentile(ps_wall, 99)),
                                        ms(C.median(svc["probe_socket"][1]))), ""),
        ("`cqlready probe --port` (direct CQL OPTIONS, 200 calls)", "",
         "median %s, p99 %s; CPU %s" % (ms(C.median(pp_wall)), ms(C.percentile(pp_wall, 99)),
                                        ms(C.median(svc["probe_port"][1]))), ""),
        ("`nodetool statusbinary` (10 calls)", "",
         "median %s, p99 %s; CPU %s" % (ms(C.median(nt_wall)), ms(C.percentile(nt_wall, 99)),
                                        ms(C.median(svc["nodetool"][1]))), ""),
        ("`cqlsh -e \"SELECT now() FROM system.local\"` (10 calls)", "",
         "median %s, p99 %s; CPU %s" % (ms(C.median(cq_wall)), ms(C.percentile(cq_wall, 99)),
                                        ms(C.median(svc["cqlsh"][1]))), ""),
        ("nodetool / cqlready probe --socket (median wall)", ">= 200x",
         "**%.0fx** (CPU: %.0fx); cqlsh / cqlready: %.0fx" % (
             nt_ratio, C.median(svc["nodetool"][1]) / max(C.median(svc["probe_socket"][1]), 1e-9),
             C.median(cq_wall) / C.median(ps_wall)),
         C.verdict(nt_ratio >= 200)),
        ("Agent thread `cqlready` CPU while Cassandra idles (check=1s), %.0f s window" % svc["window_s"],
         "indistinguishable from 0",
         "%.1f ms (%d ticks) = %.3f%% of one core, %.2f ms per check (%d checks); "
         "`cqlready-status`: %s; whole JVM: %.0f ms" % (
             agent_ms, agent_cpu["ticks"], share * 100, agent_ms / max(svc["checks"], 1),
             svc["checks"],
             ("%.1f ms" % svc["cpu_cqlready-status"]["ms"]) if "cpu_cqlready-status" in svc else "n/a",
             svc["jvm_ms"]),
         C.verdict(share < 0.001)),
    ]

    detail = [("%d" % (i // 2 + 1), "agent" if r["agent"] else "none", "%.2f s" % r["cql_s"],
               "%.1f" % (r["hwm_kib"] / 1024.0), "%.1f" % (r["rss_kib"] / 1024.0),
               ("%+.0f / %+.0f ms" % (r["lag_ms"], r["lag_start_ms"])) if r["agent"] else "",
               ("%d (%d failed)" % (r["after_ready"], r["after_ready_failed"])) if r["agent"] else "",
               ("%d KiB" % r["lib_rss_kib"]) if r["agent"] else "")
              for i, r in enumerate(boots)]
    notes = [n.split(", load average at start")[0] + ", load average at start %s" % load_start
             if ", load average at start" in n else n for n in C.machine_notes([("17", java)])]
    text = "\n".join([
        "# cqlready in Apache Cassandra 5.0.9",
        "",
        "`python3 bench/cassandra.py --runs %d --heap %s --idle %d` (%.0f s in all)" % (
            args.runs, args.heap, args.idle, total),
        "",
        "\n".join(notes),
        "- load average at the end: %s (other work on this machine adds noise to the boot times)" % (
            " ".join("%.2f" % x for x in os.getloadavg())),
        "- Cassandra: tests/cassandra/run.sh --fast (single node, fresh data dir per boot, "
        "-Xms=-Xmx=%s, -XX:+AlwaysPreTouch); agent: `-agentpath:target/release/libcqlready.so=socket=...` "
        "(defaults otherwise: ready=normal, interval=100ms, check=1s)" % args.heap,
        "- client: cassandra-driver 3.30.1, a fresh Cluster per attempt (schema/token metadata off), "
        "`SELECT release_version FROM system.local` every ~25 ms from the moment the JVM is spawned; "
        "\"CQL answering\" = the first answer; READY=1 lag = READY=1 received on our notify socket "
        "minus that answer, both CLOCK_MONOTONIC",
        "",
        C.table(rows),
        "",
        "## Boots (in the order run)",
        "",
        C.table(detail, header=("Pair", "Agent", "Start to CQL", "VmHWM MiB", "VmRSS MiB",
                                "READY=1 vs first answer (end / start of that query)",
                                "client attempts after READY=1", "libcqlready.so Rss")),
        "",
        ("**Non-zero exits during the check-cost calls: %s**\n" % bad_codes) if bad_codes else
        "All check-cost calls exited 0.",
        "",
        "Agent threads: %s. Idle window: %d checks, agent status `%s`, mode %s." % (
            ", ".join(w[0]["threads"]), svc["checks"], svc["status"]["state"],
            (svc["status"].get("cassandra") or {}).get("mode")),
        "",
    ])
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    C.log("wrote %s" % args.out)


if __name__ == "__main__":
    main()
