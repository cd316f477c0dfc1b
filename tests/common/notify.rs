//! A fake service manager: a notify socket that records every datagram with
//! its sender's credentials.

use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::TempDir;

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

    /// Returns once every datagram sent to this socket before the call has
    /// been received: a marker sent now is queued behind them (a datagram
    /// socket's queue is first in, first out). With it a test counts what a
    /// process that has exited sent, without sleeping "long enough".
    pub fn sync(&self) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let marker = format!("X_CQLREADY_TEST_SYNC={}", N.fetch_add(1, Ordering::Relaxed));
        let tx = UnixDatagram::unbound().expect("unbound datagram socket");
        let sent = match self.addr.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|a| tx.send_to_addr(marker.as_bytes(), &a)),
            None => tx.send_to(marker.as_bytes(), &self.addr),
        };
        sent.expect("send the sync marker");
        self.wait_msg("the sync marker", super::deadline(), |m| m.text == marker);
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
