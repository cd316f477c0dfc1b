"""Shared helpers for bench/agent.py and bench/cli.py (stdlib only).

Everything that starts a process or creates a file goes through a Session, so
that `Session.close()` (called from a `finally`) kills every JVM still running
and removes the temporary directory, whatever went wrong.
"""

import json
import os
import platform
import random
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
AGENT_LIB = os.path.join(RELEASE, "libcqlready.so")
CLI = os.path.join(RELEASE, "cqlready")
FIXTURE_SRC = os.path.join(ROOT, "tests", "fixtures", "CqlFixture.java")
TEMURIN25 = "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java"
CLK_TCK = os.sysconf("SC_CLK_TCK")

_T0 = time.monotonic()


def log(msg):
    print("[%7.1fs] %s" % (time.monotonic() - _T0, msg), file=sys.stderr, flush=True)


class Timeout(Exception):
    pass


def install_signal_handlers():
    """SIGTERM/SIGHUP unwind through `finally` blocks like Ctrl-C does."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


def build(no_build):
    if not no_build:
        log("cargo build --release")
        r = subprocess.run(["cargo", "build", "--release"], cwd=ROOT)
        if r.returncode != 0:
            raise SystemExit("cargo build --release failed (exit %d)" % r.returncode)
    for path in (AGENT_LIB, CLI):
        if not os.path.exists(path):
            raise SystemExit("missing %s (build first, or drop --no-build)" % path)


def java_version(java):
    r = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    return lines[1].strip() if len(lines) > 1 else (lines[0] if lines else "?")


def jvms(include_temurin=True):
    """[(label, path)]: `java` on PATH, then Temurin 25 when installed."""
    out = []
    java = shutil.which("java")
    if java is None:
        raise SystemExit("no `java` on PATH")
    out.append(("java on PATH", java))
    if include_temurin and os.path.exists(TEMURIN25):
        if os.path.realpath(TEMURIN25) != os.path.realpath(java):
            out.append(("Temurin 25", TEMURIN25))
    return out


def machine_notes(jvm_list):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        rev = rev + (" + uncommitted changes in src/" if dirty else "")
    except OSError:
        rev = "?"
    notes = [
        "- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "- machine: %d CPUs (%s), kernel %s, load average at start %s" % (
            os.cpu_count(), cpu, platform.release(), " ".join("%.2f" % x for x in os.getloadavg())),
        "- source: git %s; agent %s (%d KiB)" % (rev, os.path.relpath(AGENT_LIB, ROOT),
                                                 os.path.getsize(AGENT_LIB) // 1024),
        "- python %s; SC_CLK_TCK=%d" % (platform.python_version(), CLK_TCK),
    ]
    for label, path in jvm_list:
        notes.append("- JVM %s: `%s` (%s)" % (label, path, java_version(path)))
    return notes


# ----------------------------------------------------------------- statistics

def percentile(xs, p):
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(xs):
    return percentile(xs, 50)


def bootstrap_ci(fn, samples, n=2000, seed=1):
    """95% percentile-bootstrap interval of fn over resamples of each list in `samples`."""
    rng = random.Random(seed)
    vals = []
    for _ in range(n):
        vals.append(fn(*[[rng.choice(s) for _ in s] for s in samples]))
    return percentile(vals, 2.5), percentile(vals, 97.5)


def table(rows, header=("Figure", "Goal", "Measured", "Verdict")):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def verdict(ok):
    return "PASS" if ok else "**MISS**"


# ------------------------------------------------------------------- sockets

def closed_port():
    """A TCP port on 127.0.0.1 that refuses connections right now."""
    for _ in range(20):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        c = socket.socket()
        c.settimeout(1)
        try:
            c.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return port
        except OSError:
            pass
        finally:
            c.close()
    raise RuntimeError("no closed port found")


def http_get(sock_path, path, timeout=2.0):
    """GET over the agent's Unix status socket: (status code, body str)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    code = int(head.split(b" ", 2)[1])
    return code, body.decode("utf-8", "replace")


def status_json(sock_path):
    code, body = http_get(sock_path, "/status")
    if code != 200:
        raise RuntimeError("GET /status -> %d" % code)
    return json.loads(body)


class NotifySocket:
    """A Unix datagram socket standing in for systemd's $NOTIFY_SOCKET.

    SO_PASSCRED is on, so every datagram carries the sender's PID."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        self.sock.setblocking(False)

    def fileno(self):
        return self.sock.fileno()

    def recv_nowait(self):
        """(text, sender pid or None) or None when nothing is queued."""
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(8192, socket.CMSG_SPACE(12))
        except BlockingIOError:
            return None
        pid = None
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS and len(cdata) >= 12:
                pid = struct.unpack("iII", cdata[:12])[0]
        return data.decode("utf-8", "replace"), pid

    def drain(self):
        while self.recv_nowait() is not None:
            pass

    def wait_for(self, pred, deadline):
        """Returns (text, pid, monotonic time) of the first datagram where pred(text)."""
        while True:
            got = self.recv_nowait()
            if got is not None:
                t = time.monotonic()
                if pred(got[0]):
                    return got[0], got[1], t
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout("no matching notify datagram")
            select.select([self.sock], [], [], remaining)

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


# ------------------------------------------------------------------ processes

class Fixture:
    """A CqlFixture JVM driven over stdin/stdout, with deadline-based reads."""

    def __init__(self, proc, stderr_path):
        self.proc = proc
        self.pid = proc.pid
        self.stderr_path = stderr_path
        self.fd = proc.stdout.fileno()
        self.buf = b""

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def line_ready(self):
        return b"\n" in self.buf

    def feed(self):
        """Reads what is available on stdout (call after select says readable)."""
        chunk = os.read(self.fd, 65536)
        if not chunk:
            raise EOFError("fixture JVM closed stdout (exit %s); stderr: %s" % (
                self.proc.poll(), self.stderr_tail()))
        self.buf += chunk

    def take_line(self):
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace").strip()

    def readline(self, deadline):
        while not self.line_ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout("fixture JVM said nothing; stderr: %s" % self.stderr_tail())
            r, _, _ = select.select([self.fd], [], [], remaining)
            if r:
                self.feed()
        return self.take_line()

    def expect(self, prefix, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(deadline)
            if line.startswith(prefix):
                return line
            if line.startswith("error"):
                raise RuntimeError("fixture: %s" % line)

    def stderr_tail(self, n=600):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def exit(self, timeout=20.0):
        """Asks the JVM to exit and reaps it; returns the exit code."""
        if self.proc.poll() is None:
            try:
                self.send("exit 0")
            except (BrokenPipeError, OSError):
                pass
        return self.proc.wait(timeout=timeout)


class Session:
    def __init__(self, prefix):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs = []
        self.closables = []
        self.classes = None
        self._n = 0

    def path(self, name):
        return os.path.join(self.tmp, name)

    def compile_classes(self):
        """Compiles the fixture and a trivial main (javac on PATH, --release 8)."""
        d = self.path("classes")
        os.makedirs(d)
        trivial = self.path("Trivial.java")
        with open(trivial, "w") as f:
            f.write("public class Trivial { public static void main(String[] a) { } }\n")
        log("javac --release 8 CqlFixture.java Trivial.java")
        subprocess.run(["javac", "--release", "8", "-d", d, FIXTURE_SRC, trivial], check=True)
        self.classes = d
        return d

    def notify_socket(self, name="notify.sock"):
        n = NotifySocket(self.path(name))
        self.closables.append(n)
        return n

    def env(self, notify=None):
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "RUNTIME_DIRECTORY",
                  "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"):
            env.pop(k, None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = notify
        return env

    def fixture(self, java, jvm_flags=(), agent_opts=None, notify=None):
        """Starts CqlFixture; agent_opts None means no agent."""
        cmd = [java] + list(jvm_flags)
        if agent_opts is not None:
            cmd.append("-agentpath:%s=%s" % (AGENT_LIB, agent_opts))
        cmd += ["-cp", self.classes, "CqlFixture"]
        self._n += 1
        err = self.path("fixture-%d.err" % self._n)
        with open(err, "wb") as errf:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf,
                                    env=self.env(notify))
        self.procs.append(proc)
        return Fixture(proc, err)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log("warning: pid %d did not die" % p.pid)
            for s in (p.stdin, p.stdout):
                try:
                    if s:
                        s.close()
                except OSError:
                    pass
        for c in self.closables:
            try:
                c.close()
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def proc_status(pid):
    """/proc/PID/status as {key: value in KiB or text}."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.strip()
            if v.endswith(" kB"):
                out[k] = int(v[:-3])
            elif v.isdigit():
                out[k] = int(v)
            else:
                out[k] = v
    return out


def thread_cpu(pid):
    """{tid: (comm, ticks utime+stime, ns on CPU from schedstat or None)} for every thread."""
    out = {}
    base = "/proc/%d/task" % pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/stat" % (base, tid)) as f:
                stat = f.read()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            ns = None
            try:
                with open("%s/%s/schedstat" % (base, tid)) as f:
                    ns = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
            out[int(tid)] = (comm, ticks, ns)
        except (OSError, ValueError):
            continue  # thread ended while we looked
    return out


def process_ticks(pid):
    """utime+stime of the whole process in clock ticks (includes threads that ended).

    (/proc/PID/schedstat only covers the main thread, so the nanosecond figure
    for a whole process is the sum over thread_cpu() instead.)"""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


class LoadMeter:
    """CPU used on the whole machine by everything except this script and its reaped children,
    in cores: a noise indicator (other sessions, builds, tests sharing the machine)."""

    @staticmethod
    def _sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = sum(v) - v[3] - v[4]  # all but idle and iowait
        own = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            r = resource.getrusage(who)
            own += r.ru_utime + r.ru_stime
        return time.monotonic(), busy / float(CLK_TCK), own

    def __init__(self):
        self.t0, self.busy0, self.own0 = self._sample()

    def other_cores(self):
        t1, busy1, own1 = self._sample()
        return max(0.0, ((busy1 - self.busy0) - (own1 - self.own0)) / max(t1 - self.t0, 1e-9))
