//! The one skip policy of the test suite.
//!
//! A test that needs something the machine may lack (a tool, a JVM, root, a
//! kernel feature) asks [`require`]. When it is there, the test runs. When it
//! is missing, the test FAILS, naming what is missing and how to get it
//! (`bash tests/setup.sh` installs all of it), unless `CQLREADY_ALLOW_SKIP=1`:
//! then the skip is appended to `target/cqlready-skips.txt` (one line: test,
//! what, how) and `tests/run.sh` ends by listing every line of that file. So a
//! test never passes on nothing without the run saying so.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable that turns a missing prerequisite into a
/// recorded skip instead of a failure.
pub const ALLOW_SKIP: &str = "CQLREADY_ALLOW_SKIP";

/// The file every recorded skip is appended to (`tests/run.sh` reads it).
pub fn skips_file() -> PathBuf {
    super::target_dir().join("cqlready-skips.txt")
}

/// `true` when `present`. Otherwise fails the calling test with `what` is
/// missing and `how` to get it, or, with `CQLREADY_ALLOW_SKIP=1`, records
/// the skip and returns `false` (the caller then returns at once).
pub fn require(present: bool, what: &str, how: &str) -> bool {
    if present {
        return true;
    }
    let test = test_name();
    if std::env::var(ALLOW_SKIP).as_deref() != Ok("1") {
        panic!("{test}: {what} is missing; {how} (or set {ALLOW_SKIP}=1 to record a skip instead)");
    }
    let line = format!("{test}: {what} missing ({how})\n");
    eprint!("SKIPPED {line}");
    let file = skips_file();
    let written = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        // One write per line: concurrent test binaries do not interleave.
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("{test}: cannot record the skip in {}: {e}", file.display());
    }
    false
}

/// [`require`] for a command on `PATH`.
pub fn require_cmd(name: &str, how: &str) -> bool {
    require(
        super::which(name).is_some(),
        &format!("the `{name}` command"),
        how,
    )
}

/// [`require`] for a file (a library, a JVM).
pub fn require_file(path: &Path, how: &str) -> bool {
    require(path.exists(), &path.display().to_string(), how)
}

/// [`require`] for root (the attach, security and systemd tests act as
/// other users and create namespaces).
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    require(
        euid == 0,
        "root",
        "run the tests as root (sudo bash tests/run.sh)",
    )
}

/// `binary::test`, from the test binary's name and the test thread's name
/// (libtest names each test's thread after the test).
fn test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => s,
        })
        .unwrap_or_else(|| "tests".into());
    let thread = std::thread::current();
    format!("{binary}::{}", thread.name().unwrap_or("?"))
}
