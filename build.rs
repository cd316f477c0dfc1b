//! Bakes the source's git commit into release builds of the library and the
//! command as `CQLREADY_COMMIT` (`crate::COMMIT`), shown in `/status`
//! (`commit`) and by `cqlready status`, so an operator can tell which build a
//! node runs even between two releases of the same version.
//!
//! - `$CQLREADY_COMMIT` overrides it in any build (a packager building from a
//!   tarball);
//! - a release build (`cargo build --release`, any profile that inherits
//!   from `release`) takes `git rev-parse --short=12 HEAD` and reruns when
//!   HEAD moves, or says "unknown" without git;
//! - every other build (debug: `cargo build`, `cargo test`) says "dev" and
//!   never looks at git, so a commit does not rebuild the crate: a hash baked
//!   once and never refreshed would name a commit the build is not.

use std::path::PathBuf;
use std::process::Command;

/// What a non-release build reports as its commit.
const DEV: &str = "dev";

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The checkout's commit, with the files whose change means HEAD moved:
/// HEAD itself, the branch it names, and packed refs (a worktree keeps HEAD
/// apart from the refs).
fn head_commit() -> String {
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!(
            "cargo:rerun-if-changed={}",
            PathBuf::from(&dir).join("HEAD").display()
        );
    }
    if let (Some(common), Some(head_ref)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        let common = PathBuf::from(common);
        println!(
            "cargo:rerun-if-changed={}",
            common.join(&head_ref).display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            common.join("packed-refs").display()
        );
    }
    // The commit only: whether the tree had uncommitted changes cannot be
    // kept true, as editing a source does not rerun this.
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
}

fn main() {
    // Without any rerun-if-changed, cargo would rerun this on every change
    // of any file of the package.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CQLREADY_COMMIT");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let commit = match std::env::var("CQLREADY_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ if release => head_commit(),
        _ => DEV.to_string(),
    };
    // One printable token: it ends up in JSON and in log lines.
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'))
        .take(64)
        .collect();
    println!("cargo:rustc-env=CQLREADY_COMMIT={commit}");
}
