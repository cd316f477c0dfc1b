//! The agent's own process helpers, apart from attach's (`process.rs`):
//! who is at the other end of a status connection (`SO_PEERCRED`,
//! `SO_PEERGROUPS`), group names, the status thread's priority, the claim
//! that makes one agent per process (an abstract socket and its owner), and
//! the status server's epoll and eventfd waker.
//!
//! Everything here runs inside the JVM. With `jvm/`, `process.rs` and
//! `netif.rs` it is one of the modules with `unsafe` (libc calls, each with
//! `// SAFETY:`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// The credentials of the process at the other end of a Unix socket, as
/// the kernel recorded them at connect (SO_PEERCRED): (pid, uid, gid).
pub fn peer_credentials(fd: &impl AsRawFd) -> io::Result<(u32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred
    // of exactly that size owned by this frame; the fd is borrowed, open.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid as u32, cred.uid, cred.gid))
}

/// `SO_PEERGROUPS` (Linux 4.13): not in every libc release's constants.
const SO_PEERGROUPS: libc::c_int = 59;

/// The supplementary groups of the peer of a Unix socket, as the kernel
/// recorded them at connect (`SO_PEERGROUPS`), mapped into our user
/// namespace. Unlike `/proc/<pid>/status` this cannot name another process
/// after a pid is reused, and works for peers in other PID namespaces.
pub fn peer_groups(fd: &impl AsRawFd) -> io::Result<Vec<u32>> {
    // NGROUPS_MAX is 65536; start small and grow to what the kernel asks.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = std::mem::size_of_val(groups.as_slice()) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the vector's
        // buffer, which holds exactly `len` bytes; the fd is borrowed, open.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) || n <= groups.len() || n > 65536 {
            return Err(err);
        }
        groups.resize(n, 0);
    }
}

/// A group's id from a number or a name in /etc/group.
pub fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1)?.parse().ok())
            .flatten()
    })
}

/// Lowers the calling thread's scheduling priority by `by` nice steps (at
/// most to 19); threads it starts later inherit it. On Linux a nice value
/// belongs to one thread, so the rest of the JVM keeps its own.
pub fn lower_this_thread(by: i32) {
    // SAFETY: nice() takes no pointers and cannot fail in a way that
    // matters: raising one's own nice value needs no privilege.
    unsafe {
        libc::nice(by);
    }
}

/// The soft limit on open file descriptors (RLIMIT_NOFILE), if known.
pub fn fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, owned by this frame.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

// ---------------------------------------------------------------------------
// One agent per process

/// The inode of the abstract Unix socket bound to `@name` in this network
/// namespace, from `/proc/net/unix`.
pub fn abstract_socket_inode(name: &str) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    inode_in_unix_table(&table, name)
}

/// `/proc/net/unix` rows are `Num RefCount Protocol Flags Type St Inode Path`.
fn inode_in_unix_table(table: &str, name: &str) -> Option<u64> {
    let want = format!("@{name}");
    table.lines().skip(1).find_map(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        (cols.len() == 8 && cols[7] == want)
            .then(|| cols[6].parse().ok())
            .flatten()
    })
}

/// Whether one of this process's open descriptors is socket `inode`.
pub fn is_own_socket(inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd").is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()))
    })
}

/// Held for the life of the process by the copy of the library that runs.
static CLAIM: OnceLock<UnixDatagram> = OnceLock::new();

/// Claims this process for one agent across copies of the library (a second
/// `-agentpath` with another file, the shim's copy, a copy `attach` placed in
/// a container): binds the abstract socket `cqlready-agent-<pid ns>-<pid>`,
/// which names this process uniquely on the host. `Ok(false)`: another copy
/// in this process holds it. A name held by another process (squatted by a
/// local user to keep the agent idle) is ignored with a warning. The socket
/// is close-on-exec, so children do not inherit it.
pub fn claim_process(pid: u32) -> io::Result<bool> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let ns = std::fs::read_link("/proc/self/ns/pid")?;
    let ns: String = ns
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let name = format!("cqlready-agent-{ns}-{pid}");
    match UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?) {
        Ok(sock) => {
            let _ = CLAIM.set(sock);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let here = abstract_socket_inode(&name).is_some_and(is_own_socket);
            if !here {
                crate::warn!("@{name} is held by another process; running anyway");
            }
            Ok(!here)
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------
// The status server's event loop

/// Readiness wanted or seen on one descriptor (epoll's events).
pub const READABLE: u32 = libc::EPOLLIN as u32;
pub const WRITABLE: u32 = libc::EPOLLOUT as u32;
/// The peer closed both ways, or the socket failed: never asked for,
/// always reported.
pub const HANGUP: u32 = (libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// An epoll instance (level-triggered): descriptors with a token each.
/// The cost of a wait is the number of ready descriptors, not of watched
/// ones, so thousands of idle connections cost nothing per turn.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes one integer and returns a new fd or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event owned by this frame, read by
        // the kernel only during the call; both fds are open.
        let rc = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `fd` for `events`, reported with `token`.
    pub fn add(&self, fd: &impl AsRawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, token)
    }

    /// Changes what `fd` is watched for. (Closing an fd unwatches it.)
    pub fn modify(&self, fd: &impl AsRawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), events, token)
    }

    /// Waits up to `timeout` (`None`: forever) and fills `out` with
    /// (token, events) of the ready descriptors, at most `max`. EINTR is
    /// an empty wait.
    pub fn wait(
        &self,
        out: &mut Vec<(u64, u32)>,
        max: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        out.clear();
        let mut raw = vec![libc::epoll_event { events: 0, u64: 0 }; max.max(1)];
        let ms = match timeout {
            None => -1,
            // Rounded up, so that a deadline is never waited for 0 ms in a spin.
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: `raw` holds `raw.len()` epoll_events, exclusively borrowed;
        // the kernel writes at most that many.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                raw.as_mut_ptr(),
                raw.len() as libc::c_int,
                ms,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(err)
            };
        }
        out.extend(raw[..n as usize].iter().map(|e| (e.u64, e.events)));
        Ok(())
    }
}

/// One non-blocking `send` that never raises SIGPIPE (MSG_NOSIGNAL): a
/// peer gone before its answer is an EPIPE error, whatever the JVM does
/// with the signal (`-Xrs`, say).
pub fn send_nosignal(fd: &impl AsRawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: send reads at most `bytes.len()` bytes from the borrowed
    // slice; the fd is borrowed and open.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// An eventfd: any thread [`EventFd::wake`]s the event loop polling it.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes two integers and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the descriptor readable; never blocks (a full counter is
    /// already readable, so a failed add loses nothing).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one`, owned by this frame, to our fd.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter (after the loop saw it readable).
    pub fn clear(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into `n`, owned by this frame; the
        // fd is non-blocking, so an empty counter returns EAGAIN at once.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn abstract_sockets_and_their_owner() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000047e481fc: 00000002 00000000 00010000 0001 01 8252532 /tmp/x.sock\n\
            00000000c7a91a50: 00000002 00000000 00000000 0001 03 8252535\n\
            00000000c7a91a51: 00000002 00000000 00000000 0002 01 77 @cqlready-agent-1-2\n";
        assert_eq!(inode_in_unix_table(table, "cqlready-agent-1-2"), Some(77));
        assert_eq!(inode_in_unix_table(table, "cqlready-agent-1"), None);
        assert_eq!(inode_in_unix_table("garbage\n\n@x y", "x"), None);

        use std::os::linux::net::SocketAddrExt;
        let name = format!("cqlready-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _sock = UnixDatagram::bind_addr(&addr).unwrap();
        let inode = abstract_socket_inode(&name).expect("listed in /proc/net/unix");
        assert!(is_own_socket(inode));
        assert!(!is_own_socket(u64::MAX));
    }

    fn nice_of_this_thread() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Field 19, counted after the parenthesised command name.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn lowering_one_thread_leaves_the_others() {
        let mine = nice_of_this_thread();
        let (theirs, inherited) = std::thread::spawn(|| {
            lower_this_thread(10);
            let child = std::thread::spawn(nice_of_this_thread).join().unwrap();
            (nice_of_this_thread(), child)
        })
        .join()
        .unwrap();
        assert_eq!(theirs, (mine + 10).min(19));
        assert_eq!(inherited, theirs);
        assert_eq!(nice_of_this_thread(), mine);
    }

    /// Our own groups as /proc says them, against what the kernel recorded
    /// for a socket pair's peer (this same process).
    #[test]
    fn peer_groups_are_the_connecting_process_groups() {
        let (a, _b) = UnixStream::pair().unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let mut want: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .unwrap()
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        let mut got = peer_groups(&a).expect("SO_PEERGROUPS");
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
        let (pid, uid, _) = peer_credentials(&a).unwrap();
        assert_eq!((pid, uid), (std::process::id(), crate::process::euid()));
    }

    #[test]
    fn the_waker_wakes_an_epoll() {
        let w = EventFd::new().unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(&w, READABLE, 7).unwrap();
        let mut out = Vec::new();
        ep.wait(&mut out, 8, Some(Duration::ZERO)).unwrap();
        assert!(out.is_empty());
        w.wake();
        w.wake();
        ep.wait(&mut out, 8, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(out, [(7, READABLE)]);
        w.clear();
        ep.wait(&mut out, 8, Some(Duration::ZERO)).unwrap();
        assert!(out.is_empty());
        ep.modify(&w, 0, 7).unwrap();
        w.wake();
        ep.wait(&mut out, 8, Some(Duration::ZERO)).unwrap();
        assert!(out.is_empty(), "not watched for input any more");
        assert_eq!(group_id("0"), Some(0));
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-here"), None);
    }
}
