//! One fixture JVM (tests/fixtures/CqlFixture.java) with the agent loaded:
//! its builder, its output, its status socket.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use serde_json::Value;

use super::{
    agent_lib, deadline, fixture_classpath, http_get, json_u64, poll, NotifySocket, TempDir, POLL,
};

// ---------------------------------------------------------------------------
// One fixture JVM

struct Lines {
    /// (time received, line), and whether the stream ended.
    state: Mutex<(Vec<(Instant, String)>, bool)>,
    cv: Condvar,
}

impl Lines {
    fn new() -> Arc<Lines> {
        Arc::new(Lines {
            state: Mutex::new((Vec::new(), false)),
            cv: Condvar::new(),
        })
    }

    fn collect(self: &Arc<Lines>, name: &str, input: impl Read + Send + 'static) {
        let lines = self.clone();
        thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut reader = BufReader::new(input);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let at = Instant::now();
                            let line = String::from_utf8_lossy(&buf)
                                .trim_end_matches(['\n', '\r'])
                                .to_string();
                            lines
                                .state
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                                .push((at, line));
                            lines.cv.notify_all();
                        }
                    }
                }
                lines.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
                lines.cv.notify_all();
            })
            .expect("spawn reader thread");
    }

    fn snapshot(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }
}

/// How to start one fixture JVM.
pub struct JvmBuilder {
    java: PathBuf,
    agent: bool,
    opts: Vec<String>,
    raw_opts: Option<String>,
    default_socket: bool,
    env: Vec<(String, Option<String>)>,
    args: Vec<String>,
    tmp: TempDir,
}

impl JvmBuilder {
    /// Adds one agent option, `key=value`.
    pub fn opt(mut self, kv: impl Into<String>) -> Self {
        self.opts.push(kv.into());
        self
    }

    /// Uses exactly this agent option string (nothing added).
    pub fn raw_opts(mut self, opts: impl Into<String>) -> Self {
        self.raw_opts = Some(opts.into());
        self
    }

    /// Does not add `socket=<tmp>/status.sock`: the agent picks its default.
    pub fn default_socket(mut self) -> Self {
        self.default_socket = true;
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.into(), None));
        self
    }

    pub fn notify(self, n: &NotifySocket) -> Self {
        let addr = n.addr.clone();
        self.env("NOTIFY_SOCKET", addr)
    }

    /// A JVM argument before the main class (e.g. `-Dkey=value`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs the fixture without the agent.
    pub fn no_agent(mut self) -> Self {
        self.agent = false;
        self
    }

    /// The JVM's private temporary directory (for yaml files, sockets...).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    pub fn spawn(self) -> Jvm {
        let classpath = fixture_classpath();
        let mut socket = None;
        let mut cmd = Command::new(&self.java);
        cmd.args([
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Xmx64m",
        ]);
        let mut opts = String::new();
        if self.agent {
            opts = match &self.raw_opts {
                Some(raw) => raw.clone(),
                None => {
                    let mut opts = self.opts.clone();
                    if !self.default_socket && !opts.iter().any(|o| o.starts_with("socket=")) {
                        let path = self.tmp.join("status.sock");
                        opts.push(format!("socket={}", path.display()));
                    }
                    opts.join(",")
                }
            };
            if let Some(p) = opts.split(',').find_map(|o| o.strip_prefix("socket=")) {
                if p != "none" {
                    socket = Some(PathBuf::from(p));
                }
            }
            let lib = agent_lib();
            if opts.is_empty() {
                cmd.arg(format!("-agentpath:{}", lib.display()));
            } else {
                cmd.arg(format!("-agentpath:{}={}", lib.display(), opts));
            }
        }
        cmd.args(&self.args);
        cmd.arg("-cp").arg(&classpath).arg("CqlFixture");
        // Whatever runs the tests must not leak into the JVM.
        for key in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "RUNTIME_DIRECTORY",
            "JAVA_TOOL_OPTIONS",
            "JDK_JAVA_OPTIONS",
            "_JAVA_OPTIONS",
        ] {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let description = format!("{:?}", cmd);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {description}: {e}"));
        let stdout = Lines::new();
        let stderr = Lines::new();
        stdout.collect("jvm-stdout", child.stdout.take().unwrap());
        stderr.collect("jvm-stderr", child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        let pid = child.id();
        Jvm {
            java: self.java,
            description,
            opts,
            started,
            child,
            stdin,
            stdout,
            stderr,
            cursor: 0,
            tmp: self.tmp,
            socket,
            pid,
            exit: None,
        }
    }
}

/// A running fixture JVM: killed on drop; on a panic its output is printed.
pub struct Jvm {
    pub java: PathBuf,
    pub description: String,
    pub opts: String,
    pub started: Instant,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    cursor: usize,
    pub tmp: TempDir,
    socket: Option<PathBuf>,
    pub pid: u32,
    exit: Option<ExitStatus>,
}

impl Jvm {
    pub fn builder(java: &Path) -> JvmBuilder {
        JvmBuilder {
            java: java.to_path_buf(),
            agent: true,
            opts: Vec::new(),
            raw_opts: None,
            default_socket: false,
            env: Vec::new(),
            args: Vec::new(),
            tmp: TempDir::new("jvm"),
        }
    }

    /// The status socket given with `socket=` (by the test or the builder).
    pub fn socket(&self) -> &Path {
        self.socket
            .as_deref()
            .expect("this JVM has no explicit status socket")
    }

    pub fn set_socket(&mut self, path: PathBuf) {
        self.socket = Some(path);
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    pub fn describe(&self) -> String {
        format!(
            "JVM {} (pid {}), agent options {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.java.display(),
            self.pid,
            self.opts,
            self.stdout_lines().join("\n"),
            self.stderr_lines().join("\n")
        )
    }

    /// Writes one command line; returns the instant just before writing.
    pub fn send(&mut self, cmd: &str) -> Instant {
        let at = Instant::now();
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        if let Err(e) = stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .and_then(|_| stdin.flush())
        {
            panic!("sending {cmd:?} to the fixture: {e}\n{}", self.describe());
        }
        at
    }

    /// Waits for the next stdout line (after the previously expected one)
    /// that starts with `prefix`; returns when it arrived and the line. An
    /// `error ...` line from the fixture fails at once.
    pub fn expect(&mut self, prefix: &str, deadline: Instant) -> (Instant, String) {
        let lines = self.stdout.clone();
        let mut state = lines.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while self.cursor < state.0.len() {
                let (at, line) = state.0[self.cursor].clone();
                self.cursor += 1;
                if line.starts_with(prefix) {
                    return (at, line);
                }
                if line.starts_with("error") {
                    drop(state);
                    panic!(
                        "fixture said {line:?} while we waited for {prefix:?}\n{}",
                        self.describe()
                    );
                }
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                let why = if state.1 {
                    "stdout closed"
                } else {
                    "timed out"
                };
                drop(state);
                panic!(
                    "{why} waiting for a line starting {prefix:?}\n{}",
                    self.describe()
                );
            }
            state = lines
                .cv
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// `listen <port> <mode>`; returns the instant the acknowledgement arrived.
    pub fn listen(&mut self, port: u16, mode: &str) -> Instant {
        self.send(&format!("listen {port} {mode}"));
        let (at, line) = self.expect("listening", deadline());
        assert_eq!(line, format!("listening {port}"));
        at
    }

    /// `close`: the fixture closes every listener and connection.
    pub fn close_listeners(&mut self) {
        self.send("close");
        self.expect("closed", deadline());
    }

    /// `stats`: (connections accepted, CQL requests read, versions seen).
    pub fn stats(&mut self) -> (u64, u64, Vec<u8>) {
        self.send("stats");
        let (_, line) = self.expect("stats ", deadline());
        let field = |name: &str| -> String {
            line.split(' ')
                .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_string))
                .unwrap_or_default()
        };
        let versions = field("versions")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        (
            field("accepted").parse().unwrap(),
            field("requests").parse().unwrap(),
            versions,
        )
    }

    /// `pid`: the pid the JVM reports for itself.
    pub fn fixture_pid(&mut self) -> u32 {
        self.send("pid");
        let (_, line) = self.expect("pid ", deadline());
        line["pid ".len()..].parse().unwrap()
    }

    /// `exit <code>` and waits for the process to end.
    pub fn exit(&mut self, code: i32) -> ExitStatus {
        self.send(&format!("exit {code}"));
        self.expect("exiting", deadline());
        self.wait_exit(deadline())
    }

    /// Closes the fixture's stdin (it exits 0 on EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn wait_exit(&mut self, deadline: Instant) -> ExitStatus {
        if let Some(s) = self.exit {
            return s;
        }
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                panic!("timed out waiting for the JVM to exit\n{}", self.describe());
            }
            thread::sleep(POLL);
        };
        // Let the readers drain the pipes.
        for lines in [&self.stdout, &self.stderr] {
            let mut state = lines.state.lock().unwrap_or_else(|e| e.into_inner());
            while !state.1 {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = lines
                    .cv
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        self.exit = Some(status);
        status
    }

    /// Waits until some stderr line satisfies `pred`; returns it.
    pub fn wait_stderr(
        &self,
        what: &str,
        deadline: Instant,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let mut state = self.stderr.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((_, l)) = state.0.iter().find(|(_, l)| pred(l)) {
                return l.clone();
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                drop(state);
                panic!("no stderr line {what}\n{}", self.describe());
            }
            state = self
                .stderr
                .cv
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// GET /status on this JVM's status socket.
    pub fn try_status(&self) -> io::Result<Value> {
        let r = http_get(self.socket(), "/status")?;
        if r.status != 200 {
            return Err(io::Error::other(format!(
                "/status answered {}: {}",
                r.status, r.body
            )));
        }
        serde_json::from_str(&r.body)
            .map_err(|e| io::Error::other(format!("bad JSON {e}: {}", r.body)))
    }

    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|e| panic!("GET /status: {e}\n{}", self.describe()))
    }

    /// Polls /status (waiting for the socket to appear) until `pred` holds.
    pub fn wait_status(
        &self,
        what: &str,
        deadline: Instant,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let last = std::cell::RefCell::new(String::from("(no answer yet)"));
        poll(
            &format!("/status: {what}"),
            deadline,
            || match self.try_status() {
                Ok(v) if pred(&v) => Some(v),
                Ok(v) => {
                    *last.borrow_mut() = v.to_string();
                    None
                }
                Err(e) => {
                    *last.borrow_mut() = e.to_string();
                    None
                }
            },
            || format!("last /status: {}\n{}", last.borrow(), self.describe()),
        )
    }

    /// Waits until the agent has made `n` more checks than it had when called
    /// (a measure of time in probe periods, not in wall-clock sleeps).
    pub fn wait_more_checks(&self, n: u64) -> Value {
        let base = json_u64(
            &self.wait_status("any answer", deadline(), |_| true),
            "/checks/total",
        );
        self.wait_status(&format!("{n} more checks than {base}"), deadline(), |s| {
            s.pointer("/checks/total")
                .and_then(Value::as_u64)
                .is_some_and(|t| t >= base + n)
        })
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        self.stdin = None;
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        super::remove_agent_dir(self.pid);
        if thread::panicking() {
            eprintln!("{}", self.describe());
        }
    }
}
