#!/usr/bin/env python3
"""The status server under a flood from the allowed user: does a probe still get through?

    python3 bench/server.py --pin          # ~1 min: writes bench/results-server.md
    python3 bench/server.py --seconds 30 --no-build

Two JVMs running tests/fixtures/Worker.java (fixed units of work, each timed,
and a CQL port so the agent is ready), one after the other, each with the
agent and the same prober: a fresh connection with `GET /ready` 10 times a
second, and `cqlready probe` twice a second.

  I  idle: only the prober.
  F  flood: the prober plus, from a separate process (the same user, so every
     connection passes the peer check): --idle connections that connect and
     send nothing (reconnecting as soon as the agent closes them), --loris
     slow-loris clients sending a request a byte a second, and --garbage
     clients sending garbage in a loop.

Reported: the fresh `GET /ready` and `cqlready probe` latencies (p50/p99/max)
and their answers (every 503 counted), the agent's threads (cqlready-*)
sampled every 0.2 s, the peak VmHWM of each JVM, and the Worker's unit p99
idle vs flood (the method of bench/load.py: whole-run percentiles of two
JVMs; the flood starts as soon as the socket exists, before the Worker's
measured run, and ends after it). With --pin the JVMs run on CPU 0 and this script,
the prober and the flood on the others. Stdlib only.
"""

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import CLI, ROOT, http_get, log, percentile  # noqa: E402
import load  # noqa: E402  (the Worker JVM and /proc readers)

RESULTS = os.path.join(ROOT, "bench", "results-server.md")


# ---------------------------------------------------------------------------
# The flood (a separate process: its event loop never stalls the prober)


async def exchange(path, send):
    """Connects, sends `send` (nothing for an idle client), reads until the
    agent closes: the answer's code, 0 for no answer, -1 for an error, None
    when no agent listens (its JVM has ended)."""
    try:
        r, w = await asyncio.open_unix_connection(path)
        if send:
            w.write(send)
            await w.drain()
        data = await r.read()
        w.close()
        return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
    except (FileNotFoundError, ConnectionRefusedError):
        await asyncio.sleep(0.01)
        return None
    except (OSError, ValueError):
        await asyncio.sleep(0.01)
        return -1


async def idle_client(path, stats, stop):
    while not stop.is_set():
        code = await exchange(path, b"")
        if code is not None:
            stats["idle"][code] = stats["idle"].get(code, 0) + 1


async def garbage_client(path, stats, stop, rng):
    while not stop.is_set():
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) + b"\r\n\r\n"
        code = await exchange(path, junk)
        if code is not None:
            stats["garbage"][code] = stats["garbage"].get(code, 0) + 1


async def flood_main(path, seconds, n_idle, n_loris, n_garbage):
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    stats = {"idle": {}, "loris": {}, "garbage": {}}
    stop = asyncio.Event()
    rng = random.Random(1)
    tasks = [asyncio.create_task(idle_client(path, stats, stop)) for _ in range(n_idle)]
    tasks += [asyncio.create_task(load.slow_loris(path, stats, stop)) for _ in range(n_loris)]
    tasks += [asyncio.create_task(garbage_client(path, stats, stop, rng)) for _ in range(n_garbage)]
    # Until the parent closes our stdin (its JVM has ended), at most `seconds`.
    loop = asyncio.get_running_loop()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)),
                     daemon=True).start()
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass
    stop.set()
    await asyncio.wait(tasks, timeout=3)
    for t in tasks:
        t.cancel()
    print(json.dumps({k: {str(c): n for c, n in v.items()} for k, v in stats.items()}), flush=True)


def flood_process(a, path):
    """Starts the flood in a process of its own; it waits for `path` to
    appear, so that it is on before the JVM's measured run begins."""
    cmd = [sys.executable, os.path.abspath(__file__), "--flood-only", path,
           "--seconds", str(a.seconds + 60), "--idle", str(a.idle), "--loris", str(a.loris),
           "--garbage", str(a.garbage)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------
# The prober


def fresh_ready(path):
    """`GET /ready` on a new connection: (code, seconds); -1 for an error."""
    t0 = time.perf_counter()
    try:
        code, _ = http_get(path, "/ready")
    except (OSError, ValueError):
        code = -1
    return code, time.perf_counter() - t0


def cli_probe(path):
    t0 = time.perf_counter()
    r = subprocess.run([CLI, "probe", "--socket", path, "--timeout", "2s"], capture_output=True, text=True)
    return r.returncode, time.perf_counter() - t0, (r.stdout + r.stderr).strip()


def status_thread_cpu(pid):
    """CPU seconds used so far by the agent's status thread."""
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            base = "/proc/%d/task/%s/" % (pid, t)
            with open(base + "comm") as f:
                if f.read().strip() != "cqlready-status":
                    continue
            with open(base + "stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except OSError:
        pass
    return 0.0


class Prober:
    """GET /ready 10/s and `cqlready probe` 2/s from two threads, plus the
    agent's threads and memory every 0.2 s."""

    def __init__(self, path, pid):
        self.path, self.pid = path, pid
        self.ready = []  # (code, seconds)
        self.cli = []  # (exit, seconds, text)
        self.samples = []
        self.stop = threading.Event()
        self.cpu0, self.t0 = status_thread_cpu(pid), time.monotonic()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._ready, self._cli, self._sample)]
        for t in self.threads:
            t.start()

    def _every(self, period, f):
        nxt = time.monotonic()
        while not self.stop.is_set():
            f()
            nxt += period
            self.stop.wait(max(0.0, nxt - time.monotonic()))

    def _ready(self):
        self._every(0.1, lambda: self.ready.append(fresh_ready(self.path)))

    def _cli(self):
        self._every(0.5, lambda: self.cli.append(cli_probe(self.path)))

    def _sample(self):
        def one():
            s = load.proc_status(self.pid)
            s["agent_threads"] = load.agent_threads(self.pid)
            self.samples.append(s)
        self._every(0.2, one)

    def finish(self):
        self.cpu = (status_thread_cpu(self.pid) - self.cpu0) / max(time.monotonic() - self.t0, 1e-9)
        self.stop.set()
        for t in self.threads:
            t.join(10)


def wait_socket(w):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.path.exists(w.sock) and fresh_ready(w.sock)[0] == 200:
            return
        time.sleep(0.05)
    raise SystemExit("the agent at %s never answered ready" % w.sock)


def run_phase(a, flood):
    """One JVM for --seconds of measured work; with `flood`, the flood is on
    from before the measured run begins to after it ends."""
    tag = "f" if flood else "i"
    sock = "/tmp/cqlready-load-%d-srv%s.sock" % (os.getpid(), tag)
    fp = flood_process(a, sock) if flood else None
    w = load.Worker(a.seconds, "", "srv" + tag)
    assert w.sock == sock
    wait_socket(w)
    pr = Prober(w.sock, w.pid)
    time.sleep(max(0.0, a.seconds - 1.0))
    pr.finish()
    total, err = w.wait()
    flood_stats = None
    if fp:
        try:
            out, _ = fp.communicate(timeout=30)
            flood_stats = json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
            fp.kill()
            fp.wait()
            log("the flood process gave no figures: %s" % e)
    return {"total": total, "prober": pr, "flood": flood_stats,
            "err": [l for l in err.splitlines() if l.startswith("cqlready")]}


def lat(xs):
    xs = sorted(xs)
    if not xs:
        return "n/a"
    return "%.2f / %.2f / %.2f ms" % (percentile(xs, 50) * 1e3, percentile(xs, 99) * 1e3, xs[-1] * 1e3)


def codes(pairs):
    out = {}
    for c in pairs:
        out[c] = out.get(c, 0) + 1
    return ", ".join("%s: %d" % (k, v) for k, v in sorted(out.items()))


def table(a, res):
    i, f = res["I"], res["F"]
    lines = ["# The status server under a flood (`python3 bench/server.py%s`)\n" % (" --pin" if a.pin else ""),
             "Machine: %d cores, load average at the end %s. Flood: %d idle + %d slow-loris + %d garbage "
             "clients, %.0f s per phase.%s\n" % (
                 os.cpu_count(), tuple(round(x, 2) for x in os.getloadavg()), a.idle, a.loris, a.garbage,
                 a.seconds, " Pinned: the JVMs on CPU 0, the prober and the flood on the others." if a.pin else ""),
             "| figure | idle | flood |", "|---|---|---|"]
    for name, key in (("fresh `GET /ready` p50 / p99 / max", "ready"),):
        lines.append("| %s | %s | %s |" % (name, lat([t for _, t in i["prober"].ready]),
                                           lat([t for _, t in f["prober"].ready])))
    lines.append("| fresh `GET /ready` answers (code: count) | %s | %s |" % (
        codes([c for c, _ in i["prober"].ready]), codes([c for c, _ in f["prober"].ready])))
    lines.append("| `cqlready probe` p50 / p99 / max (a process start included) | %s | %s |" % (
        lat([t for _, t, _ in i["prober"].cli]), lat([t for _, t, _ in f["prober"].cli])))
    lines.append("| `cqlready probe` exits (code: count) | %s | %s |" % (
        codes([c for c, _, _ in i["prober"].cli]), codes([c for c, _, _ in f["prober"].cli])))
    for k in ("I", "F"):
        bad = [t for c, _, t in res[k]["prober"].cli if c != 0]
        if bad:
            lines.append("| `cqlready probe` failures (%s) | %s | |" % (k, "; ".join(sorted(set(bad)))[:300]))
    for k in ("I", "F"):
        res[k]["threads"] = sorted({s.get("agent_threads", 0) for s in res[k]["prober"].samples})
        res[k]["hwm"] = max([s.get("VmHWM", 0) for s in res[k]["prober"].samples] or [0])
    lines.append("| agent threads (cqlready-*), every value seen | %s | %s |" % (i["threads"], f["threads"]))
    lines.append("| the status thread's CPU (share of one core) | %.1f %% | %.1f %% |" % (
        i["prober"].cpu * 100, f["prober"].cpu * 100))
    lines.append("| VmHWM, peak | %d kB | %d kB (%+d kB) |" % (i["hwm"], f["hwm"], f["hwm"] - i["hwm"]))
    ti, tf = i["total"] or {}, f["total"] or {}
    lines.append("| the JVM's unit of work p50 / p99 / p99.9 | %s / %s / %s µs | %s / %s / %s µs |" % (
        ti.get("p50_us"), ti.get("p99_us"), ti.get("p999_us"), tf.get("p50_us"), tf.get("p99_us"), tf.get("p999_us")))
    try:
        lines.append("| the JVM's p99, flood vs idle | | %+.1f %% |" % (
            (float(tf["p99_us"]) / float(ti["p99_us"]) - 1) * 100))
    except (KeyError, ValueError, ZeroDivisionError):
        pass
    fl = f["flood"] or {}
    for k in ("idle", "loris", "garbage"):
        lines.append("| flood: %s clients' outcomes (code: count; 0 closed unanswered, -1 cut or reset) | | %s |" % (
            k, ", ".join("%s: %s" % kv for kv in sorted(fl.get(k, {}).items()))))
    lines.append("| agent log lines (flood) | | %d |" % len(f["err"]))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--loris", type=int, default=50)
    ap.add_argument("--garbage", type=int, default=50)
    ap.add_argument("--pin", action="store_true", help="JVMs on CPU 0, the rest on the other CPUs")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--flood-only", metavar="SOCKET", help=argparse.SUPPRESS)
    a = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.flood_only:
        import faulthandler
        faulthandler.dump_traceback_later(a.seconds + 15, exit=True)
        asyncio.run(flood_main(a.flood_only, a.seconds, a.idle, a.loris, a.garbage))
        os._exit(0)
    if a.pin:
        load.PIN_JVM = "0"
        os.sched_setaffinity(0, set(range(1, os.cpu_count())) or {0})
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    load.compile_worker()
    res = {}
    log("phase I: agent + prober, %.0f s" % a.seconds)
    res["I"] = run_phase(a, False)
    log("phase F: agent + prober + flood, %.0f s" % a.seconds)
    res["F"] = run_phase(a, True)
    text = table(a, res)
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
