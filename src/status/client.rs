//! Asking an agent over its status socket: one request, one answer.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The largest answer read; a status document is a few KiB.
pub const MAX_RESPONSE: usize = 1024 * 1024;

#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens there: no agent, or it has exited.
    NoAgent(String),
    /// The socket exists but this user may not use it.
    Permission(String),
    Timeout(String),
    /// It is serving as many connections as it takes; a retry may succeed.
    Busy(String),
    /// It answered, but not in HTTP.
    Protocol(String),
    Io(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoAgent(s)
            | ClientError::Permission(s)
            | ClientError::Timeout(s)
            | ClientError::Busy(s)
            | ClientError::Protocol(s)
            | ClientError::Io(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub body: String,
}

/// Parses a complete HTTP/1.1 answer.
pub fn parse_response(bytes: &[u8]) -> Result<Response, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the answer ended inside its header".into()),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let code = r.code.ok_or("no status code")?;
    let body = String::from_utf8_lossy(&bytes[head..]).into_owned();
    Ok(Response { code, body })
}

/// `GET target` on the agent at `socket`, within `timeout`. A `busy`
/// answer (every connection slot being written) is retried within it.
pub fn get(socket: &Path, target: &str, timeout: Duration) -> Result<Response, ClientError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match get_once(socket, target, left.max(Duration::from_millis(1))) {
            Err(ClientError::Busy(_)) if left > Duration::from_millis(20) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn get_once(socket: &Path, target: &str, timeout: Duration) -> Result<Response, ClientError> {
    let shown = socket.display();
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ClientError::NoAgent(format!("no agent answers at {shown}: {e}"))
        }
        io::ErrorKind::PermissionDenied => ClientError::Permission(format!(
            "permission denied on {shown}: run as the JVM's user, root, or a member of the socket's group"
        )),
        _ => ClientError::Io(format!("{shown}: {e}")),
    })?;
    let deadline = Instant::now() + timeout;
    stream
        .set_write_timeout(Some(left(deadline)))
        .map_err(|e| ClientError::Io(e.to_string()))?;
    stream
        .write_all(
            format!("GET {target} HTTP/1.1\r\nHost: cqlready\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| ClientError::Io(format!("{shown}: {e}")))?;
    let bytes = read_answer(&mut stream, deadline).map_err(|e| match e {
        None => ClientError::Timeout(format!("{shown} did not answer within {timeout:?}")),
        Some(e) => ClientError::Io(format!("{shown}: {e}")),
    })?;
    if bytes.len() > MAX_RESPONSE {
        return Err(ClientError::Protocol(format!(
            "{shown}: answer larger than {MAX_RESPONSE} bytes"
        )));
    }
    let r = parse_response(&bytes).map_err(|e| ClientError::Protocol(format!("{shown}: {e}")))?;
    match r.code {
        403 => Err(ClientError::Permission(format!(
            "the agent at {shown} refused uid {}: it answers the JVM's user, root, and members of \
             its group= option",
            crate::process::euid()
        ))),
        503 if r.body.trim() == "busy" => Err(ClientError::Busy(format!(
            "the agent at {shown} stayed busy (every connection slot sending an answer); try again"
        ))),
        _ => Ok(r),
    }
}

/// The time to `deadline`, at least a millisecond (a zero socket timeout
/// would mean none).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Reads until the server closes, before `deadline`, at most one byte past
/// `MAX_RESPONSE`. `Err(None)` when the deadline passed.
fn read_answer(stream: &mut UnixStream, deadline: Instant) -> Result<Vec<u8>, Option<io::Error>> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if Instant::now() >= deadline {
            return Err(None);
        }
        stream
            .set_read_timeout(Some(left(deadline)))
            .map_err(Some)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) if bytes.len() + n > MAX_RESPONSE => {
                bytes.extend_from_slice(&chunk[..n]);
                return Ok(bytes);
            }
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Some(e)),
        }
    }
}

/// The socket an `-agentpath` argument names, if it loads cqlready:
/// `None` when it is not ours, `Some(None)` for the default place.
pub fn socket_in_agent_arg(arg: &str) -> Option<Option<crate::options::SocketChoice>> {
    let spec = arg.strip_prefix("-agentpath:")?;
    let (lib, opts) = spec.split_once('=').unwrap_or((spec, ""));
    if !lib.contains("cqlready") {
        return None;
    }
    Some(crate::options::Options::parse(opts).ok().map(|o| o.socket))
}

/// Where JVM `pid` would have put its status socket, as absolute paths in
/// its own mount namespace, most specific first: a `socket=` in its
/// `-agentpath` (command line or `JAVA_TOOL_OPTIONS`), its
/// `$RUNTIME_DIRECTORY`, the per-PID default.
pub fn candidates(cmdline: &[u8], environ: &[u8], nspid: u32) -> Vec<PathBuf> {
    use crate::options::SocketChoice;
    use crate::status::server::default_path;
    let env: Vec<(&str, &str)> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
        .collect();
    let var = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let tool_options = var("JAVA_TOOL_OPTIONS").unwrap_or("");
    let args = cmdline
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .chain(tool_options.split_whitespace());
    let mut out = Vec::new();
    for choice in args.filter_map(socket_in_agent_arg) {
        match choice {
            Some(SocketChoice::Path(p)) => out.push(p),
            Some(SocketChoice::Disabled) => {}
            Some(SocketChoice::Auto) | None => {}
        }
    }
    out.push(default_path(nspid, var("RUNTIME_DIRECTORY")));
    out.push(default_path(nspid, None));
    out.dedup();
    out
}

/// Processes whose PID is a JVM's-to-be, not yet a JVM: shells that start
/// one by exec'ing it (`cassandra -f`, `bin/cassandra`), and the `java`
/// launcher itself in the milliseconds before it has loaded libjvm.so.
const LAUNCHERS: &[&str] = &[
    "sh", "bash", "dash", "ash", "ksh", "zsh", "busybox", "env", "exec", "java",
];

/// Whether `pid` is a running JVM (HotSpot's libjvm.so mapped), or a shell
/// that may still exec one, so that waiting for its agent can succeed. A
/// process whose maps this user may not read is given the benefit of the
/// doubt.
pub fn check_jvm(pid: u32) -> Result<(), ClientError> {
    use crate::process;
    match process::maps_contain(pid, "/libjvm.so") {
        Ok(true) => Ok(()),
        Ok(false) => {
            let comm = std::fs::read_to_string(process::proc_path(pid, "comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default();
            if LAUNCHERS.contains(&comm.as_str()) {
                return Ok(());
            }
            Err(ClientError::NoAgent(format!(
                "process {pid} ({comm}) is not a JVM (no libjvm.so in its memory maps): give the JVM's PID"
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(ClientError::NoAgent(format!("no process {pid}")))
        }
        Err(_) => Ok(()),
    }
}

/// Finds the status socket of JVM `pid`, also inside a container: paths are
/// reached through `/proc/PID/root`, with the PID the JVM sees itself as.
pub fn locate(pid: u32) -> Result<PathBuf, ClientError> {
    use crate::process;
    use std::os::unix::fs::FileTypeExt;
    let st = process::status(pid).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ClientError::NoAgent(format!("no process {pid}")),
        _ => ClientError::Io(format!("reading /proc/{pid}/status: {e}")),
    })?;
    let read = |name: &str| std::fs::read(process::proc_path(pid, name)).unwrap_or_default();
    let tried = candidates(&read("cmdline"), &read("environ"), st.nspid);
    for path in &tried {
        for seen in [process::in_root(pid, path), path.clone()] {
            if std::fs::symlink_metadata(&seen).is_ok_and(|m| m.file_type().is_socket()) {
                return Ok(seen);
            }
        }
    }
    let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(ClientError::NoAgent(format!(
        "process {pid} has no cqlready status socket (looked for {} in its mount namespace); is the agent loaded with a socket? Give --socket PATH if it uses another place",
        list.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_candidates() {
        let cmd =
            b"java\0-Xmx1g\0-agentpath:/opt/libcqlready.so=port=9042,socket=/run/c/s.sock\0Main\0";
        let env = b"PATH=/bin\0RUNTIME_DIRECTORY=/run/cassandra\0";
        assert_eq!(
            candidates(cmd, env, 7),
            vec![
                PathBuf::from("/run/c/s.sock"),
                PathBuf::from("/run/cassandra/cqlready.sock"),
                PathBuf::from("/tmp/cqlready-7/cqlready.sock")
            ]
        );
        let env = b"JAVA_TOOL_OPTIONS=-Xss1m -agentpath:/x/libcqlready.so=socket=/s/a.sock\0";
        assert_eq!(candidates(b"java\0", env, 1)[0], PathBuf::from("/s/a.sock"));
        assert_eq!(
            candidates(b"java\0-agentpath:/other.so=socket=/q.sock\0", b"", 1).len(),
            1
        );
        assert_eq!(
            socket_in_agent_arg("-agentpath:/l/libcqlready.so"),
            Some(Some(crate::options::SocketChoice::Auto))
        );
        assert_eq!(
            socket_in_agent_arg("-agentpath:/l/libcqlready.so=bogus=1"),
            Some(None)
        );
    }

    /// `busy` is asked again within the timeout; other answers are not.
    #[test]
    fn busy_is_retried_within_the_timeout() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("cqlready-busy-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            for body in ["busy\n", "busy\n", "ready\n"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let code = if body == "ready\n" {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {code}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let r = get(&path, "/ready", Duration::from_secs(10)).expect("answered after two busy");
        assert_eq!((r.code, r.body.as_str()), (200, "ready\n"));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_answers() {
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nstarting\n",
        )
        .unwrap();
        assert_eq!(
            r,
            Response {
                code: 503,
                body: "starting\n".into()
            }
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"\x00garbage").is_err());
    }
}
