//! The agent in real JVMs: every test runs once per available JVM (`java` on
//! PATH, Temurin 25 when installed, `$CQLREADY_EXTRA_JVMS`), with the Java
//! fixture standing in for Cassandra and a fake service manager listening on
//! `$NOTIFY_SOCKET`.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

const VALID_KEYS: [&str; 8] = [
    "port", "host", "interval", "check", "timeout", "failures", "socket", "log",
];

/// Runs `f` on every JVM, all of them even when one fails, then fails with
/// the list of JVMs that failed (each panic message is printed as it happens).
fn for_each_jvm(mut f: impl FnMut(&Path)) {
    let mut failed = Vec::new();
    for java in jvms() {
        eprintln!("=== {}", java.display());
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&java))).is_err() {
            failed.push(java.display().to_string());
        }
    }
    assert!(failed.is_empty(), "failed on: {}", failed.join(", "));
}

fn my_uid_gid() -> (u32, u32) {
    let m = fs::metadata("/proc/self").expect("stat /proc/self");
    (m.uid(), m.gid())
}

fn is_ready_msg(jvm: &Jvm) -> impl Fn(&Msg) -> bool {
    let pid = jvm.pid as i32;
    move |m: &Msg| m.pid == pid && m.has_line("READY=1")
}

fn wait_ready_msg(n: &NotifySocket, jvm: &Jvm) -> Msg {
    n.wait_msg("READY=1 from the JVM", deadline(), is_ready_msg(jvm))
}

fn wait_state(jvm: &Jvm, state: &str) -> Value {
    jvm.wait_status(&format!("state {state}"), deadline(), |s| {
        s["state"] == state
    })
}

/// Every datagram the fake service manager got came from the JVM's own pid.
fn assert_all_from(n: &NotifySocket, jvm: &Jvm) {
    let msgs = n.messages();
    assert!(
        msgs.iter().all(|m| m.pid == jvm.pid as i32),
        "a notify message did not come from the JVM (pid {}):\n{}",
        jvm.pid,
        describe_msgs(&msgs)
    );
}

fn assert_no_panic(jvm: &Jvm) {
    let lines = jvm.stderr_lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("panicked") || l.contains("SIGSEGV") || l.contains("hs_err_pid")),
        "the agent or JVM crashed:\n{}",
        jvm.describe()
    );
}

fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64
}

fn num(v: &Value, ptr: &str) -> f64 {
    v.pointer(ptr)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{ptr} is not a number in {v}"))
}

fn null_or(v: &Value, ptr: &str, ok: impl Fn(&Value) -> bool) {
    let x = v
        .pointer(ptr)
        .unwrap_or_else(|| panic!("{ptr} missing in {v}"));
    assert!(x.is_null() || ok(x), "{ptr} has an unexpected value in {v}");
}

/// /status has every field of the spec, with the right types.
fn check_status_shape(s: &Value) {
    assert_eq!(json_str(s, "/version"), env!("CARGO_PKG_VERSION"), "{s}");
    json_u64(s, "/pid");
    let state = json_str(s, "/state");
    assert!(
        ["starting", "ready", "degraded", "stopping"].contains(&state),
        "{s}"
    );
    let now = unix_ms_now();
    let started = num(s, "/started_unix_ms");
    let since = num(s, "/state_since_unix_ms");
    assert!(
        started > now - 600_000.0 && started <= now + 1000.0,
        "started_unix_ms is not a recent unix time in ms: {s}"
    );
    assert!(
        since >= started && since <= now + 1000.0,
        "state_since_unix_ms out of range: {s}"
    );
    json_str(s, "/cql/host");
    json_u64(s, "/cql/port");
    assert!(
        ["option", "property", "yaml", "default"].contains(&json_str(s, "/cql/source")),
        "{s}"
    );
    assert!(
        ["option", "yaml", "default"].contains(&json_str(s, "/cql/host_source")),
        "{s}"
    );
    null_or(s, "/cql/protocol_version", Value::is_u64);
    null_or(s, "/time_to_ready_ms", Value::is_number);
    null_or(s, "/last_check", |c| {
        c["ok"].is_boolean()
            && c["latency_ms"].is_number()
            && (c["error"].is_null() || c["error"].is_string())
            && c["at_unix_ms"].is_number()
    });
    let total = json_u64(s, "/checks/total");
    let ok = json_u64(s, "/checks/ok");
    let failed = json_u64(s, "/checks/failed");
    json_u64(s, "/checks/consecutive_failures");
    assert_eq!(ok + failed, total, "checks do not add up: {s}");
    null_or(s, "/notify/socket", Value::is_string);
    assert!(
        s.pointer("/notify/ready_sent")
            .is_some_and(Value::is_boolean),
        "{s}"
    );
    assert!(
        s.pointer("/notify/stopping_sent")
            .is_some_and(Value::is_boolean),
        "{s}"
    );
    null_or(s, "/notify/watchdog_usec", Value::is_u64);
    json_u64(s, "/notify/watchdog_pings");
    null_or(s, "/notify/last_status", Value::is_string);
    json_u64(s, "/notify/errors");
    json_str(s, "/socket");
}

// ---------------------------------------------------------------------------
// The fixture on its own (no agent): it must speak CQL correctly for the
// agent's tests to mean anything.

fn cql_frame(version: u8, stream: u16, opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![version, 0];
    f.extend_from_slice(&stream.to_be_bytes());
    f.push(opcode);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

struct Frame {
    version: u8,
    stream: u16,
    opcode: u8,
    body: Vec<u8>,
}

fn read_frame(s: &mut TcpStream) -> io::Result<Frame> {
    let mut h = [0u8; 9];
    s.read_exact(&mut h)?;
    let len = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Frame {
        version: h[0],
        stream: u16::from_be_bytes([h[2], h[3]]),
        opcode: h[4],
        body,
    })
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn short(&mut self) -> usize {
        let v = u16::from_be_bytes([self.0[0], self.0[1]]) as usize;
        self.0 = &self.0[2..];
        v
    }
    fn int(&mut self) -> i32 {
        let v = i32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        self.0 = &self.0[4..];
        v
    }
    fn string(&mut self) -> String {
        let n = self.short();
        let s = String::from_utf8(self.0[..n].to_vec()).unwrap();
        self.0 = &self.0[n..];
        s
    }
    fn multimap(&mut self) -> Vec<(String, Vec<String>)> {
        (0..self.short())
            .map(|_| {
                let k = self.string();
                let n = self.short();
                (k, (0..n).map(|_| self.string()).collect())
            })
            .collect()
    }
}

fn expect_eof(s: &mut TcpStream) {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the fixture to close the connection, got {other:?}"),
    }
}

fn supported(versions: &[&str]) -> Vec<(String, Vec<String>)> {
    vec![
        ("CQL_VERSION".into(), vec!["3.4.7".into()]),
        ("COMPRESSION".into(), vec![]),
        (
            "PROTOCOL_VERSIONS".into(),
            versions.iter().map(|s| s.to_string()).collect(),
        ),
    ]
}

#[test]
fn fixture_speaks_cql() {
    for_each_jvm(|java| {
        let mut f = Jvm::builder(java).no_agent().spawn();
        assert_eq!(
            f.fixture_pid(),
            f.pid,
            "the fixture's pid is the spawned process"
        );

        // cql: OPTIONS at v5 and v4 on one connection, then an unsupported v6.
        let port = free_port();
        f.listen(port, "cql");
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        for (version, stream) in [(5u8, 7u16), (4, 300), (3, 0)] {
            s.write_all(&cql_frame(version, stream, 0x05, &[])).unwrap();
            let r = read_frame(&mut s).unwrap();
            assert_eq!(
                (r.version, r.stream, r.opcode),
                (0x80 | version, stream, 0x06)
            );
            assert_eq!(
                Cursor(&r.body).multimap(),
                supported(&["3/v3", "4/v4", "5/v5"])
            );
        }
        s.write_all(&cql_frame(6, 9, 0x05, &[])).unwrap();
        let r = read_frame(&mut s).unwrap();
        assert_eq!((r.version, r.stream, r.opcode), (0x85, 9, 0x00));
        expect_eof(&mut s);

        // cql4: v5 is refused the way Cassandra 4.0 without v5 does it.
        let port4 = free_port();
        f.listen(port4, "cql4");
        let mut s = TcpStream::connect(("127.0.0.1", port4)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&cql_frame(5, 0x1234, 0x05, &[])).unwrap();
        let r = read_frame(&mut s).unwrap();
        assert_eq!((r.version, r.stream, r.opcode), (0x84, 0x1234, 0x00));
        let mut c = Cursor(&r.body);
        assert_eq!(c.int(), 0x000A);
        assert_eq!(
            c.string(),
            "Invalid or unsupported protocol version (5); supported versions are (3/v3, 4/v4)"
        );
        expect_eof(&mut s);
        let mut s = TcpStream::connect(("127.0.0.1", port4)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&cql_frame(4, 1, 0x05, &[])).unwrap();
        let r = read_frame(&mut s).unwrap();
        assert_eq!((r.version, r.stream, r.opcode), (0x84, 1, 0x06));
        assert_eq!(Cursor(&r.body).multimap(), supported(&["3/v3", "4/v4"]));
        drop(s);

        // garbage, closer, silent.
        let pg = free_port();
        f.listen(pg, "garbage");
        let mut s = TcpStream::connect(("127.0.0.1", pg)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert_eq!(got, b"HTTP/1.1 400 Bad Request\r\n\r\n");

        let pc = free_port();
        f.listen(pc, "closer");
        let mut s = TcpStream::connect(("127.0.0.1", pc)).unwrap();
        expect_eof(&mut s);

        let ps = free_port();
        f.listen(ps, "silent");
        let mut silent = TcpStream::connect(("127.0.0.1", ps)).unwrap();
        silent.write_all(&cql_frame(5, 0, 0x05, &[])).unwrap();
        let (accepted, requests, versions) = f.stats();
        assert!(accepted >= 5, "accepted {accepted}");
        assert_eq!(requests, 6);
        assert_eq!(versions, vec![5, 4, 3, 6, 5, 4]);

        // close: listeners and held connections go away.
        f.close_listeners();
        expect_eof(&mut silent);
        for p in [port, port4, pg, pc, ps] {
            if let Ok(c) = TcpStream::connect(("127.0.0.1", p)) {
                let sockets = Command::new("ss")
                    .arg("-tanp")
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                panic!(
                    "port {p} still listening after close: {:?} -> {:?}\n{sockets}",
                    c.local_addr(),
                    c.peer_addr(),
                );
            }
        }
        // The port can be listened on again at once.
        f.listen(port, "cql");

        let status = f.exit(3);
        assert_eq!(status.code(), Some(3));

        // EOF on stdin: exit 0.
        let mut f = Jvm::builder(java).no_agent().spawn();
        f.close_stdin();
        assert_eq!(f.wait_exit(deadline()).code(), Some(0));
    });
}

// ---------------------------------------------------------------------------
// Readiness

#[test]
fn ready_only_once_cql_answers_and_from_the_jvm_pid() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .spawn();
        assert_eq!(jvm.fixture_pid(), jvm.pid);

        let waiting_line = format!("STATUS=Waiting for CQL on 127.0.0.1:{port}");
        let waiting = n.wait_msg(&waiting_line, deadline(), |m| m.has_line(&waiting_line));
        let s = jvm.wait_status("2 failed checks", deadline(), |s| {
            s.pointer("/checks/failed").and_then(Value::as_u64) >= Some(2)
        });
        check_status_shape(&s);
        assert_eq!(json_str(&s, "/state"), "starting", "{s}");
        assert_eq!(s["time_to_ready_ms"], Value::Null, "{s}");
        assert_eq!(
            n.count(|m| m.has_line("READY=1")),
            0,
            "READY=1 before anything listened:\n{}",
            n.describe()
        );
        let r = http_get(jvm.socket(), "/ready").unwrap();
        assert_eq!((r.status, r.body.trim()), (503, "starting"));

        let ack = jvm.listen(port, "cql");
        let ready = wait_ready_msg(&n, &jvm);
        assert!(
            ready.at > ack,
            "READY=1 arrived before the fixture acknowledged `listen`"
        );
        assert!(waiting.at < ready.at);
        assert_eq!(ready.pid, jvm.pid as i32);
        assert_eq!((ready.uid, ready.gid), my_uid_gid());

        // The snapshot may lag the datagram a little: wait for both.
        let s = jvm.wait_status("state ready and ready_sent", deadline(), |s| {
            s["state"] == "ready" && s["notify"]["ready_sent"] == true
        });
        check_status_shape(&s);
        assert_eq!(json_u64(&s, "/pid"), jvm.pid as u64);
        assert_eq!(json_str(&s, "/cql/host"), "127.0.0.1");
        assert_eq!(json_u64(&s, "/cql/port"), port as u64);
        assert_eq!(json_str(&s, "/cql/source"), "option");
        assert_eq!(json_str(&s, "/cql/host_source"), "default");
        assert_eq!(json_u64(&s, "/cql/protocol_version"), 5);
        assert!(num(&s, "/time_to_ready_ms") > 0.0, "{s}");
        assert_eq!(s["last_check"]["ok"], true, "{s}");
        assert_eq!(s["last_check"]["error"], Value::Null, "{s}");
        assert!(json_u64(&s, "/checks/ok") >= 1);
        assert_eq!(json_u64(&s, "/checks/consecutive_failures"), 0);
        assert_eq!(s["notify"]["ready_sent"], true, "{s}");
        assert_eq!(s["notify"]["stopping_sent"], false, "{s}");
        assert_eq!(json_str(&s, "/notify/socket"), n.addr);
        assert_eq!(s["notify"]["watchdog_usec"], Value::Null, "{s}");
        let last_status = json_str(&s, "/notify/last_status");
        assert!(
            ready.has_line(&format!("STATUS={last_status}")),
            "last_status {last_status:?} vs {:?}",
            ready.text
        );
        assert_eq!(Path::new(json_str(&s, "/socket")), jvm.socket());
        let r = http_get(jvm.socket(), "/ready").unwrap();
        assert_eq!((r.status, r.body.trim()), (200, "ready"));

        assert_all_from(&n, &jvm);
        assert_no_panic(&jvm);
        // The spec's wording, last so that everything above is checked anyway.
        assert!(
            ready.has_line_starting(&format!("STATUS=CQL ready on 127.0.0.1:{port} after ")),
            "READY message does not follow the spec's `STATUS=CQL ready on H:P after N s`: {:?}",
            ready.text
        );
    });
}

#[test]
fn port_from_property_and_default() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .opt("interval=20ms")
            .arg(format!("-Dcassandra.native_transport_port={port}"))
            .spawn();
        let waiting = format!("STATUS=Waiting for CQL on 127.0.0.1:{port}");
        n.wait_msg(&waiting, deadline(), |m| m.has_line(&waiting));
        let s = jvm.wait_status("an answer", deadline(), |_| true);
        check_status_shape(&s);
        assert_eq!(json_u64(&s, "/cql/port"), port as u64, "{s}");
        assert_eq!(json_str(&s, "/cql/source"), "property", "{s}");
        assert_eq!(json_str(&s, "/cql/host"), "127.0.0.1", "{s}");
        assert_eq!(json_str(&s, "/cql/host_source"), "default", "{s}");
        jvm.listen(port, "cql");
        wait_ready_msg(&n, &jvm);
        drop(jvm);

        // Nothing given: 9042.
        let n = NotifySocket::new();
        let jvm = Jvm::builder(java).notify(&n).spawn();
        let waiting = "STATUS=Waiting for CQL on 127.0.0.1:9042";
        n.wait_msg(waiting, deadline(), |m| m.has_line(waiting));
        let s = jvm.wait_status("an answer", deadline(), |_| true);
        assert_eq!(json_u64(&s, "/cql/port"), 9042, "{s}");
        assert_eq!(json_str(&s, "/cql/source"), "default", "{s}");
        assert_eq!(json_str(&s, "/cql/host_source"), "default", "{s}");
        assert_no_panic(&jvm);
    });
}

fn cassandra_yaml(port: u16, rpc_address: &str) -> String {
    format!(
        "# a trimmed cassandra.yaml\n\
         cluster_name: 'Test Cluster'\n\
         num_tokens: 16\n\
         listen_address: localhost\n\
         native_transport_port: {port}\n\
         rpc_address: {rpc_address}\n\
         seed_provider:\n  - class_name: org.apache.cassandra.locator.SimpleSeedProvider\n    parameters:\n      - seeds: \"127.0.0.1:7000\"\n\
         commitlog_sync: periodic\n"
    )
}

#[test]
fn port_and_host_from_yaml() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let port = free_port();
        let b = Jvm::builder(java);
        let yaml = b.tmp().join("cassandra.yaml");
        fs::write(&yaml, cassandra_yaml(port, "127.0.0.1")).unwrap();
        let mut jvm = b
            .notify(&n)
            .opt("interval=20ms")
            .arg(format!("-Dcassandra.config=file://{}", yaml.display()))
            .spawn();
        let waiting = format!("STATUS=Waiting for CQL on 127.0.0.1:{port}");
        n.wait_msg(&waiting, deadline(), |m| m.has_line(&waiting));
        let s = jvm.wait_status("an answer", deadline(), |_| true);
        check_status_shape(&s);
        assert_eq!(json_u64(&s, "/cql/port"), port as u64, "{s}");
        assert_eq!(json_str(&s, "/cql/source"), "yaml", "{s}");
        assert_eq!(json_str(&s, "/cql/host"), "127.0.0.1", "{s}");
        assert_eq!(json_str(&s, "/cql/host_source"), "yaml", "{s}");
        jvm.listen(port, "cql");
        wait_ready_msg(&n, &jvm);
        drop(jvm);

        // The property wins over the yaml; a wildcard rpc_address is not a host.
        let n = NotifySocket::new();
        let yaml_port = free_port();
        let prop_port = free_port();
        let b = Jvm::builder(java);
        let yaml = b.tmp().join("cassandra.yaml");
        fs::write(&yaml, cassandra_yaml(yaml_port, "0.0.0.0")).unwrap();
        let jvm = b
            .notify(&n)
            .arg(format!("-Dcassandra.config=file://{}", yaml.display()))
            .arg(format!("-Dcassandra.native_transport_port={prop_port}"))
            .spawn();
        let s = jvm.wait_status("an answer", deadline(), |_| true);
        assert_eq!(json_u64(&s, "/cql/port"), prop_port as u64, "{s}");
        assert_eq!(json_str(&s, "/cql/source"), "property", "{s}");
        assert_eq!(json_str(&s, "/cql/host"), "127.0.0.1", "{s}");
        assert_eq!(json_str(&s, "/cql/host_source"), "default", "{s}");
        assert_no_panic(&jvm);
    });
}

#[test]
fn non_cql_listeners_never_make_it_ready() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .opt("timeout=200ms")
            .spawn();
        jvm.wait_status("an answer", deadline(), |_| true);
        for mode in ["garbage", "silent", "closer"] {
            let (accepted_before, _, _) = jvm.stats();
            jvm.listen(port, mode);
            let base = json_u64(&jvm.status(), "/checks/failed");
            let s = jvm.wait_status(
                &format!("5 failed checks against {mode}"),
                deadline(),
                |s| s.pointer("/checks/failed").and_then(Value::as_u64) >= Some(base + 5),
            );
            check_status_shape(&s);
            assert_eq!(json_str(&s, "/state"), "starting", "{mode}: {s}");
            assert_eq!(s["last_check"]["ok"], false, "{mode}: {s}");
            assert!(s["last_check"]["error"].is_string(), "{mode}: {s}");
            let (accepted, _, _) = jvm.stats();
            assert!(
                accepted > accepted_before,
                "the agent never connected to the {mode} listener"
            );
            jvm.close_listeners();
            assert_eq!(
                n.count(|m| m.has_line("READY=1")),
                0,
                "READY=1 with a {mode} listener:\n{}",
                n.describe()
            );
        }
        let s = jvm.status();
        assert_eq!(s["notify"]["ready_sent"], false, "{s}");
        assert_eq!(s["time_to_ready_ms"], Value::Null, "{s}");

        // The same agent does get ready once CQL answers.
        jvm.listen(port, "cql");
        wait_ready_msg(&n, &jvm);
        assert_all_from(&n, &jvm);
        assert_no_panic(&jvm);
    });
}

#[test]
fn negotiates_down_to_protocol_v4() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .spawn();
        jvm.listen(port, "cql4");
        wait_ready_msg(&n, &jvm);
        let s = wait_state(&jvm, "ready");
        assert_eq!(json_u64(&s, "/cql/protocol_version"), 4, "{s}");
        let (_, _, versions) = jvm.stats();
        assert!(
            versions.contains(&4),
            "the fixture never saw a v4 request: {versions:?}"
        );
        assert_no_panic(&jvm);
    });
}

// ---------------------------------------------------------------------------
// After ready

#[test]
fn degraded_and_back() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .opt("check=50ms")
            .opt("failures=2")
            .spawn();
        jvm.listen(port, "cql");
        let ready = wait_ready_msg(&n, &jvm);
        let s = wait_state(&jvm, "ready");
        let ready_since = num(&s, "/state_since_unix_ms");

        jvm.close_listeners();
        let s = wait_state(&jvm, "degraded");
        check_status_shape(&s);
        assert!(num(&s, "/state_since_unix_ms") >= ready_since, "{s}");
        assert!(json_u64(&s, "/checks/consecutive_failures") >= 2, "{s}");
        assert_eq!(s["last_check"]["ok"], false, "{s}");
        let prefix = format!("STATUS=CQL on 127.0.0.1:{port} not answering since ");
        let degraded = n.wait_msg("STATUS=... not answering", deadline(), |m| {
            m.has_line_starting(&prefix)
        });
        assert!(degraded.at > ready.at);
        assert!(!degraded.has_line("READY=1"));
        let r = http_get(jvm.socket(), "/ready").unwrap();
        assert_eq!((r.status, r.body.trim()), (503, "degraded"));

        jvm.listen(port, "cql");
        let s = wait_state(&jvm, "ready");
        check_status_shape(&s);
        let again = n.wait_msg("STATUS=... again", deadline(), |m| {
            m.at > degraded.at
                && m.text
                    .lines()
                    .any(|l| l.starts_with("STATUS=") && l.contains("again"))
        });
        assert!(!again.has_line("READY=1"));
        assert_eq!(
            n.count(|m| m.has_line("READY=1")),
            1,
            "READY=1 must be sent once:\n{}",
            n.describe()
        );
        assert_eq!(s["notify"]["ready_sent"], true, "{s}");
        assert_all_from(&n, &jvm);
        assert_no_panic(&jvm);
        // The spec's wording, last so that everything above is checked anyway.
        let again_prefix = format!("STATUS=CQL ready on 127.0.0.1:{port} again");
        assert!(
            again.has_line_starting(&again_prefix),
            "the recovery STATUS does not follow the spec's `{again_prefix} ...`: {:?}",
            again.text
        );
    });
}

#[test]
fn watchdog_only_while_ready() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .env("WATCHDOG_USEC", "200000")
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .opt("check=50ms")
            .opt("failures=2")
            .spawn();
        // Several probe periods while starting: no WATCHDOG=1 yet.
        jvm.wait_status("3 failed checks", deadline(), |s| {
            s.pointer("/checks/failed").and_then(Value::as_u64) >= Some(3)
        });
        let is_ping = |m: &Msg| m.has_line("WATCHDOG=1");
        assert_eq!(
            n.count(is_ping),
            0,
            "WATCHDOG=1 before ready:\n{}",
            n.describe()
        );

        jvm.listen(port, "cql");
        let ready = wait_ready_msg(&n, &jvm);
        let msgs = n.wait_for("3 WATCHDOG=1", deadline(), |ms| {
            ms.iter().filter(|m| is_ping(m)).count() >= 3
        });
        assert!(msgs
            .iter()
            .filter(|m| is_ping(m))
            .all(|m| m.at >= ready.at && m.pid == jvm.pid as i32));
        let s = jvm.wait_status("3 pings counted", deadline(), |s| {
            s.pointer("/notify/watchdog_pings").and_then(Value::as_u64) >= Some(3)
        });
        assert_eq!(json_u64(&s, "/notify/watchdog_usec"), 200_000, "{s}");

        jvm.close_listeners();
        wait_state(&jvm, "degraded");
        // Let any ping already sent arrive, then measure a window of at least
        // 15 probe periods (>= 300 ms = 3 watchdog periods).
        jvm.wait_more_checks(3);
        let pings = n.count(is_ping);
        jvm.wait_more_checks(15);
        assert_eq!(
            n.count(is_ping),
            pings,
            "WATCHDOG=1 while degraded:\n{}",
            n.describe()
        );
        assert_eq!(json_str(&jvm.status(), "/state"), "degraded");
        assert_all_from(&n, &jvm);
        drop(jvm);

        // WATCHDOG_PID names another process: no pings at all.
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .env("WATCHDOG_USEC", "200000")
            .env("WATCHDOG_PID", std::process::id().to_string())
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .opt("check=50ms")
            .spawn();
        jvm.listen(port, "cql");
        wait_ready_msg(&n, &jvm);
        wait_state(&jvm, "ready");
        // >= 10 checks at 50 ms: 500 ms, 5 watchdog periods.
        let s = jvm.wait_more_checks(10);
        assert_eq!(
            n.count(is_ping),
            0,
            "WATCHDOG=1 although WATCHDOG_PID is another process:\n{}",
            n.describe()
        );
        assert_eq!(json_u64(&s, "/notify/watchdog_pings"), 0, "{s}");
        assert_no_panic(&jvm);
    });
}

#[test]
fn stopping_and_exit_code_untouched() {
    for_each_jvm(|java| {
        for how in ["exit 0", "exit 3", "SIGTERM"] {
            let n = NotifySocket::new();
            let port = free_port();
            let mut jvm = Jvm::builder(java)
                .notify(&n)
                .opt(format!("port={port}"))
                .opt("interval=20ms")
                .spawn();
            jvm.listen(port, "cql");
            let ready = wait_ready_msg(&n, &jvm);
            wait_state(&jvm, "ready");
            let sock = jvm.socket().to_path_buf();
            assert!(sock.exists());
            let status = match how {
                "exit 0" => jvm.exit(0),
                "exit 3" => jvm.exit(3),
                _ => {
                    let ok = Command::new("kill")
                        .args(["-TERM", &jvm.pid.to_string()])
                        .status()
                        .unwrap();
                    assert!(ok.success());
                    jvm.wait_exit(deadline())
                }
            };
            let expected = match how {
                "exit 0" => 0,
                "exit 3" => 3,
                _ => 143,
            };
            assert_eq!(
                status.code(),
                Some(expected),
                "{how}: exit status {status:?}\n{}",
                jvm.describe()
            );
            let stopping = n.wait_msg("STOPPING=1", deadline(), |m| m.has_line("STOPPING=1"));
            assert_eq!(stopping.pid, jvm.pid as i32);
            assert!(stopping.at > ready.at);
            assert!(
                stopping.has_line_starting("STATUS="),
                "STOPPING message: {:?}",
                stopping.text
            );
            assert!(
                fs::symlink_metadata(&sock).is_err(),
                "{how}: the status socket {} is still there",
                sock.display()
            );
            assert_eq!(n.count(|m| m.has_line("STOPPING=1")), 1, "{}", n.describe());
            assert_all_from(&n, &jvm);
            assert_no_panic(&jvm);
        }
    });
}

#[test]
fn bad_options_stop_the_jvm() {
    for_each_jvm(|java| {
        for (opts, key, value) in [
            ("port=abc", "port", "abc"),
            ("bogus=1", "bogus", "bogus"),
            ("interval=5parsecs", "interval", "5parsecs"),
            ("log=loud", "log", "loud"),
        ] {
            let mut jvm = Jvm::builder(java).raw_opts(opts).spawn();
            let status = jvm.wait_exit(deadline());
            assert!(
                !status.success(),
                "{opts}: the JVM started\n{}",
                jvm.describe()
            );
            let lines = jvm.stderr_lines();
            let line = lines
                .iter()
                .find(|l| l.starts_with("cqlready") && l.contains(key) && l.contains(value))
                .unwrap_or_else(|| {
                    panic!(
                        "{opts}: no stderr line names {key}/{value}\n{}",
                        jvm.describe()
                    )
                });
            if key == "bogus" {
                // An unknown key: the line lists the valid ones.
                for valid in VALID_KEYS {
                    assert!(
                        line.contains(valid),
                        "{opts}: the error line does not list the valid key {valid}: {line}"
                    );
                }
            }
            assert_no_panic(&jvm);
        }
    });
}

// ---------------------------------------------------------------------------
// Notify socket variants

#[test]
fn runs_without_a_usable_notify_socket() {
    for_each_jvm(|java| {
        for notify in [None, Some("missing/notify.sock")] {
            let port = free_port();
            let mut b = Jvm::builder(java)
                .opt(format!("port={port}"))
                .opt("interval=20ms");
            if let Some(rel) = notify {
                let path = b.tmp().join(rel);
                b = b
                    .env("NOTIFY_SOCKET", path.to_str().unwrap())
                    .opt("log=off");
            }
            let mut jvm = b.spawn();
            jvm.listen(port, "cql");
            let s = wait_state(&jvm, "ready");
            check_status_shape(&s);
            if notify.is_some() {
                jvm.wait_status("failed sends counted in notify.errors", deadline(), |s| {
                    s.pointer("/notify/errors").and_then(Value::as_u64) >= Some(1)
                });
            }
            assert_eq!(jvm.exit(0).code(), Some(0), "{}", jvm.describe());
            assert_no_panic(&jvm);
            let ours: Vec<_> = jvm
                .stderr_lines()
                .into_iter()
                .filter(|l| l.starts_with("cqlready"))
                .collect();
            if notify.is_none() {
                assert_eq!(s["notify"]["socket"], Value::Null, "{s}");
                let about: Vec<_> = ours
                    .iter()
                    .filter(|l| l.contains("NOTIFY_SOCKET"))
                    .collect();
                assert!(
                    about.len() == 1 && about[0].starts_with("cqlready: info: "),
                    "no NOTIFY_SOCKET: expected one info line about it, got {ours:?}"
                );
            } else {
                assert!(ours.is_empty(), "log=off still logs: {ours:?}");
            }
        }
    });
}

#[test]
fn abstract_notify_socket() {
    for_each_jvm(|java| {
        let n = NotifySocket::new_abstract();
        let port = free_port();
        // Also: every duration unit, the other options, and log=warn.
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .opt(format!("port={port}"))
            .opt("host=127.0.0.1")
            .opt("interval=1500us")
            .opt("check=1m")
            .opt("timeout=2s")
            .opt("failures=5")
            .opt("log=warn")
            .spawn();
        jvm.listen(port, "cql");
        let ready = wait_ready_msg(&n, &jvm);
        assert_eq!(ready.pid, jvm.pid as i32);
        assert!(ready.has_line_starting("STATUS="), "{:?}", ready.text);
        let s = wait_state(&jvm, "ready");
        assert_eq!(json_str(&s, "/notify/socket"), n.addr);
        assert_eq!(json_str(&s, "/cql/host"), "127.0.0.1", "{s}");
        assert_eq!(json_str(&s, "/cql/host_source"), "option", "{s}");
        assert_eq!(json_str(&s, "/cql/source"), "option", "{s}");
        assert_eq!(jvm.exit(0).code(), Some(0));
        let chatty: Vec<_> = jvm
            .stderr_lines()
            .into_iter()
            .filter(|l| l.starts_with("cqlready: info:"))
            .collect();
        assert!(chatty.is_empty(), "log=warn still logs at info: {chatty:?}");
        n.wait_msg("STOPPING=1", deadline(), |m| m.has_line("STOPPING=1"));
        assert_all_from(&n, &jvm);
        assert_no_panic(&jvm);
    });
}

// ---------------------------------------------------------------------------
// The status socket's HTTP

fn assert_live(sock: &Path) {
    let last = std::cell::RefCell::new(String::new());
    poll(
        "/live to answer 200",
        deadline(),
        || match http_raw_timeout(
            sock,
            b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .and_then(|raw| parse_response(&raw))
        {
            Ok(r) if r.status == 200 => Some(()),
            other => {
                *last.borrow_mut() = format!("{other:?}");
                None
            }
        },
        || last.borrow().clone(),
    );
}

fn sample_lines(text: &str, name: &str) -> usize {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(name))
        .count()
}

fn thread_nices(pid: u32) -> Vec<(String, i64)> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| {
            let comm = fs::read_to_string(t.path().join("comm")).ok()?;
            let stat = fs::read_to_string(t.path().join("stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 2..];
            Some((
                comm.trim().to_string(),
                after.split(' ').nth(16)?.parse().ok()?,
            ))
        })
        .collect()
}

/// The status thread (answering requests from outside) runs 10 nice steps
/// below the JVM; the monitor and the JVM's own threads keep its priority.
/// Connections get no thread of their own.
#[test]
fn status_threads_run_below_the_jvm() {
    let java = &jvms()[0];
    let jvm = Jvm::builder(java)
        .opt(format!("port={}", free_port()))
        .spawn();
    let sock = jvm.socket().to_path_buf();
    jvm.wait_status("an answer", deadline(), |_| true);
    // Hold a long-poll: it is served by the status thread, not one of its own.
    let mut held = UnixStream::connect(&sock).unwrap();
    held.write_all(b"GET /ready?wait=5s HTTP/1.1\r\n\r\n")
        .unwrap();
    // The status socket answers before the monitor thread is made: wait
    // for both threads, or a loaded machine sees only the first.
    let seen = poll(
        "the status thread and the monitor thread",
        deadline(),
        || {
            let n = thread_nices(jvm.pid);
            let has = |name: &str| n.iter().any(|(c, _)| c == name);
            (has("cqlready-status") && has("cqlready")).then_some(n)
        },
        || jvm.describe(),
    );
    let main = seen
        .iter()
        .find(|(c, _)| c == "java")
        .expect("main thread")
        .1;
    for (comm, nice) in &seen {
        let want = if comm.starts_with("cqlready-") {
            (main + 10).min(19)
        } else {
            main
        };
        assert_eq!(*nice, want, "{comm}: {seen:?}");
    }
    let ours: Vec<&str> = seen
        .iter()
        .map(|(c, _)| c.as_str())
        .filter(|c| c.starts_with("cqlready"))
        .collect();
    assert_eq!(ours.len(), 2, "the monitor and the status thread: {ours:?}");
}

/// Reads a connection's whole answer (the server closes after it).
fn answer_of(mut c: UnixStream) -> String {
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Beyond the table's size, the agent makes room instead of refusing: the
/// oldest long-poll is answered with the state now, the oldest connection
/// still sending its request gets 408; a fresh request and `cqlready probe`
/// are answered, nobody reads `busy`, and no thread is started.
#[test]
fn status_connections_beyond_the_table_cut_the_oldest() {
    let java = &jvms()[0];
    // -XX:-MaxFDLimit: the JVM keeps this process's soft limit on open
    // files (instead of raising it to the hard one), so this test can
    // always open more connections than the agent's table holds.
    let jvm = Jvm::builder(java)
        .arg("-XX:-MaxFDLimit")
        .opt(format!("port={}", free_port()))
        .spawn();
    jvm.wait_status("an answer", deadline(), |_| true);
    let sock = jvm.socket().to_path_buf();
    let connect = |send: &[u8]| {
        let mut c = UnixStream::connect(&sock).unwrap();
        c.write_all(send).unwrap();
        c
    };
    // The table's size follows the JVM's soft limit on open files.
    let limits = fs::read_to_string(format!("/proc/{}/limits", jvm.pid)).unwrap();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok());
    let over = cqlready::status::event_loop::capacity(soft) + 44;
    // Long-polls on an agent that will not become ready.
    let mut polls: Vec<UnixStream> = (0..over)
        .map(|_| connect(b"GET /ready?wait=60s HTTP/1.1\r\n\r\n"))
        .collect();
    let first = answer_of(polls.remove(0));
    assert!(
        first.starts_with("HTTP/1.1 503 ") && first.ends_with("\r\n\r\nstarting\n"),
        "the oldest long-poll: {first:?}"
    );
    let r = http_get(&sock, "/status").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let o = Command::new(env!("CARGO_BIN_EXE_cqlready"))
        .args(["probe", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out.trim(), "not ready: starting");
    // The newest long-poll still waits.
    let newest = polls.last_mut().unwrap();
    newest.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        newest.read(&mut byte).map_err(|e| e.kind()),
        Err(io::ErrorKind::WouldBlock),
        "the newest long-poll was answered"
    );
    drop(polls);
    assert_live(&sock);
    // Half-sent requests: the oldest of them is cut with 408.
    let mut stalled: Vec<UnixStream> = (0..over)
        .map(|_| connect(b"GET /status HTTP/1.1\r\nHo"))
        .collect();
    let cut = answer_of(stalled.remove(0));
    assert!(cut.starts_with("HTTP/1.1 408 "), "{cut:?}");
    assert_live(&sock);
    drop(stalled);
    assert_live(&sock);
    let threads = thread_nices(jvm.pid);
    assert_eq!(
        threads
            .iter()
            .filter(|(c, _)| c.starts_with("cqlready"))
            .count(),
        2,
        "{threads:?}"
    );
}

#[test]
fn status_endpoints() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .opt(format!("port={port}"))
            .spawn();
        let s = jvm.wait_status("an answer", deadline(), |_| true);
        check_status_shape(&s);
        let sock = jvm.socket().to_path_buf();

        let r = http_get(&sock, "/status").unwrap();
        assert!(
            r.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "{r:?}"
        );
        let r = http_get(&sock, "/live").unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let r = http_get(&sock, "/ready").unwrap();
        assert_eq!((r.status, r.body.trim()), (503, "starting"), "{r:?}");
        // A long-poll on a node that is not ready waits: a request sent
        // after it is answered first, and it ends with the state then.
        let mut waiting = UnixStream::connect(&sock).unwrap();
        waiting
            .write_all(b"GET /ready?wait=2s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(http_get(&sock, "/live").unwrap().status, 200);
        waiting.set_nonblocking(true).unwrap();
        assert_eq!(
            waiting.read(&mut [0u8; 1]).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "/ready?wait=2s was answered before a later /live, without waiting"
        );
        waiting.set_nonblocking(false).unwrap();
        let r = parse_response(answer_of(waiting).as_bytes()).unwrap();
        assert_eq!((r.status, r.body.trim()), (503, "starting"), "{r:?}");

        let r = http_get(&sock, "/metrics").unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let m = &r.body;
        assert_eq!(metric(m, "cqlready_up"), Some(1.0), "{m}");
        assert_eq!(
            metric(m, r#"cqlready_state{state="starting"}"#),
            Some(1.0),
            "{m}"
        );
        for other in ["ready", "degraded", "stopping"] {
            assert_eq!(
                metric(m, &format!(r#"cqlready_state{{state="{other}"}}"#)),
                Some(0.0),
                "{m}"
            );
        }
        assert_eq!(sample_lines(m, "cqlready_time_to_ready_seconds"), 0, "{m}");
        assert!(
            metric(m, r#"cqlready_checks_total{result="ok"}"#).is_some(),
            "{m}"
        );
        assert!(
            metric(m, r#"cqlready_checks_total{result="failed"}"#).is_some(),
            "{m}"
        );
        assert!(metric(m, "cqlready_watchdog_pings_total").is_some(), "{m}");

        assert_eq!(http_get(&sock, "/nope").unwrap().status, 404);
        assert_eq!(http_request(&sock, "POST", "/status").unwrap().status, 405);

        // Garbage: 400, or the connection is closed; the agent carries on.
        match http_raw(&sock, b"\x00\x01junk\r\n\r\n") {
            Ok(raw) if !raw.is_empty() => {
                let r = parse_response(&raw).unwrap_or_else(|e| panic!("answer to garbage: {e}"));
                assert_eq!(r.status, 400, "{r:?}");
            }
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
        assert_live(&sock);

        // Over 8 KiB of request head: 4xx.
        let big = format!(
            "GET /status HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(9000)
        );
        let raw = http_raw(&sock, big.as_bytes()).unwrap();
        let r = parse_response(&raw).unwrap();
        assert!((400..500).contains(&r.status), "a 9 KB request got {r:?}");
        assert_live(&sock);

        // 80 clients that connect, send half a request and stall. Each is
        // cut with 408 when its read deadline passes (a client never cut
        // fails on the test's own read timeout); meanwhile and afterwards
        // the agent still answers.
        const STALLED: usize = 80;
        let tried = Arc::new(AtomicUsize::new(0));
        let holders: Vec<_> = (0..STALLED)
            .map(|_| {
                let (sock, tried) = (sock.clone(), tried.clone());
                thread::spawn(move || -> io::Result<String> {
                    let connected = UnixStream::connect(&sock);
                    tried.fetch_add(1, Ordering::SeqCst);
                    let mut s = connected?;
                    s.write_all(b"GET /live HTTP/1.1\r\n")?;
                    s.set_read_timeout(Some(WAIT))?;
                    let mut answer = Vec::new();
                    s.read_to_end(&mut answer)?;
                    Ok(String::from_utf8_lossy(&answer).into_owned())
                })
            })
            .collect();
        poll(
            "the stalled clients to connect",
            deadline(),
            || (tried.load(Ordering::SeqCst) == STALLED).then_some(()),
            || format!("{} tried", tried.load(Ordering::SeqCst)),
        );
        assert_live(&sock);
        for h in holders {
            let answer = h.join().unwrap().expect("a stalled client was never cut");
            assert!(
                answer.starts_with("HTTP/1.1 408 "),
                "a stalled client got {answer:?}"
            );
        }
        assert_live(&sock);

        // A long poll started before CQL listens is answered by the change to
        // ready: its wait (the longest honoured) outlasts the test's read
        // timeout, so an answer only at the wait's end fails the read.
        let (sent_tx, sent_rx) = mpsc::channel();
        let poller = {
            let sock = sock.clone();
            thread::spawn(move || -> io::Result<(Instant, Response)> {
                let mut s = UnixStream::connect(&sock)?;
                s.set_read_timeout(Some(WAIT))?;
                s.write_all(
                    b"GET /ready?wait=300s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )?;
                sent_tx.send(()).unwrap();
                let mut raw = Vec::new();
                s.read_to_end(&mut raw)?;
                Ok((Instant::now(), parse_response(&raw)?))
            })
        };
        sent_rx
            .recv_timeout(WAIT)
            .expect("the long poll was not sent");
        let ack = jvm.listen(port, "cql");
        let (answered, r) = poller
            .join()
            .unwrap()
            .expect("the long poll was not answered when the node became ready");
        assert_eq!((r.status, r.body.trim()), (200, "ready"), "{r:?}");
        assert!(
            answered > ack,
            "the long poll answered before the fixture listened"
        );

        let s = wait_state(&jvm, "ready");
        check_status_shape(&s);
        let r = http_get(&sock, "/metrics").unwrap();
        let m = &r.body;
        assert_eq!(metric(m, "cqlready_up"), Some(1.0), "{m}");
        assert_eq!(
            metric(m, r#"cqlready_state{state="ready"}"#),
            Some(1.0),
            "{m}"
        );
        assert_eq!(
            metric(m, r#"cqlready_state{state="starting"}"#),
            Some(0.0),
            "{m}"
        );
        assert!(
            metric(m, "cqlready_time_to_ready_seconds").is_some_and(|v| v > 0.0),
            "{m}"
        );
        assert!(
            metric(m, r#"cqlready_checks_total{result="ok"}"#).is_some_and(|v| v >= 1.0),
            "{m}"
        );
        assert!(metric(m, "cqlready_check_latency_seconds").is_some(), "{m}");
        assert_eq!(http_get(&sock, "/ready?wait=5s").unwrap().status, 200);
        assert_eq!(http_get(&sock, "/live").unwrap().status, 200);
        assert_no_panic(&jvm);
    });
}

// ---------------------------------------------------------------------------
// Where the status socket goes

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn socket_option_path_and_none() {
    for_each_jvm(|java| {
        // An explicit path.
        let n = NotifySocket::new();
        let port = free_port();
        let b = Jvm::builder(java);
        let path = b.tmp().join("s.sock");
        let jvm = b
            .notify(&n)
            .opt(format!("port={port}"))
            .opt(format!("socket={}", path.display()))
            .spawn();
        let s = jvm.wait_status("an answer", deadline(), |_| true);
        assert_eq!(Path::new(json_str(&s, "/socket")), path);
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        assert_eq!(mode_of(&path), 0o660, "mode of {}", path.display());
        drop(jvm);

        // socket=none, even with RUNTIME_DIRECTORY set.
        let n = NotifySocket::new();
        let port = free_port();
        let b = Jvm::builder(java);
        let rt = b.tmp().to_path_buf();
        let mut jvm = b
            .notify(&n)
            .env("RUNTIME_DIRECTORY", rt.to_str().unwrap())
            .opt(format!("port={port}"))
            .opt("socket=none")
            .opt("interval=20ms")
            .spawn();
        jvm.listen(port, "cql");
        wait_ready_msg(&n, &jvm);
        assert!(
            !rt.join("cqlready.sock").exists(),
            "socket=none created {}",
            rt.join("cqlready.sock").display()
        );
        let tmp_dir = PathBuf::from(format!("/tmp/cqlready-{}", jvm.pid));
        assert!(
            !tmp_dir.exists(),
            "socket=none created {}",
            tmp_dir.display()
        );
        assert_eq!(jvm.exit(0).code(), Some(0));
        assert_no_panic(&jvm);
    });
}

#[test]
fn socket_default_locations() {
    for_each_jvm(|java| {
        // $RUNTIME_DIRECTORY, and its first entry when there are several.
        for several in [false, true] {
            let port = free_port();
            let b = Jvm::builder(java);
            let (first, value) = if several {
                let (a, c) = (b.tmp().join("a"), b.tmp().join("b"));
                fs::create_dir(&a).unwrap();
                fs::create_dir(&c).unwrap();
                (a.clone(), format!("{}:{}", a.display(), c.display()))
            } else {
                (b.tmp().to_path_buf(), b.tmp().display().to_string())
            };
            let mut jvm = b
                .env("RUNTIME_DIRECTORY", value)
                .opt(format!("port={port}"))
                .default_socket()
                .spawn();
            let path = first.join("cqlready.sock");
            jvm.set_socket(path.clone());
            let s = jvm.wait_status("an answer", deadline(), |_| true);
            assert_eq!(Path::new(json_str(&s, "/socket")), path);
            assert_eq!(mode_of(&path), 0o660);
            assert_eq!(jvm.exit(0).code(), Some(0));
            assert!(
                fs::symlink_metadata(&path).is_err(),
                "{} left behind",
                path.display()
            );
            assert_no_panic(&jvm);
        }

        // Neither: /tmp/cqlready-<pid>/cqlready.sock in a 0700 directory.
        let port = free_port();
        let mut jvm = Jvm::builder(java)
            .opt(format!("port={port}"))
            .default_socket()
            .spawn();
        let dir = PathBuf::from(format!("/tmp/cqlready-{}", jvm.pid));
        let path = dir.join("cqlready.sock");
        jvm.set_socket(path.clone());
        let s = jvm.wait_status("an answer", deadline(), |_| true);
        assert_eq!(Path::new(json_str(&s, "/socket")), path);
        let dir_mode = mode_of(&dir);
        let sock_mode = mode_of(&path);
        let exit = jvm.exit(0);
        let left_behind = fs::symlink_metadata(&path).is_ok();
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(dir_mode, 0o700, "mode of {}", dir.display());
        assert_eq!(sock_mode, 0o660, "mode of {}", path.display());
        assert_eq!(exit.code(), Some(0));
        assert!(!left_behind, "{} left behind", path.display());
        assert_no_panic(&jvm);
    });
}

#[test]
fn hostile_socket_paths_are_refused_and_stale_ones_replaced() {
    for_each_jvm(|java| {
        for case in ["symlink", "file", "stale"] {
            let n = NotifySocket::new();
            let port = free_port();
            let b = Jvm::builder(java);
            let path = b.tmp().join("status.sock");
            let victim = b.tmp().join("victim");
            fs::write(&victim, "precious").unwrap();
            match case {
                "symlink" => std::os::unix::fs::symlink(&victim, &path).unwrap(),
                "file" => fs::write(&path, "precious too").unwrap(),
                _ => drop(UnixListener::bind(&path).unwrap()),
            }
            let mut jvm = b
                .notify(&n)
                .opt(format!("port={port}"))
                .opt("interval=20ms")
                .opt(format!("socket={}", path.display()))
                .spawn();
            jvm.listen(port, "cql");
            wait_ready_msg(&n, &jvm);
            let meta = fs::symlink_metadata(&path).unwrap();
            match case {
                "symlink" | "file" => {
                    let shown = path.to_str().unwrap();
                    jvm.wait_stderr(
                        "(warn or error) naming the refused socket path",
                        deadline(),
                        |l| {
                            (l.starts_with("cqlready: error: ")
                                || l.starts_with("cqlready: warn: "))
                                && l.contains(shown)
                        },
                    );
                    if case == "symlink" {
                        assert!(meta.file_type().is_symlink(), "the symlink was replaced");
                        assert_eq!(fs::read_link(&path).unwrap(), victim);
                    } else {
                        assert!(meta.file_type().is_file(), "the file was replaced");
                        assert_eq!(fs::read_to_string(&path).unwrap(), "precious too");
                    }
                    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
                    assert!(
                        http_get(&path, "/live").is_err(),
                        "something answers on the refused path"
                    );
                    assert_eq!(jvm.exit(0).code(), Some(0));
                    // Still untouched after exit.
                    assert!(
                        fs::symlink_metadata(&path).is_ok(),
                        "the agent removed the {case} at exit"
                    );
                    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
                }
                _ => {
                    assert!(meta.file_type().is_socket());
                    let s =
                        jvm.wait_status("an answer on the replaced socket", deadline(), |_| true);
                    assert_eq!(Path::new(json_str(&s, "/socket")), path);
                    assert_eq!(jvm.exit(0).code(), Some(0));
                    assert!(fs::symlink_metadata(&path).is_err());
                }
            }
            assert_no_panic(&jvm);
        }
    });
}

/// The JVM dies before CQL ever answered while another process holds the
/// CQL port (here this test, listening and never answering): the last
/// datagram names the holder in `STATUS=` and carries `ERRNO=98`
/// (EADDRINUSE) with `STOPPING=1`.
#[test]
fn a_held_port_is_named_with_errno_when_the_start_fails() {
    for_each_jvm(|java| {
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let port = held.local_addr().expect("its port").port();
        let n = NotifySocket::new();
        let mut jvm = Jvm::builder(java)
            .notify(&n)
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .opt("timeout=200ms")
            .spawn();
        jvm.wait_status("a failed check", deadline(), |s| {
            s["checks"]["failed"].as_u64().unwrap_or(0) >= 1
        });
        jvm.exit(1);
        let last = n.wait_msg("STOPPING=1", deadline(), |m| m.has_line("STOPPING=1"));
        drop(held);
        assert!(last.has_line("ERRNO=98"), "{:?}", last.text);
        let named = format!(
            "STATUS=Did not start: CQL port 127.0.0.1:{port} is held by another process (pid {}, ",
            std::process::id()
        );
        assert!(last.has_line_starting(&named), "{:?}", last.text);
        assert_no_panic(&jvm);
    });
}
