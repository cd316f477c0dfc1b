//! Process and namespace helpers for attaching to a JVM: what /proc/PID/status
//! says about a process, paths as the process sees them (/proc/PID/root),
//! signals, and briefly taking on another user's effective uid and gid.
//!
//! This is the only module of the attach client with `unsafe` (libc calls).

use std::io::{self, BufRead, BufReader};
use std::path::{Component, Path, PathBuf};

/// SIGQUIT's bit in the /proc/PID/status signal masks.
const SIGQUIT_BIT: u64 = 1 << (libc::SIGQUIT - 1);

/// What /proc/PID/status says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStatus {
    /// The pid as the process sees itself: the last NSpid entry (the plain
    /// pid on kernels without NSpid).
    pub nspid: u32,
    /// Effective uid and gid, as seen from our user namespace.
    pub uid: u32,
    pub gid: u32,
    /// Signals the process has a handler for (SigCgt).
    pub sig_caught: u64,
}

impl ProcStatus {
    /// Whether the process handles SIGQUIT itself, so that sending it does
    /// not kill the process (HotSpot does, unless started with -Xrs).
    pub fn handles_sigquit(&self) -> bool {
        self.sig_caught & SIGQUIT_BIT != 0
    }
}

/// Parses the text of /proc/PID/status; None if a needed field is missing.
pub fn parse_status(text: &str) -> Option<ProcStatus> {
    let (mut pid, mut nspid, mut uid, mut gid, mut sig) = (None, None, None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let mut fields = value.split_whitespace();
        match key {
            "Pid" => pid = fields.next().and_then(|v| v.parse().ok()),
            "NSpid" => nspid = fields.last().and_then(|v| v.parse().ok()),
            // Real, effective, saved, filesystem: take the effective one.
            "Uid" => uid = fields.nth(1).and_then(|v| v.parse().ok()),
            "Gid" => gid = fields.nth(1).and_then(|v| v.parse().ok()),
            "SigCgt" => sig = fields.next().and_then(|v| u64::from_str_radix(v, 16).ok()),
            _ => {}
        }
    }
    Some(ProcStatus {
        nspid: nspid.or(pid)?,
        uid: uid?,
        gid: gid?,
        sig_caught: sig.unwrap_or(0),
    })
}

/// Reads and parses /proc/PID/status (NotFound if there is no such process).
pub fn status(pid: u32) -> io::Result<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/status"),
        )
    })
}

/// `/proc/PID/<name>`, e.g. "cwd" or "root".
pub fn proc_path(pid: u32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// The path through which we reach the absolute `path` of the process's
/// mount namespace and root: `/proc/PID/root/<path>`, with symlinks on the
/// way resolved inside that root (see [`resolve_under`]).
pub fn in_root(pid: u32, path: &Path) -> PathBuf {
    resolve_under(&proc_path(pid, "root"), path)
}

/// `root/<path>`, following symlinks as a process whose `/` is `root` would:
/// an absolute link target starts again at `root`, `..` stops there. The
/// kernel would resolve an absolute target against our own `/` instead, and
/// `/var/run -> /run` is in every Debian and Ubuntu image. Gives up following
/// after 40 links (the kernel's limit) and keeps the rest as written.
pub fn resolve_under(root: &Path, path: &Path) -> PathBuf {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    fn push_front(todo: &mut VecDeque<OsString>, p: &Path) {
        for c in p.components().collect::<Vec<_>>().into_iter().rev() {
            match c {
                Component::Normal(n) => todo.push_front(n.to_os_string()),
                Component::ParentDir => todo.push_front("..".into()),
                _ => {}
            }
        }
    }
    let mut todo = VecDeque::new();
    push_front(&mut todo, path);
    let mut inside: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            inside.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&inside);
        here.push(&name);
        match std::fs::read_link(&here) {
            Ok(target) if links < 40 => {
                links += 1;
                if target.is_absolute() {
                    inside.clear();
                }
                push_front(&mut todo, &target);
            }
            _ => inside.push(name),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&inside);
    out
}

/// Whether some line of /proc/PID/maps contains `needle` (e.g. "/libjvm.so").
pub fn maps_contain(pid: u32, needle: &str) -> io::Result<bool> {
    let file = std::fs::File::open(proc_path(pid, "maps"))?;
    for line in BufReader::new(file).split(b'\n') {
        if String::from_utf8_lossy(&line?).contains(needle) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if pid <= 0 {
        // kill() with 0 or -1 would signal groups, never one process.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill() takes plain integers and touches no memory of ours; pid
    // is positive, so it addresses exactly one process.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether we may signal the process (kill with signal 0): Ok, or an error of
/// kind NotFound (ESRCH) or PermissionDenied (EPERM).
pub fn check_signal(pid: u32) -> io::Result<()> {
    kill(pid, 0)
}

/// Sends SIGQUIT, HotSpot's cue to look for a .attach_pid file.
pub fn sigquit(pid: u32) -> io::Result<()> {
    kill(pid, libc::SIGQUIT)
}

/// Our effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid() cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// Our effective gid.
pub fn egid() -> u32 {
    // SAFETY: getegid() cannot fail and has no preconditions.
    unsafe { libc::getegid() }
}

fn check(rc: libc::c_long, what: &str) -> io::Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    Err(io::Error::new(err.kind(), format!("{what}: {err}")))
}

/// Sets the calling thread's effective uid and gid with the raw setresuid and
/// setresgid system calls. Unlike glibc's seteuid, which applies the change
/// to every thread of the process, other threads keep their ids.
fn set_ids(uid: u32, gid: u32) -> io::Result<()> {
    const KEEP: libc::c_long = u32::MAX as libc::c_long; // (uid_t)-1: unchanged
    let set_gid = || {
        // SAFETY: setresgid takes three integers and touches no memory of ours.
        check(
            unsafe { libc::syscall(libc::SYS_setresgid, KEEP, gid as libc::c_long, KEEP) },
            "setresgid",
        )
    };
    let set_uid = || {
        // SAFETY: setresuid takes three integers and touches no memory of ours.
        check(
            unsafe { libc::syscall(libc::SYS_setresuid, KEEP, uid as libc::c_long, KEEP) },
            "setresuid",
        )
    };
    // While root, change the gid before giving up the uid; otherwise regain
    // the uid first, as only it allows changing the gid back.
    if euid() == 0 {
        set_gid()?;
        set_uid()
    } else {
        set_uid()?;
        set_gid()
    }
}

/// Runs `f` with the calling thread's effective uid and gid switched to
/// `uid`/`gid` (HotSpot only answers peers with its own euid and egid, or
/// root), then switches back. Needs root (or the same ids: a no-op).
pub fn as_user<T>(uid: u32, gid: u32, f: impl FnOnce() -> T) -> io::Result<T> {
    let (old_uid, old_gid) = (euid(), egid());
    if (old_uid, old_gid) == (uid, gid) {
        return Ok(f());
    }
    if let Err(err) = set_ids(uid, gid) {
        // Undo a half switch (e.g. the gid changed but the uid did not).
        let _ = set_ids(old_uid, old_gid);
        return Err(err);
    }
    let out = f();
    set_ids(old_uid, old_gid).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot switch back to uid {old_uid}: {e}"),
        )
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tjava\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n\
        Pid:\t4242\nPPid:\t1\nUid:\t1000\t999\t999\t999\nGid:\t1001\t998\t998\t998\n\
        NSpid:\t4242\t77\t7\nSigIgn:\t0000000000000000\nSigCgt:\t2000000181005ccf\n";

    #[test]
    fn parses_nspid_ids_and_signals() {
        let st = parse_status(STATUS).expect("parses");
        assert_eq!(
            st,
            ProcStatus {
                nspid: 7,
                uid: 999,
                gid: 998,
                sig_caught: 0x2000000181005ccf
            }
        );
        assert!(st.handles_sigquit());
    }

    #[test]
    fn falls_back_to_pid_without_nspid() {
        let text = STATUS
            .replace("NSpid:\t4242\t77\t7\n", "")
            .replace("5ccf", "5cc0");
        let st = parse_status(&text).expect("parses");
        assert_eq!(st.nspid, 4242);
        assert!(!st.handles_sigquit());
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn root_paths() {
        assert_eq!(
            in_root(12, Path::new("/tmp/.java_pid7")),
            Path::new("/proc/12/root/tmp/.java_pid7")
        );
        assert_eq!(in_root(12, Path::new("/")), Path::new("/proc/12/root"));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = std::env::temp_dir().join(format!("cqlready-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("run/cqlready")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../run/cqlready", root.join("var/rel")).unwrap();
        std::os::unix::fs::symlink("/../../loop", root.join("loop")).unwrap();
        let sock = root.join("run/cqlready/cqlready.sock");
        for p in ["/var/run/cqlready/cqlready.sock", "/var/rel/cqlready.sock"] {
            assert_eq!(resolve_under(&root, Path::new(p)), sock, "{p}");
        }
        // `..` stops at the root; a link loop gives up and keeps the name.
        assert_eq!(
            resolve_under(&root, Path::new("/../../run")),
            root.join("run")
        );
        assert_eq!(
            resolve_under(&root, Path::new("/loop/x")),
            root.join("loop/x")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn own_process() {
        let st = status(std::process::id()).expect("own status");
        assert_eq!(st.uid, euid());
        assert!(check_signal(std::process::id()).is_ok());
        assert!(as_user(euid(), egid(), || 5).is_ok_and(|v| v == 5));
        if euid() == 0 {
            let other =
                std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(50)));
            let seen = as_user(65534, 65534, || {
                (euid(), egid(), status(std::process::id()))
            });
            let (uid, gid, st) = seen.expect("switch to nobody");
            assert_eq!((uid, gid), (65534, 65534));
            // Other threads keep their ids (the main thread's status shows root).
            assert!(st.is_ok_and(|st| st.uid == 0));
            assert_eq!((euid(), egid()), (0, 0));
            let _ = other.join();
        }
    }
}
