//! The `cqlready` command against real JVMs: status, probe and wait asking
//! an agent, watch as a Type=notify service under a fake service manager,
//! and attach into a JVM started without the agent.

mod common;

use common::*;
use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cqlready"))
}

fn run(args: &[&str]) -> Output {
    cli().args(args).output().expect("run cqlready")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout:\n{}--- stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn java() -> std::path::PathBuf {
    jvms().into_iter().next().expect("a JVM")
}

/// Waits for a child to exit by `deadline`, polling.
fn wait_child(child: &mut Child, what: &str, deadline: Instant) -> ExitStatus {
    poll(
        what,
        deadline,
        || child.try_wait().ok().flatten(),
        || "still running".into(),
    )
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn status_probe_and_wait_ask_the_agent() {
    let port = free_port();
    let mut jvm = Jvm::builder(&java())
        .opt(format!("port={port}"))
        .opt("interval=20ms")
        .spawn();
    let sock = jvm.socket().to_str().unwrap().to_string();
    let pid = jvm.pid.to_string();
    jvm.wait_status("the agent answers", deadline(), |s| {
        s["checks"]["failed"].as_u64() >= Some(1)
    });

    let o = run(&["probe", "--socket", &sock]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("not ready: starting"),
        "{}",
        text(&o)
    );

    let o = run(&["status", "--socket", &sock]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("starting since"), "{out}");
    assert!(
        out.contains(&format!("127.0.0.1:{port} (port from option")),
        "{out}"
    );

    // Started before CQL opens: must still be waiting, then return once ready.
    let mut waiter = Killed(
        cli()
            .args(["wait", "--socket", &sock, "--timeout", "30s"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    jvm.wait_status("checks go on", deadline(), |s| {
        s["checks"]["failed"].as_u64() >= Some(3)
    });
    assert!(
        waiter.0.try_wait().unwrap().is_none(),
        "wait returned before CQL answered"
    );
    let listened = jvm.listen(port, "cql");
    let status = wait_child(&mut waiter.0, "cqlready wait to return", deadline());
    let returned = Instant::now();
    assert!(status.success(), "wait: {status:?}");
    assert!(returned > listened);

    let o = run(&["probe", "--socket", &sock]);
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).trim()),
        (Some(0), "ready"),
        "{}",
        text(&o)
    );
    let o = run(&["status", "--socket", &sock, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("status --json is JSON");
    assert_eq!(v["state"], "ready");
    assert_eq!(v["pid"].as_u64(), Some(jvm.pid as u64));
    // The build's commit (build.rs), beside the unchanged version. (Not
    // compared with this test's own CQLREADY_COMMIT: `cargo test` alone
    // may leave an older agent library in place; tests/run.sh builds first.)
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let commit = v["commit"].as_str().unwrap_or_default().to_string();
    assert!(!commit.is_empty(), "no commit in {v}");
    let o = run(&["status", "--socket", &sock]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines().next().is_some_and(|l| l.contains(&format!(
            "cqlready {}, commit {commit})",
            env!("CARGO_PKG_VERSION")
        ))),
        "{out}"
    );
    // --pid finds the socket named in the JVM's -agentpath.
    let o = run(&["probe", "--pid", &pid]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn pid_finds_the_default_socket() {
    let port = free_port();
    let mut jvm = Jvm::builder(&java())
        .opt(format!("port={port}"))
        .default_socket()
        .spawn();
    jvm.listen(port, "cql");
    let pid = jvm.pid.to_string();
    let o = run(&["wait", "--pid", &pid, "--timeout", "20s"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["status", "--pid", &pid]);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("ready since"),
        "{}",
        text(&o)
    );
}

#[test]
fn no_agent_and_bad_arguments() {
    let o = run(&["probe", "--socket", "/nonexistent/cqlready.sock"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("no agent answers at /nonexistent/cqlready.sock"));
    let o = run(&["status", "--pid", "999999999"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(&[
        "wait",
        "--socket",
        "/nonexistent/cqlready.sock",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not ready after 300ms"),
        "{}",
        text(&o)
    );
    // Usage errors: exit 64 at once, with a message. `wait` with no target
    // used to wait the whole 10-minute default before asking "which agent?".
    for bad in [
        &["probe", "--timeout", "soon"][..],
        &["probe", "--socket", "/a", "--pid", "1"],
        &["probe", "--port", "9042", "--socket", "/a"],
        &["probe", "--host", "127.0.0.1"],
        &["probe", "--port", "0"],
        &["probe", "--port", "65536"],
        &["probe", "--port", "-1"],
        &["status", "--pid", "0"],
        &["status", "--pid", "4294967296"],
        &["status"],
        &["probe"],
        &["wait"],
        &["wait", "--timeout", "1x"],
        &["watch"],
        &["watch", "--port", "0"],
        &["watch", "--port", "9042", "--interval", "0s"],
        &["watch", "--port", "9042", "--failures", "0"],
        &["watch", "--port", "9042", "--probe", "http"],
        &["attach"],
        &["attach", "0"],
        &["attach", "1", "bogus=1"],
        &["attach", "1", "--timeout", "0s"],
        &["nonsense"],
    ] {
        let started = Instant::now();
        let o = cli()
            .args(bad)
            .env_remove("RUNTIME_DIRECTORY")
            .output()
            .expect("run cqlready");
        assert_eq!(o.status.code(), Some(64), "{bad:?}: {}", text(&o));
        assert!(!o.stderr.is_empty(), "{bad:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{bad:?} took {:?} to refuse",
            started.elapsed()
        );
    }
    for sub in ["status", "probe", "wait", "watch", "attach"] {
        let o = run(&[sub, "--help"]);
        assert_eq!(o.status.code(), Some(0));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Example"),
            "{sub} --help has an example"
        );
    }
}

#[test]
fn probe_port_speaks_cql_itself() {
    let port = free_port();
    let mut jvm = Jvm::builder(&java()).no_agent().spawn();
    let p = port.to_string();
    let o = run(&["probe", "--port", &p, "--timeout", "500ms"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    jvm.listen(port, "garbage");
    let o = run(&["probe", "--port", &p, "--timeout", "500ms"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not a CQL response"),
        "{}",
        text(&o)
    );
    jvm.close_listeners();
    jvm.listen(port, "cql");
    let o = run(&["probe", "--port", &p]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("ready: CQL v5"),
        "{}",
        text(&o)
    );
}

#[test]
fn watch_is_a_notify_service_that_exits_when_a_port_drops() {
    let n = NotifySocket::new();
    let port = free_port();
    let jmx = TcpListener::bind("127.0.0.1:0").unwrap();
    let jmx_port = jmx.local_addr().unwrap().port().to_string();
    let mut jvm = Jvm::builder(&java()).no_agent().spawn();
    let mut watcher = Killed(
        cli()
            .args(["watch", "--port", &port.to_string(), "--port", &jmx_port])
            .args(["--interval", "20ms", "--check", "50ms", "--failures", "2"])
            .env("NOTIFY_SOCKET", &n.addr)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let wpid = watcher.0.id() as i32;
    n.wait_msg("the watcher's first STATUS", deadline(), |m| {
        m.pid == wpid && m.has_line_starting("STATUS=Waiting")
    });
    assert_eq!(n.count(|m| m.has_line("READY=1")), 0);
    let listened = jvm.listen(port, "cql");
    let ready = n.wait_msg("READY=1 from the watcher", deadline(), |m| {
        m.has_line("READY=1")
    });
    assert_eq!(
        ready.pid, wpid,
        "READY=1 must come from the watcher's own PID"
    );
    assert!(ready.at > listened);
    assert!(
        ready.has_line_starting("STATUS=All watched ready on "),
        "{}",
        n.describe()
    );

    jvm.close_listeners();
    let status = wait_child(
        &mut watcher.0,
        "the watcher to exit after CQL dropped",
        deadline(),
    );
    assert_eq!(
        status.code(),
        Some(1),
        "watch must fail so BindsTo= dependents stop"
    );
    assert!(
        n.count(|m| m.text.contains("not answering")) >= 1,
        "{}",
        n.describe()
    );
    drop(jmx);
}

#[test]
fn watch_an_agent_socket() {
    let n = NotifySocket::new();
    let port = free_port();
    let mut jvm = Jvm::builder(&java())
        .opt(format!("port={port}"))
        .opt("interval=20ms")
        .spawn();
    let sock = jvm.socket().to_str().unwrap().to_string();
    let mut watcher = Killed(
        cli()
            .args(["watch", "--socket", &sock, "--interval", "20ms"])
            .env("NOTIFY_SOCKET", &n.addr)
            .spawn()
            .unwrap(),
    );
    let wpid = watcher.0.id() as i32;
    n.wait_msg("the watcher's first STATUS", deadline(), |m| m.pid == wpid);
    jvm.listen(port, "cql");
    let ready = n.wait_msg("READY=1 from the watcher", deadline(), |m| {
        m.has_line("READY=1")
    });
    assert_eq!(ready.pid, wpid);
    assert!(watcher.0.try_wait().unwrap().is_none());
}

fn agent_lib_arg() -> String {
    agent_lib().to_str().unwrap().to_string()
}

#[test]
fn attach_loads_the_agent_into_a_running_jvm() {
    for java in jvms() {
        let port = free_port();
        let mut jvm = Jvm::builder(&java).no_agent().spawn();
        // Attach to a running JVM: its main has answered.
        jvm.fixture_pid();
        let sock = jvm.tmp.join("attached.sock");
        let opts = format!("port={port},interval=20ms,socket={}", sock.display());
        let pid = jvm.pid.to_string();
        let lib = agent_lib_arg();
        let o = run(&["attach", &pid, &opts, "--lib", &lib]);
        assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o), jvm.describe());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("loaded"),
            "{}",
            text(&o)
        );
        jvm.listen(port, "cql");
        let o = run(&[
            "wait",
            "--socket",
            sock.to_str().unwrap(),
            "--timeout",
            "20s",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o), jvm.describe());

        // A second attach is harmless: it says so and changes nothing.
        let o = run(&["attach", &pid, &opts, "--lib", &lib]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        jvm.wait_stderr("the second load's note", deadline(), |l| {
            l.contains("already running")
        });
        let o = run(&["probe", "--socket", sock.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let code = jvm.exit(0);
        assert_eq!(code.code(), Some(0));
        assert!(!Path::new(&sock).exists(), "socket removed at exit");
    }
}

#[test]
fn attach_refuses_what_is_not_a_jvm() {
    let mut sleeper = Killed(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = sleeper.0.id().to_string();
    let o = run(&["attach", &pid, "--lib", &agent_lib_arg(), "--timeout", "2s"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a HotSpot JVM"),
        "{}",
        text(&o)
    );
    assert!(
        sleeper.0.try_wait().unwrap().is_none(),
        "the non-JVM must survive"
    );
}

/// `wait` on a PID that will never have an agent says so at once (exit 2),
/// instead of waiting out its timeout: no such process, or not a JVM.
#[test]
fn wait_on_a_missing_pid_or_a_non_jvm_says_so_at_once() {
    let o = run(&["wait", "--pid", "999999999", "--timeout", "10m"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no process 999999999"),
        "{}",
        text(&o)
    );
    let sleeper = Killed(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = sleeper.0.id().to_string();
    let o = run(&["wait", "--pid", &pid, "--timeout", "10m"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("process {pid} (sleep) is not a JVM")),
        "{}",
        text(&o)
    );
}

/// A shell that has not exec'd its JVM yet (`cassandra -f` is such a
/// script), or the `java` launcher before it has loaded libjvm.so (a `wait`
/// started right after the JVM's fork sees that), is no refusal: `wait
/// --pid` keeps waiting (here until its timeout).
#[test]
fn wait_on_a_jvm_to_be_waits_for_it() {
    let shell = Killed(
        Command::new("sh")
            .args(["-c", "sleep 30; true"])
            .spawn()
            .unwrap(),
    );
    // A process named `java` without libjvm.so: the launcher's first moments.
    let dir = TempDir::new("launcher");
    std::fs::copy("/bin/sleep", dir.join("java")).unwrap();
    let launcher = Killed(Command::new(dir.join("java")).arg("30").spawn().unwrap());
    for pid in [shell.0.id(), launcher.0.id()] {
        let o = run(&["wait", "--pid", &pid.to_string(), "--timeout", "300ms"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not ready after 300ms"),
            "{}",
            text(&o)
        );
    }
}

/// `wait` on a socket that does not exist yet says once, on stderr, what it
/// waits for and how long, then finds the socket when the JVM opens it.
#[test]
fn wait_says_once_that_it_waits_for_a_socket() {
    let port = free_port();
    let b = Jvm::builder(&java()).opt(format!("port={port}"));
    let sock = b.tmp().join("late.sock");
    let mut waiter = Killed(
        cli()
            .args(["wait", "--socket", sock.to_str().unwrap()])
            .args(["--timeout", "30s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = waiter.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let said = format!(
        "cqlready: waiting up to 30s for {} to appear",
        sock.display()
    );
    let first = rx.recv_timeout(WAIT).expect("wait said nothing on stderr");
    assert_eq!(first, said);
    // The socket appears only now, with the JVM.
    let mut jvm = b.opt(format!("socket={}", sock.display())).spawn();
    jvm.listen(port, "cql");
    let status = wait_child(&mut waiter.0, "cqlready wait to return", deadline());
    assert!(status.success(), "wait: {status:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.is_empty(), "said more than once: {rest:?}");
}

/// Every option of every subcommand has a one-line description in `-h`,
/// and attach's usage line names its two positionals apart.
#[test]
fn every_option_is_described() {
    for sub in ["status", "probe", "wait", "watch", "attach"] {
        let o = run(&[sub, "-h"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let help = String::from_utf8_lossy(&o.stdout).into_owned();
        for line in help.lines().filter(|l| l.trim_start().starts_with('-')) {
            let described = line
                .trim_start()
                .split_once("  ")
                .is_some_and(|(_, d)| !d.trim().is_empty());
            assert!(
                described,
                "{sub}: option without a description: {line:?}\n{help}"
            );
        }
    }
    let o = run(&["attach", "-h"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("Usage: cqlready attach [OPTIONS] <PID> [AGENT_OPTIONS]"),
        "{help}"
    );
}

/// Random command lines from a vocabulary of good and bad words: none
/// panics, none exits with an undocumented code (0, 1, 2, 64; clap's help
/// and version are 0), and none blocks except `wait` and `watch`, which
/// block by design (they are stopped after a while). The seed is printed;
/// CQLREADY_CLI_SEED replays one.
#[test]
fn random_command_lines_exit_with_documented_codes() {
    let seed: u64 = std::env::var("CQLREADY_CLI_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("CQLREADY_CLI_SEED={seed}");
    let mut x = seed;
    let mut next = move |n: usize| {
        // xorshift64*: no dependency, reproducible from the seed.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    };
    let closed = free_port().to_string();
    let me = std::process::id().to_string();
    let subs = [
        "status",
        "probe",
        "wait",
        "watch",
        "attach",
        "help",
        "",
        "--version",
        "-h",
        "bogus",
    ];
    let words: Vec<&str> = vec![
        "--socket",
        "--pid",
        "--port",
        "--host",
        "--timeout",
        "--json",
        "--probe",
        "--interval",
        "--check",
        "--failures",
        "--lib",
        "--help",
        "-h",
        "-V",
        "--",
        "-",
        "--socket=",
        "--port=",
        "/nonexistent/x.sock",
        "",
        "0",
        "1",
        "-1",
        "65535",
        "65536",
        "4294967296",
        "999999999",
        &closed,
        &me,
        "abc",
        "1s",
        "0s",
        "10ms",
        "1e9s",
        "99999999999h",
        "cql",
        "tcp",
        "127.0.0.1",
        "::1",
        "localhost",
        "port=9042",
        "bogus=1",
        "socket=none",
        "é",
        "\n",
        "%s%n",
        "--pid=1",
    ];
    let mut cases = Vec::new();
    for _ in 0..160 {
        let mut args: Vec<String> = Vec::new();
        let sub = subs[next(subs.len())];
        if !sub.is_empty() {
            args.push(sub.into());
        }
        for _ in 0..next(6) {
            args.push(words[next(words.len())].to_string());
        }
        cases.push(args);
    }
    let blocking =
        |args: &[String]| matches!(args.first().map(String::as_str), Some("wait" | "watch"));
    for batch in cases.chunks(40) {
        let mut running: Vec<(Vec<String>, Child)> = batch
            .iter()
            .map(|args| {
                let child = cli()
                    .args(args)
                    .env_remove("RUNTIME_DIRECTORY")
                    .env_remove("NOTIFY_SOCKET")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn cqlready");
                (args.clone(), child)
            })
            .collect();
        let until = Instant::now() + Duration::from_secs(4);
        while !running.is_empty() {
            let mut still = Vec::new();
            for (args, mut child) in running {
                match child.try_wait().expect("try_wait") {
                    Some(status) => {
                        let mut err = String::new();
                        let _ = std::io::Read::read_to_string(
                            &mut child.stderr.take().unwrap(),
                            &mut err,
                        );
                        assert!(
                            matches!(status.code(), Some(0 | 1 | 2 | 64))
                                && !err.contains("panicked"),
                            "seed {seed}: cqlready {args:?} ended {status:?}:\n{err}"
                        );
                    }
                    None if Instant::now() >= until => {
                        let _ = child.kill();
                        let _ = child.wait();
                        assert!(blocking(&args), "seed {seed}: cqlready {args:?} hung");
                    }
                    None => still.push((args, child)),
                }
            }
            running = still;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// build.rs bakes the checkout's commit into release builds (or "unknown"
/// without git); the debug build of `cargo test` says "dev", so a commit
/// does not rebuild the crate; `$CQLREADY_COMMIT` overrides both.
#[test]
fn the_build_names_its_commit() {
    let head = || {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let want = match std::env::var("CQLREADY_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ if cfg!(debug_assertions) => "dev".into(),
        _ => head(),
    };
    assert_eq!(env!("CQLREADY_COMMIT"), want);
}
