#!/usr/bin/env python3
"""How soon a real systemd hears that CQL answers.

    sudo python3 bench/systemd.py [--runs N] [--out FILE] [--no-build] [--debug]

Boots one throwaway systemd 252 container (tests/systemd/harness.sh) with the
shipped units of docker/systemd/ and the test drop-ins of tests/systemd/units/
(the fixture JVM stands in for Cassandra, the agent and `cqlready` come from
target/release, or target/debug with --debug). For each case, N times
(default 10): `systemctl start UNIT` in the container, open the fixture's
port(s) once the unit is activating, and time from the fixture acknowledging
the listen to `systemctl start` returning. The timing runs inside the
container (tests/systemd/fixtures/time-start), so the harness's own
round trips are not in it.

Cases:
  cassandra.service          the agent in the JVM: READY=1 from the main PID
  snapshotd.service          a dependent (Requires=/After=cassandra.service):
                             the agent's READY=1, then the dependent's oneshot
  cassandra-cql.service      `cqlready watch --port 9042 --port 7199` from
                             outside (the Docker case), after both ports open

Prints a Markdown table and writes it to --out (default
bench/results-systemd.md); progress goes to stderr. Needs root and
systemd-nspawn.
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "tests", "systemd", "harness.sh")
_T0 = time.monotonic()

# (unit to start, unit that becomes ready, fixture commands, what it is)
CASES = [
    ("cassandra.service", "cassandra.service", ["listen 9042 cql"],
     "agent in the JVM (`Type=notify`, READY=1 from the main PID)"),
    ("snapshotd.service", "cassandra.service", ["listen 9042 cql"],
     "dependent `Requires=`/`After=cassandra.service` (oneshot)"),
    ("cassandra-cql.service", "cassandra-cql.service", ["listen 7199 cql", "listen 9042 cql"],
     "`cqlready watch --port 9042 --port 7199` (the Docker case)"),
]
# What to stop between runs (everything the cases start).
ALL_UNITS = ["snapshotd.service", "cassandra.service", "cassandra-cql.service",
             "cassandra-container.service"]


def log(msg):
    print("[%6.1fs] %s" % (time.monotonic() - _T0, msg), file=sys.stderr, flush=True)


def run(args, check=True, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def compose_units(dest):
    units = os.path.join(dest, "units")
    shutil.copytree(os.path.join(ROOT, "docker", "systemd"), units)
    shutil.copytree(os.path.join(ROOT, "tests", "systemd", "units"), units, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.md"))
    # Measure with the agent's defaults (interval=100ms), quietly.
    d = os.path.join(units, "cassandra.service.d")
    with open(os.path.join(d, "50-bench.conf"), "w") as f:
        f.write("[Service]\nEnvironment=JVM_EXTRA_OPTS=-agentpath:/opt/cqlready/libcqlready.so\n")
    d = os.path.join(units, "cassandra-cql.service.d")
    with open(os.path.join(d, "50-bench.conf"), "w") as f:
        f.write("[Service]\nExecStart=\nExecStart=/opt/cqlready/cqlready watch --port 9042 --port 7199\n")
    return units


def compile_fixture(out):
    os.makedirs(out, exist_ok=True)
    src = os.path.join(ROOT, "tests", "fixtures")
    run(["javac", "--release", "8", "-Xlint:-options", "-encoding", "UTF-8", "-d", out,
         os.path.join(src, "CqlFixture.java"), os.path.join(src, "ScriptedFixture.java")])


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results-systemd.md"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--debug", action="store_true", help="use target/debug, not target/release")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/systemd.py: must run as root (systemd-nspawn)")
    if not shutil.which("systemd-nspawn"):
        raise SystemExit("bench/systemd.py: systemd-nspawn missing (apt-get install -y systemd-container)")

    profile = "debug" if a.debug else "release"
    prof_dir = os.path.join(ROOT, "target", profile)
    if not a.no_build:
        log("cargo build%s" % ("" if a.debug else " --release"))
        run(["cargo", "build"] + ([] if a.debug else ["--release"]), cwd=ROOT)
    for f in ("libcqlready.so", "cqlready"):
        if not os.path.exists(os.path.join(prof_dir, f)):
            raise SystemExit("missing %s/%s (build first)" % (prof_dir, f))

    tmp = tempfile.mkdtemp(prefix="cqlready-sdbench-")
    name = "bench-%d" % os.getpid()
    up = False
    try:
        classes = os.path.join(tmp, "classes")
        compile_fixture(classes)
        units = compose_units(tmp)
        t = time.monotonic()
        run([HARNESS, "up", name, "--unit-dir", units,
             "--bind-ro", "%s:/opt/cqlready" % prof_dir,
             "--bind-ro", "%s:/opt/cqlfix" % os.path.join(ROOT, "tests", "systemd", "fixtures"),
             "--bind-ro", "%s:/opt/cqlfix-classes" % classes])
        up = True
        log("container %s up in %.2f s" % (name, time.monotonic() - t))
        results = []
        for unit, watched, cmds, what in CASES:
            samples = []
            for i in range(a.runs):
                r = run([HARNESS, "exec", name, "--", "/opt/cqlfix/time-start", unit, watched] + cmds,
                        check=False, timeout=120)
                fields = r.stdout.split()
                if r.returncode != 0 or len(fields) != 2 or fields[0] != "0":
                    j = run([HARNESS, "journal", name, "-o", "cat", "-n", "40"], check=False).stdout
                    raise SystemExit("%s run %d failed: %s%s\n%s" % (unit, i, r.stdout, r.stderr, j))
                samples.append(int(fields[1]) / 1000.0)
                log("%s run %d: %.1f ms" % (unit, i + 1, samples[-1]))
                run([HARNESS, "systemctl", name, "stop"] + ALL_UNITS)
                run([HARNESS, "systemctl", name, "reset-failed"], check=False)
            results.append((unit, what, samples))
    finally:
        if up:
            subprocess.run([HARNESS, "down", name])
        shutil.rmtree(tmp, ignore_errors=True)

    sysv = run(["systemctl", "--version"], check=False).stdout.split("\n")[0]
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.split("\n")[0]
    lines = [
        "# cqlready under a real systemd: port answering -> `systemctl start` returns",
        "",
        "`python3 bench/systemd.py` (%d runs per row, %s build; %s in a systemd-nspawn "
        "container over the host root; %s; %s, %d CPUs). "
        "Time from the fixture acknowledging `listen` (the port accepts) to `systemctl start UNIT` "
        "returning, measured inside the container. Defaults: agent `interval=100ms`, "
        "`cqlready watch --interval 100ms`." % (
            a.runs, profile, sysv, java, platform.machine(), os.cpu_count()),
        "",
        "| unit started | what says ready | p50 | p90 | min | max |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for unit, what, s in results:
        lines.append("| `%s` | %s | %.1f ms | %.1f ms | %.1f ms | %.1f ms |" % (
            unit, what, statistics.median(s), pct(s, 90), min(s), max(s)))
    lines += [
        "",
        "A probe period of 100 ms alone puts the port opening on average 50 ms before the "
        "check that sees it (0-100 ms); the rest is the probe, the notify datagram, systemd's "
        "job engine and `systemctl` noticing the job finished (and for `snapshotd.service`, "
        "running its oneshot).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with open(a.out, "w") as f:
        f.write(text)
    log("wrote %s" % a.out)


if __name__ == "__main__":
    main()
