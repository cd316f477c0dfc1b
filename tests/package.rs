//! The packages (tools/package.sh): what the .deb, the .rpm and the tarball
//! hold, their lint, the .rpm installed with `rpm --root`, and the .deb on a
//! real system (tests/package/proof.sh: a booted Debian root with a stand-in
//! for Apache's cassandra package); `cassandra-start`, the unit's ExecStart,
//! on its inputs; tools/install.sh replacing a library a running JVM has
//! loaded.
//!
//! Needs root, nfpm, lintian, rpmlint, rpm, dpkg-deb, systemd-nspawn,
//! mmdebstrap and javac (`bash tests/setup.sh`); each missing one fails the
//! test unless CQLREADY_ALLOW_SKIP=1.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// Runs `cmd`, returns its output, fails the test naming it when it fails.
fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn text(cmd: &mut Command) -> String {
    let o = run(cmd);
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn cargo_version() -> String {
    let toml = fs::read_to_string(manifest_dir().join("Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("a version in Cargo.toml")
        .to_string()
}

/// `tools/package.sh ARGS`: the paths it printed (deb, rpm, tar.gz, sums).
fn package(args: &[&str]) -> Vec<PathBuf> {
    let o = Command::new("bash")
        .arg(manifest_dir().join("tools/package.sh"))
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run tools/package.sh");
    assert!(o.status.success(), "tools/package.sh {args:?} failed");
    let out: Vec<PathBuf> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(out.len(), 4, "package.sh printed {out:?}");
    out
}

fn have_tools() -> bool {
    let how = "bash tests/setup.sh";
    require_root()
        && [
            "nfpm",
            "lintian",
            "rpmlint",
            "rpm",
            "dpkg-deb",
            "systemd-nspawn",
            "mmdebstrap",
            "javac",
        ]
        .iter()
        .all(|t| require_cmd(t, how))
}

/// Every file the packages install, under both layouts' unit directory.
fn expected_files(version: &str, unit_dir: &str) -> Vec<String> {
    let mut files: Vec<String> = [
        format!("/usr/lib/cqlready/{version}/libcqlready.so"),
        "/usr/lib/cqlready/libcqlready.so".into(),
        "/usr/lib/cqlready/cqlready-shim.jar".into(),
        "/usr/lib/cqlready/cassandra-start".into(),
        "/usr/lib/cqlready/cassandra-stop".into(),
        "/usr/bin/cqlready".into(),
        format!("{unit_dir}/cassandra.service"),
        "/usr/share/doc/cqlready/README".into(),
    ]
    .into();
    for sub in ["", "-status", "-probe", "-wait", "-watch", "-attach"] {
        files.push(format!("/usr/share/doc/cqlready/help/cqlready{sub}.txt"));
    }
    files
}

fn check_deb(deb: &Path, version: &str) {
    let listing = text(Command::new("dpkg-deb").arg("-c").arg(deb));
    for f in expected_files(version, "/lib/systemd/system") {
        assert!(
            listing.contains(&format!(".{f}")),
            "{} lacks {f}:\n{listing}",
            deb.display()
        );
    }
    assert!(listing.contains(&format!("libcqlready.so -> {version}/libcqlready.so")));
    let depends = text(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(deb)
            .arg("Depends"),
    );
    assert!(depends.contains("cassandra"), "Depends: {depends}");
    for conffile in ["/etc/cassandra", "/etc/default/cassandra", "jvm"] {
        assert!(
            !listing.contains(conffile),
            "the .deb ships {conffile}: {listing}"
        );
    }
    let lint = text(Command::new("lintian").arg(deb));
    assert!(
        !lint.lines().any(|l| l.starts_with("E:")),
        "lintian errors:\n{lint}"
    );
}

fn check_rpm(rpm: &Path, version: &str) {
    let q = |args: &[&str]| text(Command::new("rpm").args(["-qp"]).args(args).arg(rpm));
    let listing = q(&["-l"]);
    for f in expected_files(version, "/usr/lib/systemd/system") {
        assert!(
            listing.lines().any(|l| l == f),
            "{} lacks {f}:\n{listing}",
            rpm.display()
        );
    }
    assert!(
        q(&["-R"]).lines().any(|l| l.trim() == "cassandra"),
        "the .rpm does not require cassandra"
    );
    // The scriptlets are the package's scripts, dpkg's and rpm's arguments both handled.
    let scripts = q(&["--scripts"]);
    for (script, rpm_args) in [
        ("postinst", "configure|1|2"),
        ("prerm", "remove|0"),
        ("postrm", "remove|purge|0"),
    ] {
        let body =
            fs::read_to_string(manifest_dir().join("packaging/scripts").join(script)).unwrap();
        assert!(
            scripts.contains(body.trim()),
            "the .rpm's scriptlets lack packaging/scripts/{script}"
        );
        assert!(
            body.contains(rpm_args),
            "packaging/scripts/{script} does not take {rpm_args}"
        );
    }
    let config = manifest_dir().join("packaging/rpmlint.toml");
    let lint = text(Command::new("rpmlint").arg("-c").arg(&config).arg(rpm));
    assert!(lint.contains(" 0 errors"), "rpmlint:\n{lint}");
    // Installed into a directory: its files, the link resolving to this version.
    let root = TempDir::new("rpmroot");
    run(Command::new("rpm")
        .arg("--root")
        .arg(root.path())
        .args(["--nodeps", "--noscripts", "-i"])
        .arg(rpm));
    let link = root.join("usr/lib/cqlready/libcqlready.so");
    assert_eq!(
        fs::canonicalize(&link).unwrap(),
        fs::canonicalize(root.join(&format!("usr/lib/cqlready/{version}/libcqlready.so"))).unwrap()
    );
    let queried = text(
        Command::new("rpm")
            .arg("--root")
            .arg(root.path())
            .args(["-q", "cqlready"]),
    );
    assert!(
        queried.contains(&format!("cqlready-{version}-1")),
        "{queried}"
    );
}

fn check_tarball(tgz: &Path, sums: &Path) {
    let listing = text(Command::new("tar").arg("-tzf").arg(tgz));
    for f in [
        "libcqlready.so",
        "cqlready",
        "cqlready-shim.jar",
        "install.sh",
        "cassandra.service",
        "README",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!("/{f}"))),
            "the tarball lacks {f}:\n{listing}"
        );
    }
    let dir = sums.parent().unwrap();
    let checked = text(
        Command::new("sha256sum")
            .arg("-c")
            .arg(sums)
            .current_dir(dir),
    );
    assert_eq!(checked.matches(": OK").count(), 3, "{checked}");
}

/// The next patch version: the upgrade the proof installs.
fn next_patch(version: &str) -> String {
    let (head, patch) = version.rsplit_once('.').expect("N.N.N");
    format!(
        "{head}.{}",
        patch.parse::<u32>().expect("a numeric patch") + 1
    )
}

#[test]
fn packages_are_built_linted_and_proven_on_a_booted_debian() {
    if !have_tools() {
        return;
    }
    let version = cargo_version();
    let built = package(&[]);
    let names = [
        format!("cqlready_{version}_amd64.deb"),
        format!("cqlready-{version}-1.x86_64.rpm"),
        format!("cqlready-{version}-x86_64-linux-gnu.tar.gz"),
        "SHA256SUMS".into(),
    ];
    for (path, name) in built.iter().zip(&names) {
        assert!(
            path.ends_with(name) && path.is_file(),
            "{} is not {name}",
            path.display()
        );
    }
    check_deb(&built[0], &version);
    check_rpm(&built[1], &version);
    check_tarball(&built[2], &built[3]);

    // The same build packaged as the next version: the upgrade.
    let release = manifest_dir().join("target/zigbuild/x86_64-unknown-linux-gnu/release");
    let out = manifest_dir().join("target/package/upgrade");
    let next = next_patch(&version);
    let upgrade = package(&[
        "--from",
        release.to_str().unwrap(),
        "--version",
        &next,
        "--out",
        out.to_str().unwrap(),
    ]);
    let o = Command::new("bash")
        .arg(manifest_dir().join("tests/package/proof.sh"))
        .arg(&built[0])
        .arg(&upgrade[0])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run tests/package/proof.sh");
    assert!(
        o.status.success(),
        "tests/package/proof.sh failed (its last lines above)"
    );
    let results =
        fs::read_to_string(manifest_dir().join("target/package/proof-results.md")).unwrap();
    assert!(results.contains("the whole proof"), "{results}");
}

/// One run of packaging/cassandra-start with a stub in place of
/// /usr/sbin/cassandra that prints what it was given.
struct Start {
    defaults: Option<&'static str>,
    cassandra: bool,
    /// Run as nobody with a root-owned 0755 runtime directory.
    unwritable: bool,
}

/// (exit code, the stub's line, stderr, the pid file's content)
fn start(dir: &TempDir, s: &Start) -> (i32, String, String, String) {
    let stub = dir.join("cassandra");
    fs::write(
        &stub,
        "#!/bin/sh\necho \"pid=$$ args=$* opts=$JVM_EXTRA_OPTS rd=${RUNTIME_DIRECTORY:-unset}\"\n",
    )
    .unwrap();
    let _ = fs::remove_file(dir.join("run/cassandra.pid"));
    fs::create_dir_all(dir.join("run")).unwrap();
    let mode = |m: u32| fs::Permissions::from_mode(m);
    fs::set_permissions(
        dir.join("run"),
        mode(if s.unwritable { 0o755 } else { 0o777 }),
    )
    .unwrap();
    fs::set_permissions(&stub, mode(if s.cassandra { 0o755 } else { 0o644 })).unwrap();
    let defaults = dir.join("default");
    let _ = fs::remove_file(&defaults);
    if let Some(d) = s.defaults {
        fs::write(&defaults, d).unwrap();
    }
    // A copy in the test's own directory: another uid may not reach the
    // checkout (a clone under /root).
    let script = dir.join("cassandra-start");
    fs::copy(manifest_dir().join("packaging/cassandra-start"), &script).unwrap();
    fs::set_permissions(&script, mode(0o755)).unwrap();
    let mut cmd = if s.unwritable {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh"])
            .arg(&script);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg(&script);
        c
    };
    let o = cmd
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CQLREADY_CASSANDRA", &stub)
        .env("CQLREADY_LIB", "/usr/lib/cqlready/libcqlready.so")
        .env("CQLREADY_DEFAULTS", &defaults)
        .env("RUNTIME_DIRECTORY", dir.join("run"))
        .output()
        .expect("run packaging/cassandra-start");
    if let Some(d) = s.defaults {
        assert_eq!(
            fs::read_to_string(&defaults).unwrap(),
            d,
            "the defaults file changed"
        );
    }
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        fs::read_to_string(dir.join("run/cassandra.pid"))
            .unwrap_or_default()
            .trim()
            .to_string(),
    )
}

#[test]
fn cassandra_start_keeps_the_operators_options_and_says_what_is_wrong() {
    if !require_root() || !require_cmd("setpriv", "apt-get install util-linux") {
        return;
    }
    let dir = TempDir::new("start");
    let lib = "-agentpath:/usr/lib/cqlready/libcqlready.so";
    // (case, exit, in the stub's line, in stderr)
    let rows: [(Start, i32, String, &str); 5] = [
        (Start { defaults: None, cassandra: true, unwritable: false }, 0, format!("args=-f opts={lib} rd=/"), ""),
        (
            Start { defaults: Some("# the operator's\nJVM_EXTRA_OPTS=\"-Dop=kept -Xss512k\"\nCQLREADY_OPTIONS=check=2s\nfalse\necho $UNSET_THING >/dev/null\n"), cassandra: true, unwritable: false },
            0,
            format!("opts=-Dop=kept -Xss512k {lib}=check=2s rd="),
            "",
        ),
        (
            Start { defaults: Some("JVM_EXTRA_OPTS=\"-agentpath:/opt/x/libcqlready.so=log=warn\"\n"), cassandra: true, unwritable: false },
            0,
            "opts=-agentpath:/opt/x/libcqlready.so=log=warn rd=".into(),
            "JVM_EXTRA_OPTS already loads the agent",
        ),
        (
            Start { defaults: None, cassandra: false, unwritable: false },
            78,
            String::new(),
            "not found: Apache Cassandra's package (cassandra) is not installed",
        ),
        (
            Start { defaults: None, cassandra: true, unwritable: true },
            0,
            format!("opts={lib} rd=unset"),
            "is not writable by nobody: the status socket goes to /tmp/cqlready-",
        ),
    ];
    for (case, code, line, err) in rows {
        let (got_code, got_line, got_err, pidfile) = start(&dir, &case);
        let seen = format!("exit {got_code}, stdout {got_line:?}, stderr {got_err:?}");
        assert_eq!(got_code, code, "{seen}");
        assert!(got_line.contains(&line), "stub line lacks {line:?}: {seen}");
        assert!(got_err.contains(err), "stderr lacks {err:?}: {seen}");
        if code == 0 && !case.unwritable {
            // exec all the way: the pid file holds the pid the stub (the JVM) runs as.
            assert!(
                got_line.starts_with(&format!("pid={pidfile} ")),
                "pid file {pidfile:?}: {seen}"
            );
        }
    }
}

#[test]
fn install_sh_replaces_a_library_a_running_jvm_has_loaded() {
    let prefix = TempDir::new("inst");
    let from = TempDir::new("from");
    fs::copy(agent_lib(), from.join("libcqlready.so")).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_cqlready"), from.join("cqlready")).unwrap();
    let install = || {
        text(
            Command::new("bash")
                .arg(manifest_dir().join("tools/install.sh"))
                .arg("--prefix")
                .arg(prefix.path())
                .arg("--from")
                .arg(from.path()),
        )
    };
    let said = install();
    let link = prefix.join("lib/cqlready/libcqlready.so");
    let version = cqlready::VERSION;
    assert!(said.contains(&format!("cqlready {version}")), "{said}");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new(&format!("{version}/libcqlready.so"))
    );
    let java = jvms().into_iter().next().expect("a JVM");
    let sock = prefix.join("s.sock");
    let mut jvm = Jvm::builder(&java)
        .no_agent()
        .arg(format!(
            "-agentpath:{}=socket={}",
            link.display(),
            sock.display()
        ))
        .spawn();
    jvm.set_socket(sock.clone());
    poll(
        "the agent to answer",
        deadline(),
        || http_get(&sock, "/status").ok(),
        || jvm.describe(),
    );
    // The same version again, as an operator re-running the install would:
    // the loaded file is replaced by rename, never written into.
    install();
    let maps = fs::read_to_string(format!("/proc/{}/maps", jvm.pid)).unwrap();
    assert!(
        maps.contains("libcqlready.so (deleted)"),
        "the loaded library was not replaced by rename:\n{maps}"
    );
    let v = poll(
        "the agent to answer after the reinstall",
        deadline(),
        || http_get(&sock, "/status").ok(),
        || jvm.describe(),
    )
    .json();
    assert_eq!(v["version"], version, "{v}");
    let state = fs::read_to_string(format!("/proc/{}/stat", jvm.pid)).unwrap_or_default();
    assert!(
        state.contains(") S") || state.contains(") R"),
        "the JVM is not running: {state}"
    );
}
