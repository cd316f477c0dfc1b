//! The status server: HTTP/1.1 over a Unix stream socket, never TCP.
//!
//! | request | answer |
//! |---|---|
//! | `GET /status` | the snapshot as JSON |
//! | `GET /ready[?wait=DUR]` | 200 when ready, else 503; with `wait`, answers as soon as ready or when DUR passes |
//! | `GET /live` | 200 while the agent runs |
//! | `GET /metrics` | Prometheus text |
//!
//! One request per connection. Bounded: requests up to [`MAX_REQUEST`]
//! bytes, [`IO_TIMEOUT`] to send the request and to take the answer, at most
//! [`MAX_CONNECTIONS`] at once (the rest get 503 from the accepting thread,
//! after at most [`REFUSE_WAIT`] for their request). Each connection
//! has a small thread of its own; none touches the JVM.

use crate::monitor::Shared;
use crate::status::model::State;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_REQUEST: usize = 8 * 1024;
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_CONNECTIONS: usize = 64;
/// The longest `/ready?wait=` honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
const SOCKET_MODE: u32 = 0o660;
/// How many nice steps below the JVM the status threads run: a weight of
/// about a tenth under contention, never starved (a liveness probe must
/// still be answered while Cassandra is busy).
const STATUS_NICE: i32 = 10;
const THREAD_STACK: usize = 128 * 1024;

/// The socket's default place: `$RUNTIME_DIRECTORY/cqlready.sock` when
/// systemd's `RuntimeDirectory=` set it, else a private per-PID directory.
pub fn default_path(pid: u32, runtime_directory: Option<&str>) -> PathBuf {
    match runtime_directory.and_then(|r| r.split(':').find(|d| d.starts_with('/'))) {
        Some(dir) => Path::new(dir).join("cqlready.sock"),
        None => private_dir(pid).join("cqlready.sock"),
    }
}

/// `/tmp/cqlready-<pid>`: mode 0700, owned by the JVM's user.
pub fn private_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/cqlready-{pid}"))
}

/// Who may use the socket besides root: the JVM's user, and the members of
/// an optional group. Checked on every connection with SO_PEERCRED, on top
/// of the file's mode 0660 and its directory's mode.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub owner: u32,
    pub group: Option<u32>,
}

impl Access {
    /// Whether the peer (pid, uid, gid) may ask.
    pub fn allows(&self, pid: u32, uid: u32, gid: u32) -> bool {
        uid == 0
            || uid == self.owner
            || self
                .group
                .is_some_and(|g| gid == g || crate::process::groups(pid).contains(&g))
    }
}

/// A serving socket; [`Server::remove`] unlinks it if it is still ours.
#[derive(Debug)]
pub struct Server {
    pub path: PathBuf,
    inode: (u64, u64),
    made_dir: Option<PathBuf>,
}

fn refuse(path: &Path, why: impl std::fmt::Display) -> String {
    format!("status socket {}: {why}", path.display())
}

/// Creates the private directory, or checks that an existing one is a real
/// directory of ours and nobody else's.
fn make_private_dir(dir: &Path) -> Result<bool, String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refuse(dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| refuse(dir, e))?;
    if !meta.file_type().is_dir() {
        return Err(refuse(dir, "exists and is not a directory; refusing it"));
    }
    if meta.uid() != crate::process::euid() {
        return Err(refuse(
            dir,
            format!(
                "belongs to uid {}, not to this process; refusing it",
                meta.uid()
            ),
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| refuse(dir, e))?;
    Ok(false)
}

/// Makes `path` free for a new socket: nothing there, or a stale socket
/// that nobody answers on (removed). A symlink, another kind of file or a
/// live socket is refused and left alone.
fn clear_path(path: &Path) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(path, e)),
        Ok(m) => m,
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(refuse(
            path,
            "is a symlink; refusing to follow or replace it",
        ));
    }
    if !kind.is_socket() {
        return Err(refuse(path, "exists and is not a socket; leaving it alone"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(refuse(path, "another live process serves on it")),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            crate::info!("replacing stale status socket {}", path.display());
            std::fs::remove_file(path).map_err(|e| refuse(path, e))
        }
        Err(e) => Err(refuse(path, e)),
    }
}

impl Server {
    /// Binds `path` safely (mode 0660, set before the name appears) and
    /// starts serving `shared` on a thread of its own.
    pub fn start(
        path: &Path,
        private: bool,
        access: Access,
        shared: Arc<Shared>,
    ) -> Result<Server, String> {
        let made_dir = match (private, path.parent()) {
            (true, Some(dir)) => make_private_dir(dir)?.then(|| dir.to_path_buf()),
            _ => None,
        };
        let result = Server::bind(path, access, shared);
        if result.is_err() {
            if let Some(dir) = &made_dir {
                let _ = std::fs::remove_dir(dir);
            }
        }
        result.map(|(path, inode)| Server {
            path,
            inode,
            made_dir,
        })
    }

    fn bind(
        path: &Path,
        access: Access,
        shared: Arc<Shared>,
    ) -> Result<(PathBuf, (u64, u64)), String> {
        clear_path(path)?;
        // Bind under a temporary name, set the mode, then rename into place:
        // the socket never exists at its real path with a wider mode.
        let tmp = path.with_file_name(format!(
            ".{}.{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(|e| refuse(path, e))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
            .and_then(|()| match access.group {
                Some(g) => std::os::unix::fs::chown(&tmp, None, Some(g)),
                None => Ok(()),
            })
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| std::fs::symlink_metadata(path));
        let meta = match placed {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(refuse(path, e));
            }
        };
        let served = path.to_path_buf();
        std::thread::Builder::new()
            .name("cqlready-status".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                // Requests come from outside; under a flood of them the
                // JVM's own threads go first (connection threads inherit this).
                crate::process::lower_this_thread(STATUS_NICE);
                crate::fence("status server", || accept_loop(listener, access, shared))
            })
            .map_err(|e| refuse(path, format!("cannot start its thread: {e}")))?;
        Ok((served, (meta.dev(), meta.ino())))
    }

    /// Unlinks the socket (and the private directory) if they are still
    /// the ones this server made.
    pub fn remove(&self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        if let Some(dir) = &self.made_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

fn accept_loop(listener: UnixListener, access: Access, shared: Arc<Shared>) {
    let mut last_error = None;
    let mut refused_uids: Vec<u32> = Vec::new();
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: log once per kind, back off, go on.
                if last_error != Some(e.kind()) {
                    crate::warn!("status socket accept: {e}");
                    last_error = Some(e.kind());
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let allowed = match crate::process::peer_credentials(&stream) {
            Ok((pid, uid, gid)) => {
                access.allows(pid, uid, gid) || {
                    if refused_uids.len() < 16 && !refused_uids.contains(&uid) {
                        refused_uids.push(uid);
                        crate::warn!(
                            "status socket: refused uid {uid} (pid {pid}); allowed: uid {}, root{}",
                            access.owner,
                            access
                                .group
                                .map(|g| format!(", group {g}"))
                                .unwrap_or_default()
                        );
                    }
                    false
                }
            }
            Err(_) => false,
        };
        if !allowed {
            answer_at_once(stream, 403, "forbidden\n");
            continue;
        }
        if ACTIVE.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            ACTIVE.fetch_sub(1, Ordering::AcqRel);
            answer_at_once(stream, 503, "busy\n");
            continue;
        }
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("cqlready-http".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                crate::fence("status request", || handle(stream, &shared));
                ACTIVE.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            ACTIVE.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How long the accepting thread waits for the request of a connection it
/// refuses (403, 503 busy) before answering anyway.
pub const REFUSE_WAIT: Duration = Duration::from_millis(20);

/// Answers on the accepting thread. The request is read off first (for at
/// most [`REFUSE_WAIT`]): closing a Unix socket before the client has
/// written makes its write fail with EPIPE, and closing with unread data
/// makes its read fail with ECONNRESET; either way the client would never
/// see the answer.
fn answer_at_once(mut stream: UnixStream, code: u16, body: &str) {
    let until = Instant::now() + REFUSE_WAIT;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < MAX_REQUEST && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(&response(code, "text/plain", body));
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn response(code: u16, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        reason(code),
        body.len()
    )
    .into_bytes()
}

/// A parsed request: what the router needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
}

/// Reads one request head within the deadline and the size cap.
fn read_request(stream: &mut UnixStream) -> Result<Request, u16> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        match parse_request(&buf[..len]) {
            Ok(Some(r)) => return Ok(r),
            Ok(None) if len == buf.len() => return Err(431),
            Ok(None) => {}
            Err(code) => return Err(code),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(408);
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(400),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(408),
        }
    }
}

/// `Ok(None)`: incomplete. `Err(status)`: malformed.
pub fn parse_request(bytes: &[u8]) -> Result<Option<Request>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(_) => return Err(400),
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(400);
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
    }))
}

/// `wait=5s` from a query string: `Ok(None)` when absent.
fn wait_param(query: Option<&str>) -> Result<Option<Duration>, ()> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("wait=") {
            return crate::options::parse_duration(v)
                .map(|d| Some(d.min(MAX_WAIT)))
                .ok_or(());
        }
    }
    Ok(None)
}

/// Routes one request to its answer: (status, content type, body).
pub fn route(req: &Request, shared: &Shared) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method != "GET" && req.method != "HEAD" {
        return (405, TEXT, "only GET\n".into());
    }
    if let Some(q) = crate::status::cluster::request(&req.path, req.query.as_deref()) {
        return cluster_route(q, shared);
    }
    match req.path.as_str() {
        "/status" => (200, "application/json", shared.snapshot().to_json() + "\n"),
        "/live" => (200, TEXT, "live\n".into()),
        "/metrics" => {
            let snap = shared.snapshot();
            let text = snap.to_prometheus() + &crate::status::cluster::metrics(&snap);
            (200, "text/plain; version=0.0.4", text)
        }
        "/ready" => {
            let state = match wait_param(req.query.as_deref()) {
                Err(()) => {
                    return (
                        400,
                        TEXT,
                        "wait= takes a duration like 500ms or 30s\n".into(),
                    )
                }
                Ok(None) => shared.state(),
                Ok(Some(wait)) => {
                    shared
                        .wait_until(Instant::now() + wait, |s| {
                            matches!(s.state, State::Ready | State::Stopping)
                        })
                        .state
                }
            };
            let code = if state == State::Ready { 200 } else { 503 };
            (code, TEXT, format!("{}\n", state.as_str()))
        }
        _ => (
            404,
            TEXT,
            "not found: try /status, /ready, /live or /metrics\n".into(),
        ),
    }
}

/// `/cluster` and `/ready?scope=cluster`: wait for a fresh view (and with
/// `wait=`, for the gate), then answer from the snapshot.
fn cluster_route(
    q: Result<crate::status::cluster::Query, String>,
    shared: &Shared,
) -> (u16, &'static str, String) {
    use crate::status::cluster as c;
    let q = match q {
        Ok(q) => q,
        Err(e) => return (400, "text/plain; charset=utf-8", e + "\n"),
    };
    let since = c::ask();
    let snap = shared.wait_until(Instant::now() + c::deadline(&q), |s| {
        c::settled(&q, s, since)
    });
    c::answer(&q, &snap, since)
}

fn handle(mut stream: UnixStream, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (code, kind, body, head_only) = match read_request(&mut stream) {
        Ok(req) => {
            let (code, kind, body) = route(&req, shared);
            (code, kind, body, req.method == "HEAD")
        }
        Err(code) => (
            code,
            "text/plain; charset=utf-8",
            format!("{}\n", reason(code)),
            false,
        ),
    };
    let mut bytes = response(code, kind, &body);
    if head_only {
        bytes.truncate(bytes.len() - body.len());
    }
    let _ = stream.write_all(&bytes);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(parse_request(b"GET /status HTTP/1.1\r\n"), Ok(None));
        assert_eq!(
            parse_request(b"GET /ready?wait=5s HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(Request {
                method: "GET".into(),
                path: "/ready".into(),
                query: Some("wait=5s".into())
            }))
        );
        assert_eq!(parse_request(b"\x00\x01junk\r\n\r\n"), Err(400));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert_eq!(parse_request(many.as_bytes()), Err(431));
    }

    #[test]
    fn wait_params() {
        assert_eq!(wait_param(None), Ok(None));
        assert_eq!(
            wait_param(Some("x=1&wait=250ms")),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(wait_param(Some("wait=1h")), Ok(Some(MAX_WAIT)));
        assert_eq!(wait_param(Some("wait=soon")), Err(()));
    }

    #[test]
    fn who_may_ask() {
        let a = Access {
            owner: 999,
            group: None,
        };
        assert!(a.allows(1, 0, 0), "root");
        assert!(a.allows(1, 999, 5), "the JVM's user");
        assert!(!a.allows(1, 1000, 999), "another user");
        let g = Access {
            owner: 999,
            group: Some(4242),
        };
        assert!(g.allows(1, 1000, 4242), "the group as primary gid");
        assert!(
            g.allows(std::process::id(), 1000, 1)
                == crate::process::groups(std::process::id()).contains(&4242)
        );
        assert!(!g.allows(1, 1000, 1000));
    }

    #[test]
    fn default_paths() {
        assert_eq!(
            default_path(7, Some("/run/cassandra")),
            PathBuf::from("/run/cassandra/cqlready.sock")
        );
        assert_eq!(
            default_path(7, Some("/run/a:/run/b")),
            PathBuf::from("/run/a/cqlready.sock")
        );
        assert_eq!(
            default_path(7, None),
            PathBuf::from("/tmp/cqlready-7/cqlready.sock")
        );
        assert_eq!(
            default_path(7, Some("")),
            PathBuf::from("/tmp/cqlready-7/cqlready.sock")
        );
    }
}
