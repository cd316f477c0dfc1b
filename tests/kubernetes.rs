//! docs/kubernetes.md: the StatefulSet's probe commands, taken exactly as
//! written from the doc's first `yaml` block, run against a real JVM with the
//! agent (socket path moved to a temporary directory), on every JVM.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use yaml_rust2::{Yaml, YamlLoader};

const DOC_SOCKET: &str = "/var/run/cqlready/cqlready.sock";
const DOC_SOCKET_DIR: &str = "/var/run/cqlready";
const PROBES: [&str; 3] = ["startupProbe", "readinessProbe", "livenessProbe"];

/// The fenced ```yaml blocks of the doc, in order.
fn yaml_blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match &mut cur {
            None if line.trim_start().starts_with("```yaml") => cur = Some(String::new()),
            Some(_) if line.trim_start().starts_with("```") => out.push(cur.take().unwrap()),
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    assert!(cur.is_none(), "unterminated yaml block");
    out
}

fn statefulset() -> Yaml {
    let md =
        fs::read_to_string(manifest_dir().join("docs/kubernetes.md")).expect("docs/kubernetes.md");
    let blocks = yaml_blocks(&md);
    assert!(!blocks.is_empty(), "no yaml block in docs/kubernetes.md");
    let docs = YamlLoader::load_from_str(&blocks[0]).expect("the first yaml block parses");
    let sts = docs.into_iter().next().expect("one document");
    assert_eq!(sts["kind"].as_str(), Some("StatefulSet"));
    sts
}

/// The probe's exec.command, and its timeoutSeconds.
fn probe(container: &Yaml, name: &str) -> (Vec<String>, i64) {
    let p = &container[name];
    assert!(!p.is_badvalue(), "{name} missing");
    let cmd: Vec<String> = p["exec"]["command"]
        .as_vec()
        .unwrap_or_else(|| panic!("{name}.exec.command is not a list"))
        .iter()
        .map(|y| match y {
            Yaml::String(s) => s.clone(),
            other => panic!("{name}: non-string argument {other:?}"),
        })
        .collect();
    let timeout = p["timeoutSeconds"].as_i64().unwrap_or(1);
    (cmd, timeout)
}

fn cassandra_container(sts: &Yaml) -> &Yaml {
    let containers = sts["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some("cassandra"))
        .expect("a container named cassandra")
}

#[test]
fn the_socket_lives_in_an_emptydir() {
    let sts = statefulset();
    let c = cassandra_container(&sts);
    let mounts = c["volumeMounts"].as_vec().expect("volumeMounts");
    let m = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(DOC_SOCKET_DIR))
        .expect("a volume mounted at /var/run/cqlready");
    let vol_name = m["name"].as_str().unwrap();
    let vols = sts["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .expect("volumes");
    let v = vols
        .iter()
        .find(|v| v["name"].as_str() == Some(vol_name))
        .expect("the volume is declared");
    assert!(
        !v["emptyDir"].is_badvalue(),
        "{vol_name} is an emptyDir: {v:?}"
    );

    for name in PROBES {
        let (cmd, timeout) = probe(c, name);
        assert_eq!(cmd, ["cqlready", "probe", "--socket", DOC_SOCKET], "{name}");
        // probe's own budget is 2 s; Kubernetes' default timeout is 1 s.
        assert!(
            timeout > 2,
            "{name}: timeoutSeconds {timeout} <= probe's 2 s"
        );
    }
    // Liveness is lenient: at least a few minutes of failures.
    let l = &c["livenessProbe"];
    let span =
        l["periodSeconds"].as_i64().unwrap_or(10) * l["failureThreshold"].as_i64().unwrap_or(3);
    assert!(span >= 120, "liveness gives up after only {span} s");
    // The image's own socket (the entrypoint's default) is the one probed.
    let wrapper = fs::read_to_string(manifest_dir().join("docker/cqlready-entrypoint.sh")).unwrap();
    assert!(wrapper.contains(&format!("socket={DOC_SOCKET}")));
}

fn run(cmd: &[String], socket: &Path) -> (i32, String) {
    let av: Vec<String> = cmd
        .iter()
        .map(|a| a.replace(DOC_SOCKET, socket.to_str().unwrap()))
        .collect();
    assert_eq!(av[0], "cqlready");
    let o = Command::new(env!("CARGO_BIN_EXE_cqlready"))
        .args(&av[1..])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{av:?}: exit {:?}\n{}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn the_probe_commands_follow_the_agent() {
    let sts = statefulset();
    let c = cassandra_container(&sts);
    let cmds: Vec<(&str, Vec<String>)> = PROBES.iter().map(|n| (*n, probe(c, n).0)).collect();
    let all = |socket: &Path, want: i32, when: &str, jvm: Option<&Jvm>| {
        for (name, cmd) in &cmds {
            let (code, out) = run(cmd, socket);
            assert_eq!(
                code,
                want,
                "{name} {when}: {out}\n{}",
                jvm.map(Jvm::describe).unwrap_or_default()
            );
        }
    };

    for java in jvms() {
        eprintln!("=== {}", java.display());
        let port = free_port();
        let b = Jvm::builder(&java);
        let socket = b.tmp().join("cqlready.sock");
        all(&socket, 2, "before the JVM", None);
        let mut jvm = b
            .opt(format!("port={port}"))
            .opt("interval=20ms")
            .opt("check=50ms")
            .opt("failures=1")
            .opt(format!("socket={}", socket.display()))
            .spawn();
        jvm.wait_status("the agent answers", deadline(), |s| {
            s["checks"]["failed"].as_u64() >= Some(1)
        });
        all(&socket, 1, "while starting", Some(&jvm));
        jvm.listen(port, "cql");
        jvm.wait_status("ready", deadline(), |s| s["state"] == "ready");
        all(&socket, 0, "when ready", Some(&jvm));
        jvm.close_listeners();
        jvm.wait_status("degraded", deadline(), |s| s["state"] == "degraded");
        all(&socket, 1, "when degraded", Some(&jvm));
        assert!(jvm.exit(0).success());
        all(&socket, 2, "after the JVM", None);
    }
}
