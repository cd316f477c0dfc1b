//! The status server's one thread: epoll over the listening socket, an
//! eventfd the snapshot store wakes on every change of state, and a bounded
//! table of connections, each in one phase with one deadline.
//!
//! | phase | watched for | deadline | then |
//! |---|---|---|---|
//! | reading (≤ [`MAX_REQUEST`]) | input | [`IO_TIMEOUT`] after accept | 408 |
//! | waiting (`/ready?wait=`) | the peer closing | the wait's end | the current state |
//! | writing | output | [`IO_TIMEOUT`] | closed |
//! | lingering (refused: 403 written, its request drained so the peer reads the answer) | input | [`REFUSE_LINGER`] | closed |
//!
//! Every accept happens at once (until the listener would block, at most
//! 1,024 a turn); the peer check runs at accept, and a refused
//! peer is answered 403 at once (kept a moment only while there is room, to
//! read its request off). A full table makes room for an allowed peer: the oldest lingering
//! connection goes, else the oldest still reading (answered 408), else the
//! oldest long-poll (answered with the current state); one being written is
//! never cut. Only when every slot is being written is the newcomer answered
//! `503 busy`. A request that is already complete is answered within the turn
//! that reads it; nothing here blocks, and nothing waits on the JVM.

use crate::agent_process::{self, Epoll, EventFd, HANGUP, READABLE, WRITABLE};
use crate::status::cluster::{self, Query as ClusterQuery};
use crate::status::model::Snapshot;
use crate::status::routes::{self, Answer, Reply, MAX_REQUEST};
use crate::status::store::Shared;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time to send the request, and time to take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The most connections served at once; fewer when the file-descriptor
/// budget is small (see [`capacity`]).
pub const MAX_CONNECTIONS: usize = 4096;
/// How long a refused connection is kept to read its request off, so that
/// the peer reads its 403 instead of a broken pipe.
pub const REFUSE_LINGER: Duration = Duration::from_millis(500);
/// Accepts in one turn at most, so that a connect storm cannot keep the
/// loop from the connections it already holds.
const ACCEPTS_PER_TURN: usize = 1024;
/// Events taken from one epoll wait.
const EVENTS_PER_TURN: usize = 256;
/// How often a waiting cluster request looks at the view again.
const CLUSTER_POLL: Duration = Duration::from_millis(50);
const LISTENER: u64 = 0;
const WAKER: u64 = 1;

/// The table's size for a soft `RLIMIT_NOFILE`: an eighth of it, between 16
/// and [`MAX_CONNECTIONS`] (the JVM needs the rest: Cassandra opens many
/// files and sockets).
pub fn capacity(fd_limit: Option<u64>) -> usize {
    fd_limit
        .map_or(MAX_CONNECTIONS, |l| {
            (l / 8).min(MAX_CONNECTIONS as u64) as usize
        })
        .max(16)
}

/// Which phase a connection is in (for tests and the fuzz target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    Reading,
    Waiting,
    Writing,
    Lingering,
}

#[derive(Debug)]
enum Phase {
    Reading {
        buf: Vec<u8>,
    },
    Waiting {
        head_only: bool,
        input_closed: bool,
        /// A cluster request (`/cluster`, `/ready?scope=cluster`) and when
        /// its run of asking began; `None`: `/ready?wait=`.
        cluster: Option<Box<(ClusterQuery, u64)>>,
    },
    Writing {
        out: Vec<u8>,
        sent: usize,
    },
    /// `tail`: the last bytes read, to see the head's end across reads.
    Lingering {
        read: usize,
        tail: Vec<u8>,
    },
}

impl Phase {
    fn kind(&self) -> PhaseKind {
        match self {
            Phase::Reading { .. } => PhaseKind::Reading,
            Phase::Waiting { .. } => PhaseKind::Waiting,
            Phase::Writing { .. } => PhaseKind::Writing,
            Phase::Lingering { .. } => PhaseKind::Lingering,
        }
    }

    /// What epoll watches the connection for in this phase.
    fn interest(&self) -> u32 {
        match self {
            Phase::Reading { .. } | Phase::Lingering { .. } => READABLE,
            Phase::Waiting { input_closed, .. } => {
                if *input_closed {
                    0
                } else {
                    READABLE
                }
            }
            Phase::Writing { .. } => WRITABLE,
        }
    }
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    phase: Phase,
    deadline: Instant,
    /// What epoll watches it for now.
    watched: u32,
}

/// What happened to a connection in one step.
enum Next {
    Keep(Conn),
    Close,
}

/// Who may use the socket besides root: the JVM's user, and the members of
/// an optional group. Checked on every connection with SO_PEERCRED and
/// SO_PEERGROUPS, on top of the file's mode 0660 and its directory's mode.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub owner: u32,
    pub group: Option<u32>,
}

impl Access {
    /// Whether the peer (uid, primary gid, supplementary groups) may ask.
    /// `groups` is only called when the answer depends on it.
    pub fn allows(&self, uid: u32, gid: u32, groups: impl FnOnce() -> Vec<u32>) -> bool {
        uid == 0
            || uid == self.owner
            || self
                .group
                .is_some_and(|g| gid == g || groups().contains(&g))
    }

    /// The check on a connected socket: the kernel's record of its peer.
    /// `Err` carries the peer's (uid, pid) for the log.
    pub fn check(&self, stream: &UnixStream) -> Result<(), Option<(u32, u32)>> {
        let (pid, uid, gid) = agent_process::peer_credentials(stream).map_err(|_| None)?;
        let groups = || agent_process::peer_groups(stream).unwrap_or_default();
        if self.allows(uid, gid, groups) {
            Ok(())
        } else {
            Err(Some((uid, pid)))
        }
    }
}

/// The connection table and the descriptors it watches.
pub struct EventLoop {
    listener: UnixListener,
    access: Access,
    shared: Arc<Shared>,
    waker: Arc<EventFd>,
    epoll: Epoll,
    /// By accept order (the key, also the epoll token): the first is the oldest.
    conns: BTreeMap<u64, Conn>,
    cap: usize,
    seq: u64,
    /// After an accept error (EMFILE, say): not accepting until then.
    accept_paused_until: Option<Instant>,
    last_accept_error: Option<io::ErrorKind>,
    refused_uids: Vec<u32>,
    events: Vec<(u64, u32)>,
}

impl EventLoop {
    /// A loop over `listener` (made non-blocking) with at most `cap`
    /// connections; `shared` wakes it on every change of state.
    pub fn new(
        listener: UnixListener,
        access: Access,
        shared: Arc<Shared>,
        cap: usize,
    ) -> io::Result<EventLoop> {
        listener.set_nonblocking(true)?;
        let waker = Arc::new(EventFd::new()?);
        let epoll = Epoll::new()?;
        epoll.add(&listener, READABLE, LISTENER)?;
        epoll.add(&*waker, READABLE, WAKER)?;
        let w = waker.clone();
        shared.on_state_change(Box::new(move |_| w.wake()));
        Ok(EventLoop {
            listener,
            access,
            shared,
            waker,
            epoll,
            conns: BTreeMap::new(),
            cap: cap.max(1),
            seq: WAKER,
            accept_paused_until: None,
            last_accept_error: None,
            refused_uids: Vec::new(),
            events: Vec::with_capacity(EVENTS_PER_TURN),
        })
    }

    /// Serves forever.
    pub fn run(&mut self) {
        loop {
            let timeout = self.timeout(Instant::now());
            self.turn(timeout, &Instant::now);
        }
    }

    /// How long the next wait may sleep: until the nearest deadline, and
    /// while a cluster request waits, [`CLUSTER_POLL`] at most (the view
    /// changes at every check, not only with the state).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        let cluster = self.has_cluster_waiters().then_some(now + CLUSTER_POLL);
        self.conns
            .values()
            .map(|c| c.deadline)
            .chain(self.accept_paused_until)
            .chain(cluster)
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    fn has_cluster_waiters(&self) -> bool {
        self.conns.values().any(|c| {
            matches!(
                c.phase,
                Phase::Waiting {
                    cluster: Some(_),
                    ..
                }
            )
        })
    }

    /// The phase and deadline of every connection held, oldest first.
    pub fn phases(&self) -> Vec<(PhaseKind, Instant)> {
        self.conns
            .values()
            .map(|c| (c.phase.kind(), c.deadline))
            .collect()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// One turn: wait (up to `timeout`), then read the time from `clock`
    /// and handle what is ready: the waker, the connections, new
    /// connections, the deadlines passed.
    pub fn turn(&mut self, timeout: Option<Duration>, clock: &dyn Fn() -> Instant) {
        let mut events = std::mem::take(&mut self.events);
        if self
            .epoll
            .wait(&mut events, EVENTS_PER_TURN, timeout)
            .is_err()
        {
            // Only EINVAL/EFAULT are possible; treat as nothing ready.
            events.clear();
        }
        let now = clock();
        let mut accept = self.accept_paused_until.is_some_and(|t| now >= t);
        for &(token, revents) in &events {
            match token {
                LISTENER => accept = true,
                WAKER => {
                    self.waker.clear();
                    self.wake_waiters(now);
                }
                _ => {
                    if let Some(c) = self.conns.remove(&token) {
                        let next = self.step(c, revents, now);
                        self.keep(token, next);
                    }
                }
            }
        }
        self.events = events;
        if self.has_cluster_waiters() {
            self.wake_waiters(now);
        }
        if accept && self.accept_paused_until.is_none_or(|t| now >= t) {
            if self.accept_paused_until.take().is_some() {
                let _ = self.epoll.modify(&self.listener, READABLE, LISTENER);
            }
            self.accept_all(now);
        }
        self.expire(now);
    }

    /// Puts a connection back in the table, watched for what its phase needs.
    fn keep(&mut self, token: u64, next: Next) {
        let Next::Keep(mut c) = next else { return };
        let want = c.phase.interest();
        if want != c.watched {
            if self.epoll.modify(&c.stream, want, token).is_err() {
                return;
            }
            c.watched = want;
        }
        self.conns.insert(token, c);
    }

    /// Answers every long-poll whose answer is in: `/ready?wait=` once
    /// ready or stopping, a cluster request once its view is fresh (and,
    /// with `wait=`, its gate holds).
    fn wake_waiters(&mut self, now: Instant) {
        let snap = self.shared.snapshot();
        let over = routes::wait_over(&snap);
        let waiting: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| match &c.phase {
                Phase::Waiting { cluster: None, .. } => over,
                Phase::Waiting {
                    cluster: Some(q), ..
                } => cluster::settled(&q.0, &snap, q.1),
                _ => false,
            })
            .map(|(t, _)| *t)
            .collect();
        for token in waiting {
            if let Some(c) = self.conns.remove(&token) {
                let next = answer_waiter(c, &snap, now);
                self.keep(token, next);
            }
        }
    }

    fn accept_all(&mut self, now: Instant) {
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.last_accept_error = None;
                    self.admit(stream, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: log once per kind, pause, go on.
                    if self.last_accept_error != Some(e.kind()) {
                        crate::warn!("status socket accept: {e}");
                        self.last_accept_error = Some(e.kind());
                    }
                    // Unwatched meanwhile: a listener that stays readable
                    // would wake every wait at once.
                    self.accept_paused_until = Some(now + Duration::from_millis(50));
                    let _ = self.epoll.modify(&self.listener, 0, LISTENER);
                    return;
                }
            }
        }
        // More are queued: the listener stays readable, so the next turn
        // goes on with them after the connections already held.
    }

    /// Takes one new connection: the peer check, a slot, a first read.
    pub fn admit(&mut self, stream: UnixStream, now: Instant) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let allowed = match self.access.check(&stream) {
            Ok(()) => true,
            Err(peer) => {
                if let Some((uid, pid)) = peer {
                    self.log_refusal(uid, pid);
                }
                false
            }
        };
        let full = self.conns.len() >= self.cap;
        if full && !allowed {
            // A refused peer never takes a slot from an allowed one.
            send_now(&stream, &Answer::text(403, "forbidden\n"));
            return;
        }
        if full && !self.evict() {
            // Every slot is being written: say so, never wait.
            send_now(&stream, &Answer::text(503, "busy\n"));
            return;
        }
        let (phase, deadline) = if allowed {
            (Phase::Reading { buf: Vec::new() }, now + IO_TIMEOUT)
        } else {
            send_now(&stream, &Answer::text(403, "forbidden\n"));
            let tail = Vec::new();
            (Phase::Lingering { read: 0, tail }, now + REFUSE_LINGER)
        };
        self.seq += 1;
        let token = self.seq;
        let watched = phase.interest();
        if self.epoll.add(&stream, watched, token).is_err() {
            return;
        }
        let conn = Conn {
            stream,
            phase,
            deadline,
            watched,
        };
        // The request is usually in already: answer it in this turn.
        let next = self.step(conn, READABLE, now);
        self.keep(token, next);
    }

    fn log_refusal(&mut self, uid: u32, pid: u32) {
        if self.refused_uids.len() < 16 && !self.refused_uids.contains(&uid) {
            self.refused_uids.push(uid);
            crate::warn!(
                "status socket: refused uid {uid} (pid {pid}); allowed: uid {}, root{}",
                self.access.owner,
                self.access
                    .group
                    .map(|g| format!(", group {g}"))
                    .unwrap_or_default()
            );
        }
    }

    /// Frees one slot: the oldest lingering, else the oldest reading (408),
    /// else the oldest long-poll (the current state). `false`: all writing.
    fn evict(&mut self) -> bool {
        let oldest = |kind: PhaseKind| {
            self.conns
                .iter()
                .find(|(_, c)| c.phase.kind() == kind)
                .map(|(t, _)| *t)
        };
        let Some(token) = oldest(PhaseKind::Lingering)
            .or_else(|| oldest(PhaseKind::Reading))
            .or_else(|| oldest(PhaseKind::Waiting))
        else {
            return false;
        };
        let Some(c) = self.conns.remove(&token) else {
            return false;
        };
        match c.phase {
            Phase::Reading { .. } => send_now(&c.stream, &Answer::error(408)),
            Phase::Waiting {
                head_only,
                ref cluster,
                ..
            } => {
                let answer = waiter_answer(cluster.as_deref(), &self.shared.snapshot());
                let _ = send(&c.stream, &answer.to_bytes(head_only));
            }
            _ => {}
        }
        true
    }

    /// Handles readiness `revents` on one connection.
    fn step(&mut self, mut c: Conn, revents: u32, now: Instant) -> Next {
        match &mut c.phase {
            Phase::Reading { buf } => match read_request(&mut c.stream, buf) {
                Got::More => Next::Keep(c),
                Got::Gone => Next::Close,
                Got::Bad(code) => answer_with(c, &Answer::error(code), false, now),
                Got::Request(req) => self.answer(c, &req, now),
            },
            Phase::Waiting { input_closed, .. } => {
                if revents & HANGUP != 0 {
                    return Next::Close;
                }
                match drain(&mut c.stream, &mut |_| {}) {
                    Drained::Open => Next::Keep(c),
                    // Half-closed: it still wants the answer.
                    Drained::Eof => {
                        *input_closed = true;
                        Next::Keep(c)
                    }
                    Drained::Error => Next::Close,
                }
            }
            Phase::Writing { .. } => write_some(c),
            Phase::Lingering { read, tail } => {
                let mut done = false;
                let r = drain(&mut c.stream, &mut |bytes| {
                    *read += bytes.len();
                    let mut joined = std::mem::take(tail);
                    joined.extend_from_slice(bytes);
                    done |= joined.windows(4).any(|w| w == b"\r\n\r\n");
                    *tail = joined[joined.len().saturating_sub(3)..].to_vec();
                });
                match r {
                    Drained::Open if !done && *read < MAX_REQUEST => Next::Keep(c),
                    _ => Next::Close,
                }
            }
        }
    }

    /// A whole request came in: answer it now, or park it as a long-poll.
    fn answer(&mut self, mut c: Conn, req: &routes::Request, now: Instant) -> Next {
        let snap = self.shared.snapshot();
        let head_only = req.head_only();
        match routes::route(req, &snap) {
            Reply::Now(a) => answer_with(c, &a, head_only, now),
            Reply::Wait(d) => {
                c.phase = Phase::Waiting {
                    head_only,
                    input_closed: false,
                    cluster: None,
                };
                c.deadline = now + d;
                Next::Keep(c)
            }
            Reply::Cluster(q) => {
                let since = self.shared.demand().ask(crate::status::view::mono_ms());
                if cluster::settled(&q, &snap, since) {
                    let a = waiter_answer(Some(&(q, since)), &snap);
                    return answer_with(c, &a, head_only, now);
                }
                c.deadline = now + cluster::deadline(&q);
                c.phase = Phase::Waiting {
                    head_only,
                    input_closed: false,
                    cluster: Some(Box::new((q, since))),
                };
                Next::Keep(c)
            }
        }
    }

    /// Passed deadlines: 408 to readers, the current state to long-polls,
    /// closed writers and lingerers.
    fn expire(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        if due.is_empty() {
            return;
        }
        let snap = self.shared.snapshot();
        for token in due {
            let Some(c) = self.conns.remove(&token) else {
                continue;
            };
            let next = match c.phase {
                Phase::Reading { .. } => answer_with(c, &Answer::error(408), false, now),
                Phase::Waiting { .. } => answer_waiter(c, &snap, now),
                Phase::Writing { .. } | Phase::Lingering { .. } => Next::Close,
            };
            self.keep(token, next);
        }
    }
}

/// What a long-poll is answered with now: `/ready`'s state, or the
/// cluster answer from the snapshot.
fn waiter_answer(cluster: Option<&(ClusterQuery, u64)>, snap: &Snapshot) -> Answer {
    match cluster {
        None => routes::ready_answer(snap),
        Some((q, since)) => {
            let (code, content_type, body) = cluster::answer(q, snap, *since);
            Answer {
                code,
                content_type,
                body,
            }
        }
    }
}

/// Answers a waiting connection from `snap`.
fn answer_waiter(c: Conn, snap: &Snapshot, now: Instant) -> Next {
    let (head_only, answer) = match &c.phase {
        Phase::Waiting {
            head_only, cluster, ..
        } => (*head_only, waiter_answer(cluster.as_deref(), snap)),
        _ => return Next::Keep(c),
    };
    answer_with(c, &answer, head_only, now)
}

fn writing(a: &Answer, head_only: bool) -> Phase {
    Phase::Writing {
        out: a.to_bytes(head_only),
        sent: 0,
    }
}

/// Starts writing `a` on `c` (deadline [`IO_TIMEOUT`]) and sends what fits.
fn answer_with(mut c: Conn, a: &Answer, head_only: bool, now: Instant) -> Next {
    c.phase = writing(a, head_only);
    c.deadline = now + IO_TIMEOUT;
    write_some(c)
}

/// Sends what the socket takes; `Close` when all is sent or the peer is gone.
fn write_some(mut c: Conn) -> Next {
    let Phase::Writing { out, sent } = &mut c.phase else {
        return Next::Keep(c);
    };
    while *sent < out.len() {
        match send(&c.stream, &out[*sent..]) {
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep(c),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    Next::Close
}

/// One non-blocking send, never SIGPIPE.
fn send(stream: &UnixStream, bytes: &[u8]) -> io::Result<usize> {
    agent_process::send_nosignal(stream, bytes)
}

/// Best effort, once, for a connection about to be closed.
fn send_now(stream: &UnixStream, a: &Answer) {
    let _ = send(stream, &a.to_bytes(false));
}

enum Got {
    More,
    Gone,
    Bad(u16),
    Request(routes::Request),
}

/// Reads what is there into `buf` (at most [`MAX_REQUEST`] in all) and
/// parses it.
fn read_request(stream: &mut UnixStream, buf: &mut Vec<u8>) -> Got {
    let mut chunk = [0u8; 4096];
    loop {
        let room = MAX_REQUEST - buf.len();
        if room == 0 {
            return Got::Bad(431);
        }
        let want = room.min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            // Closed before asking anything: nobody to answer.
            Ok(0) if buf.is_empty() => return Got::Gone,
            Ok(0) => return Got::Bad(400),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                match routes::parse_request(buf) {
                    Ok(Some(req)) => return Got::Request(req),
                    Ok(None) => {}
                    Err(code) => return Got::Bad(code),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Got::More,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Got::Gone,
        }
    }
}

enum Drained {
    Open,
    Eof,
    Error,
}

/// Reads and discards what is there, showing each chunk to `seen`.
fn drain(stream: &mut UnixStream, seen: &mut dyn FnMut(&[u8])) -> Drained {
    let mut chunk = [0u8; 4096];
    for _ in 0..4 {
        match stream.read(&mut chunk) {
            Ok(0) => return Drained::Eof,
            Ok(n) => seen(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Drained::Error,
        }
    }
    Drained::Open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_ask() {
        let a = Access {
            owner: 999,
            group: None,
        };
        let none = Vec::new;
        assert!(a.allows(0, 0, none), "root");
        assert!(a.allows(999, 5, none), "the JVM's user");
        assert!(!a.allows(1000, 999, none), "another user");
        let g = Access {
            owner: 999,
            group: Some(4242),
        };
        assert!(g.allows(1000, 4242, || panic!("not needed")), "primary gid");
        assert!(g.allows(1000, 1, || vec![7, 4242]), "a supplementary group");
        assert!(!g.allows(1000, 1000, || vec![7]));
        assert!(a.allows(999, 1, || panic!("no group option, no lookup")));
    }

    use crate::status::model::{Cql, Snapshot, State};
    use std::io::Write;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;

    fn setup(cap: usize, name: &str) -> (EventLoop, SocketAddr, Arc<Shared>) {
        let addr =
            SocketAddr::from_abstract_name(format!("cqlready-el-{}-{name}", std::process::id()))
                .unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        let shared = Shared::new(Snapshot::new(1, Cql::default()));
        let access = Access {
            owner: crate::process::euid(),
            group: None,
        };
        let el = EventLoop::new(listener, access, shared.clone(), cap).unwrap();
        (el, addr, shared)
    }

    fn connect(addr: &SocketAddr, send: &[u8]) -> UnixStream {
        let mut c = UnixStream::connect_addr(addr).unwrap();
        c.write_all(send).unwrap();
        c.set_nonblocking(true).unwrap();
        c
    }

    /// What the server sent so far, as text.
    fn got(c: &mut UnixStream) -> String {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = c.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn kinds(el: &EventLoop) -> Vec<PhaseKind> {
        el.phases().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn a_request_is_answered_in_the_turn_that_reads_it() {
        let (mut el, addr, _) = setup(4, "first");
        let mut c = connect(&addr, b"GET /live HTTP/1.1\r\n\r\n");
        let mut head = connect(&addr, b"HEAD /ready HTTP/1.1\r\n\r\n");
        el.turn(Some(Duration::ZERO), &Instant::now);
        assert!(el.phases().is_empty());
        assert!(got(&mut c).starts_with("HTTP/1.1 200 OK\r\n"));
        let h = got(&mut head);
        assert!(
            h.starts_with("HTTP/1.1 503 ") && h.ends_with("\r\n\r\n"),
            "{h}"
        );
    }

    #[test]
    fn a_full_table_cuts_the_oldest_reader_then_the_oldest_long_poll() {
        let (mut el, addr, _) = setup(2, "evict");
        let t0 = Instant::now();
        let mut poll1 = connect(&addr, b"GET /ready?wait=60s HTTP/1.1\r\n\r\n");
        let mut idle = connect(&addr, b"GET /st");
        el.turn(Some(Duration::ZERO), &|| t0);
        assert_eq!(kinds(&el), [PhaseKind::Waiting, PhaseKind::Reading]);
        // A third: the reader goes (408), the long-poll stays.
        let mut poll2 = connect(&addr, b"GET /ready?wait=60s HTTP/1.1\r\n\r\n");
        el.turn(Some(Duration::ZERO), &|| t0);
        assert!(got(&mut idle).starts_with("HTTP/1.1 408 "));
        assert_eq!(kinds(&el), [PhaseKind::Waiting, PhaseKind::Waiting]);
        // A fourth: the oldest long-poll is answered with the state now.
        let mut fresh = connect(&addr, b"GET /status HTTP/1.1\r\n\r\n");
        el.turn(Some(Duration::ZERO), &|| t0);
        let a = got(&mut poll1);
        assert!(
            a.starts_with("HTTP/1.1 503 ") && a.ends_with("starting\n"),
            "{a}"
        );
        assert!(got(&mut fresh).starts_with("HTTP/1.1 200 "));
        assert_eq!(kinds(&el), [PhaseKind::Waiting]);
        assert_eq!(got(&mut poll2), "");
    }

    #[test]
    fn deadlines_and_wake_ups() {
        let (mut el, addr, shared) = setup(8, "deadlines");
        let t0 = Instant::now();
        let mut slow = connect(&addr, b"GET /status HTTP/1.1\r\n");
        let mut waiter = connect(&addr, b"GET /ready?wait=30s HTTP/1.1\r\n\r\n");
        let mut short = connect(&addr, b"GET /ready?wait=5s HTTP/1.1\r\n\r\n");
        el.turn(Some(Duration::ZERO), &|| t0);
        assert_eq!(el.timeout(t0), Some(IO_TIMEOUT));
        el.turn(Some(Duration::ZERO), &|| t0 + IO_TIMEOUT);
        assert!(got(&mut slow).starts_with("HTTP/1.1 408 "));
        el.turn(Some(Duration::ZERO), &|| t0 + Duration::from_secs(5));
        assert!(got(&mut short).ends_with("\r\n\r\nstarting\n"));
        assert_eq!(got(&mut waiter), "");
        // Ready: the store's hook wakes the loop, which answers at once.
        shared.update(|s| s.state = State::Ready);
        el.turn(Some(Duration::from_secs(5)), &|| {
            t0 + Duration::from_secs(6)
        });
        let a = got(&mut waiter);
        assert!(
            a.starts_with("HTTP/1.1 200 ") && a.ends_with("ready\n"),
            "{a}"
        );
        assert!(el.phases().is_empty());
        assert_eq!(el.timeout(t0), None);
    }

    #[test]
    fn half_closed_long_polls_still_get_their_answer() {
        let (mut el, addr, shared) = setup(8, "halfclose");
        let t0 = Instant::now();
        let mut c = connect(&addr, b"GET /ready?wait=30s HTTP/1.1\r\n\r\n");
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let gone = connect(&addr, b"GET /ready?wait=30s HTTP/1.1\r\n\r\n");
        el.turn(Some(Duration::ZERO), &|| t0);
        el.turn(Some(Duration::ZERO), &|| t0);
        assert_eq!(kinds(&el), [PhaseKind::Waiting, PhaseKind::Waiting]);
        drop(gone);
        el.turn(Some(Duration::ZERO), &|| t0);
        assert_eq!(kinds(&el), [PhaseKind::Waiting], "a closed peer is dropped");
        shared.update(|s| s.state = State::Stopping);
        el.turn(Some(Duration::ZERO), &|| t0);
        assert!(got(&mut c).ends_with("\r\n\r\nstopping\n"));
    }

    #[test]
    fn bad_requests() {
        let (mut el, addr, _) = setup(8, "bad");
        let mut junk = connect(&addr, b"\x00\x01junk\r\n\r\n");
        let mut big = connect(&addr, &[b'a'; MAX_REQUEST + 10]);
        let mut cut = connect(&addr, b"GET /status HT");
        cut.shutdown(std::net::Shutdown::Write).unwrap();
        let mut scope = connect(&addr, b"GET /ready?scope=galaxy HTTP/1.1\r\n\r\n");
        el.turn(Some(Duration::ZERO), &Instant::now);
        assert!(got(&mut junk).starts_with("HTTP/1.1 400 "));
        assert!(got(&mut big).starts_with("HTTP/1.1 4"));
        assert!(got(&mut cut).starts_with("HTTP/1.1 400 "));
        let s = got(&mut scope);
        assert!(
            s.starts_with("HTTP/1.1 400 ") && s.contains("scope=\"galaxy\""),
            "{s}"
        );
        assert!(el.phases().is_empty());
    }

    #[test]
    fn capacity_follows_the_fd_budget() {
        assert_eq!(capacity(None), MAX_CONNECTIONS);
        assert_eq!(capacity(Some(1 << 20)), MAX_CONNECTIONS);
        assert_eq!(capacity(Some(20000)), 2500);
        assert_eq!(capacity(Some(1024)), 128);
        assert_eq!(capacity(Some(20)), 16);
    }
}
