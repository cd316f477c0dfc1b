//! The release artefacts for old glibc (tools/release.sh: `cargo zigbuild
//! --target x86_64-unknown-linux-gnu.2.17`): the library and the command need
//! no glibc symbol version newer than GLIBC_2.17, and that library loads into
//! every JVM here and answers on its status socket.
//!
//! Needs cargo-zigbuild and zig (PyPI: cargo-zigbuild, ziglang; the script
//! installs them into a venv when missing) and objdump (binutils). Missing
//! tools fail the test unless CQLREADY_ALLOW_SKIP=1.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const TARGET: &str = "x86_64-unknown-linux-gnu.2.17";
const BASELINE: (u32, u32) = (2, 17);

/// The GLIBC_x.y versions `path` needs, from its dynamic symbol table.
fn glibc_versions(path: &Path) -> BTreeSet<(u32, u32)> {
    let o = Command::new("objdump")
        .arg("-T")
        .arg(path)
        .output()
        .expect("objdump (apt-get install binutils)");
    assert!(o.status.success(), "objdump -T {}", path.display());
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

/// Runs tools/release.sh for TARGET; the directory holding its output.
fn build() -> PathBuf {
    let o = Command::new("bash")
        .arg(manifest_dir().join("tools/release.sh"))
        .arg(TARGET)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run tools/release.sh");
    assert!(o.status.success(), "tools/release.sh {TARGET} failed");
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().last().unwrap_or_default();
    let (t, dir) = line.split_once(' ').expect("\"<target> <dir>\"");
    assert_eq!(t, TARGET);
    PathBuf::from(dir)
}

#[test]
fn the_old_glibc_build_needs_at_most_2_17_and_loads_into_a_jvm() {
    let have = Command::new("python3").arg("--version").output().is_ok()
        && Command::new("objdump").arg("--version").output().is_ok();
    if !have {
        assert!(
            std::env::var("CQLREADY_ALLOW_SKIP").as_deref() == Ok("1"),
            "python3 and objdump are needed (or CQLREADY_ALLOW_SKIP=1)"
        );
        return;
    }
    let dir = build();
    let lib = dir.join("libcqlready.so");
    for file in [lib.clone(), dir.join("cqlready")] {
        let versions = glibc_versions(&file);
        let newest = versions.iter().max().copied();
        assert!(
            newest.is_some_and(|v| v <= BASELINE),
            "{} needs {:?} (newest {newest:?}), more than GLIBC_2.17",
            file.display(),
            versions
        );
    }
    let o = Command::new(dir.join("cqlready"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(o.status.success(), "cqlready --version");

    // That library, loaded into every JVM here (the helpers take it from
    // $CQLREADY_LIB), answers on its status socket.
    std::env::set_var("CQLREADY_LIB", &lib);
    assert_eq!(agent_lib(), lib.canonicalize().unwrap());
    for java in jvms() {
        let jvm = Jvm::builder(&java).spawn();
        let v = poll(
            "the status socket to answer",
            deadline(),
            || http_get(jvm.socket(), "/status").ok(),
            || jvm.describe(),
        )
        .json();
        assert!(v.get("state").is_some(), "{} /status: {v}", java.display());
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", jvm.pid)).unwrap();
        assert!(
            maps.contains(&lib.canonicalize().unwrap().display().to_string()),
            "{} did not map {}",
            java.display(),
            lib.display()
        );
    }
}
