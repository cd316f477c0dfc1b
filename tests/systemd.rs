//! The shipped unit files under a real systemd.
//!
//! Each test boots a throwaway systemd 252 in a container over the host's
//! root (`tests/systemd/harness.sh`, see `tests/systemd/README.md`) with the
//! unit files of `docker/systemd/` plus the drop-ins of `tests/systemd/units/`
//! (which only swap what the container lacks: `cassandra -f` runs a fixture
//! JVM that speaks CQL, the agent and `cqlready` come from this build) plus
//! the test's own drop-in. Then it drives the fixture (`listen`, `close`
//! through its control port) and asks systemd what it made of the agent.
//!
//! Needs root and systemd-nspawn (`apt-get install systemd-container`);
//! without them each test fails naming what is missing, unless
//! `CQLREADY_ALLOW_SKIP=1` (tests/common/skip.rs). Every wait polls against a deadline; the
//! container is always taken down (Drop), and on failure its journal is
//! printed first.

mod common;

use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");
/// The `cqlready` binary of this build; `libcqlready.so` is next to it.
const CQLREADY: &str = env!("CARGO_BIN_EXE_cqlready");
/// Where the agent's socket is, inside (RuntimeDirectory=cassandra).
const SOCK: &str = "/run/cassandra/cqlready.sock";
/// The units a failed test's journal excerpt is about.
const UNITS: &[&str] = &[
    "cassandra.service",
    "snapshotd.service",
    "cassandra-container.service",
    "cassandra-cql.service",
    "cql-client.service",
    "cassandra-cql-socket.service",
    "cassandra@1.service",
    "cassandra@2.service",
    "cassandra@3.service",
];
/// Anything that should happen "now" may take this long on a busy machine.
const WAIT: Duration = Duration::from_secs(30);

fn harness() -> PathBuf {
    Path::new(MANIFEST).join("tests/systemd/harness.sh")
}

/// The one skip policy (tests/common/skip.rs), for this binary's tests: not
/// root or no systemd-nspawn fails the test, unless CQLREADY_ALLOW_SKIP=1.
fn skip(_test: &str) -> bool {
    !(common::require_root()
        && common::require(
            ["/usr/bin/systemd-nspawn", "/bin/systemd-nspawn"]
                .iter()
                .any(|p| Path::new(p).exists()),
            "systemd-nspawn",
            "apt-get install systemd-container (bash tests/setup.sh does)",
        ))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `target/debug` (or whichever profile built this test).
fn profile_dir() -> PathBuf {
    let dir = Path::new(CQLREADY)
        .parent()
        .expect("cqlready has a directory");
    let lib = dir.join("libcqlready.so");
    assert!(
        lib.is_file(),
        "{} not found: run `cargo build` first",
        lib.display()
    );
    dir.to_path_buf()
}

/// `CqlFixture` and `ScriptedFixture`, compiled once per test binary.
fn fixture_classes() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = profile_dir()
            .parent()
            .expect("target dir")
            .join("systemd-fixtures");
        let tmp = out.with_file_name(format!("systemd-fixtures.build-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).expect("create fixture build dir");
        let src = Path::new(MANIFEST).join("tests/fixtures");
        let javac = std::env::var_os("CQLREADY_JAVAC").unwrap_or_else(|| "javac".into());
        let o = Command::new(&javac)
            .args([
                "--release",
                "8",
                "-Xlint:-options",
                "-encoding",
                "UTF-8",
                "-d",
            ])
            .arg(&tmp)
            .arg(src.join("CqlFixture.java"))
            .arg(src.join("ScriptedFixture.java"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {javac:?}: {e}"));
        assert!(
            o.status.success(),
            "javac: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        fs::create_dir_all(&out).expect("create target/systemd-fixtures");
        for entry in fs::read_dir(&tmp).expect("read build dir") {
            let entry = entry.expect("dir entry");
            fs::rename(entry.path(), out.join(entry.file_name())).expect("move class file");
        }
        let _ = fs::remove_dir_all(&tmp);
        out
    })
    .clone()
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        let (src, dst) = (entry.path(), to.join(&name));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else if name.to_string_lossy().ends_with(".md") {
            continue;
        } else {
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
}

/// Polls `f` every 100 ms until it gives `Some`, at most `within`.
fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One container, taken down on drop.
struct Sd {
    name: String,
    dir: PathBuf,
}

impl Sd {
    /// Boots a container for `test` with the shipped units, the test
    /// drop-ins and `dropins` (unit, `50-test.conf` content).
    fn up(test: &str, dropins: &[(&str, &str)]) -> Sd {
        Sd::up_with(test, dropins, &[])
    }

    /// The same, with more read-only binds (host path, path inside).
    fn up_with(test: &str, dropins: &[(&str, &str)], binds: &[(&Path, &str)]) -> Sd {
        let name = format!("{test}-{}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/cqlready-sd-{name}"));
        let _ = fs::remove_dir_all(&dir);
        let units = dir.join("units");
        copy_tree(&Path::new(MANIFEST).join("docker/systemd"), &units);
        copy_tree(&Path::new(MANIFEST).join("tests/systemd/units"), &units);
        for (unit, conf) in dropins {
            let d = units.join(format!("{unit}.d"));
            fs::create_dir_all(&d).expect("create drop-in dir");
            fs::write(d.join("50-test.conf"), conf).expect("write drop-in");
        }
        let classes = fixture_classes();
        let fixtures = Path::new(MANIFEST).join("tests/systemd/fixtures");
        let sd = Sd { name, dir };
        let t0 = Instant::now();
        let mut up = Command::new(harness());
        up.args(["up", &sd.name, "--unit-dir"]).arg(&units);
        for (from, to) in binds {
            up.arg("--bind-ro").arg(format!("{}:{to}", from.display()));
        }
        let o = up
            .arg("--bind-ro")
            .arg(format!("{}:/opt/cqlready", profile_dir().display()))
            .arg("--bind-ro")
            .arg(format!("{}:/opt/cqlfix", fixtures.display()))
            .arg("--bind-ro")
            .arg(format!("{}:/opt/cqlfix-classes", classes.display()))
            .output()
            .expect("run harness.sh up");
        assert!(
            o.status.success(),
            "harness.sh up {} failed:\n{}",
            sd.name,
            text(&o.stderr)
        );
        eprintln!("{}: container up in {:?}", sd.name, t0.elapsed());
        // systemd logs each notification it accepts at debug level:
        // "Got notification message from PID N (READY=1, STATUS=...)".
        sd.exec_ok(&["systemd-analyze", "log-level", "debug"]);
        sd
    }

    fn cmd(&self, sub: &str) -> Command {
        let mut c = Command::new(harness());
        c.args([sub, &self.name]);
        c
    }

    fn exec(&self, args: &[&str]) -> Output {
        self.cmd("exec")
            .arg("--")
            .args(args)
            .output()
            .expect("run harness.sh exec")
    }

    fn exec_ok(&self, args: &[&str]) -> String {
        let o = self.exec(args);
        assert!(
            o.status.success(),
            "{args:?} failed ({}): {}{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    fn systemctl(&self, args: &[&str]) -> Output {
        self.cmd("systemctl")
            .args(args)
            .output()
            .expect("run harness.sh systemctl")
    }

    /// `systemctl start UNIT` in the background (it blocks until ready).
    fn spawn_start(&self, unit: &str) -> Child {
        self.cmd("systemctl")
            .args(["start", unit])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn systemctl start")
    }

    fn props(&self, unit: &str, names: &[&str]) -> HashMap<String, String> {
        let o = self.systemctl(&["show", "-p", &names.join(","), unit]);
        assert!(o.status.success(), "systemctl show: {}", text(&o.stderr));
        text(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn prop(&self, unit: &str, name: &str) -> String {
        self.props(unit, &[name]).remove(name).unwrap_or_default()
    }

    fn state(&self, unit: &str) -> (String, String) {
        let mut p = self.props(unit, &["ActiveState", "SubState"]);
        (
            p.remove("ActiveState").unwrap_or_default(),
            p.remove("SubState").unwrap_or_default(),
        )
    }

    fn wait_state(&self, unit: &str, active: &str, within: Duration) {
        let what = format!("{unit} to be {active}");
        let deadline = Instant::now() + within;
        loop {
            let last = self.state(unit);
            if last.0 == active {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last {last:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn main_pid(&self, unit: &str) -> u32 {
        self.prop(unit, "MainPID").parse().expect("MainPID")
    }

    fn journal(&self, args: &[&str]) -> String {
        let o = self
            .cmd("journal")
            .args(["-o", "cat"])
            .args(args)
            .output()
            .expect("run harness.sh journal");
        text(&o.stdout)
    }

    /// One command to the fixture's control port; its acknowledgement.
    fn fixture(&self, command: &str) -> String {
        self.exec_ok(&["/opt/cqlfix/fixctl", "-w", "30", command])
            .trim()
            .to_string()
    }

    /// The agent's `/status`, when its socket answers.
    fn agent(&self) -> Option<Value> {
        let o = self.exec(&[
            "/opt/cqlready/cqlready",
            "status",
            "--json",
            "--socket",
            SOCK,
        ]);
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// What systemd accepted from `pid` for `unit`, in order, e.g.
    /// `["STATUS=Waiting for CQL ...", "READY=1, STATUS=...", "WATCHDOG=1"]`
    /// (from its debug log, which `up` turns on).
    fn notifications(&self, unit: &str, pid: u32) -> Vec<String> {
        let prefix = format!("{unit}: Got notification message from PID {pid} (");
        self.journal(&["-u", unit])
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|l| l.strip_suffix(')').unwrap_or(l).to_string())
            .collect()
    }

    /// No notification was refused for coming from the wrong PID.
    fn assert_no_refused_notifications(&self) {
        let j = self.journal(&[]);
        let bad: Vec<&str> = j
            .lines()
            .filter(|l| l.contains("reception only permitted for main PID"))
            .collect();
        assert!(bad.is_empty(), "systemd refused notifications: {bad:?}");
    }

    /// Starts cassandra.service, opens CQL once it is activating, and waits
    /// for the start to return. Returns the main PID.
    fn start_ready(&self) -> u32 {
        let mut start = self.spawn_start("cassandra.service");
        let ack = self.fixture("listen 9042 cql");
        assert_eq!(ack, "listening 9042");
        let status = wait_for("systemctl start to return", WAIT, || {
            start.try_wait().expect("try_wait")
        });
        assert!(status.success(), "systemctl start cassandra.service failed");
        assert_eq!(self.state("cassandra.service").0, "active");
        self.main_pid("cassandra.service")
    }
}

impl Drop for Sd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut c = self.cmd("journal");
            c.args(["-o", "short-monotonic", "--no-hostname"]);
            for u in UNITS {
                c.args(["-u", u]);
            }
            let j = c.output().map(|o| text(&o.stdout)).unwrap_or_default();
            let lines: Vec<&str> = j
                .lines()
                .filter(|l| !l.contains("WATCHDOG=1)") && !l.contains("unit change signal"))
                .collect();
            let from = lines.len().saturating_sub(150);
            eprintln!(
                "--- journal of {} (last {} lines) ---\n{}\n---",
                self.name,
                lines.len() - from,
                lines[from..].join("\n")
            );
        }
        let _ = Command::new(harness()).args(["down", &self.name]).status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Each of `needles` occurs in `text`, each after the one before.
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match text[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => panic!("{needle:?} is not after {needles:?}'s earlier ones in:\n{text}"),
        }
    }
}

fn pid_of_ack(ack: &str) -> u32 {
    ack.strip_prefix("pid ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("fixture answered {ack:?} to `pid`"))
}

/// Stubs for `harness.sh verify`: every command of an `Exec*=` line (e.g.
/// /usr/sbin/cassandra, /usr/bin/podman) and every required unit that is not
/// shipped (e.g. docker.service), whether or not this host has it: the
/// scratch root is empty, so a host's binary would not be seen anyway, and
/// the verdict must not depend on what the host has installed.
fn verify_stubs(units: &[PathBuf]) -> Vec<String> {
    let shipped: Vec<String> = units
        .iter()
        .filter_map(|u| u.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let mut args: Vec<String> = Vec::new();
    for u in units {
        let body = fs::read_to_string(u).expect("read unit");
        // join continuation lines
        let body = body.replace("\\\n", " ");
        for line in body.lines().map(str::trim) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if key.starts_with("Exec") {
                let cmd = value
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches(['-', '@', ':', '+', '!']);
                if cmd.starts_with('/') {
                    args.extend(["--stub".into(), cmd.to_string()]);
                }
            } else if ["Requires", "BindsTo", "Wants", "Requisite", "PartOf"].contains(&key) {
                for dep in value.split_whitespace() {
                    if !shipped.iter().any(|s| s == dep) {
                        args.extend(["--stub-unit".into(), dep.to_string()]);
                    }
                }
            }
        }
    }
    let mut pairs: Vec<(String, String)> = args
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs.into_iter().flat_map(|(a, b)| [a, b]).collect()
}

#[test]
fn shipped_units_pass_systemd_analyze_verify() {
    if !common::require_file(
        Path::new("/usr/bin/systemd-analyze"),
        "apt-get install systemd",
    ) {
        return;
    }
    let units: Vec<PathBuf> = fs::read_dir(Path::new(MANIFEST).join("docker/systemd"))
        .expect("docker/systemd")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    for name in [
        "cassandra.service",
        "cassandra-cql.service",
        "cassandra-container.service",
        "snapshotd.service",
    ] {
        assert!(
            units.iter().any(|u| u.ends_with(name)),
            "docker/systemd/{name} is missing"
        );
    }
    let stubs = verify_stubs(&units);
    let o = Command::new(harness())
        .arg("verify")
        .args(&stubs)
        .args(&units)
        .output()
        .expect("run harness.sh verify");
    let out = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        o.status.success(),
        "systemd-analyze verify failed (stubs {stubs:?}):\n{out}"
    );
    assert!(
        out.trim().is_empty(),
        "systemd-analyze verify warns:\n{out}"
    );
}

/// `systemctl start snapshotd` (Requires=/After=cassandra.service) blocks
/// while the JVM runs but CQL is closed, and returns once CQL answers; the
/// JVM is the main PID, the status line is the agent's, the dependent found
/// CQL on its first try; stopping Cassandra stops the dependent.
#[test]
fn dependent_start_blocks_until_cql_answers() {
    if skip("dependent_start_blocks_until_cql_answers") {
        return;
    }
    let sd = Sd::up("dep", &[]);
    let mut start = sd.spawn_start("snapshotd.service");

    // The JVM runs and its agent keeps failing checks: still starting.
    let snap = wait_for("the agent to have failed 3 checks", WAIT, || {
        sd.agent()
            .filter(|s| s["checks"]["failed"].as_u64() >= Some(3))
    });
    assert_eq!(snap["state"], "starting", "{snap}");
    assert_eq!(
        sd.state("cassandra.service"),
        ("activating".into(), "start".into())
    );
    assert_eq!(sd.state("snapshotd.service").0, "inactive");
    assert!(
        start.try_wait().expect("try_wait").is_none(),
        "systemctl start returned before CQL answered"
    );
    let status = sd.prop("cassandra.service", "StatusText");
    assert!(
        status.starts_with("Waiting for CQL on 127.0.0.1:9042"),
        "{status}"
    );

    let t0 = Instant::now();
    assert_eq!(sd.fixture("listen 9042 cql"), "listening 9042");
    let done = wait_for("systemctl start snapshotd to return", WAIT, || {
        start.try_wait().expect("try_wait")
    });
    eprintln!(
        "systemctl start returned {:?} after CQL opened",
        t0.elapsed()
    );
    let out = start.wait_with_output().expect("wait");
    assert!(
        done.success(),
        "systemctl start snapshotd: {}",
        text(&out.stderr)
    );

    // Cassandra: the JVM is the main PID, running, with the agent's status.
    let main = sd.main_pid("cassandra.service");
    assert_eq!(
        main,
        pid_of_ack(&sd.fixture("pid")),
        "MainPID is not the JVM"
    );
    let comm = sd.exec_ok(&["cat", &format!("/proc/{main}/comm")]);
    assert_eq!(comm.trim(), "java");
    let uid = sd.exec_ok(&["stat", "-c", "%u", &format!("/proc/{main}")]);
    assert_ne!(
        uid.trim(),
        "0",
        "the JVM should run as the (dynamic) cassandra user"
    );
    assert_eq!(
        sd.state("cassandra.service"),
        ("active".into(), "running".into())
    );
    let status = sd.prop("cassandra.service", "StatusText");
    assert!(
        status.contains("ready") && status.contains("127.0.0.1:9042"),
        "StatusText: {status}"
    );
    let snap = sd.agent().expect("the agent answers");
    assert_eq!(snap["state"], "ready");
    assert_eq!(snap["pid"], main);
    assert_eq!(snap["socket"], SOCK);
    assert_eq!(snap["notify"]["ready_sent"], true);
    let j = sd.journal(&["-u", "cassandra.service"]);
    assert!(
        j.contains(&format!(
            "Got notification message from PID {main} (READY=1"
        )),
        "no READY=1 from the JVM's PID {main} in the journal:\n{j}"
    );

    // The dependent started after, and CQL answered its first and only try.
    let p = sd.props(
        "snapshotd.service",
        &[
            "ActiveState",
            "Result",
            "NRestarts",
            "InactiveExitTimestampMonotonic",
        ],
    );
    assert_eq!(p["ActiveState"], "active");
    assert_eq!(p["Result"], "success");
    assert_eq!(p["NRestarts"], "0");
    let ready_at: u64 = sd
        .prop("cassandra.service", "ActiveEnterTimestampMonotonic")
        .parse()
        .unwrap();
    let dep_at: u64 = p["InactiveExitTimestampMonotonic"].parse().unwrap();
    assert!(
        dep_at >= ready_at,
        "snapshotd started at {dep_at} before cassandra was ready at {ready_at}"
    );
    // Its output (StandardOutput=append:/run/snapshotd.log): one check of
    // CQL, one of the agent, both ready at once.
    let log = sd.exec_ok(&["cat", "/run/snapshotd.log"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].starts_with("ready: CQL v5 on 127.0.0.1:9042"),
        "{log}"
    );
    assert_eq!(lines[1], "ready", "{log}");

    // The composed units (shipped + drop-ins) verify in there too.
    sd.exec_ok(&[
        "systemd-analyze",
        "verify",
        "/run/systemd/system/cassandra.service",
        "/run/systemd/system/snapshotd.service",
    ]);

    // Requires=: stopping Cassandra stops the dependent.
    let o = sd.systemctl(&["stop", "cassandra.service"]);
    assert!(o.status.success(), "stop: {}", text(&o.stderr));
    assert_eq!(sd.state("snapshotd.service").0, "inactive");
    assert_eq!(sd.prop("cassandra.service", "Result"), "success");
    sd.assert_no_refused_notifications();
}

/// CQL never opens: the start fails after TimeoutStartSec=, Result=timeout.
#[test]
fn cql_that_never_opens_fails_the_start() {
    if skip("cql_that_never_opens_fails_the_start") {
        return;
    }
    let sd = Sd::up(
        "tmo",
        &[(
            "cassandra.service",
            "[Service]\nTimeoutStartSec=3s\nRestart=no\n",
        )],
    );
    let o = sd.systemctl(&["start", "cassandra.service"]);
    assert!(!o.status.success(), "start succeeded without CQL");
    let p = sd.props(
        "cassandra.service",
        &["ActiveState", "Result", "TimeoutStartUSec"],
    );
    assert_eq!(p["ActiveState"], "failed");
    assert_eq!(p["Result"], "timeout");
    assert_eq!(
        p["TimeoutStartUSec"], "3s",
        "the drop-in's timeout is the one that fired"
    );
    // The agent was checking and saying so until systemd gave up on it.
    let j = sd.journal(&["-u", "cassandra.service"]);
    assert_in_order(
        &j,
        &[
            "STATUS=Waiting for CQL on 127.0.0.1:9042",
            "start operation timed out. Terminating.",
            "Failed with result 'timeout'.",
        ],
    );
    assert!(!j.contains("READY=1"), "READY=1 without CQL:\n{j}");
    sd.assert_no_refused_notifications();
}

/// WatchdogSec=2s: a healthy node is left alone for 3x WatchdogSec; once
/// CQL closes, the pings stop and systemd restarts the JVM.
#[test]
fn watchdog_restarts_only_a_node_whose_cql_stopped() {
    if skip("watchdog_restarts_only_a_node_whose_cql_stopped") {
        return;
    }
    let sd = Sd::up(
        "wd",
        &[(
            "cassandra.service",
            "[Service]\nWatchdogSec=2s\nEnvironment=JVM_EXTRA_OPTS=-agentpath:/opt/cqlready/libcqlready.so=check=200ms,failures=2,log=debug\n",
        )],
    );
    let main = sd.start_ready();

    // Healthy: same process, no restart, while the agent counts six pings
    // (one per half period: three WatchdogSec= periods).
    const HEALTHY_PINGS: u64 = 6;
    let mut samples = 0;
    let snap = wait_for("six watchdog pings from a healthy node", WAIT, || {
        let p = sd.props(
            "cassandra.service",
            &["ActiveState", "MainPID", "NRestarts"],
        );
        assert_eq!(
            (
                p["ActiveState"].as_str(),
                p["MainPID"].as_str(),
                p["NRestarts"].as_str()
            ),
            ("active", main.to_string().as_str(), "0"),
            "a healthy node changed after {samples} samples"
        );
        samples += 1;
        sd.agent()
            .filter(|s| s["notify"]["watchdog_pings"].as_u64() >= Some(HEALTHY_PINGS))
    });
    assert_eq!(snap["notify"]["watchdog_usec"], 2_000_000, "{snap}");
    eprintln!("healthy for {HEALTHY_PINGS} pings ({samples} samples)");
    assert!(!sd
        .journal(&["-u", "cassandra.service"])
        .contains("Watchdog timeout"));

    // CQL closes: degraded after 2 failed checks, pings stop, systemd kills.
    let t0 = Instant::now();
    assert_eq!(sd.fixture("close"), "closed");
    wait_for("a restart after the watchdog fired", WAIT, || {
        let p = sd.props("cassandra.service", &["NRestarts", "MainPID"]);
        (p["NRestarts"] != "0" && p["MainPID"] != "0" && p["MainPID"] != main.to_string())
            .then_some(())
    });
    eprintln!("restarted {:?} after CQL closed", t0.elapsed());
    // The restart is the watchdog's, and came after the agent said CQL was
    // not answering: not a crash, nor a kill while it still pinged.
    let j = sd.journal(&["-u", "cassandra.service"]);
    assert_in_order(
        &j,
        &[
            &format!("PID {main} (READY=1"),
            "WATCHDOG=1",
            "not answering since",
            "Watchdog timeout (limit 2s)!",
            "Failed with result 'watchdog'",
        ],
    );
    assert_eq!(sd.prop("cassandra.service", "NRestarts"), "1");

    // What the first JVM told systemd: no ping before READY=1, pings while
    // ready, none from the moment it reported CQL not answering.
    let sent = sd.notifications("cassandra.service", main);
    let ready = sent
        .iter()
        .position(|n| n.starts_with("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 from {main}: {sent:?}"));
    let degraded = sent
        .iter()
        .position(|n| n.contains("not answering since"))
        .unwrap_or_else(|| panic!("no degraded STATUS= from {main}: {sent:?}"));
    let pings = |r: &[String]| r.iter().filter(|n| n.contains("WATCHDOG=1")).count();
    assert_eq!(pings(&sent[..ready]), 0, "pings before READY=1: {sent:?}");
    // Every ping the agent counted while healthy reached systemd.
    assert!(
        pings(&sent[ready..degraded]) as u64 >= HEALTHY_PINGS,
        "{sent:?}"
    );
    assert_eq!(
        pings(&sent[degraded..]),
        0,
        "pings while degraded: {sent:?}"
    );

    // The new JVM waits for CQL again, and becomes ready when it opens.
    let again = sd.start_ready();
    assert_ne!(again, main);
    assert_eq!(again, pid_of_ack(&sd.fixture("pid")));
    let sent = sd.notifications("cassandra.service", again);
    let ready = sent.iter().position(|n| n.starts_with("READY=1"));
    assert!(ready.is_some(), "no READY=1 from {again}: {sent:?}");
    assert_eq!(pings(&sent[..ready.unwrap()]), 0, "{sent:?}");
    sd.assert_no_refused_notifications();
}

/// `systemctl stop`: STOPPING=1 from the JVM reaches systemd, the stop is
/// clean (exit 143 counts as success) and the agent removes its socket.
#[test]
fn stop_is_clean_and_removes_the_socket() {
    if skip("stop_is_clean_and_removes_the_socket") {
        return;
    }
    // Keep /run/cassandra after the stop: then it is the agent, not
    // systemd, that must have removed the socket.
    let sd = Sd::up(
        "stop",
        &[(
            "cassandra.service",
            "[Service]\nRuntimeDirectoryPreserve=yes\n",
        )],
    );
    let main = sd.start_ready();
    sd.exec_ok(&["test", "-S", SOCK]);
    let t0 = Instant::now();
    let o = sd.systemctl(&["stop", "cassandra.service"]);
    eprintln!("systemctl stop took {:?}", t0.elapsed());
    assert!(o.status.success(), "stop: {}", text(&o.stderr));
    let p = sd.props(
        "cassandra.service",
        &["ActiveState", "Result", "ExecMainCode", "ExecMainStatus"],
    );
    assert_eq!(p["ActiveState"], "inactive", "{p:?}");
    assert_eq!(p["Result"], "success", "{p:?}");
    let j = sd.journal(&["-u", "cassandra.service"]);
    assert!(
        j.contains(&format!(
            "Got notification message from PID {main} (STOPPING=1"
        )),
        "no STOPPING=1 from PID {main}:\n{j}"
    );
    assert!(j.contains("Changed running -> stop-sigterm"), "{j}");
    assert!(j.contains("Deactivated successfully."), "{j}");
    sd.exec_ok(&["test", "-d", "/run/cassandra"]);
    let o = sd.exec(&["test", "-e", SOCK]);
    assert!(!o.status.success(), "{SOCK} is still there after the stop");
    sd.assert_no_refused_notifications();
}

/// `cqlready watch` as cassandra-cql.service: activating until both ports
/// answer, active after; when CQL goes away it exits 1 and the unit bound to
/// it stops, while the container's unit keeps running.
#[test]
fn watcher_unit_follows_the_ports_and_takes_bound_units_down() {
    if skip("watcher_unit_follows_the_ports_and_takes_bound_units_down") {
        return;
    }
    let sd = Sd::up("watch", &[]);
    let mut start = sd.spawn_start("cql-client.service");
    let jvm = pid_of_ack(&sd.fixture("pid"));
    assert_eq!(sd.main_pid("cassandra-container.service"), jvm);
    sd.wait_state("cassandra-cql.service", "activating", WAIT);
    // Its STATUS= names what fails: "Waiting for ...: CQL on 127.0.0.1:9042: <error>".
    let failing = |port: &str| {
        let sd = &sd;
        let needle = format!("{port}: ");
        move || {
            Some(sd.prop("cassandra-cql.service", "StatusText"))
                .filter(|s| s.starts_with("Waiting") && s.contains(&needle))
        }
    };
    let status = wait_for(
        "the watcher to report 9042 failing",
        WAIT,
        failing("CQL on 127.0.0.1:9042"),
    );
    eprintln!("watcher: {status}");

    // CQL answers but JMX (7199) does not: still waiting, now for 7199.
    assert_eq!(sd.fixture("listen 9042 cql"), "listening 9042");
    let status = wait_for(
        "the watcher to report 7199 failing",
        WAIT,
        failing("TCP 127.0.0.1:7199"),
    );
    eprintln!("watcher: {status}");
    assert_eq!(sd.state("cassandra-cql.service").0, "activating");
    assert!(
        start.try_wait().expect("try_wait").is_none(),
        "start returned with 7199 closed"
    );

    let t0 = Instant::now();
    assert_eq!(sd.fixture("listen 7199 cql"), "listening 7199");
    let done = wait_for("systemctl start cql-client to return", WAIT, || {
        start.try_wait().expect("try_wait")
    });
    eprintln!(
        "systemctl start returned {:?} after both ports opened",
        t0.elapsed()
    );
    assert!(done.success());
    let watcher = sd.main_pid("cassandra-cql.service");
    let comm = sd.exec_ok(&["cat", &format!("/proc/{watcher}/comm")]);
    assert_eq!(comm.trim(), "cqlready");
    let status = sd.prop("cassandra-cql.service", "StatusText");
    assert!(status.contains("ready"), "{status}");
    assert_eq!(sd.state("cql-client.service").0, "active");
    let j = sd.journal(&["-u", "cassandra-cql.service"]);
    assert!(
        j.contains(&format!(
            "Got notification message from PID {watcher} (READY=1"
        )),
        "{j}"
    );

    // CQL goes away: the watcher exits 1, the bound unit stops.
    let t0 = Instant::now();
    assert_eq!(sd.fixture("close"), "closed");
    sd.wait_state("cassandra-cql.service", "failed", WAIT);
    eprintln!("watcher failed {:?} after the ports closed", t0.elapsed());
    let p = sd.props("cassandra-cql.service", &["Result", "ExecMainStatus"]);
    assert_eq!(p["Result"], "exit-code", "{p:?}");
    assert_eq!(p["ExecMainStatus"], "1", "{p:?}");
    sd.wait_state("cql-client.service", "inactive", WAIT);
    assert_eq!(sd.state("cassandra-container.service").0, "active");
    assert_eq!(sd.main_pid("cassandra-container.service"), jvm);
    sd.assert_no_refused_notifications();
}

/// The other way cassandra-cql.service can watch: `cqlready watch --socket`
/// on the agent's status socket. It is ready when the agent is, and exits 1
/// when the agent turns degraded, while the JVM itself keeps running and
/// recovers when CQL is back.
#[test]
fn watcher_on_the_agent_socket() {
    if skip("watcher_on_the_agent_socket") {
        return;
    }
    let sd = Sd::up(
        "wsock",
        &[(
            "cassandra.service",
            "[Service]\nEnvironment=JVM_EXTRA_OPTS=-agentpath:/opt/cqlready/libcqlready.so=check=200ms,failures=2,log=debug\n",
        )],
    );
    // Pulls cassandra.service in (BindsTo=), not ordered after it.
    let mut start = sd.spawn_start("cassandra-cql-socket.service");
    wait_for("the agent to have failed 3 checks", WAIT, || {
        sd.agent()
            .filter(|s| s["checks"]["failed"].as_u64() >= Some(3))
    });
    sd.wait_state("cassandra-cql-socket.service", "activating", WAIT);
    let status = wait_for("the watcher to see the agent starting", WAIT, || {
        Some(sd.prop("cassandra-cql-socket.service", "StatusText"))
            .filter(|s| s.contains("says starting"))
    });
    assert!(status.contains(SOCK), "{status}");
    assert!(start.try_wait().expect("try_wait").is_none());

    let t0 = Instant::now();
    assert_eq!(sd.fixture("listen 9042 cql"), "listening 9042");
    let done = wait_for("systemctl start to return", WAIT, || {
        start.try_wait().expect("try_wait")
    });
    eprintln!("socket watcher ready {:?} after CQL opened", t0.elapsed());
    assert!(done.success());
    assert_eq!(sd.state("cassandra.service").0, "active");
    let watcher = sd.main_pid("cassandra-cql-socket.service");
    let sent = sd.notifications("cassandra-cql-socket.service", watcher);
    assert!(sent.iter().any(|n| n.starts_with("READY=1")), "{sent:?}");

    // CQL closes: the agent turns degraded, the watcher exits 1; the JVM
    // (no WatchdogSec= here) keeps running.
    let main = sd.main_pid("cassandra.service");
    assert_eq!(sd.fixture("close"), "closed");
    sd.wait_state("cassandra-cql-socket.service", "failed", WAIT);
    let p = sd.props(
        "cassandra-cql-socket.service",
        &["Result", "ExecMainStatus"],
    );
    assert_eq!(p["Result"], "exit-code", "{p:?}");
    assert_eq!(p["ExecMainStatus"], "1", "{p:?}");
    assert_eq!(sd.agent().expect("agent")["state"], "degraded");
    let status = sd.prop("cassandra.service", "StatusText");
    assert!(status.contains("not answering since"), "{status}");
    assert_eq!(sd.state("cassandra.service").0, "active");

    // CQL is back: the agent says so, on the same JVM.
    assert_eq!(sd.fixture("listen 9042 cql"), "listening 9042");
    let status = wait_for("the agent to report CQL back", WAIT, || {
        Some(sd.prop("cassandra.service", "StatusText")).filter(|s| s.contains("again"))
    });
    eprintln!("back: {status}");
    assert_eq!(sd.main_pid("cassandra.service"), main);
    assert_eq!(sd.agent().expect("agent")["state"], "ready");
    sd.assert_no_refused_notifications();
}

/// Real Cassandra 5.0 with the agent, under the shipped cassandra.service and
/// snapshotd.service: `tests/systemd/cassandra-demo.sh` boots the container,
/// checks each step and exits non-zero if one fails (the same script is
/// `bash tests/demo.sh --systemd`).
#[test]
fn real_cassandra_holds_start_until_cql_answers() {
    real_cassandra_under_systemd("real_cassandra_holds_start_until_cql_answers", false);
}

/// The same with TLS-only CQL (client_encryption_options enabled, not
/// optional): the agent finds TLS in the yaml, the unit becomes active and
/// stops cleanly.
#[test]
fn real_tls_only_cassandra_under_systemd() {
    real_cassandra_under_systemd("real_tls_only_cassandra_under_systemd", true);
}

fn real_cassandra_under_systemd(name: &str, tls: bool) {
    if skip(name) {
        return;
    }
    let profile = profile_dir();
    let build = profile
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let o = Command::new("bash")
        .arg(Path::new(MANIFEST).join("tests/systemd/cassandra-demo.sh"))
        .env("CQLREADY_BUILD", build)
        .env("CQLREADY_DEMO_TLS", if tls { "1" } else { "0" })
        .output()
        .expect("run cassandra-demo.sh");
    let out = text(&o.stdout) + &text(&o.stderr);
    assert!(o.status.success(), "{out}");
    for step in [
        "ok: cassandra.service is active/running",
        "ok: StatusText is the agent's",
        "ok: snapshotd ran once CQL answered, first try",
        "ok: no notification refused under NotifyAccess=main",
        "ok: status shows Cassandra NORMAL",
        "ok: stop is clean (Result=success)",
        "ok: the status socket is gone",
    ] {
        assert!(out.contains(step), "missing {step:?} in:\n{out}");
    }
}

/// Rows tests/cassandra/fill.py leaves in memtables: ~39 MiB.
const FILL_ROWS: &str = "40000";
/// A start of real Cassandra, or its stop, on a busy machine.
const REAL: Duration = Duration::from_secs(600);

/// Cassandra 5.0 (fetched on first use) and the Python clients' venv.
fn real_setup() -> (PathBuf, PathBuf) {
    let lib = PathBuf::from(common::script_last_line(
        "tests/cassandra/fetch.sh",
        None,
        &[],
    ));
    let venv = PathBuf::from(common::script_last_line(
        "tests/cassandra/pyclients.sh",
        None,
        &[],
    ));
    let chome = lib.parent().expect("cassandra home").to_path_buf();
    (chome, venv.parent().expect("venv").to_path_buf())
}

/// The venv's python and tests/cassandra/fill.py, inside.
const PYTHON: &str = "/opt/cqlvenv/bin/python";
const FILL: &str = "/opt/cqlready-src/tests/cassandra/fill.py";

/// What a container with real Cassandra binds: the Cassandra home, this
/// source tree and the venv at `/opt/cqlvenv`. A venv's python runs from
/// wherever it is (pyvenv.cfg is next to it), once the interpreter it links
/// to is there too (/usr is; a pyenv's is not).
fn real_binds(chome: &Path, venv: &Path) -> Vec<(PathBuf, String)> {
    let python = fs::canonicalize(venv.join("bin/python")).expect("the venv's python");
    let prefix = python.ancestors().nth(2).expect("python's prefix");
    let mut binds = vec![
        (chome.to_path_buf(), "/opt/cassandra".to_string()),
        (PathBuf::from(MANIFEST), "/opt/cqlready-src".to_string()),
        (venv.to_path_buf(), "/opt/cqlvenv".to_string()),
    ];
    if !prefix.starts_with("/usr") {
        let at = prefix.to_str().expect("utf-8 path").to_string();
        binds.push((prefix.to_path_buf(), at));
    }
    binds
}

/// A real Cassandra 5.0 node that wrote ~39 MiB it has not flushed (the
/// memtables of tests/cassandra/memtables.yaml hold it), stopped with
/// `TimeoutStopSec=3s`: its drain on SIGTERM takes longer than that.
/// With the agent, the drain's `EXTEND_TIMEOUT_USEC` keeps systemd from
/// killing it and the stop succeeds, twice in one container: stopped as
/// soon as the fill is in, while the start's last extension is recent
/// (`extend=10min` puts it well inside `extend`/3, the gap by which the
/// monitor once spaced every extension, start's or stop's, so the drain got
/// none), and again after waiting past `extend`/3 (the default
/// `extend=2min`). The same unit without the agent (`Type=simple`, nothing
/// to say READY=1) is SIGKILLed at the timeout.
#[test]
fn real_drain_outlasts_a_short_stop_timeout() {
    if skip("real_drain_outlasts_a_short_stop_timeout") {
        return;
    }
    let (chome, venv_dir) = real_setup();
    let sd = filled_node_unit(&chome, &venv_dir, true);
    let (soon, took) = fill_and_stop(&sd, true, None);
    eprintln!("stopped soon after the start's extension: systemctl stop took {took:?}; the drain sent ({soon})");
    // The unit's EnvironmentFile= (read at each start) overrides its
    // Environment=: the default extend for the second start.
    sd.exec_ok(&[
        "sh",
        "-c",
        "echo JVM_EXTRA_OPTS=-agentpath:/opt/cqlready/libcqlready.so=extend=2min > /run/cqlready-agent.env",
    ]);
    let (late, took) = fill_and_stop(&sd, true, Some(Duration::from_secs(45)));
    eprintln!("stopped 45 s after READY=1: systemctl stop took {took:?}; the drain sent ({late})");
    drop(sd);
    let sd = filled_node_unit(&chome, &venv_dir, false);
    let without = fill_and_stop(&sd, false, None).1;
    eprintln!("without the agent: systemctl stop took {without:?}");
    assert!(soon.contains("DRAINING"), "{soon}");
    assert!(late.contains("DRAINING"), "{late}");
}

/// A container with real Cassandra under cassandra.service (with the agent,
/// `extend=10min`, or without it), its memtables large enough to hold the fill.
fn filled_node_unit(chome: &Path, venv: &Path, agent: bool) -> Sd {
    let real = fs::read_to_string(Path::new(MANIFEST).join("tests/systemd/real-cassandra.conf"))
        .expect("read real-cassandra.conf")
        .replace(
            "@ENV@",
            "CASSANDRA_YAML_EXTRA=/opt/cqlready-src/tests/cassandra/memtables.yaml",
        );
    let mut conf = real + "TimeoutStartSec=10min\nTimeoutStopSec=3s\nRestart=no\n";
    if agent {
        conf += "Environment=JVM_EXTRA_OPTS=-agentpath:/opt/cqlready/libcqlready.so=extend=10min\n\
                 EnvironmentFile=-/run/cqlready-agent.env\n";
    } else {
        conf += "Type=simple\nEnvironment=JVM_EXTRA_OPTS=\n";
    }
    let binds = real_binds(chome, venv);
    let binds: Vec<(&Path, &str)> = binds
        .iter()
        .map(|(p, at)| (p.as_path(), at.as_str()))
        .collect();
    let name = if agent { "drain" } else { "drain-noagent" };
    Sd::up_with(name, &[("cassandra.service", &conf)], &binds)
}

/// Starts the unit, fills the node, stops it (`wait` after the start
/// returned, else at once), checks how the stop ended; the agent's
/// DRAINING `STATUS=` (empty without it) and how long the stop took.
fn fill_and_stop(sd: &Sd, agent: bool, wait: Option<Duration>) -> (String, Duration) {
    let journal_before = sd.journal(&["-u", "cassandra.service"]).lines().count();
    let t0 = Instant::now();
    let o = sd.systemctl(&["start", "cassandra.service"]);
    assert!(o.status.success(), "start: {}", text(&o.stderr));
    let started = Instant::now();
    let probe = ["/opt/cqlready/cqlready", "probe", "--port", "9042"];
    wait_for("CQL on 9042", REAL, || {
        sd.exec(&probe).status.success().then_some(())
    });
    eprintln!("agent {agent}: CQL answers {:?} after start", t0.elapsed());
    let wrote = sd.exec_ok(&[PYTHON, FILL, "--port", "9042", "--rows", FILL_ROWS]);
    // Nothing of it flushed yet: no SSTable of the table, the commit log holds it.
    let on_disk = sd.exec_ok(&[
        "sh",
        "-c",
        "find /var/lib/cassandra/data/data/cqlready_fill -name '*-Data.db' | wc -l; \
         du -sm /var/lib/cassandra/data/commitlog | cut -f1",
    ]);
    eprintln!(
        "agent {agent}: {} (SSTables, commit log MiB: {on_disk:?})",
        wrote.trim()
    );
    let mut n = on_disk
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    let (sstables, commitlog) = (n.next().unwrap_or(1), n.next().unwrap_or(0));
    assert_eq!(sstables, 0, "the rows were flushed before the stop");
    assert!(commitlog >= 30, "commit log {commitlog} MiB");
    if let Some(w) = wait {
        // Not a wait for a condition: the timeline under test is a stop
        // this long after READY=1 (systemctl start returned at it).
        std::thread::sleep(w.saturating_sub(started.elapsed()));
    }

    let main = sd.main_pid("cassandra.service");
    let t0 = Instant::now();
    let _ = sd.systemctl(&["stop", "cassandra.service"]);
    let took = t0.elapsed();
    let p = sd.props(
        "cassandra.service",
        &["ActiveState", "Result", "TimeoutStopUSec"],
    );
    assert_eq!(p["TimeoutStopUSec"], "3s", "{p:?}");
    let j: String = sd
        .journal(&["-u", "cassandra.service"])
        .lines()
        .skip(journal_before)
        .map(|l| format!("{l}\n"))
        .collect();
    let sent = sd.notifications("cassandra.service", main);
    if !agent {
        assert_eq!(p["ActiveState"], "failed", "{p:?}");
        assert_eq!(p["Result"], "timeout", "{p:?}");
        assert_in_order(
            &j,
            &[
                "Changed running -> stop-sigterm",
                "State 'stop-sigterm' timed out. Killing.",
                "Failed with result 'timeout'.",
            ],
        );
        assert!(sent.is_empty(), "notifications without the agent: {sent:?}");
        return (String::new(), took);
    }
    assert_eq!(p["ActiveState"], "inactive", "{p:?}");
    assert_eq!(p["Result"], "success", "{p:?}");
    let extended = sent
        .iter()
        .position(|n| {
            n.contains("EXTEND_TIMEOUT_USEC=")
                && n.contains("STATUS=Cassandra DRAINING (flushing memtables")
        })
        .unwrap_or_else(|| panic!("no drain extension from {main}: {sent:?}"));
    let stopping = sent
        .iter()
        .position(|n| n.starts_with("STOPPING=1"))
        .unwrap_or_else(|| panic!("no STOPPING=1 from {main}: {sent:?}"));
    assert!(extended < stopping, "{sent:?}");
    assert_in_order(
        &j,
        &[
            "Changed running -> stop-sigterm",
            "EXTEND_TIMEOUT_USEC=",
            "STOPPING=1",
            "Deactivated successfully.",
        ],
    );
    // (A check may time out while the node boots: only the stop's timeout counts.)
    assert!(!j.contains("'stop-sigterm' timed out"), "{j}");
    sd.assert_no_refused_notifications();
    (sent[extended].clone(), took)
}

/// What the container lacks for the shipped template `cassandra@.service`:
/// tests/cassandra/run.sh for /opt/cassandra/bin/cassandra (the yaml it
/// writes has instance N's address, 127.0.0.N, and data under the unit's
/// StateDirectory), a dynamic user for `cassandra`, the agent of this build.
/// Node 1 is the seed; each node streams out at 512 KiB/s
/// (`/run/slow-streaming.yaml`, written by the test), so a bootstrap of
/// some tens of MiB takes minutes.
const LAB_NODE: &str = "[Service]
ExecStart=
ExecStart=/bin/bash /opt/cqlready-src/tests/cassandra/run.sh --fast --heap 512M \
--base /var/lib/cassandra-lab/%i --address 127.0.0.%i --jmx-port 72%i9
Environment=CASSANDRA_LIB=/opt/cassandra/lib CQLREADY_CACHE=/var/lib/cassandra-lab/%i/cache
Environment=CASSANDRA_SEEDS=127.0.0.1:7000 CASSANDRA_CLUSTER_NAME=cqlready-lab
Environment=CASSANDRA_AUTO_BOOTSTRAP=true CASSANDRA_RING_DELAY_MS=15000
Environment=CASSANDRA_YAML_EXTRA=/run/slow-streaming.yaml
Environment=JVM_EXTRA_OPTS=-agentpath:/opt/cqlready/libcqlready.so
DynamicUser=yes
Restart=no
";

/// The short start timeout the joining node gets.
const JOIN_TIMEOUT: &str = "20s";

/// The MiB received and to receive in a `STATUS=... streaming R/T MiB` text.
fn streamed(text: &str) -> Option<(f64, f64)> {
    let (_, after) = text.split_once(", streaming ")?;
    let (rx, after) = after.split_once('/')?;
    let (total, _) = after.split_once(" MiB")?;
    Some((rx.parse().ok()?, total.parse().ok()?))
}

/// A monotonic timestamp property (µs) of `unit`.
fn usec(sd: &Sd, unit: &str, name: &str) -> u64 {
    let v = sd.prop(unit, name);
    v.parse().unwrap_or_else(|_| panic!("{unit} {name}={v:?}"))
}

/// Two instances of the shipped `cassandra@.service` in a container for
/// `test`, `node2` the second's drop-in (which hides the template's, so it
/// repeats [`LAB_NODE`]); node 1 started and holding ~39 MiB of flushed
/// SSTables in an RF=2 keyspace, streamed out at 512 KiB/s.
fn lab_with_data(test: &str, node2: &str) -> Sd {
    let (chome, venv) = real_setup();
    let binds = real_binds(&chome, &venv);
    let binds: Vec<(&Path, &str)> = binds
        .iter()
        .map(|(p, at)| (p.as_path(), at.as_str()))
        .collect();
    let sd = Sd::up_with(
        test,
        &[
            ("cassandra@.service", LAB_NODE),
            ("cassandra@2.service", node2),
        ],
        &binds,
    );
    sd.exec_ok(&[
        "sh",
        "-c",
        "printf 'stream_throughput_outbound: 512KiB/s\\n\
         entire_sstable_stream_throughput_outbound: 512KiB/s\\n' > /run/slow-streaming.yaml",
    ]);
    let t0 = Instant::now();
    let o = sd.systemctl(&["start", "cassandra@1.service"]);
    assert!(o.status.success(), "start cassandra@1: {}", text(&o.stderr));
    eprintln!("cassandra@1 ready after {:?}", t0.elapsed());
    let wrote = sd.exec_ok(&[
        PYTHON,
        FILL,
        "--host",
        "127.0.0.1",
        "--port",
        "9042",
        "--rows",
        FILL_ROWS,
        "--rf",
        "2",
    ]);
    let nodetool = |n: u32, args: &[&str]| {
        let port = format!("72{n}9");
        let mut cmd = vec![
            "env",
            "CASSANDRA_LIB=/opt/cassandra/lib",
            "bash",
            "/opt/cqlready-src/tests/cassandra/nodetool.sh",
            "-p",
            &port,
        ];
        cmd.extend_from_slice(args);
        sd.exec_ok(&cmd)
    };
    nodetool(1, &["flush", "cqlready_fill"]);
    let on_disk = sd.exec_ok(&[
        "sh",
        "-c",
        "du -sm /var/lib/cassandra-lab/1/data/data/cqlready_fill | cut -f1",
    ]);
    eprintln!(
        "node 1: {} ({} MiB in SSTables)",
        wrote.trim(),
        on_disk.trim()
    );
    let mib: u64 = on_disk.trim().parse().unwrap_or(0);
    assert!(mib >= 30, "{mib} MiB of SSTables on node 1");

    sd
}

/// Two instances of the shipped `cassandra@.service`: node 1 holds ~39 MiB
/// in an RF=2 keyspace (flushed), node 2 bootstraps with
/// `TimeoutStartSec=20s` while node 1 streams it all at 512 KiB/s. The unit
/// stays activating past its timeout because the agent sends
/// `EXTEND_TIMEOUT_USEC` naming the bootstrap, turns active (READY=1) only
/// once the node is NORMAL, and node 2 alone (node 1 stopped) serves the rows.
#[test]
fn real_bootstrap_outlasts_a_short_start_timeout() {
    if skip("real_bootstrap_outlasts_a_short_start_timeout") {
        return;
    }
    let sd = lab_with_data(
        "bootstrap",
        &format!("{LAB_NODE}TimeoutStartSec={JOIN_TIMEOUT}\n"),
    );
    let unit = "cassandra@2.service";
    let t0 = Instant::now();
    let mut start = sd.spawn_start(unit);
    let status = wait_for("systemctl start cassandra@2 to return", REAL, || {
        start.try_wait().expect("try_wait")
    });
    let took = t0.elapsed();
    let p = sd.props(
        unit,
        &["ActiveState", "SubState", "Result", "TimeoutStartUSec"],
    );
    eprintln!("systemctl start {unit} returned {status} after {took:?}: {p:?}");
    assert!(status.success(), "start {unit}: {p:?}");
    assert_eq!(p["TimeoutStartUSec"], JOIN_TIMEOUT, "{p:?}");
    assert_eq!(
        (p["ActiveState"].as_str(), p["Result"].as_str()),
        ("active", "success")
    );
    // systemd's own clocks: from the JVM's start to the unit turning active.
    let started = usec(&sd, unit, "ExecMainStartTimestampMonotonic");
    let active = usec(&sd, unit, "ActiveEnterTimestampMonotonic");
    let timeout = 20_000_000;
    let activating = Duration::from_micros(active - started);
    eprintln!("{unit} was activating for {activating:?} (TimeoutStartSec={JOIN_TIMEOUT})");
    assert!(
        active - started > 3 * timeout,
        "activating only {activating:?}"
    );

    let main = sd.main_pid(unit);
    let sent = sd.notifications(unit, main);
    let ready = sent
        .iter()
        .position(|n| n.starts_with("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 from {main}: {sent:?}"));
    let joining: Vec<&String> = sent[..ready]
        .iter()
        .filter(|n| {
            n.contains("EXTEND_TIMEOUT_USEC=")
                && n.contains("STATUS=Cassandra JOINING (bootstrap in progress")
        })
        .collect();
    eprintln!(
        "{} bootstrap extensions before READY=1; first {:?}, last {:?}",
        joining.len(),
        joining.first(),
        joining.last()
    );
    assert!(joining.len() >= 2, "{sent:?}");
    // The extensions name the bytes streamed of the total, from the streams' own counts.
    assert!(
        joining
            .iter()
            .any(|n| streamed(n).is_some_and(|(rx, total)| rx > 0.0 && rx <= total)),
        "no extension names bytes streamed: {joining:?}"
    );
    let j = sd.journal(&["-u", unit]);
    assert_in_order(
        &j,
        &[
            "STATUS=Cassandra JOINING (bootstrap in progress",
            "READY=1",
            "Changed start -> running",
        ],
    );
    // (The agent's own checks may time out while the node boots: only systemd's counts.)
    assert!(!j.contains("start operation timed out"), "{j}");
    let sock = "/run/cassandra-lab/2/cqlready.sock";
    let st = sd.exec_ok(&[
        "/opt/cqlready/cqlready",
        "status",
        "--json",
        "--socket",
        sock,
    ]);
    let st: Value = serde_json::from_str(&st).expect("status json");
    assert_eq!(st["state"], "ready", "{st}");
    assert!(st.to_string().contains("\"mode\":\"NORMAL\""), "{st}");

    // Node 2 serves the rows by itself.
    let o = sd.systemctl(&["stop", "cassandra@1.service"]);
    assert!(o.status.success(), "stop cassandra@1: {}", text(&o.stderr));
    let checked = sd.exec_ok(&[
        PYTHON,
        FILL,
        "--host",
        "127.0.0.2",
        "--port",
        "9042",
        "--rows",
        FILL_ROWS,
        "--check",
    ]);
    eprintln!("node 2 alone: {}", checked.trim());
    assert!(checked.contains(": ok"), "{checked}");
    sd.assert_no_refused_notifications();
}

/// The same two instances, and the bootstrap stalls: once node 2's
/// `STATUS=` names bytes streamed, node 1 (its only source) is frozen with
/// SIGSTOP. Node 2's agent (`extend=20s`: longer than the 15 s ring delay,
/// in which nothing the agent sees moves) stops extending once nothing
/// moves, and systemd ends the start within `extend` of the last movement
/// (`Result=timeout`) instead of waiting for ever. (Cassandra does not end
/// on SIGTERM while its bootstrap waits on a frozen peer, so the unit gets
/// `TimeoutStopSec=10s` and is killed then.)
#[test]
fn real_stalled_bootstrap_times_out() {
    if skip("real_stalled_bootstrap_times_out") {
        return;
    }
    let sd = lab_with_data(
        "stall",
        &format!(
            "{LAB_NODE}TimeoutStartSec={JOIN_TIMEOUT}\nTimeoutStopSec=10s\n\
             Environment=JVM_EXTRA_OPTS=-agentpath:/opt/cqlready/libcqlready.so=extend=20s\n"
        ),
    );
    let unit = "cassandra@2.service";
    let mut start = sd.spawn_start(unit);
    let streaming = wait_for("node 2 to name bytes streamed", REAL, || {
        if let Some(status) = start.try_wait().expect("try_wait") {
            panic!("systemctl start {unit} returned {status} before streaming began");
        }
        let j = sd.journal(&["-u", unit]);
        let line = j.lines().find(|l| {
            l.contains("EXTEND_TIMEOUT_USEC=") && streamed(l).is_some_and(|(rx, _)| rx > 0.0)
        });
        line.map(str::to_string)
    });
    let source = sd.main_pid("cassandra@1.service");
    sd.exec_ok(&["kill", "-STOP", &source.to_string()]);
    let frozen = Instant::now();
    eprintln!("froze node 1 ({source}) once node 2 said: {streaming}");
    let status = wait_for("systemctl start cassandra@2 to return", REAL, || {
        start.try_wait().expect("try_wait")
    });
    eprintln!(
        "systemctl start {unit} returned {status} {:?} after the freeze",
        frozen.elapsed()
    );
    sd.exec_ok(&["kill", "-CONT", &source.to_string()]);
    let p = sd.props(unit, &["Result", "ActiveState"]);
    assert!(!status.success(), "a stalled bootstrap became ready: {p:?}");
    assert_eq!(p["Result"], "timeout", "{p:?}");
    let j = sd.journal(&["-u", unit]);
    assert!(j.contains("start operation timed out"), "{j}");
    assert!(!j.contains("READY=1"), "{j}");
    // Extensions were sent while the bytes moved, and then no more.
    let extensions: Vec<&str> = j
        .lines()
        .filter(|l| l.contains("Got notification message") && l.contains("EXTEND_TIMEOUT_USEC="))
        .collect();
    eprintln!(
        "{} extensions; last {:?}",
        extensions.len(),
        extensions.last()
    );
    assert!(!extensions.is_empty(), "{j}");
    assert_in_order(
        &j,
        &[
            "STATUS=Cassandra JOINING (bootstrap in progress, streaming ",
            "start operation timed out",
        ],
    );
    sd.assert_no_refused_notifications();
}
