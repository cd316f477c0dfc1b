//! The product image (docker/Dockerfile) built once for the container
//! tests, and the one way they run Podman.
//!
//! tests/docker.rs and tests/podman.rs both take the image from
//! docker/test-image.sh, which holds a machine-wide lock and reuses every
//! cached layer: the first binary builds it, the next finds it built.
//! Within one binary every Podman command but the long waits goes through
//! one lock, so no two run at once against the one image store.

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

/// The Cassandra versions the container tests run: the product image of
/// each is built at the first call of [`product_image`], before any test
/// of the binary starts a container, so no build runs beside a container.
pub const IMAGE_VERSIONS: [&str; 2] = ["5.0", "4.1"];

/// Whether Podman is here; without it the test fails, or with
/// CQLREADY_ALLOW_SKIP=1 records the skip (tests/common/skip.rs).
pub fn have_podman() -> bool {
    let ok = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    super::require(
        ok,
        "podman",
        "apt-get install podman runc mmdebstrap (tests/setup.sh does)",
    )
}

/// `podman --runtime runc`: this machine's runtime (crun refuses its
/// cgroup layout outside the nspawn container).
pub fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc"]);
    c
}

/// The lock every Podman command of this binary holds while it runs.
pub fn podman_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `cmd` (a Podman command) under [`podman_lock`].
pub fn podman_output(cmd: &mut Command) -> Output {
    let _one = podman_lock();
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `podman ARGS` under [`podman_lock`], except `wait` and `stop`, which
/// last as long as a container takes and hold no store lock meanwhile.
pub fn podman_out(args: &[&str]) -> Output {
    let mut cmd = podman();
    cmd.args(args);
    match args.first() {
        Some(&"wait") | Some(&"stop") => cmd
            .output()
            .unwrap_or_else(|e| panic!("podman {args:?}: {e}")),
        _ => podman_output(&mut cmd),
    }
}

/// `localhost/cqlready-cassandra:<version>`, built (with every other
/// version of [`IMAGE_VERSIONS`]) by docker/test-image.sh at the first call.
pub fn product_image(version: &str) -> String {
    static IMAGES: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    let mut images = IMAGES.lock().unwrap_or_else(|e| e.into_inner());
    let images = images.get_or_insert_with(|| {
        IMAGE_VERSIONS
            .iter()
            .map(|v| (v.to_string(), build_image(v)))
            .collect()
    });
    images
        .get(version)
        .unwrap_or_else(|| panic!("no product image for {version}: add it to IMAGE_VERSIONS"))
        .clone()
}

fn build_image(version: &str) -> String {
    let _one = podman_lock();
    let o = Command::new("bash")
        .arg(super::manifest_dir().join("docker/test-image.sh"))
        .arg(version)
        .stderr(Stdio::inherit())
        .output()
        .expect("run docker/test-image.sh");
    assert!(
        o.status.success(),
        "docker/test-image.sh {version} failed: exit {:?}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout)
    );
    let tag = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert_eq!(tag, format!("localhost/cqlready-cassandra:{version}"));
    tag
}
