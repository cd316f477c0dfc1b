//! Who may use the status socket, and what outside text can do to the
//! notify protocol: the checks behind the README's security review.

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

fn java() -> std::path::PathBuf {
    jvms().into_iter().next().expect("a JVM")
}

fn nogroup() -> u32 {
    cqlready::agent_process::group_id("nogroup").expect("a nogroup group")
}

/// `cqlready probe --socket S` as uid/gid 65534 (nobody), with `groups` as
/// its supplementary groups.
fn probe_as_nobody(sock: &Path, groups: &str) -> Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534"]);
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        c.arg(format!("--groups={groups}"));
    }
    c.arg(env!("CARGO_BIN_EXE_cqlready"))
        .args(["status", "--json", "--socket"])
        .arg(sock)
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn only_the_jvm_user_root_and_the_group_get_answers() {
    if !common::require_root() {
        return;
    }
    let port = free_port();
    for (group_opt, nobody_allowed) in [(None, false), (Some(nogroup()), true)] {
        let mut b = Jvm::builder(&java()).opt(format!("port={port}"));
        if let Some(g) = group_opt {
            b = b.opt(format!("group={g}"));
        }
        let jvm = b.spawn();
        let sock = jvm.socket().to_path_buf();
        jvm.wait_status("the agent answers", deadline(), |s| {
            s["checks"]["total"].as_u64() >= Some(1)
        });
        let meta = std::fs::metadata(&sock).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
        if let Some(g) = group_opt {
            assert_eq!(
                meta.gid(),
                g,
                "the socket file belongs to the configured group"
            );
        }
        // Open the file and its directory to everyone: only the agent's own
        // SO_PEERCRED check stands between nobody and the answer.
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(
            sock.parent().unwrap(),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let o = probe_as_nobody(&sock, "");
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        if nobody_allowed {
            assert_eq!(o.status.code(), Some(0), "group member refused: {out}");
            assert!(out.contains("\"state\""), "{out}");
        } else {
            assert_eq!(o.status.code(), Some(2), "nobody got an answer: {out}");
            assert!(!out.contains("\"state\""), "{out}");
            assert!(out.contains("refused uid 65534"), "{out}");
            jvm.wait_stderr("one line about the refusal", deadline(), |l| {
                l.contains("refused uid 65534")
            });
        }
        // Root is always allowed.
        assert!(http_get(&sock, "/live").is_ok_and(|r| r.status == 200));
    }
}

#[test]
fn a_supplementary_group_is_enough() {
    if !common::require_root() {
        return;
    }
    let g = nogroup();
    let jvm = Jvm::builder(&java())
        .opt(format!("port={}", free_port()))
        .opt("group=nogroup")
        .spawn();
    let sock = jvm.socket().to_path_buf();
    jvm.wait_status("the agent answers", deadline(), |s| {
        s["checks"]["total"].as_u64() >= Some(1)
    });
    std::fs::set_permissions(
        sock.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // Primary gid 65534 is nogroup itself on Debian; use another primary gid
    // and nogroup only as a supplementary group.
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=1", &format!("--groups={g}")])
        .arg(env!("CARGO_BIN_EXE_cqlready"))
        .args(["probe", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("not ready"));
}

#[test]
fn unknown_group_stops_the_jvm() {
    let mut jvm = Jvm::builder(&java())
        .opt("group=no-such-group-here")
        .spawn();
    let status = jvm.wait_exit(deadline());
    assert!(!status.success());
    jvm.wait_stderr("the error line", deadline(), |l| {
        l.contains("cqlready") && l.contains("\"no-such-group-here\"") && l.contains("group")
    });
}

#[test]
fn a_cql_error_message_cannot_forge_notify_fields() {
    let n = NotifySocket::new();
    let port = free_port();
    let mut jvm = Jvm::builder(&java())
        .notify(&n)
        .opt(format!("port={port}"))
        .opt("interval=20ms")
        .spawn();
    jvm.listen(port, "forger");
    let forged = n.wait_msg("the error text in a STATUS line", deadline(), |m| {
        m.text.contains("Server error")
    });
    assert_eq!(
        forged.text.lines().count(),
        1,
        "one line only: {:?}",
        forged.text
    );
    assert!(
        forged.text.starts_with("STATUS=Waiting for CQL"),
        "{:?}",
        forged.text
    );
    assert!(
        forged
            .text
            .contains("Server error READY=1 STATUS=forged  WATCHDOG=1"),
        "{:?}",
        forged.text
    );
    jvm.wait_status("more failed checks", deadline(), |s| {
        s["checks"]["failed"].as_u64() >= Some(5)
    });
    assert_eq!(n.count(|m| m.has_line("READY=1")), 0, "{}", n.describe());
    assert_eq!(n.count(|m| m.has_line("WATCHDOG=1")), 0, "{}", n.describe());
    let s = jvm.wait_status("starting", deadline(), |s| s["state"] == "starting");
    assert!(!s["last_check"]["error"].as_str().unwrap_or("").is_empty());
}
