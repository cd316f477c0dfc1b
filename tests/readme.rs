//! What README.md and docs/command.md quote is what the code does: the
//! agent's error line for a bad option, and the doubly quoted `jcmd` line
//! that loads the agent. (The release sizes are written and checked by
//! tests/tools/release_sizes.sh, which needs the shipped release build; the generated
//! tables by tests/docs.rs.)

mod common;

use common::*;
use std::fs;
use std::process::Command;

fn readme() -> String {
    fs::read_to_string(manifest_dir().join("README.md")).expect("read README.md")
}

/// The text between the first backtick after `after` and the next one.
fn quoted_after<'a>(text: &'a str, after: &str) -> &'a str {
    let rest = &text[text
        .find(after)
        .unwrap_or_else(|| panic!("README has no {after:?}"))..];
    let start = rest.find('`').expect("an opening backtick") + 1;
    let end = start + rest[start..].find('`').expect("a closing backtick");
    &rest[start..end]
}

#[test]
fn the_quoted_error_line_is_the_agents() {
    let text = readme().replace('\n', " ");
    let quote = quoted_after(
        &text,
        "An unknown key or a bad value stops the JVM at start",
    );
    assert!(quote.starts_with("cqlready: error: "), "{quote:?}");
    let java = jvms().into_iter().next().expect("a JVM");
    let o = Command::new(&java)
        .arg(format!(
            "-agentpath:{}=interval=5parsecs",
            agent_lib().display()
        ))
        .arg("-version")
        .output()
        .expect("run java");
    assert!(!o.status.success(), "the JVM started with a bad option");
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("cqlready: error: "))
        .unwrap_or_else(|| panic!("no error line:\n{err}"));
    assert_eq!(
        quote, line,
        "README.md's quote is not what the agent prints"
    );
}

#[test]
fn the_jcmd_line_loads_the_agent() {
    if !require_cmd(
        "jcmd",
        "install a JDK 17 (apt-get install openjdk-17-jdk-headless)",
    ) {
        return;
    }
    let text = fs::read_to_string(manifest_dir().join("docs/command.md")).expect("docs/command.md");
    let shown = text
        .lines()
        .find(|l| l.starts_with("jcmd 4242 JVMTI.agent_load "))
        .expect("docs/command.md shows the jcmd line");
    let port = free_port();
    let mut jvm = Jvm::builder(&jvms()[0]).no_agent().spawn();
    jvm.fixture_pid();
    let line = shown
        .replace("4242", &jvm.pid.to_string())
        .replace(
            "/usr/lib/cqlready/libcqlready.so",
            &agent_lib().display().to_string(),
        )
        .replace("9042", &port.to_string());
    let o = Command::new("sh")
        .args(["-c", &line])
        .output()
        .expect("run jcmd");
    assert!(o.status.success(), "{line}: {o:?}\n{}", jvm.describe());
    jvm.wait_stderr("the agent watching the port given", deadline(), |l| {
        l.contains(&format!(
            "watching CQL on 127.0.0.1:{port} (port from option"
        ))
    });
    assert_eq!(jvm.exit(0).code(), Some(0));
}
