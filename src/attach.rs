//! HotSpot dynamic attach, like jattach, with no JDK tools: find or start the
//! target's attach listener (a Unix socket `/tmp/.java_pid<nspid>` in the
//! target's mount namespace), send a command with three arguments (protocol
//! version 1) and read the reply: a numeric result code line, then output.
//! Works across PID and mount namespaces and uids (see `process`).

use crate::process::{self, ProcStatus};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, ErrorKind as Kind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const POLL_STEP: Duration = Duration::from_millis(20);
/// HotSpot's limits for v1 requests (name_length_max, arg_length_max).
const MAX_NAME: usize = 16;
const MAX_ARG: usize = 1024;

/// The JVM's answer: the attach operation's result code (0 is success) and
/// its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: i32,
    pub text: String,
}

#[derive(Debug)]
pub enum AttachError {
    NoSuchProcess(u32),
    PermissionDenied {
        pid: u32,
        uid: u32,
    },
    NotJvm {
        pid: u32,
        why: String,
    },
    NoListener {
        pid: u32,
        timeout: Duration,
    },
    BadRequest(String),
    Io {
        what: String,
        err: io::Error,
    },
    Protocol {
        pid: u32,
        why: String,
    },
    Refused {
        pid: u32,
        code: i32,
        text: String,
    },
    AgentFailed {
        pid: u32,
        lib: PathBuf,
        code: i32,
        text: String,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchProcess(pid) => write!(f, "no such process {pid}"),
            Self::PermissionDenied { pid, uid } => write!(
                f, "permission denied: process {pid} runs as uid {uid}; run as root or as that user"),
            Self::NotJvm { pid, why } => write!(f, "cannot attach to process {pid}: {why}"),
            Self::NoListener { pid, timeout } => write!(
                f, "process {pid} is not a HotSpot JVM or its attach listener did not start within {:.1}s \
                    (is -XX:+DisableAttachMechanism set?)", timeout.as_secs_f64()),
            Self::BadRequest(why) => write!(f, "invalid attach request: {why}"),
            Self::Io { what, err } => write!(f, "{what}: {err}"),
            Self::Protocol { pid, why } => write!(f, "unexpected answer from process {pid}: {why}"),
            Self::Refused { pid, code, text } => {
                let code = if *code == 0 { String::new() } else { format!(" (result {code})") };
                write!(f, "attach refused: the JVM (process {pid}) answered{code}: {}", text.trim().replace('\n', "; "))
            }
            Self::AgentFailed { pid, lib, code, text } => write!(
                f, "the agent {} was loaded into process {pid} but Agent_OnAttach returned {code}{}{}; \
                    see the JVM's output or log", lib.display(), if text.trim().is_empty() { "" } else { ": " }, text.trim()),
        }
    }
}

impl std::error::Error for AttachError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> AttachError {
    let what = what.into();
    move |err| AttachError::Io { what, err }
}

/// Runs one attach operation (e.g. "properties", "threaddump", "jcmd", "load")
/// in JVM `pid`, starting its attach listener if needed. `timeout` bounds the
/// wait for the listener and each read of the reply. A non-zero `Reply::code`
/// is returned as is; only `load_agent` interprets it.
pub fn execute(
    pid: u32,
    command: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Reply, AttachError> {
    let request = encode_request(command, args)?;
    let st = target(pid)?;
    let mut sock = connect(pid, &st, timeout)?;
    let what = format!("talking to the attach listener of process {pid}");
    sock.set_read_timeout(Some(timeout))
        .map_err(io_err(&*what))?;
    sock.set_write_timeout(Some(timeout))
        .map_err(io_err(&*what))?;
    sock.write_all(&request).map_err(io_err(&*what))?;
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).map_err(io_err(&*what))?;
    parse_reply(&raw).map_err(|why| AttachError::Protocol { pid, why })
}

/// Protocol v1: "1", the command and exactly three arguments, each NUL-terminated.
fn encode_request(command: &str, args: &[&str]) -> Result<Vec<u8>, AttachError> {
    let bad = |why: String| Err(AttachError::BadRequest(why));
    if command.is_empty() || command.len() > MAX_NAME || command.contains('\0') {
        return bad(format!(
            "command {command:?} must be 1 to {MAX_NAME} bytes without NUL"
        ));
    }
    if args.len() > 3 {
        return bad(format!("at most 3 arguments, got {}", args.len()));
    }
    let mut out = b"1\0".to_vec();
    for part in std::iter::once(command)
        .chain(args.iter().copied())
        .chain(std::iter::repeat(""))
        .take(4)
    {
        if part.len() > MAX_ARG || part.contains('\0') {
            return bad(format!(
                "argument {part:?} must be at most {MAX_ARG} bytes without NUL"
            ));
        }
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// Splits a reply into the result code (first line) and the rest.
pub fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(raw);
    if text.is_empty() {
        return Err(
            "the JVM closed the connection without answering (it answers only root or \
                    clients with its own effective uid and gid)"
                .into(),
        );
    }
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    match first.trim().parse() {
        Ok(code) => Ok(Reply {
            code,
            text: rest.to_string(),
        }),
        Err(_) => Err(format!(
            "expected a result code, got {:?}",
            first.chars().take(80).collect::<String>()
        )),
    }
}

/// The return code of Agent_OnAttach from a `load` reply's output: a line
/// "N" (JDK 8) or "return code: N" (later JDKs), and the remaining text.
pub fn parse_agent_code(text: &str) -> Option<(i32, &str)> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let number = first
        .trim()
        .strip_prefix("return code:")
        .unwrap_or(first)
        .trim();
    number.parse().ok().map(|code| (code, rest))
}

fn target(pid: u32) -> Result<ProcStatus, AttachError> {
    let st = match process::status(pid) {
        Err(e) if e.kind() == Kind::NotFound => return Err(AttachError::NoSuchProcess(pid)),
        other => other.map_err(io_err(format!("reading /proc/{pid}/status")))?,
    };
    match process::check_signal(pid) {
        Ok(()) => Ok(st),
        Err(e) if e.kind() == Kind::NotFound => Err(AttachError::NoSuchProcess(pid)),
        Err(e) if e.kind() == Kind::PermissionDenied => {
            Err(AttachError::PermissionDenied { pid, uid: st.uid })
        }
        Err(e) => Err(io_err(format!("checking we may signal process {pid}"))(e)),
    }
}

/// Connects to the listener socket as the target's uid/gid (when we are root):
/// Some(stream), or None while there is no listener yet.
fn try_connect(pid: u32, st: &ProcStatus, path: &Path) -> Result<Option<UnixStream>, AttachError> {
    let res = if process::euid() == 0 {
        process::as_user(st.uid, st.gid, || UnixStream::connect(path)).map_err(io_err(format!(
            "switching to uid {} gid {} to connect",
            st.uid, st.gid
        )))?
    } else {
        UnixStream::connect(path)
    };
    match res {
        Ok(s) => Ok(Some(s)),
        Err(e) => match e.kind() {
            Kind::NotFound | Kind::ConnectionRefused => Ok(None),
            Kind::PermissionDenied => Err(AttachError::PermissionDenied { pid, uid: st.uid }),
            _ => Err(io_err(format!("connecting to {}", path.display()))(e)),
        },
    }
}

/// Removes the .attach_pid trigger file we created (if any) when dropped.
struct Trigger(Option<PathBuf>);

impl Drop for Trigger {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

fn connect(pid: u32, st: &ProcStatus, timeout: Duration) -> Result<UnixStream, AttachError> {
    // Open the target's /tmp as ourselves, and connect through our own fd:
    // after switching uid, /proc/PID/root may be closed to us (a target
    // with file capabilities is not dumpable).
    let tmp = process::in_root(pid, Path::new("/tmp"));
    let dir = File::open(&tmp).map_err(io_err(format!("opening {}", tmp.display())))?;
    let socket = PathBuf::from(format!(
        "/proc/self/fd/{}/.java_pid{}",
        dir.as_raw_fd(),
        st.nspid
    ));
    if let Some(s) = try_connect(pid, st, &socket)? {
        return Ok(s);
    }
    // No listener yet: make sure SIGQUIT will not kill the process. A JVM
    // still starting has libjvm.so mapped but no SIGQUIT handler yet: give
    // it until the deadline to install one.
    let deadline = Instant::now() + timeout;
    if !process::maps_contain(pid, "/libjvm.so")
        .map_err(io_err(format!("reading /proc/{pid}/maps")))?
    {
        return Err(AttachError::NotJvm {
            pid,
            why: "it is not a HotSpot JVM (no libjvm.so in its memory maps)".into(),
        });
    }
    while !target(pid)?.handles_sigquit() {
        if Instant::now() >= deadline {
            return Err(AttachError::NotJvm {
                pid,
                why: "it does not handle SIGQUIT, which would kill it instead of starting the \
                      attach listener (started with -Xrs?)"
                    .into(),
            });
        }
        std::thread::sleep(POLL_STEP);
    }
    let _trigger = create_trigger(pid, st)?;
    process::sigquit(pid).map_err(io_err(format!("sending SIGQUIT to process {pid}")))?;
    while Instant::now() < deadline {
        std::thread::sleep(POLL_STEP);
        if let Some(s) = try_connect(pid, st, &socket)? {
            return Ok(s);
        }
        if process::check_signal(pid).is_err() {
            return Err(AttachError::NoSuchProcess(pid));
        }
    }
    Err(AttachError::NoListener { pid, timeout })
}

/// Creates `.attach_pid<nspid>` in the target's /tmp, or else its cwd (HotSpot
/// looks in both), owned by the target's uid (HotSpot ignores files of other
/// users but root's).
fn create_trigger(pid: u32, st: &ProcStatus) -> Result<Trigger, AttachError> {
    let name = format!(".attach_pid{}", st.nspid);
    let candidates = [
        process::in_root(pid, Path::new("/tmp")).join(&name),
        process::proc_path(pid, "cwd").join(&name),
    ];
    let mut last = None;
    for path in candidates {
        // Never follow or take over a file someone else put there; an
        // existing trigger is left alone (HotSpot checks its owner).
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => {
                let trigger = Trigger(Some(path));
                if process::euid() == 0 {
                    std::os::unix::fs::fchown(&file, Some(st.uid), Some(st.gid)).map_err(
                        io_err(format!(
                            "chown of the attach trigger file for process {pid}"
                        )),
                    )?;
                }
                return Ok(trigger);
            }
            Err(e) if e.kind() == Kind::AlreadyExists => return Ok(Trigger(None)),
            Err(e) => last = Some((path, e)),
        }
    }
    let (path, err) = last.unwrap_or_else(|| (PathBuf::from(&name), Kind::NotFound.into()));
    Err(io_err(format!(
        "creating the attach trigger {} (tried the target's /tmp first)",
        path.display()
    ))(err))
}

/// Loads a JVMTI agent library into JVM `pid`, as `-agentpath:lib=options`
/// would at startup. If the target (in another mount namespace, or as
/// another user) cannot read `lib` at the same path, it is copied into the
/// target's /tmp first. Returns a one-line description of what was done.
pub fn load_agent(
    pid: u32,
    lib: &Path,
    options: &str,
    timeout: Duration,
) -> Result<String, AttachError> {
    let lib = fs::canonicalize(lib).map_err(io_err(format!(
        "finding the agent library {}",
        lib.display()
    )))?;
    let st = target(pid)?;
    let (path, copied) = if visible_to_target(pid, &st, &lib) {
        (lib.clone(), false)
    } else {
        (stage_library(pid, &st, &lib)?, true)
    };
    let path_str = path
        .to_str()
        .ok_or_else(|| AttachError::BadRequest(format!("{} is not UTF-8", path.display())))?;
    // A JVM that is still starting answers that agents load only in the
    // live phase: ask again until it is live or the time is up.
    let deadline = Instant::now() + timeout;
    let reply = loop {
        let reply = execute(pid, "load", &[path_str, "true", options], timeout)?;
        if !reply.text.contains("only permitted in the live phase") || Instant::now() >= deadline {
            break reply;
        }
        std::thread::sleep(POLL_STEP);
    };
    // Without a return code, the output says why the library did not load.
    let Some((code, rest)) = (reply.code == 0)
        .then(|| parse_agent_code(&reply.text))
        .flatten()
    else {
        let (code, text) = (reply.code, reply.text);
        return Err(AttachError::Refused { pid, code, text });
    };
    if code != 0 {
        let text = rest.to_string();
        return Err(AttachError::AgentFailed {
            pid,
            lib: path,
            code,
            text,
        });
    }
    let mut msg = format!("loaded {} into process {pid}", path.display());
    if copied {
        msg += &format!(
            " (copied from {}, which the target cannot see or read at that path)",
            lib.display()
        );
    }
    Ok(msg)
}

/// Whether the target sees the same file at the same path and can read it.
fn visible_to_target(pid: u32, st: &ProcStatus, lib: &Path) -> bool {
    let theirs = process::in_root(pid, lib);
    let same = match (fs::metadata(lib), fs::metadata(&theirs)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    if !same || process::euid() != 0 || st.uid == 0 {
        return same;
    }
    process::as_user(st.uid, st.gid, || File::open(&theirs).is_ok()).unwrap_or(false)
}

/// Copies `lib` to /tmp/cqlready-attach-<uid>/ as the target sees it and
/// returns that path. Replaces an older copy by rename, never in place
/// (a JVM may have the old one mapped).
fn stage_library(pid: u32, st: &ProcStatus, lib: &Path) -> Result<PathBuf, AttachError> {
    let name = lib
        .file_name()
        .ok_or_else(|| AttachError::BadRequest(format!("{} has no file name", lib.display())))?;
    let inner_dir = PathBuf::from(format!("/tmp/cqlready-attach-{}", st.uid));
    let dir = process::in_root(pid, &inner_dir);
    let root = process::euid() == 0;
    match DirBuilder::new().mode(0o755).create(&dir) {
        Ok(()) if root => std::os::unix::fs::chown(&dir, Some(st.uid), Some(st.gid))
            .map_err(io_err(format!("chown of {}", dir.display())))?,
        Ok(()) => {}
        Err(e) if e.kind() == Kind::AlreadyExists => {
            let md = fs::symlink_metadata(&dir)
                .map_err(io_err(format!("checking {}", dir.display())))?;
            if !md.is_dir()
                || (md.uid() != st.uid && md.uid() != process::euid())
                || md.mode() & 0o022 != 0
            {
                return Err(AttachError::BadRequest(format!(
                    "{} exists but is not a directory owned by uid {} and writable only by it; remove it",
                    dir.display(), st.uid)));
            }
        }
        Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
    }
    let tmp = dir.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let copy = || -> io::Result<()> {
        let mut src = File::open(lib)?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        io::copy(&mut src, &mut dst)?;
        if root {
            std::os::unix::fs::fchown(&dst, Some(st.uid), Some(st.gid))?;
        }
        fs::rename(&tmp, dir.join(name))
    };
    copy().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(format!("copying {} to {}", lib.display(), dir.display()))(e)
    })?;
    Ok(inner_dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_v1_requests() {
        assert_eq!(
            encode_request("properties", &[]).ok(),
            Some(b"1\0properties\0\0\0\0".to_vec())
        );
        assert_eq!(
            encode_request("load", &["/a.so", "true", "x=1"]).ok(),
            Some(b"1\0load\0/a.so\0true\0x=1\0".to_vec())
        );
        assert!(encode_request("jcmd", &["a", "b", "c", "d"]).is_err());
        assert!(encode_request("jcmd", &["a\0b"]).is_err());
        assert!(encode_request("", &[]).is_err());
    }

    #[test]
    fn parses_replies() {
        let reply = |code, text: &str| {
            Ok(Reply {
                code,
                text: text.into(),
            })
        };
        assert_eq!(
            parse_reply(b"0\nhello\nworld\n"),
            reply(0, "hello\nworld\n")
        );
        assert_eq!(parse_reply(b"-1\n"), reply(-1, ""));
        assert_eq!(parse_reply(b"0"), reply(0, ""));
        assert!(parse_reply(b"").is_err());
        assert!(parse_reply(b"garbage\n").is_err());
    }

    #[test]
    fn parses_agent_codes() {
        assert_eq!(parse_agent_code("0\n"), Some((0, "")));
        assert_eq!(parse_agent_code("return code: 0\n"), Some((0, "")));
        assert_eq!(
            parse_agent_code("return code: -3\nmore\n"),
            Some((-3, "more\n"))
        );
        assert_eq!(parse_agent_code("12"), Some((12, "")));
        assert_eq!(parse_agent_code("oops\n"), None);
    }

    #[test]
    fn errors_read_well() {
        let e = AttachError::NoListener {
            pid: 123,
            timeout: Duration::from_secs(5),
        };
        assert!(e.to_string().contains("did not start within 5.0s"));
        assert_eq!(
            AttachError::NoSuchProcess(9).to_string(),
            "no such process 9"
        );
    }
}
