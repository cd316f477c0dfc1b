//! The `-javaagent` shim (java-shim/) in real JVMs, on every JVM from
//! `jvms()`: the jar, built by java-shim/build.sh into a test-private tree,
//! loads libcqlready.so (next to the jar, or `-Dcqlready.lib`) and starts the
//! same agent as `-agentpath`: the same READY=1 from the JVM's own PID, the
//! same /status; bad options and a missing library stop the JVM with a clear
//! message; `-javaagent` plus `-agentpath` stay one agent. Also: the jar is
//! Java 8 bytecode, and the jar, the library and the command agree on the
//! version.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

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

/// `target/` of this build.
fn target_dir() -> PathBuf {
    agent_lib()
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir().join("target"))
}

/// Builds the jar once per test binary with java-shim/build.sh, unchanged, run
/// from a private copy of the tree (build.sh writes to `<root>/target/java-shim`),
/// so concurrent test binaries and target/java-shim are left alone.
fn shim_jar() -> PathBuf {
    static JAR: OnceLock<PathBuf> = OnceLock::new();
    JAR.get_or_init(|| {
        let base = target_dir().join("shim-test");
        // Trees of test runs that are gone.
        if let Ok(entries) = fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.parse::<u32>().is_ok() && !Path::new("/proc").join(&name).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let root = base.join(std::process::id().to_string());
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("java-shim/src/cqlready")).unwrap();
        let src = manifest_dir().join("java-shim");
        fs::copy(src.join("build.sh"), root.join("java-shim/build.sh")).unwrap();
        fs::copy(
            src.join("src/cqlready/Shim.java"),
            root.join("java-shim/src/cqlready/Shim.java"),
        )
        .unwrap();
        fs::copy(manifest_dir().join("Cargo.toml"), root.join("Cargo.toml")).unwrap();
        let o = Command::new("bash")
            .arg(root.join("java-shim/build.sh"))
            .output()
            .expect("run java-shim/build.sh");
        assert!(
            o.status.success(),
            "java-shim/build.sh failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let jar = root.join("target/java-shim/cqlready-shim.jar");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).lines().last(),
            jar.to_str(),
            "build.sh prints the jar's path last"
        );
        assert!(jar.is_file());
        jar
    })
    .clone()
}

/// A directory holding a copy of the jar and, when `with_lib`, a copy of
/// the agent library next to it (as an install would lay them out).
fn jar_dir(tmp: &TempDir, with_lib: bool) -> PathBuf {
    let jar = tmp.join("cqlready-shim.jar");
    fs::copy(shim_jar(), &jar).unwrap();
    if with_lib {
        fs::copy(agent_lib(), tmp.join("libcqlready.so")).unwrap();
    }
    jar
}

/// JVM flags so that an aborting JVM leaves no core file or hs_err log behind
/// in the working directory.
fn quiet_crash(b: JvmBuilder) -> JvmBuilder {
    let err = b.tmp().join("hs_err_%p.log");
    b.arg("-XX:-CreateCoredumpOnCrash")
        .arg(format!("-XX:ErrorFile={}", err.display()))
}

/// A fixture JVM with the agent loaded only through the shim, with
/// `-Dcqlready.lib` pointing at the library the other tests use.
fn shim_jvm(java: &Path, n: &NotifySocket, opts: &str) -> Jvm {
    let b = Jvm::builder(java).no_agent().notify(n);
    let sock = b.tmp().join("status.sock");
    let b = b
        .arg(format!("-Dcqlready.lib={}", agent_lib().display()))
        .arg(format!(
            "-javaagent:{}={opts},socket={}",
            shim_jar().display(),
            sock.display()
        ));
    let mut jvm = quiet_crash(b).spawn();
    jvm.set_socket(sock);
    jvm
}

fn ready_from(n: &NotifySocket, jvm: &Jvm) -> Msg {
    let pid = jvm.pid as i32;
    n.wait_msg("READY=1 from the JVM", deadline(), move |m| {
        m.pid == pid && m.has_line("READY=1")
    })
}

/// The first line of the READY datagram with the timing cut off:
/// `STATUS=CQL ready on 127.0.0.1:<port> after`.
fn ready_status_prefix(m: &Msg) -> String {
    let status = m
        .text
        .lines()
        .find(|l| l.starts_with("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= with READY=1: {:?}", m.text));
    status.split(" after ").next().unwrap().to_string()
}

#[test]
fn shim_sends_the_same_ready_from_the_jvm_pid_as_agentpath() {
    for_each_jvm(|java| {
        // Through the shim.
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = shim_jvm(java, &n, &format!("port={port},interval=20ms"));
        jvm.wait_status("the agent answers", deadline(), |s| {
            s["checks"]["total"].as_u64() >= Some(1)
        });
        jvm.listen(port, "cql");
        let shim_ready = ready_from(&n, &jvm);
        assert_eq!(
            shim_ready.pid, jvm.pid as i32,
            "READY=1 from the JVM itself"
        );
        assert_eq!(jvm.fixture_pid(), jvm.pid, "the JVM's own idea of its pid");
        // Nothing from any other process.
        for m in n.messages() {
            assert_eq!(m.pid, jvm.pid as i32, "datagram from another pid: {m:?}");
        }
        assert_eq!(n.count(|m| m.has_line("READY=1")), 1, "{}", n.describe());

        // Through -agentpath, for comparison.
        let n2 = NotifySocket::new();
        let port2 = free_port();
        let mut jvm2 = Jvm::builder(java)
            .notify(&n2)
            .opt(format!("port={port2}"))
            .opt("interval=20ms")
            .spawn();
        jvm2.wait_status("the agent answers", deadline(), |s| {
            s["checks"]["total"].as_u64() >= Some(1)
        });
        jvm2.listen(port2, "cql");
        let path_ready = ready_from(&n2, &jvm2);
        assert_eq!(path_ready.pid, jvm2.pid as i32);

        // The same datagram, but for the port.
        assert_eq!(
            ready_status_prefix(&shim_ready).replace(&port.to_string(), "P"),
            ready_status_prefix(&path_ready).replace(&port2.to_string(), "P")
        );
        let first_lines = |m: &Msg| m.text.lines().next().map(str::to_string);
        assert_eq!(first_lines(&shim_ready), first_lines(&path_ready));

        // The agent's first STATUS= is the same too.
        let waiting = |n: &NotifySocket, p: u16| {
            n.count(|m| m.has_line(&format!("STATUS=Waiting for CQL on 127.0.0.1:{p}")))
        };
        assert_eq!(waiting(&n, port), 1, "{}", n.describe());
        assert_eq!(waiting(&n2, port2), 1, "{}", n2.describe());

        // STOPPING=1 at exit, from the JVM.
        assert!(jvm.exit(0).success());
        let pid = jvm.pid as i32;
        n.wait_msg("STOPPING=1", deadline(), move |m| {
            m.pid == pid && m.has_line("STOPPING=1")
        });
    });
}

#[test]
fn shim_status_socket_answers() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let port = free_port();
        let mut jvm = shim_jvm(java, &n, &format!("port={port},interval=20ms"));
        let s = jvm.wait_status("starting", deadline(), |s| s["state"] == "starting");
        assert_eq!(json_u64(&s, "/pid"), jvm.pid as u64);
        assert_eq!(json_str(&s, "/cql/source"), "option");
        assert_eq!(json_u64(&s, "/cql/port"), port as u64);
        // (`socket` is checked once ready below: the very first answers may
        // still show null, the agent records the path just after binding.)
        let r = http_get(jvm.socket(), "/ready").unwrap();
        assert_eq!(r.status, 503);
        let r = http_get(jvm.socket(), "/live").unwrap();
        assert_eq!(r.status, 200);

        jvm.listen(port, "cql");
        let s = jvm.wait_status("ready", deadline(), |s| s["state"] == "ready");
        assert_eq!(s["notify"]["ready_sent"], Value::Bool(true));
        assert_eq!(json_str(&s, "/version"), env!("CARGO_PKG_VERSION"));
        assert_eq!(json_str(&s, "/socket"), jvm.socket().to_str().unwrap());
        let r = http_get(jvm.socket(), "/ready").unwrap();
        assert_eq!(r.status, 200);

        // The command finds it too, by socket and by pid (the pid route reads
        // the -agentpath; with the shim it falls back to the default socket,
        // so only --socket is promised here).
        let o = Command::new(env!("CARGO_BIN_EXE_cqlready"))
            .args(["probe", "--socket"])
            .arg(jvm.socket())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        drop(n);
    });
}

#[test]
fn shim_with_the_library_next_to_the_jar() {
    for_each_jvm(|java| {
        let libdir = TempDir::new("shimlib");
        let jar = jar_dir(&libdir, true);
        let n = NotifySocket::new();
        let port = free_port();
        let b = Jvm::builder(java).no_agent().notify(&n);
        let sock = b.tmp().join("status.sock");
        let b = b.arg(format!(
            "-javaagent:{}=port={port},interval=20ms,socket={}",
            jar.display(),
            sock.display()
        ));
        let mut jvm = quiet_crash(b).spawn();
        jvm.set_socket(sock);
        jvm.listen(port, "cql");
        let m = ready_from(&n, &jvm);
        assert_eq!(m.pid, jvm.pid as i32);
    });
}

/// Waits for the JVM to exit and returns (exit code, stderr).
fn failed_start(mut jvm: Jvm) -> (Option<i32>, String) {
    jvm.close_stdin();
    let status = jvm.wait_exit(deadline());
    (status.code(), jvm.stderr_lines().join("\n"))
}

#[test]
fn shim_bad_options_stop_the_jvm_with_the_message() {
    for_each_jvm(|java| {
        let n = NotifySocket::new();
        let jvm = shim_jvm(java, &n, "interval=5parsecs");
        let (code, stderr) = failed_start(jvm);
        assert_eq!(code, Some(1), "a clean exit 1, not an abort: {stderr}");
        // The agent's own line, and the shim's message with the same text.
        let want = r#"invalid value "5parsecs" for option "interval""#;
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("cqlready: error: ") && l.contains(want)),
            "{stderr}"
        );
        assert!(
            stderr.lines().any(
                |l| l == format!("cqlready: {want}: expected a duration like 20ms, 1.5s or 1m")
            ),
            "{stderr}"
        );
        assert_eq!(n.count(|_| true), 0, "nothing notified: {}", n.describe());

        let jvm = shim_jvm(java, &n, "colour=blue");
        let (code, stderr) = failed_start(jvm);
        assert_ne!(code, Some(0), "{stderr}");
        assert!(stderr.contains("colour"), "{stderr}");
    });
}

#[test]
fn shim_missing_library_says_what_to_do() {
    for_each_jvm(|java| {
        // A jar alone, no -Dcqlready.lib.
        let dir = TempDir::new("shimnolib");
        let jar = jar_dir(&dir, false);
        let b = Jvm::builder(java)
            .no_agent()
            .arg(format!("-javaagent:{}", jar.display()));
        let (code, stderr) = failed_start(quiet_crash(b).spawn());
        assert_ne!(code, Some(0), "{stderr}");
        let expected = dir.join("libcqlready.so");
        assert!(
            stderr.contains(&format!("cqlready: cannot load {}", expected.display())),
            "{stderr}"
        );
        assert!(
            stderr.contains("put libcqlready.so next to the jar or set -Dcqlready.lib=PATH"),
            "{stderr}"
        );

        // -Dcqlready.lib naming nothing.
        let missing = dir.join("nope/libcqlready.so");
        let b = Jvm::builder(java)
            .no_agent()
            .arg(format!("-Dcqlready.lib={}", missing.display()))
            .arg(format!("-javaagent:{}", jar.display()));
        let (code, stderr) = failed_start(quiet_crash(b).spawn());
        assert_ne!(code, Some(0), "{stderr}");
        assert!(
            stderr.contains(&format!("cqlready: cannot load {}", missing.display())),
            "{stderr}"
        );
    });
}

#[test]
fn shim_and_agentpath_together_stay_one_agent() {
    for_each_jvm(|java| {
        // The same library file through both.
        let n = NotifySocket::new();
        let port = free_port();
        let b = Jvm::builder(java)
            .notify(&n)
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .opt("check=50ms");
        let sock = b.tmp().join("status.sock");
        let b = b
            .arg(format!("-Dcqlready.lib={}", agent_lib().display()))
            .arg(format!(
                "-javaagent:{}=port={port},interval=20ms,check=50ms,socket={}",
                shim_jar().display(),
                sock.display()
            ));
        let mut jvm = quiet_crash(b).spawn();
        jvm.wait_stderr("saying the second load does nothing", deadline(), |l| {
            l.contains("already running in this JVM; the second load does nothing")
        });
        jvm.listen(port, "cql");
        ready_from(&n, &jvm);
        let s = jvm.wait_status("ready", deadline(), |s| s["state"] == "ready");
        assert_eq!(json_u64(&s, "/pid"), jvm.pid as u64);
        jvm.wait_more_checks(3);
        assert_eq!(n.count(|m| m.has_line("READY=1")), 1, "{}", n.describe());
        assert_eq!(
            n.count(|m| m.has_line(&format!("STATUS=Waiting for CQL on 127.0.0.1:{port}"))),
            1,
            "one agent started: {}",
            n.describe()
        );
        let starts = jvm
            .stderr_lines()
            .iter()
            .filter(|l| l.contains(" watching CQL on "))
            .count();
        assert_eq!(starts, 1, "{}", jvm.describe());
        assert!(jvm.exit(0).success());

        // Another copy of the library (the one next to the jar) with the same
        // socket: the second copy finds the first serving this JVM and idles.
        let libdir = TempDir::new("shimcopy");
        let jar = jar_dir(&libdir, true);
        let n = NotifySocket::new();
        let port = free_port();
        let b = Jvm::builder(java)
            .notify(&n)
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .opt("check=50ms");
        let sock = b.tmp().join("status.sock");
        let b = b.arg(format!(
            "-javaagent:{}=port={port},interval=20ms,check=50ms,socket={}",
            jar.display(),
            sock.display()
        ));
        let mut jvm = quiet_crash(b).spawn();
        jvm.wait_stderr("saying the copy stays idle", deadline(), |l| {
            l.contains("another copy of cqlready already runs in this JVM")
                && l.contains("this one stays idle")
        });
        jvm.listen(port, "cql");
        ready_from(&n, &jvm);
        jvm.wait_more_checks(3);
        assert_eq!(n.count(|m| m.has_line("READY=1")), 1, "{}", n.describe());
        assert!(jvm.exit(0).success());
    });
}

#[test]
fn shim_jar_is_java_8_bytecode() {
    let tmp = TempDir::new("shimcls");
    let o = Command::new("jar")
        .arg("--extract")
        .arg("--file")
        .arg(shim_jar())
        .current_dir(tmp.path())
        .output()
        .expect("run jar");
    assert!(o.status.success(), "{o:?}");
    let mut classes = Vec::new();
    let mut stack = vec![tmp.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "class") {
                classes.push(p);
            }
        }
    }
    assert!(
        classes.iter().any(|c| c.ends_with("cqlready/Shim.class")),
        "{classes:?}"
    );
    for c in &classes {
        let b = fs::read(c).unwrap();
        assert_eq!(
            &b[..4],
            &[0xCA, 0xFE, 0xBA, 0xBE],
            "{}: not a class file",
            c.display()
        );
        let minor = u16::from_be_bytes([b[4], b[5]]);
        let major = u16::from_be_bytes([b[6], b[7]]);
        assert_eq!(
            (major, minor),
            (52, 0),
            "{}: class file {major}.{minor}, not Java 8",
            c.display()
        );
    }
}

/// The jar's manifest as key -> value.
fn manifest() -> Vec<(String, String)> {
    let tmp = TempDir::new("shimmf");
    let o = Command::new("jar")
        .args(["--extract", "--file"])
        .arg(shim_jar())
        .arg("META-INF/MANIFEST.MF")
        .current_dir(tmp.path())
        .output()
        .expect("run jar");
    assert!(o.status.success(), "{o:?}");
    fs::read_to_string(tmp.join("META-INF/MANIFEST.MF"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn library_command_and_jar_share_one_version() {
    let crate_version = env!("CARGO_PKG_VERSION");
    let mf = manifest();
    let get = |k: &str| {
        mf.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("manifest has no {k}: {mf:?}"))
    };
    assert_eq!(get("Implementation-Version"), crate_version);
    assert_eq!(get("Premain-Class"), "cqlready.Shim");
    assert_eq!(get("Agent-Class"), "cqlready.Shim");

    let o = Command::new(env!("CARGO_BIN_EXE_cqlready"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("cqlready {crate_version}")
    );

    let java = jvms().into_iter().next().unwrap();
    let n = NotifySocket::new();
    let jvm = shim_jvm(&java, &n, &format!("port={}", free_port()));
    let s = jvm.wait_status("any answer", deadline(), |_| true);
    assert_eq!(json_str(&s, "/version"), crate_version);
    // And the start line names it.
    jvm.wait_stderr("with the version", deadline(), |l| {
        l.starts_with(&format!("cqlready: info: v{crate_version} watching CQL"))
    });
}
