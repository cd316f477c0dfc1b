//! The release artefacts for old glibc (tools/release.sh: `cargo zigbuild
//! --target x86_64-unknown-linux-gnu.2.17`): the library and the command need
//! no glibc symbol version newer than GLIBC_2.17, and that library loads into
//! every JVM here and answers on its status socket.
//!
//! Needs cargo-zigbuild and zig (PyPI: cargo-zigbuild, ziglang; the script
//! installs them into a venv when missing) and objdump (binutils). Missing
//! tools fail the test unless CQLREADY_ALLOW_SKIP=1.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

const TARGET: &str = "x86_64-unknown-linux-gnu.2.17";
const BASELINE: (u32, u32) = (2, 17);

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
    if !require_cmd("python3", "apt-get install python3-venv")
        || !require_cmd("objdump", "apt-get install binutils")
    {
        return;
    }
    let dir = build();
    let lib = dir.join("libcqlready.so");
    for file in [lib.clone(), dir.join("cqlready")] {
        let versions = glibc_needs(&file);
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
