#!/usr/bin/env python3
"""What one readiness check costs as a whole process.

    python3 bench/cli.py [--quick] [--out FILE] [--no-build]
                         [--nodetool CMD] [--cqlsh CMD] [--cqlsh-query CQL]

Times (time.perf_counter around subprocess.run):
  - `cqlready probe --socket S` against a fixture JVM whose agent is ready (goal: under 5 ms)
  - `cqlready probe --socket` against a not-ready agent, and against no agent at all
  - `cqlready probe --port P` (CQL OPTIONS straight to the fixture)
  - `cqlready status --socket S`
  - `/bin/true` (the floor of spawning anything from Python) and `java -version`
    (the floor of anything JVM-based)
  - optional: `CMD statusbinary` (--nodetool CMD) and `CMD -e QUERY` (--cqlsh CMD),
    for comparison against a real Cassandra; skipped when not given.

Prints a Markdown table to stdout and writes it to --out (default bench/results-cli.md).
"""

import argparse
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402
from _common import log  # noqa: E402


def timed(cmd, expect_rc, env, timeout=120):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=timeout)
    return time.perf_counter() - t, r.returncode == expect_rc, r.returncode


class Series:
    def __init__(self, label, cmd, n, expect_rc=0, goal_ms=None, warm=3):
        self.label, self.cmd, self.n, self.expect_rc, self.goal_ms, self.warm = label, cmd, n, expect_rc, goal_ms, warm
        self.times, self.bad, self.codes = [], 0, set()

    def run_one(self, env):
        dt, ok, rc = timed(self.cmd, self.expect_rc, env)
        self.times.append(dt)
        if not ok:
            self.bad += 1
            self.codes.add(rc)

    def rows(self):
        xs = [x * 1000 for x in self.times]
        measured = "p50 %.2f ms, p99 %.2f ms (min %.2f, max %.2f; n=%d)" % (
            c.percentile(xs, 50), c.percentile(xs, 99), min(xs), max(xs), len(xs))
        if self.bad:
            measured += "; **%d calls exited %s, expected %d**" % (
                self.bad, "/".join(str(x) for x in sorted(self.codes)), self.expect_rc)
        if self.goal_ms is None:
            return [(self.label, "—", measured, "context" if not self.bad else "**MISS** (exit codes)")]
        ok = c.percentile(xs, 50) < self.goal_ms and c.percentile(xs, 99) < self.goal_ms and not self.bad
        return [(self.label, "p50 and p99 < %g ms" % self.goal_ms, measured, c.verdict(ok))]


def run_series(series, env, interleave=True):
    """Warm-up calls, then the timed calls; series run round-robin so drift hits all alike."""
    for s in series:
        for _ in range(s.warm):
            timed(s.cmd, s.expect_rc, env)
    if interleave:
        left = {id(s): s.n for s in series}
        while any(left.values()):
            for s in series:
                if left[id(s)]:
                    s.run_one(env)
                    left[id(s)] -= 1
    else:
        for s in series:
            for _ in range(s.n):
                s.run_one(env)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer calls (smoke test)")
    ap.add_argument("--out", default=os.path.join(c.ROOT, "bench", "results-cli.md"))
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--nodetool", metavar="CMD", help="nodetool command prefix; `statusbinary` is appended")
    ap.add_argument("--cqlsh", metavar="CMD", help="cqlsh command prefix; `-e QUERY` is appended")
    ap.add_argument("--cqlsh-query", default="SELECT release_version FROM system.local")
    args = ap.parse_args()
    c.install_signal_handlers()

    n_fast = 50 if args.quick else 200
    n_side = 20 if args.quick else 50
    n_java = 5 if args.quick else 20
    n_slow = 5 if args.quick else 20

    c.build(args.no_build)
    jvm_list = c.jvms()
    java = jvm_list[0][1]
    sess = c.Session("cqlready-cli-")
    t_start = time.monotonic()
    rows = []
    try:
        sess.compile_classes()
        notes = c.machine_notes(jvm_list)
        notify = sess.notify_socket()
        port = c.closed_port()
        sock = sess.path("ready.sock")
        ready = sess.fixture(java, ["-Xshare:auto"], "port=%d,socket=%s" % (port, sock), notify=notify.path)
        idle_port = c.closed_port()
        idle_sock = sess.path("starting.sock")
        starting = sess.fixture(java, ["-Xshare:auto"], "port=%d,socket=%s" % (idle_port, idle_sock))
        ready.send("listen %d cql" % port)
        ready.expect("listening")
        notify.wait_for(lambda t: "READY=1" in t.split("\n"), time.monotonic() + 30)
        log("fixture JVM %d ready on port %d, status socket %s" % (ready.pid, port, sock))
        deadline = time.monotonic() + 30
        while not os.path.exists(idle_sock):  # the not-ready agent's socket is up
            if time.monotonic() > deadline:
                raise c.Timeout("no status socket from the second fixture: %s" % starting.stderr_tail())
            time.sleep(0.02)
        env = sess.env()
        meter = c.LoadMeter()

        cli = c.CLI
        fast = [
            Series("**`cqlready probe --socket S`**, agent ready (exit 0)", [cli, "probe", "--socket", sock],
                   n_fast, 0, goal_ms=5),
            Series("`cqlready probe --port P` direct CQL OPTIONS (exit 0)", [cli, "probe", "--port", str(port)],
                   n_fast, 0),
            Series("`/bin/true` (floor: spawning any process from Python)", ["/bin/true"], n_fast, 0),
        ]
        side = [
            Series("`cqlready probe --socket S`, agent not ready (exit 1)", [cli, "probe", "--socket", idle_sock],
                   n_side, 1),
            Series("`cqlready probe --socket S`, no agent there (exit 2)",
                   [cli, "probe", "--socket", sess.path("absent.sock")], n_side, 2),
            Series("`cqlready status --socket S`", [cli, "status", "--socket", sock], n_side, 0),
        ]
        log("timing %d calls each, interleaved: probe --socket, probe --port, /bin/true" % n_fast)
        run_series(fast, env)
        log("timing %d calls each: not ready / no agent / status" % n_side)
        run_series(side, env)
        javas = [Series("`java -version` (%s; floor of anything JVM-based)" % label, [path, "-version"],
                        n_java, 0, warm=2) for label, path in jvm_list]
        log("timing `java -version` x %d per JVM" % n_java)
        run_series(javas, env)
        slow = []
        if args.nodetool:
            slow.append(Series("`%s statusbinary`" % args.nodetool, shlex.split(args.nodetool) + ["statusbinary"],
                               n_slow, 0, warm=1))
        if args.cqlsh:
            slow.append(Series("`%s -e \"%s\"`" % (args.cqlsh, args.cqlsh_query),
                               shlex.split(args.cqlsh) + ["-e", args.cqlsh_query], n_slow, 0, warm=1))
        if slow:
            log("timing %s x %d" % (", ".join(s.label for s in slow), n_slow))
            run_series(slow, env, interleave=False)
        for s in fast + side + javas + slow:
            rows += s.rows()
        rows.append(("Other load on the machine while timing (cores busy outside this script)", "—",
                     "%.2f of %d" % (meter.other_cores(), os.cpu_count()), "context"))
        if not args.nodetool:
            rows.append(("`nodetool statusbinary`", "—", "skipped (no --nodetool CMD)", "—"))
        if not args.cqlsh:
            rows.append(("`cqlsh -e`", "—", "skipped (no --cqlsh CMD)", "—"))
        for f in (ready, starting):
            rc = f.exit()
            if rc != 0:
                log("warning: fixture %d exited %d" % (f.pid, rc))
    finally:
        sess.close()
        log("cleaned up %s" % sess.tmp)

    cmd = "python3 bench/cli.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    doc = "\n".join([
        "# cqlready CLI: the cost of one readiness check",
        "",
        "`%s` (%.0f s)" % (cmd.strip(), time.monotonic() - t_start),
        "",
    ] + notes + [
        "",
        "Wall time of the whole process, `time.perf_counter()` around `subprocess.run` (stdout/stderr to",
        "/dev/null), after a few untimed warm-up calls; series in one group run round-robin. The agent runs in",
        "a `CqlFixture` JVM (`java` on PATH) that answers CQL OPTIONS; p99 interpolates between ranks.",
        "",
        c.table(rows),
        "",
    ])
    print(doc)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(doc)
    log("wrote %s" % args.out)


if __name__ == "__main__":
    main()
