#!/usr/bin/env python3
"""What the cqlready agent costs a JVM, and how fast it says READY=1.

    python3 bench/agent.py [--quick] [--out FILE] [--no-build] [--no-temurin] [--baseline OLD.so]

Figures, for `java` on PATH and for Temurin 25 when installed:
  1. JVM start-to-exit of a trivial main, with and without the agent (ratio, goal <= 1.03)
  2. peak RSS (VmHWM) added by the agent, heap pinned (goal <= 2 MiB)
  3. lag from the CQL port listening to READY=1 on $NOTIFY_SOCKET (goal p99 <= interval + 15 ms)
  4. CPU of the agent thread polling a closed port every 10 ms (goal <= 1% of one core)

Prints a Markdown table per JVM to stdout and writes them to --out
(default bench/results-agent.md); progress goes to stderr.
"""

import argparse
import os
import random
import resource
import select
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402
from _common import log  # noqa: E402

MiB = 1024.0  # /proc figures are KiB


def ms(x):
    return "%.1f ms" % (x * 1000)


# --------------------------------------------------------------- 1. start-up

def bench_startup(sess, java, n, baseline=None):
    port = c.closed_port()
    sock = sess.path("start.sock")
    lib = "-agentpath:%s=" % c.AGENT_LIB
    common = [java, "-Xshare:auto", "-cp", sess.classes]
    variants = {
        "without": common[:2] + common[2:] + ["Trivial"],
        "with": common[:2] + [lib + "port=%d,socket=%s" % (port, sock)] + common[2:] + ["Trivial"],
        "with, socket=none": common[:2] + [lib + "port=%d,socket=none" % port] + common[2:] + ["Trivial"],
    }
    if baseline:
        variants["baseline"] = (common[:2] + ["-agentpath:%s=port=%d,socket=%s" % (baseline, port, sess.path("base.sock"))]
                                + common[2:] + ["Trivial"])
    events = build_events_agent(sess, java)
    if events:
        variants["events only"] = common[:2] + ["-agentpath:" + events] + common[2:] + ["Trivial"]
    names = list(variants)
    env = sess.env()
    times = {k: [] for k in names}
    cpu = {k: [] for k in names}
    leftovers = 0

    def run(name):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(variants[name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                           timeout=120)
        dt = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise RuntimeError("%s exited %d: %s" % (name, r.returncode, r.stderr.decode()[-500:]))
        return dt, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)

    log("start-to-exit: 2 warm-up rounds, then %d interleaved rounds of %s" % (n, names))
    for _ in range(2):
        for name in names:
            run(name)
    for i in range(n):
        k = i % len(names)
        order = names[k:] + names[:k]  # rotate, so no variant always runs first
        for name in order:
            dt, used = run(name)
            times[name].append(dt)
            cpu[name].append(used)
            if name == "with" and os.path.lexists(sock):
                leftovers += 1
                os.unlink(sock)
    w, a, s = (c.median(times[k]) for k in ("without", "with", "with, socket=none"))
    ratio = a / w
    lo, hi = c.bootstrap_ci(lambda x, y: c.median(y) / c.median(x), [times["without"], times["with"]])
    paired = [y - x for x, y in zip(times["without"], times["with"])]

    def spread(name):
        xs = times[name]
        return "%s (p10 %s, p90 %s); CPU user+sys median %s" % (
            ms(c.median(xs)), ms(c.percentile(xs, 10)), ms(c.percentile(xs, 90)), ms(c.median(cpu[name])))

    rows = [
        ("Start-to-exit, trivial main, no agent (median of %d)" % n, "—", spread("without"), "context"),
        ("Start-to-exit with agent (`port=<closed>,socket=<tmp>/start.sock`)", "—", spread("with"),
         "context"),
        ("Start-to-exit with agent, `socket=none`", "—", spread("with, socket=none"), "context"),
        ("Start-to-exit with a C agent that only enables the VMInit and VMDeath events (what any such "
         "agent costs the JVM)", "—",
         ("%s; ratio to without %.3f" % (spread("events only"), c.median(times["events only"]) / w))
         if events else "skipped (no cc or no jvmti.h)", "context"),
        ("**Start-to-exit ratio with/without** (medians)", "<= 1.03",
         "%.3f (bootstrap 95%% CI %.3f–%.3f); median paired diff %+.1f ms; socket=none ratio %.3f; "
         "ratio of minima %.3f; CPU ratio %.3f" % (
             ratio, lo, hi, c.median(paired) * 1000, s / w, min(times["with"]) / min(times["without"]),
             c.median(cpu["with"]) / c.median(cpu["without"])), c.verdict(ratio <= 1.03)),
    ]
    if baseline:
        b = c.median(times["baseline"])
        blo, bhi = c.bootstrap_ci(lambda x, y: c.median(y) / c.median(x), [times["without"], times["baseline"]])
        rows.append(("Start-to-exit with the `--baseline` library `%s` (same options)" % os.path.basename(baseline),
                     "—", "%s; ratio to without %.3f (bootstrap 95%% CI %.3f–%.3f); this build / baseline %.3f" % (
                         spread("baseline"), b / w, blo, bhi, a / b), "context"))
    if leftovers:
        rows.append(("status socket left behind after exit", "0", "%d of %d runs" % (leftovers, n), "**MISS**"))
    return rows


# ------------------------------------------------------------------ 2. RSS

RSS_FLAGS = ["-Xms64m", "-Xmx64m", "-Xshare:auto"]


def one_rss(sess, java, with_agent, hold):
    port = c.closed_port()
    sock = sess.path("rss.sock")
    opts = "port=%d,socket=%s" % (port, sock) if with_agent else None
    f = sess.fixture(java, RSS_FLAGS, opts)
    try:
        t0 = time.monotonic()
        f.send("pid")
        f.expect("pid ")
        # Same script for both: the port starts listening, so the agent goes through
        # waiting -> ready and keeps checking; with the agent, one status request too.
        f.send("listen %d cql" % port)
        f.expect("listening")
        if with_agent:
            code, body = c.http_get(sock, "/ready?wait=10s", timeout=15)
            if code != 200:
                raise RuntimeError("agent not ready: %d %s" % (code, body))
        last = None
        end = t0 + hold
        while True:
            last = c.proc_status(f.pid)  # VmHWM is monotonic; keep the newest sample
            if time.monotonic() >= end:
                break
            time.sleep(0.05)  # sampling period, not a wait for an event
        rc = f.exit()
        if rc != 0:
            raise RuntimeError("fixture exited %d" % rc)
        return last
    finally:
        if f.proc.poll() is None:
            f.proc.kill()
            f.proc.wait()


def bench_rss(sess, java, runs, hold=1.5):
    log("peak RSS: %d interleaved pairs, %.1f s per JVM, flags %s" % (runs, hold, " ".join(RSS_FLAGS)))
    res = {True: [], False: []}
    one_rss(sess, java, True, 0.2)  # warm-up (page cache, CDS archive)
    for i in range(runs):
        for with_agent in ((False, True) if i % 2 == 0 else (True, False)):
            res[with_agent].append(one_rss(sess, java, with_agent, hold))

    def med(key, agent):
        return c.median([s.get(key, 0) for s in res[agent]])

    def fmt(key, agent):
        xs = [s.get(key, 0) / MiB for s in res[agent]]
        return "%.1f MiB (min %.1f, max %.1f)" % (c.median(xs), min(xs), max(xs))

    diff = (med("VmHWM", True) - med("VmHWM", False)) / MiB
    lo, hi = c.bootstrap_ci(lambda x, y: (c.median(y) - c.median(x)) / MiB,
                            [[s["VmHWM"] for s in res[False]], [s["VmHWM"] for s in res[True]]])
    parts = []
    for key in ("RssAnon", "RssFile", "RssShmem"):
        parts.append("%s %+.2f" % (key, (med(key, True) - med(key, False)) / MiB))
    threads = "threads %d vs %d" % (med("Threads", True), med("Threads", False))
    return [
        ("Peak RSS (VmHWM), fixture, no agent (median of %d)" % runs, "—", fmt("VmHWM", False), "context"),
        ("Peak RSS (VmHWM), fixture with agent", "—", fmt("VmHWM", True), "context"),
        ("**Peak RSS added by the agent** (difference of medians)", "<= 2 MiB",
         "%.2f MiB (bootstrap 95%% CI %.2f–%.2f); at exit: %s MiB; %s" % (
             diff, lo, hi, ", ".join(parts), threads), c.verdict(diff <= 2.0)),
    ]


# ------------------------------------------------------------ 3. READY lag

def one_latency(sess, java, notify, interval):
    port = c.closed_port()
    opts = "port=%d,socket=none" % port + (",interval=%s" % interval if interval else "")
    notify.drain()
    f = sess.fixture(java, ["-Xshare:auto"], opts, notify=notify.path)
    try:
        text, pid, _ = notify.wait_for(lambda t: "STATUS=Waiting" in t, time.monotonic() + 30)
        bad_pid = pid != f.pid
        time.sleep(random.uniform(0, 0.1))  # random phase against the probe period
        f.send("listen %d cql" % port)
        t_listen = t_ready = None
        deadline = time.monotonic() + 10
        while t_listen is None or t_ready is None:
            if t_listen is None and f.line_ready():
                line = f.take_line()
                if line.startswith("listening"):
                    t_listen = time.monotonic()
                elif line.startswith("error"):
                    raise RuntimeError("fixture: " + line)
                continue
            if t_ready is None:
                got = notify.recv_nowait()
                if got is not None:
                    if "READY=1" in got[0].split("\n"):
                        t_ready = time.monotonic()
                        bad_pid = bad_pid or got[1] != f.pid
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise c.Timeout("no READY=1 within 10 s (listen seen: %s); stderr: %s" % (
                    t_listen is not None, f.stderr_tail()))
            waits = ([f.fd] if t_listen is None else []) + ([notify.sock] if t_ready is None else [])
            r, _, _ = select.select(waits, [], [], remaining)
            if f.fd in r:
                f.feed()
        rc = f.exit()
        text, pid, _ = notify.wait_for(lambda t: "STOPPING=1" in t, time.monotonic() + 10)
        if rc != 0:
            raise RuntimeError("fixture exited %d" % rc)
        return t_ready - t_listen, bad_pid
    finally:
        if f.proc.poll() is None:
            f.proc.kill()
            f.proc.wait()


def bench_latency(sess, java, notify, interval, period_ms, runs):
    log("listen -> READY=1 lag, interval=%s: %d runs" % (interval or "default (100ms)", runs))
    lags, bad = [], 0
    for i in range(runs):
        lag, bad_pid = one_latency(sess, java, notify, interval)
        lags.append(lag)
        bad += bad_pid
    log("  lags (ms, sorted): %s" % " ".join("%.1f" % (x * 1000) for x in sorted(lags)))
    goal = period_ms + 15
    p50, p99 = c.percentile(lags, 50), c.percentile(lags, 99)
    label = "`interval=%s`" % interval if interval else "default interval (100 ms)"
    rows = [
        ("**Listening -> READY=1, %s**, p50 / p99 / max (%d runs)" % (label, runs),
         "p99 <= %d ms" % goal,
         "%.1f / %.1f / %.1f ms (min %.1f)" % (p50 * 1000, p99 * 1000, max(lags) * 1000, min(lags) * 1000),
         c.verdict(p99 * 1000 <= goal)),
    ]
    if bad:
        rows.append(("notify datagrams from a PID other than the JVM's", "0", "%d runs" % bad, "**MISS**"))
    return rows


# ------------------------------------------------------------------ 4. CPU

def bench_cpu(sess, java, window):
    """Three idle fixture JVMs side by side in one window: agent at interval=10ms, agent at the
    default 100 ms, no agent; plus (when cc exists) the bare C floor loop in the same window."""
    flags = ["-Xms64m", "-Xmx64m", "-Xshare:auto"]
    port = c.closed_port()
    sock10, sock100 = sess.path("cpu10.sock"), sess.path("cpu100.sock")
    log("CPU: agents polling closed port %d (10 ms and 100 ms) + plain JVM side by side, %.0f s window" % (
        port, window))
    floor_exe = build_floor(sess)
    fa = sess.fixture(java, flags, "interval=10ms,port=%d,socket=%s" % (port, sock10))
    fd = sess.fixture(java, flags, "port=%d,socket=%s" % (port, sock100))
    fb = sess.fixture(java, flags, None)
    jvms = (fa, fd, fb)
    floor = None
    try:
        for f in jvms:
            f.send("pid")
            f.expect("pid ")
        deadline = time.monotonic() + 20
        for sock, need in ((sock10, 20), (sock100, 3)):
            while True:  # the agent is polling once its checks count grows
                try:
                    if c.status_json(sock)["checks"]["total"] >= need:
                        break
                except (OSError, ValueError, RuntimeError):
                    pass
                if time.monotonic() > deadline:
                    raise c.Timeout("agent at %s never showed %d checks" % (sock, need))
                time.sleep(0.05)
        time.sleep(2.0)  # settle: let start-up JIT work finish before the window opens
        s0 = [c.status_json(x)["checks"]["total"] for x in (sock10, sock100)]
        before = [c.thread_cpu(f.pid) for f in jvms]
        ticks0 = [c.process_ticks(f.pid) for f in jvms]
        t0 = time.monotonic()
        if floor_exe:
            floor = subprocess.Popen([floor_exe, str(port), str(int(window / 0.0101))],
                                     stdout=subprocess.PIPE, text=True)
            sess.procs.append(floor)
        time.sleep(window)  # the measurement window itself
        t1 = time.monotonic()
        after = [c.thread_cpu(f.pid) for f in jvms]
        ticks1 = [c.process_ticks(f.pid) for f in jvms]
        s1 = [c.status_json(x)["checks"]["total"] for x in (sock10, sock100)]
        floor_per = None
        if floor is not None:
            out, _ = floor.communicate(timeout=window + 30)
            floor_per = float(out)
        for f in jvms:
            f.exit()
    finally:
        for f in jvms:
            if f.proc.poll() is None:
                f.proc.kill()
                f.proc.wait()
        if floor is not None and floor.poll() is None:
            floor.kill()
            floor.wait()
    span = t1 - t0
    CLK = c.CLK_TCK
    res_pct = 100.0 / CLK / span  # one tick as % of one core over the window

    def deltas(b, a):
        out = {}
        for tid, (comm, ticks, ns) in a.items():
            old = b.get(tid, (comm, 0, 0))
            out[tid] = (comm, ticks - old[1], (ns - old[2]) if ns is not None and old[2] is not None else 0)
        return out

    d = [deltas(b, a) for b, a in zip(before, after)]

    def pct_ns(ns):
        return 100.0 * ns / 1e9 / span

    def thread(dd, name):
        ts = [v for v in dd.values() if v[0] == name]
        return (sum(v[1] for v in ts), sum(v[2] for v in ts)) if ts else None

    rows = []
    for i, (label, goal) in enumerate((("`interval=10ms`", 1.0), ("default `interval=100ms`", None))):
        t = thread(d[i], "cqlready")
        probes = s1[i] - s0[i]
        if t is None:
            rows.append(("CPU of thread `cqlready`, %s" % label, "<= 1%" if goal else "—", "thread not found",
                         "**MISS**"))
            continue
        ticks, ns = t
        text = "%.3f%% of one core (schedstat ns); %.2f%% by ticks (%d ticks of 1/%d s, ±1 tick = ±%.2f%%)" % (
            pct_ns(ns), 100.0 * ticks / CLK / span, ticks, CLK, res_pct)
        if probes > 0:
            text += "; %d probes (%.0f/s), %.1f µs CPU per probe" % (probes, probes / span, ns / 1000.0 / probes)
        if goal:
            rows.append(("**CPU of thread `cqlready`, %s, closed port**" % label, "<= 1%", text,
                         c.verdict(pct_ns(ns) <= goal)))
        else:
            rows.append(("CPU of thread `cqlready`, %s, closed port" % label, "—", text, "context"))
    t = thread(d[0], "cqlready-status")
    rows.append(("CPU of thread `cqlready-status` (status server, no requests)", "—",
                 "%.3f%% of one core" % pct_ns(t[1]) if t else "thread not found", "context"))
    tot = [sum(v[2] for v in dd.values()) for dd in d]
    tk = [100.0 * (y - x) / CLK / span for x, y in zip(ticks0, ticks1)]
    rows.append(("Whole JVM CPU, idle fixture: agent 10 ms / agent 100 ms / no agent (same %.1f s window)" % span,
                 "—", "%.3f%% / %.3f%% / %.3f%% of one core (ns over live threads; by ticks %.1f%% / %.1f%% / %.1f%%)"
                 % (pct_ns(tot[0]), pct_ns(tot[1]), pct_ns(tot[2]), tk[0], tk[1], tk[2]), "context"))
    top = sorted(d[0].values(), key=lambda v: -v[2])[:4]
    topb = sorted(d[2].values(), key=lambda v: -v[2])[:3]
    rows.append(("Busiest threads in the window (agent 10 ms / no agent)", "—",
                 ", ".join("%s %.3f%%" % (v[0], pct_ns(v[2])) for v in top) + " / " +
                 ", ".join("%s %.3f%%" % (v[0], pct_ns(v[2])) for v in topb), "context"))
    if floor_per is not None:
        rows.append(("Floor, same window: bare C loop of refused connect + `nanosleep(10ms)`", "—",
                     "%.1f µs CPU per iteration = %.2f%% of one core at a 10 ms period" % (
                         floor_per * 1e6, 100 * floor_per / 0.0101), "context"))
    else:
        rows.append(("Floor: bare C loop", "—", "skipped (no cc)", "context"))
    return rows


FLOOR_C = r'''
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <netinet/in.h>
static double tcpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    int n = atoi(argv[2]);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[1])); a.sin_addr.s_addr = htonl(0x7f000001);
    struct timespec ts = {0, 10000000};
    double t = tcpu();
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        connect(fd, (void *)&a, sizeof a);
        close(fd);
        nanosleep(&ts, 0);
    }
    printf("%f\n", (tcpu() - t) / n);
    return 0;
}
'''


EVENTS_C = r'''
#include <jvmti.h>
#include <string.h>
static void JNICALL vm_init(jvmtiEnv *j, JNIEnv *e, jthread t) {}
static void JNICALL vm_death(jvmtiEnv *j, JNIEnv *e) {}
JNIEXPORT jint JNICALL Agent_OnLoad(JavaVM *vm, char *options, void *reserved) {
    jvmtiEnv *jvmti;
    jvmtiEventCallbacks cb;
    if ((*vm)->GetEnv(vm, (void **)&jvmti, JVMTI_VERSION_1_2) != JNI_OK) return 0;
    memset(&cb, 0, sizeof cb);
    cb.VMInit = vm_init;
    cb.VMDeath = vm_death;
    (*jvmti)->SetEventCallbacks(jvmti, &cb, sizeof cb);
    (*jvmti)->SetEventNotificationMode(jvmti, JVMTI_ENABLE, JVMTI_EVENT_VM_INIT, NULL);
    (*jvmti)->SetEventNotificationMode(jvmti, JVMTI_ENABLE, JVMTI_EVENT_VM_DEATH, NULL);
    return 0;
}
'''


def build_events_agent(sess, java):
    """The baseline agent: only the two JVMTI events cqlready needs (VMInit for
    Cassandra's MBeans, VMDeath for STOPPING=1). None without cc or jvmti.h."""
    cc = shutil.which("cc") or shutil.which("gcc")
    homes = [os.path.dirname(os.path.dirname(os.path.realpath(j))) for j in (java, shutil.which("javac")) if j]
    inc = next((os.path.join(h, "include") for h in homes if os.path.exists(os.path.join(h, "include", "jvmti.h"))), None)
    if cc is None or inc is None:
        return None
    lib = sess.path("libevents.so")
    if not os.path.exists(lib):
        src = sess.path("events.c")
        with open(src, "w") as f:
            f.write(EVENTS_C)
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-I", inc, "-I", os.path.join(inc, "linux"), "-o", lib, src],
                       check=True)
    return lib


def build_floor(sess):
    """Compiles the C floor loop once per session; None when there is no C compiler."""
    exe = sess.path("floor")
    if os.path.exists(exe):
        return exe
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = sess.path("floor.c")
    with open(src, "w") as f:
        f.write(FLOOR_C)
    subprocess.run([cc, "-O2", "-o", exe, src], check=True)
    return exe


# ------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs (smoke test)")
    ap.add_argument("--out", default=os.path.join(c.ROOT, "bench", "results-agent.md"))
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--no-temurin", action="store_true", help="only `java` on PATH")
    ap.add_argument("--baseline", metavar="LIB", help="another libcqlready.so (an earlier build) to start beside this one")
    args = ap.parse_args()
    c.install_signal_handlers()

    start_runs = 10 if args.quick else 30
    rss_runs = 4 if args.quick else 10
    lat_runs = 20 if args.quick else 25
    cpu_window = 5.0 if args.quick else 10.0

    c.build(args.no_build)
    jvm_list = c.jvms(not args.no_temurin)
    sess = c.Session("cqlready-bench-")
    sections = []
    t_start = time.monotonic()
    try:
        sess.compile_classes()
        notes = c.machine_notes(jvm_list)
        notify = sess.notify_socket()
        for label, java in jvm_list:
            log("=== %s (%s)" % (label, java))
            rows, load = [], []
            for name, fn in (("start", lambda: bench_startup(sess, java, start_runs, args.baseline)),
                             ("RSS", lambda: bench_rss(sess, java, rss_runs)),
                             ("lag 100ms", lambda: bench_latency(sess, java, notify, None, 100, lat_runs)),
                             ("lag 10ms", lambda: bench_latency(sess, java, notify, "10ms", 10, lat_runs)),
                             ("CPU", lambda: bench_cpu(sess, java, cpu_window))):
                meter = c.LoadMeter()
                rows += fn()
                load.append("%s %.2f" % (name, meter.other_cores()))
            rows.append(("Other load on the machine per section (cores busy outside this script)", "—",
                         ", ".join(load) + " of %d" % os.cpu_count(), "context"))
            sections.append("## %s: `%s`\n\n%s\n" % (label, java, c.table(rows)))
    finally:
        sess.close()
        log("cleaned up %s" % sess.tmp)

    cmd = "python3 bench/agent.py " + " ".join(sys.argv[1:])
    doc = "\n".join([
        "# cqlready agent benchmarks",
        "",
        "`%s` (%.0f s)" % (cmd.strip(), time.monotonic() - t_start),
        "",
    ] + notes + [""] + sections + [METHOD])
    print(doc)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(doc)
    log("wrote %s" % args.out)


METHOD = """## Method

- Start-to-exit: `java -Xshare:auto -cp DIR Trivial` (an empty `main`), wall time by `time.perf_counter()`
  around `subprocess.run`; 2 warm-up rounds, then rounds of the variants in rotating order so drift
  and ordering cancel. NOTIFY_SOCKET unset; the agent probes a closed port at the default 100 ms interval
  and, in the main variant, serves its status socket in the temp dir. Ratio = median(with) / median(without);
  CI by bootstrap over runs.
- Peak RSS: `CqlFixture` run with `%s` (heap size pinned so heap growth does not swamp the figure; default GC
  and JIT; CDS left at auto). Each JVM: `pid` command, `listen P cql`, with the agent one
  `GET /ready?wait=10s` on the status socket, then held until 1.5 s after start while sampling
  /proc/PID/status; VmHWM of the last sample before `exit 0`. Runs interleaved with/without.
- READY lag: a Unix datagram socket (SO_PASSCRED, so the sender PID is checked) as NOTIFY_SOCKET; fixture
  JVM with `port=P,socket=none`; after `STATUS=Waiting` arrives, a random 0–100 ms pause, then `listen P cql`;
  lag = monotonic time READY=1 arrived − monotonic time the fixture's `listening` line was read. A fresh JVM
  per run. The lag includes the fixture's first accept + OPTIONS answer (thread start, class loading).
  Percentiles interpolate linearly between ranks (with 25 runs, p99 is close to the maximum).
- CPU: two agent JVMs (`interval=10ms,port=<closed>` and default interval, status socket on) and a plain
  JVM, all idle fixtures with `-Xms64m -Xmx64m`, run side by side; after 20 agent checks and a 2 s settle, per-thread CPU from
  /proc/PID/task/TID/schedstat (ns) and /proc/PID/task/TID/stat utime+stime (clock ticks, 1/SC_CLK_TCK s)
  at the start and end of the window. Probe count from the agent's `/status` `checks.total`.
  The floor row is a C loop started in the same window doing the least a prober can: socket + blocking
  connect (refused) + close + nanosleep(10 ms), timed with CLOCK_THREAD_CPUTIME_ID; on a VM, waking
  from a timer sleep with cold caches costs far more than the syscalls themselves.
""" % " ".join(RSS_FLAGS)

if __name__ == "__main__":
    main()
