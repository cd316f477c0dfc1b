#!/usr/bin/env python3
"""The image with the agent, built and run with Podman.

    python3 bench/containers.py [--runs N] [--checks N] [--out FILE] [--no-cold] [--systemd N]

Builds the images with docker/test-image.sh 5.0 (stand-in base images, see
docker/standins/), then:

1. the layers the agent adds to the base image (`podman history`: the two
   binaries, the entrypoint, the socket directory) and their size; the time of
   a product build with a cold build stage (`podman build --no-cache`, the
   Rust build included) and of a rebuild from cache (--no-cold skips the cold
   one);
2. N containers started one after another (fresh, host network, free ports,
   512 MiB heap): from `podman run` to the first passing check of the image's
   HEALTHCHECK (`cqlready probe --socket`) and, in the same container on the
   same clock, of a nodetool HEALTHCHECK as people write them
   (`nodetool status | grep -q '^UN'`), both polled back to back from two
   threads, each through `podman exec`;
3. in the last container, once ready, the cost of one check: each command
   run --checks times inside the container's namespaces (nsenter): wall time,
   CPU time (user+sys) and peak RSS of the check process, and the wall time
   of `podman healthcheck run` (runc exec included).

4. with --systemd N: docker/systemd/cassandra-podman.service under a real
   systemd (docker/systemd-podman.sh: nspawn, Podman inside), N cycles of
   `systemctl start` / `systemctl stop`: from CQL answering (polled from the
   host every 20 ms with `cqlready probe --port`) to `systemctl start`
   returning (the unit active).

Prints a Markdown report and writes it to --out (default
bench/results-containers.md). Containers are removed whatever happens.
Podman runs with --runtime runc and ulimits nofile=1024, nproc=1000 (this
machine's limits, not the product's).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "localhost/cqlready-cassandra:5.0"
BASE = "localhost/cassandra:5.0"
PODMAN = ["podman", "--runtime", "runc"]
NODETOOL_CHECK = "nodetool -p {jmx} status | grep -q '^UN'"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def podman(*args):
    return sh(PODMAN + list(args))


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def build_images():
    t = time.monotonic()
    r = subprocess.run(["bash", os.path.join(ROOT, "docker/test-image.sh"), "5.0"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if r.returncode != 0:
        sys.exit("docker/test-image.sh failed")
    return time.monotonic() - t


def agent_layers():
    """The product image's layers above the base image: (created_by, size)."""
    base = json.loads(podman("history", "--format", "json", BASE).stdout)
    mine = json.loads(podman("history", "--format", "json", IMAGE).stdout)
    extra = mine[: len(mine) - len(base)]
    return [(h.get("CreatedBy", h.get("createdBy", "")), h.get("Size", h.get("size", 0)))
            for h in extra]


def image_size(tag):
    out = json.loads(podman("image", "inspect", tag).stdout)
    return out[0]["Size"]


def timed_product_build(no_cache):
    ca = "/etc/ssl/certs/ca-certificates.crt"
    args = PODMAN + ["build", "--network", "host", "--pull=never", "--layers",
                     "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
                     "--format", "docker", "--ignorefile", "docker/Dockerfile.dockerignore",
                     "--build-arg", "CASSANDRA_VERSION=5.0", "-t", IMAGE,
                     "-f", "docker/Dockerfile", "."]
    if os.path.exists(ca):
        args[4:4] = ["--volume", f"{ca}:{ca}:ro"]
    if no_cache:
        args.insert(args.index("--layers"), "--no-cache")
    t = time.monotonic()
    r = subprocess.run(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"product build failed: {r.stderr[-2000:]}")
    return time.monotonic() - t


class Container:
    def __init__(self, n):
        self.name = f"cqlready-bench-{os.getpid()}-{n}"
        self.native, self.storage, self.jmx = free_port(), free_port(), free_port()

    def start(self):
        podman("rm", "-f", "-t", "0", self.name)
        jvm = (f"-Dcassandra.native_transport_port={self.native} "
               f"-Dcassandra.storage_port={self.storage} -Dcassandra.jmx.local.port={self.jmx} "
               "-Dcassandra.ring_delay_ms=0 -Dcassandra.skip_wait_for_gossip_to_settle=0")
        t0 = time.monotonic()
        r = podman("run", "--detach", "--name", self.name, "--network=host",
                   "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
                   "-e", "MAX_HEAP_SIZE=512M", "-e", "CASSANDRA_LISTEN_ADDRESS=127.0.0.1",
                   "-e", "CASSANDRA_RPC_ADDRESS=127.0.0.1", "-e", f"JVM_EXTRA_OPTS={jvm}", IMAGE)
        if r.returncode != 0:
            sys.exit(f"podman run: {r.stderr}")
        return t0

    def pid(self):
        return int(podman("inspect", "--format", "{{.State.Pid}}", self.name).stdout.strip())

    def agent_check(self):
        return ["cqlready", "probe", "--socket", "/var/run/cqlready/cqlready.sock"]

    def nodetool_check(self):
        return ["sh", "-c", NODETOOL_CHECK.format(jmx=self.jmx)]

    def exec_ok(self, argv):
        return podman("exec", self.name, *argv).returncode == 0

    def remove(self):
        podman("rm", "-f", "-v", "-t", "5", self.name)


def time_to_pass(c, argv, t0, deadline, out, key):
    while time.monotonic() < deadline:
        if c.exec_ok(argv):
            out[key] = time.monotonic() - t0
            return
        time.sleep(0.2)


def check_cost(pid, argv, n):
    """Runs argv n times in the container's namespaces; per run: wall s, cpu s, peak RSS KiB."""
    code = (
        "import resource,subprocess,sys,time,json\n"
        "n=int(sys.argv[1]); cmd=sys.argv[2:]; out=[]\n"
        "for _ in range(n):\n"
        "    b=resource.getrusage(resource.RUSAGE_CHILDREN); t=time.monotonic()\n"
        "    r=subprocess.run(cmd,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)\n"
        "    assert r.returncode==0, f'check failed: {cmd} exit {r.returncode}'\n"
        "    w=time.monotonic()-t; a=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "    out.append([w,(a.ru_utime-b.ru_utime)+(a.ru_stime-b.ru_stime),a.ru_maxrss])\n"
        "print(json.dumps(out))\n"
    )
    ns = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--",
          "env", "PATH=/opt/cassandra/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    r = sh([sys.executable, "-c", code, str(n)] + ns + argv)
    if r.returncode != 0:
        sys.exit(f"check {argv}: {r.stderr[-1000:]}")
    return json.loads(r.stdout)


def systemd_cycles(n):
    """N start/stop cycles of the unit: seconds from CQL answering to start returning."""
    harness = os.path.join(ROOT, "tests/systemd/harness.sh")
    cli = os.path.join(ROOT, "target/release/cqlready")
    if not os.path.exists(cli):
        cli = os.path.join(ROOT, "target/debug/cqlready")
    native, storage, jmx = free_port(), free_port(), free_port()
    name = f"cqlbench-{os.getpid()}"
    r = sh(["bash", os.path.join(ROOT, "docker/systemd-podman.sh"), "up", name,
            str(native), str(storage), str(jmx)])
    if r.returncode != 0:
        sys.exit(f"systemd-podman.sh up: {r.stderr}")
    gaps, starts = [], []
    try:
        for i in range(n):
            sh(["bash", harness, "exec", name, "--", "rm", "-rf", "/var/lib/cassandra/data"])
            got = {}
            stop = threading.Event()

            def poll_cql():
                while not stop.is_set():
                    if sh([cli, "probe", "--port", str(native), "--timeout", "1s"]).returncode == 0:
                        got["cql"] = time.monotonic()
                        return
                    time.sleep(0.02)

            th = threading.Thread(target=poll_cql)
            t0 = time.monotonic()
            th.start()
            r = sh(["bash", harness, "systemctl", name, "start", "cassandra-podman.service"])
            t_active = time.monotonic()
            th.join(timeout=30)
            stop.set()
            if r.returncode != 0 or "cql" not in got:
                j = sh(["bash", harness, "journal", name, "-u", "cassandra-podman.service", "-o", "cat"])
                print(f"systemd cycle {i + 1}: start rc {r.returncode}, cql {got}\n"
                      f"{j.stdout[-3000:]}", file=sys.stderr)
                break
            gaps.append(t_active - got["cql"])
            starts.append(t_active - t0)
            print(f"systemd {i + 1}: start {starts[-1]:.1f} s, CQL -> active {gaps[-1] * 1e3:.0f} ms",
                  file=sys.stderr)
            sh(["bash", harness, "systemctl", name, "stop", "cassandra-podman.service"])
    finally:
        sh(["bash", os.path.join(ROOT, "docker/systemd-podman.sh"), "down", name])
    return gaps, starts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--checks", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-containers.md"))
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--systemd", type=int, default=0, metavar="N")
    a = ap.parse_args()

    images_s = build_images()
    layers = agent_layers()
    added = image_size(IMAGE) - image_size(BASE)
    cold = None if a.no_cold else timed_product_build(True)
    warm = timed_product_build(False)

    starts = []
    costs = {}
    hc_wall = []
    containers = []
    try:
        for n in range(a.runs):
            c = Container(n)
            containers.append(c)
            t0 = c.start()
            got = {}
            deadline = time.monotonic() + 600
            th = [threading.Thread(target=time_to_pass, args=(c, c.agent_check(), t0, deadline, got, "agent")),
                  threading.Thread(target=time_to_pass, args=(c, c.nodetool_check(), t0, deadline, got, "nodetool"))]
            for t in th:
                t.start()
            for t in th:
                t.join()
            starts.append(got)
            print(f"run {n + 1}: {got}", file=sys.stderr)
            if n == a.runs - 1:
                pid = c.pid()
                costs["agent"] = check_cost(pid, c.agent_check(), a.checks)
                costs["nodetool"] = check_cost(pid, c.nodetool_check(), a.checks)
                for _ in range(a.checks):
                    t = time.monotonic()
                    podman("healthcheck", "run", c.name)
                    hc_wall.append(time.monotonic() - t)
            else:
                c.remove()
    finally:
        for c in containers:
            c.remove()

    sd = systemd_cycles(a.systemd) if a.systemd else None

    lines = ["# Containers (Podman 4.3, runc, stand-in cassandra:5.0 image)", "",
             f"docker/test-image.sh 5.0 (this run, cached unless src/ changed): {images_s:.1f} s", "",
             "## The agent's layers", "", "| layer | size |", "|---|---|"]
    for by, size in layers:
        lines.append(f"| `{by.strip()[:90]}` | {size / 1e3:.0f} kB |")
    lines += ["", f"Image size added to the base: {added / 1e6:.2f} MB "
              f"({image_size(BASE) / 1e6:.0f} MB -> {image_size(IMAGE) / 1e6:.0f} MB).", ""]
    if cold is not None:
        lines.append(f"Product build, build stage cold (`--no-cache`, Rust release build inside): {cold:.1f} s")
    lines += [f"Product build from cache: {warm:.1f} s", "",
              "## From `podman run` to the first passing check (same container, same clock)", "",
              "| run | agent `cqlready probe` | `nodetool status \\| grep UN` | difference |",
              "|---|---|---|---|"]
    for i, g in enumerate(starts):
        ag, nt = g.get("agent", float("nan")), g.get("nodetool", float("nan"))
        lines.append(f"| {i + 1} | {ag:.1f} s | {nt:.1f} s | {nt - ag:+.1f} s |")
    lines += ["", f"## One check, {a.checks} runs in the ready container (in its namespaces)", "",
              "| check | wall p50 | wall p90 | CPU p50 | peak RSS |", "|---|---|---|---|---|"]
    for k, runs in costs.items():
        wall = [r[0] for r in runs]
        cpu = [r[1] for r in runs]
        rss = max(r[2] for r in runs)
        lines.append(f"| {k} | {pct(wall, 50) * 1e3:.0f} ms | {pct(wall, 90) * 1e3:.0f} ms | "
                     f"{pct(cpu, 50) * 1e3:.0f} ms | {rss / 1024:.1f} MiB |")
    lines += ["", f"`podman healthcheck run` (runc exec included): p50 {pct(hc_wall, 50) * 1e3:.0f} ms, "
              f"p90 {pct(hc_wall, 90) * 1e3:.0f} ms.", "",
              ]
    if sd:
        gaps, st = sd
        lines += [f"## `systemctl start cassandra-podman` ({len(gaps)} cycles, real systemd 252 in nspawn)", "",
                  f"CQL answering -> unit active: p50 {pct(gaps, 50) * 1e3:.0f} ms, p90 {pct(gaps, 90) * 1e3:.0f} ms; "
                  f"whole start: p50 {pct(st, 50):.1f} s, p90 {pct(st, 90):.1f} s.", ""]
    lines += [f"Load average at the end: {os.getloadavg()[0]:.1f} (2 cores, shared).", ""]
    report = "\n".join(lines)
    print(report)
    with open(a.out, "w") as f:
        f.write(report)


if __name__ == "__main__":
    main()
