#!/usr/bin/env python3
"""Load on the agent's status socket, and the agent's memory over many probes.

    python3 bench/load.py                 # everything (~4 min): writes bench/results-load.md
    python3 bench/load.py --seconds 20 --memory-seconds 180 --no-build

Phases, each a fresh JVM running tests/fixtures/Worker.java (a tight loop of
fixed units of work, each timed; it also answers CQL on a port so the agent
is ready and checking):
  A  no agent                      -> the JVM's unit latency p50/p99
  B  agent, idle status socket     -> the same
  P  agent + GET /ready 10 times a second (--probe-rate) -> the same
  C  agent + load                  -> the same, plus the socket's figures:
       1000 concurrent status clients (GET /status in a loop, a new
       connection each, as `cqlready status` does), 50 slow-loris clients
       sending one byte a second, 50 clients that send a request and never
       read; agent threads (cqlready-*), VmHWM, VmRSS, Threads sampled.
  M  agent with interval=1ms,check=1ms against the Worker's CQL port:
       VmRSS sampled against the probe count, a linear fit, and the
       extrapolation to 1,000,000 probes.
Stdlib only. Runs everything under the caller's nice level.
"""

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import AGENT_LIB, ROOT, http_get, log, percentile, status_json  # noqa: E402

WORKER_SRC = os.path.join(ROOT, "tests", "fixtures", "Worker.java")
CLASSES = os.path.join(ROOT, "target", "fixtures-load")
RESULTS = os.path.join(ROOT, "bench", "results-load.md")
PIN_JVM = None  # --pin: the measured JVM on CPU 0, this script (the load) on the others


def compile_worker():
    os.makedirs(CLASSES, exist_ok=True)
    subprocess.run(["javac", "--release", "8", "-Xlint:-options", "-d", CLASSES, WORKER_SRC], check=True)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def agent_threads(pid):
    n = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
                    if f.read().startswith("cqlready"):
                        n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


class Worker:
    def __init__(self, seconds, agent_opts=None, tag="w", idle=False, probe_port=None):
        self.port = free_port()
        self.sock = "/tmp/cqlready-load-%d-%s.sock" % (os.getpid(), tag)
        cmd = (["taskset", "-c", PIN_JVM] if PIN_JVM else []) + ["java", "-XX:+UseSerialGC", "-Xmx256m"]
        if agent_opts is not None:
            opts = "port=%d,socket=%s" % (probe_port or self.port, self.sock)
            if agent_opts:
                opts += "," + agent_opts
            cmd.append("-agentpath:%s=%s" % (AGENT_LIB, opts))
        cmd += ["-cp", CLASSES, "Worker", str(seconds), str(self.port)] + (["idle"] if idle else [])
        self.err = open("/tmp/cqlready-load-%d-%s.err" % (os.getpid(), tag), "w+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.pid = self.proc.pid
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit("worker did not start: %r" % line)
        self.intervals = []
        self.total = None
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("interval"):
                self.intervals.append(line.strip())
            elif line.startswith("total"):
                self.total = dict(kv.split("=") for kv in line.split()[1:])

    def wait(self):
        self.proc.wait(timeout=600)
        self.t.join(5)
        self.err.seek(0)
        text = self.err.read()
        self.err.close()
        os.unlink(self.err.name)
        return self.total, text


# ---------------------------------------------------------------------------
# Load


async def status_client(path, stats, stop):
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            r, w = await asyncio.open_unix_connection(path)
            w.write(b"GET /status HTTP/1.1\r\nHost: -\r\n\r\n")
            await w.drain()
            data = await r.read()
            w.close()
            code = int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
        except (OSError, ValueError):
            code = -1
        dt = time.perf_counter() - t0
        stats["codes"][code] = stats["codes"].get(code, 0) + 1
        if code == 200:
            stats["lat"].append(dt)
        if code in (503, -1):
            await asyncio.sleep(0.01)


async def slow_loris(path, stats, stop):
    req = b"GET /status HTTP/1.1\r\nHost: -\r\n\r\n"
    while not stop.is_set():
        try:
            r, w = await asyncio.open_unix_connection(path)
            for b in req:
                w.write(bytes([b]))
                await w.drain()
                await asyncio.sleep(1.0)
                if stop.is_set() or r.at_eof():
                    break
            data = await asyncio.wait_for(r.read(), 5)
            code = int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
            w.close()
        except (OSError, ValueError, asyncio.TimeoutError):
            code = -1
            # A connect that fails at once never yields: without this, a
            # vanished socket would spin here and stall the event loop.
            await asyncio.sleep(0.01)
        stats["loris"][code] = stats["loris"].get(code, 0) + 1


async def never_reads(path, stats, stop, held):
    while not stop.is_set():
        try:
            r, w = await asyncio.open_unix_connection(path)
            w.write(b"GET /metrics HTTP/1.1\r\nHost: -\r\n\r\n")
            await w.drain()
            held.append(w)
            stats["unread"] += 1
        except OSError:
            pass
        await asyncio.sleep(1.0)


async def run_load(path, seconds, n_clients, n_loris, n_unread, pid, samples):
    stats = {"codes": {}, "lat": [], "loris": {}, "unread": 0}
    stop = asyncio.Event()
    held = []
    tasks = [asyncio.create_task(status_client(path, stats, stop)) for _ in range(n_clients)]
    tasks += [asyncio.create_task(slow_loris(path, stats, stop)) for _ in range(n_loris)]
    tasks += [asyncio.create_task(never_reads(path, stats, stop, held)) for _ in range(n_unread)]
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(0.2)
        s = proc_status(pid)
        s["agent_threads"] = agent_threads(pid)
        samples.append(s)
    stop.set()
    elapsed = time.monotonic() - t0
    # The agent answers right after the load (the Worker runs 1 s longer);
    # the slow-loris clients may still hold connections, so retry a busy answer.
    stats["after"] = None
    while stats["after"] is None and time.monotonic() - t0 < seconds + 0.9:
        try:
            stats["after"] = await asyncio.to_thread(status_json, path)
        except Exception as e:  # noqa: BLE001
            stats["after_error"] = str(e)
            await asyncio.sleep(0.05)
    await asyncio.wait(tasks, timeout=8)
    for t in tasks:
        t.cancel()
    for w in held:
        w.close()
    return stats, elapsed


def memory_run(a):
    """Phase M: the agent probing every 1 ms in a JVM whose main thread is
    idle. The CQL port it probes is served by a second JVM without the agent
    (the control): the connection garbage lands in the control's heap, so
    the agent JVM's RSS is the agent's (plus an idle JVM's), and the control
    shows what the same connection rate does to a JVM."""
    log("phase M: interval=1ms,check=1ms for %.0f s (+ a control JVM without the agent)" % a.memory_seconds)
    ctl = Worker(a.memory_seconds + 5, None, "mc", idle=True)
    w = Worker(a.memory_seconds, "interval=1ms,check=1ms", "m", idle=True, probe_port=ctl.port)
    pts = []
    t0 = time.monotonic()
    while w.proc.poll() is None and time.monotonic() - t0 < a.memory_seconds - 1:
        time.sleep(5)
        try:
            checks = status_json(w.sock)["checks"]["total"]
        except Exception:  # noqa: BLE001
            continue
        rss = proc_status(w.pid).get("VmRSS")
        crss = proc_status(ctl.pid).get("VmRSS", 0)
        if rss:
            pts.append((time.monotonic() - t0, checks, rss, crss))
            log("M t=%.0fs checks=%d VmRSS=%d kB control=%d kB" % pts[-1])
    w.wait()
    ctl.wait()
    return pts


def memory_table(mem):
    lines = ["## Memory over many probes (phase M, interval=1ms, check=1ms, main thread idle)\n",
             "| t s | probes | VmRSS kB (JVM with the agent) | VmRSS kB (control JVM serving the probed CQL port, no agent) |", "|---|---|---|---|"]
    for t, c, r, cr in mem:
        lines.append("| %.0f | %d | %d | %d |" % (t, c, r, cr))
    for start in (20, 300):
        fit = [(c, r) for t, c, r, _ in mem if t >= start]
        n = len(fit)
        if n < 2:
            continue
        mx = sum(c for c, _ in fit) / n
        my = sum(r for _, r in fit) / n
        sxx = sum((c - mx) ** 2 for c, _ in fit) or 1
        slope = sum((c - mx) * (r - my) for c, r in fit) / sxx
        last_c, last_r = mem[-1][1], mem[-1][2]
        lines.append("")
        lines.append("Linear fit of VmRSS on probes from t=%d s: %.2f bytes per probe; measured %d probes, "
                     "VmRSS %d kB; at 1,000,000 probes: %.0f kB (%+.0f kB)." % (
                         start, slope * 1024, last_c, last_r, last_r + slope * (1e6 - last_c), slope * (1e6 - last_c)))
    return lines


def memory_only(a):
    mem = memory_run(a)
    text = "\n".join(["# Memory run (`python3 bench/load.py --phases M`)\n"] + memory_table(mem)) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


def lat_summary(total):
    if not total:
        return "n/a"
    return "%s / %s" % (total["p50_us"], total["p99_us"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20, help="length of phases A, B, C")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--loris", type=int, default=50)
    ap.add_argument("--unread", type=int, default=50)
    ap.add_argument("--probe-rate", type=float, default=10, help="requests a second in phase P")
    ap.add_argument("--memory-seconds", type=float, default=180, help="length of phase M (0: skip)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--phases", default="ABCM", help="which phases to run (default ABCM)")
    ap.add_argument("--out", default=RESULTS, help="results file (default bench/results-load.md)")
    ap.add_argument("--pin", action="store_true", help="JVM on CPU 0, the load generator on the other CPUs")
    a = ap.parse_args()
    if a.pin:
        global PIN_JVM
        PIN_JVM = "0"
        os.sched_setaffinity(0, set(range(1, os.cpu_count())) or {0})
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--lib"], cwd=ROOT, check=True)
    compile_worker()
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = {}

    if "A" in a.phases:
        log("phase A: no agent, %.0f s" % a.seconds)
        w = Worker(a.seconds, None, "a")
        out["A"], _ = w.wait()
        log("A %s" % out["A"])
    if "C" not in a.phases:
        return memory_only(a)

    log("phase B: agent, idle, %.0f s" % a.seconds)
    w = Worker(a.seconds, "", "b")
    time.sleep(0.5)
    b_status = proc_status(w.pid)
    b_threads = agent_threads(w.pid)
    out["B"], err_b = w.wait()
    log("B %s" % out["B"])

    log("phase P: agent + %d status probes a second (a busy kubelet and an operator), %.0f s" % (a.probe_rate, a.seconds))
    w = Worker(a.seconds, "", "p")
    deadline = time.monotonic() + 10
    while not os.path.exists(w.sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    probes = {"ok": 0, "other": 0}
    t_end = time.monotonic() + a.seconds - 0.5
    nxt = time.monotonic()
    while time.monotonic() < t_end:
        try:
            code, _ = http_get(w.sock, "/ready")
            probes["ok" if code in (200, 503) else "other"] += 1
        except OSError:
            probes["other"] += 1
        nxt += 1.0 / a.probe_rate
        time.sleep(max(0.0, nxt - time.monotonic()))
    out["P"], _ = w.wait()
    log("P %s %s" % (out["P"], probes))

    log("phase C: agent + %d clients, %d slow-loris, %d never-read, %.0f s" % (a.clients, a.loris, a.unread, a.seconds))
    w = Worker(a.seconds + 1, "", "c")
    deadline = time.monotonic() + 10
    while not os.path.exists(w.sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    samples = []
    stats, elapsed = asyncio.run(run_load(w.sock, a.seconds, a.clients, a.loris, a.unread, w.pid, samples))
    alive = stats["after"] or {"error": stats.get("after_error")}
    out["C"], err_c = w.wait()
    log("C %s" % out["C"])
    ok = stats["codes"].get(200, 0)
    lat = sorted(stats["lat"])
    peak_thr = max(s.get("agent_threads", 0) for s in samples) if samples else 0
    peak_threads = max(s.get("Threads", 0) for s in samples) if samples else 0
    hwm = max(s.get("VmHWM", 0) for s in samples) if samples else 0
    err_lines = [l for l in err_c.splitlines() if l.startswith("cqlready")]

    mem = None
    if a.memory_seconds > 0 and "M" in a.phases:
        mem = memory_run(a)

    # ---- results
    lines = []
    lines.append("# Load and memory (`python3 bench/load.py`)\n")
    lines.append("Machine: %d cores, load average at the end %s. "
                 "JVM: `%s`. Agent: %s.\n" % (os.cpu_count(), tuple(round(x, 2) for x in os.getloadavg()),
                                            subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0],
                                            AGENT_LIB))
    if a.pin:
        lines.append("Pinned (`--pin`): the JVMs on CPU 0, the load generator on CPU 1.\n")
    lines.append("## The JVM's own work (Worker.java, one timed unit ≈ 20k xorshift steps)\n")
    lines.append("| phase | units | unit p50 µs | unit p99 µs | p99.9 µs | max µs |")
    lines.append("|---|---|---|---|---|---|")
    for k, name in (("A", "A: no agent"), ("B", "B: agent, socket idle"),
                    ("P", "P: agent + %d probes/s (%d answered)" % (a.probe_rate, probes["ok"])),
                    ("C", "C: agent + load")):
        t = out.get(k) or {}
        lines.append("| %s | %s | %s | %s | %s | %s |" % (name, t.get("units"), t.get("p50_us"), t.get("p99_us"), t.get("p999_us"), t.get("max_us")))
    lines.append("")
    lines.append("## The status socket under load (phase C, %.1f s)\n" % elapsed)
    lines.append("| figure | value |")
    lines.append("|---|---|")
    lines.append("| concurrent status clients / slow-loris / never-read | %d / %d / %d |" % (a.clients, a.loris, a.unread))
    lines.append("| answers 200 | %d (%.0f/s) |" % (ok, ok / elapsed))
    lines.append("| answers 503 busy | %d (%.0f/s) |" % (stats["codes"].get(503, 0), stats["codes"].get(503, 0) / elapsed))
    lines.append("| other codes / connection errors | %s |" % {k: v for k, v in stats["codes"].items() if k not in (200, 503)})
    lines.append("| latency of 200 answers p50 / p99 / max | %.2f / %.2f / %.2f ms |" % (
        percentile(lat, 50) * 1e3 if lat else 0, percentile(lat, 99) * 1e3 if lat else 0, lat[-1] * 1e3 if lat else 0))
    lines.append("| slow-loris outcomes (code: count) | %s |" % stats["loris"])
    lines.append("| never-read connections opened | %d |" % stats["unread"])
    lines.append("| agent threads (cqlready-*) idle → peak | %d → %d |" % (b_threads, peak_thr))
    lines.append("| JVM threads idle → peak | %s → %d |" % (b_status.get("Threads"), peak_threads))
    lines.append("| VmHWM idle (phase B, 0.5 s in) → peak under load | %s → %d kB |" % (b_status.get("VmHWM"), hwm))
    lines.append("| /status right after the load | %s |" % (alive.get("state") or alive))
    lines.append("| agent stderr lines during the load | %d: %s |" % (len(err_lines), "; ".join(err_lines[-4:]).replace("|", "/")))
    lines.append("")
    if mem:
        lines += memory_table(mem)
    text = "\n".join(lines) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
