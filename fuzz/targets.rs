//! The fuzz targets' bodies, shared by the libFuzzer binaries in
//! `fuzz/fuzz_targets/` and by the corpus replay test `tests/fuzz_corpus.rs`
//! (which runs every committed corpus file through the same functions on
//! stable, without libFuzzer).
//!
//! Each function takes raw bytes, feeds them to one of the crate's parsers of
//! outside input, and checks a few invariants besides "no panic".

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use cqlready::notify::{self, Field};

/// `cqlready::options::Options::parse`: the agent option string.
pub fn options(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match cqlready::options::Options::parse(s) {
        Ok(o) => {
            // Parsing is deterministic.
            let again = cqlready::options::Options::parse(s).expect("second parse");
            assert_eq!(format!("{o:?}"), format!("{again:?}"));
        }
        Err(e) => {
            // The error is one line on stderr: no control characters, bounded.
            assert!(
                !e.0.chars().any(char::is_control),
                "control character in option error {:?}",
                e.0
            );
        }
    }
    if let Some(d) = cqlready::text::parse_duration(s) {
        let _ = cqlready::text::format_duration(d);
    }
}

/// `discovery::parse_yaml` and `discovery::config_path`.
pub fn yaml(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = cqlready::discovery::parse_yaml(s) {
        if let Some(p) = v.native_transport_port {
            assert!(p > 0);
        }
    }
    let _ = cqlready::discovery::config_path(s);
}

/// `tls::feed_server_bytes`: whatever a server sends the TLS check back,
/// fed to a fresh rustls client session.
pub fn tls_reply(data: &[u8]) {
    let _ = cqlready::probe::tls::feed_server_bytes(data);
    // PEM files named by tls_ca/tls_cert are outside input too.
    let _ = cqlready::probe::tls::parse_certs(data);
}

/// `cql::decode`: one CQL response frame (body at most 64 KiB).
pub fn cql_frame(data: &[u8]) {
    let r = cqlready::probe::cql::decode(data);
    if let Ok(Some(ref resp)) = r {
        // More bytes after a complete frame change nothing.
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"\x85\0\0\0");
        assert_eq!(cqlready::probe::cql::decode(&longer), r);
        // Every strict prefix of a complete frame is "need more", never a
        // different answer (some cut points, to keep it linear).
        let n = data.len();
        for cut in [0, 1, 4, 8, 9, n / 2, n.saturating_sub(1)] {
            if cut < n {
                match cqlready::probe::cql::decode(&data[..cut]) {
                    Ok(None) | Err(_) => {}
                    Ok(Some(other)) => {
                        // Possible only when the frame ends before `cut`.
                        assert_eq!(&other, resp, "prefix {cut} decoded differently");
                    }
                }
            }
        }
    }
}

/// `status::server::parse_request`: the HTTP head read from the status socket.
pub fn http_request(data: &[u8]) {
    match cqlready::status::server::parse_request(data) {
        Ok(Some(req)) => {
            assert!(!req.path.contains('?'));
            assert!(!req.method.is_empty());
        }
        Ok(None) => {}
        Err(code) => assert!(code == 400 || code == 431, "status {code}"),
    }
}

/// `attach::parse_reply` and `attach::parse_agent_code`: HotSpot's answer.
pub fn attach_reply(data: &[u8]) {
    if let Ok(reply) = cqlready::attach::parse_reply(data) {
        let _ = cqlready::attach::parse_agent_code(&reply.text);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = cqlready::attach::parse_agent_code(s);
    }
}

/// `Snapshot::from_json` and `status::client::parse_response`: what the
/// command reads from an agent.
pub fn status_json(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(snap) = cqlready::status::model::Snapshot::from_json(s) {
            // Whatever parses, serialises and parses again.
            let json = snap.to_json();
            cqlready::status::model::Snapshot::from_json(&json).expect("round trip");
            let _ = snap.to_prometheus();
        }
    }
    if let Ok(r) = cqlready::status::client::parse_response(data) {
        assert!(r.code < 1000);
        if let Ok(snap) = cqlready::status::model::Snapshot::from_json(&r.body) {
            let _ = snap.to_json();
        }
    }
}

/// `status::client::candidates(cmdline, environ, nspid)`: the input is
/// `nspid (4 bytes LE) | cmdline | 0xFF | environ`.
pub fn socket_candidates(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let nspid = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let rest = &data[4..];
    let (cmdline, environ) = match rest.iter().position(|b| *b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let c = cqlready::status::client::candidates(cmdline, environ, nspid);
    // The per-PID default is always the last resort.
    assert_eq!(
        c.last(),
        Some(&PathBuf::from(format!(
            "/tmp/cqlready-{nspid}/cqlready.sock"
        )))
    );
}

/// `text::sanitize` and `notify::message`: outside text can never add a
/// field to a datagram.
pub fn notify(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let clean = cqlready::text::sanitize(s);
    assert!(clean.len() <= cqlready::text::MAX_TEXT);
    assert!(!clean.chars().any(char::is_control));
    assert!(clean.chars().count() <= s.chars().count());
    let m = notify::message(&[
        Field::Status(s.to_string()),
        Field::ExtendTimeout(Duration::from_millis(data.len() as u64)),
        Field::Stopping,
    ]);
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(lines.len(), 3, "{m:?}");
    assert!(lines[0].starts_with("STATUS="));
    assert!(lines[1].starts_with("EXTEND_TIMEOUT_USEC="));
    assert_eq!(lines[2], "STOPPING=1");
    assert!(!m.contains('\r'));
}

/// Requests the connection fuzzer's clients send, byte by byte or at once.
const REQUESTS: &[&[u8]] = &[
    b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ready?wait=3s HTTP/1.1\r\n\r\n",
    b"HEAD /ready?wait=300s HTTP/1.1\r\n\r\n",
    b"GET /live HTTP/1.1\r\n\r\n",
    b"GET /ready?scope=cluster HTTP/1.1\r\n\r\n",
    b"POST /metrics HTTP/1.1\r\n\r\n",
    b"\x00\x01junk\r\n\r\n",
    b"GET /status HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

struct Client {
    stream: std::os::unix::net::UnixStream,
    request: &'static [u8],
    sent: usize,
    got: Vec<u8>,
}

impl Client {
    fn read(&mut self) {
        use std::io::Read;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = self.stream.read(&mut chunk) {
            if n == 0 {
                break;
            }
            self.got.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whatever arrived is at most one whole, well-formed answer.
    fn check(&mut self) {
        self.read();
        if self.got.is_empty() {
            return;
        }
        let r = cqlready::status::client::parse_response(&self.got)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.got)));
        assert!(
            [200, 400, 404, 405, 408, 431, 503].contains(&r.code),
            "{r:?}"
        );
        let text = String::from_utf8_lossy(&self.got);
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "two answers: {text}");
    }
}

/// The status server's connection table under random interleavings of
/// connects, partial writes, half-closes, resets, reads, clock steps and
/// state changes, on real sockets and a fake clock. Two bytes an operation.
/// Checks: the table never exceeds its size; a complete request on a fresh
/// connection is answered in the turn that accepts it; every client gets at
/// most one well-formed answer; once every deadline has passed the table is
/// empty.
pub fn status_connections(data: &[u8]) {
    use cqlready::status::event_loop::Access;
    use cqlready::status::event_loop::{EventLoop, PhaseKind, IO_TIMEOUT};
    use cqlready::status::model::{Cql, Snapshot, State};
    use cqlready::status::store::Shared;
    use cqlready::status::store::MAX_WAIT;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "cqlready-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let Ok(addr) = SocketAddr::from_abstract_name(name.as_bytes()) else {
        return;
    };
    let Ok(listener) = UnixListener::bind_addr(&addr) else {
        return;
    };
    let shared = Shared::new(Snapshot::new(1, Cql::default()));
    let access = Access {
        owner: cqlready::process::euid(),
        group: None,
    };
    let cap = 1 + usize::from(data.first().copied().unwrap_or(0) % 4);
    let mut el = EventLoop::new(listener, access, shared.clone(), cap).expect("event loop");
    let t0 = Instant::now();
    let mut now = t0;
    let mut clients: Vec<Client> = Vec::new();
    let zero = Some(Duration::ZERO);
    for op in data.get(1..).unwrap_or_default().chunks(2) {
        let (a, b) = (op[0], usize::from(op.get(1).copied().unwrap_or(0)));
        let pick = |n: usize| b % n.max(1);
        match a % 9 {
            0 if clients.len() < 12 => {
                if let Ok(stream) = UnixStream::connect_addr(&addr) {
                    let _ = stream.set_nonblocking(true);
                    clients.push(Client {
                        stream,
                        request: REQUESTS[b % REQUESTS.len()],
                        sent: 0,
                        got: Vec::new(),
                    });
                }
            }
            1 if !clients.is_empty() => {
                // A partial write: 1 to 32 more bytes of its request.
                let i = pick(clients.len());
                let c = &mut clients[i];
                let n = (1 + usize::from(a / 9) % 32).min(c.request.len() - c.sent);
                if let Ok(k) =
                    cqlready::agent_process::send_nosignal(&c.stream, &c.request[c.sent..][..n])
                {
                    c.sent += k;
                }
            }
            2 if !clients.is_empty() => {
                let i = pick(clients.len());
                let _ = clients[i].stream.shutdown(std::net::Shutdown::Write);
            }
            3 if !clients.is_empty() => {
                // Gone, perhaps with the answer unread: a reset for the server.
                let i = pick(clients.len());
                clients.swap_remove(i);
            }
            4 if !clients.is_empty() => {
                let i = pick(clients.len());
                clients[i].check();
            }
            5 => now += Duration::from_millis(20 * b as u64),
            6 => shared.update(|s| s.state = State::ALL[b % 4]),
            7 => {
                el.turn(zero, &|| now);
                assert!(el.phases().len() <= el.capacity());
            }
            8 => {
                // A fresh, complete request: answered in the turn that accepts it.
                let all_writing = el.phases().len() >= el.capacity()
                    && el.phases().iter().all(|(k, _)| *k == PhaseKind::Writing);
                let Ok(stream) = UnixStream::connect_addr(&addr) else {
                    continue;
                };
                let _ = stream.set_nonblocking(true);
                let mut c = Client {
                    stream,
                    request: REQUESTS[3],
                    sent: 0,
                    got: Vec::new(),
                };
                let _ = cqlready::agent_process::send_nosignal(&c.stream, c.request);
                // Connections the listener holds from earlier ops come first;
                // each turn accepts them all.
                el.turn(zero, &|| now);
                c.read();
                let text = String::from_utf8_lossy(&c.got);
                if !all_writing {
                    assert!(text.starts_with("HTTP/1.1 200 "), "not answered: {text:?}");
                }
                c.check();
            }
            _ => {}
        }
    }
    // Whatever is queued is taken, then every deadline passes: nothing is left.
    el.turn(zero, &|| now);
    for _ in 0..3 {
        now += MAX_WAIT + 3 * IO_TIMEOUT;
        el.turn(zero, &|| now);
    }
    assert!(el.phases().is_empty(), "left over: {:?}", el.phases());
    for c in &mut clients {
        c.check();
    }
}

#[path = "../tests/support/sim/mod.rs"]
mod sim;

/// The monitor's simulation with the bytes as its event stream: the first
/// eight are the world's seed, the rest the timeline (pacing, the unit's
/// timeouts, Cassandra's phases, SIGTERM, notify failures, clock steps; see
/// tests/support/sim/timeline.rs). Every rule of tests/sim.rs must hold:
/// a broken one panics with the timeline and its event list. The bytes of a
/// seed S followed by splitmix64(S)'s outputs replay `CQLREADY_SIM_SEED=S`.
pub fn sim_events(data: &[u8]) {
    let mut src = sim::Bytes(data);
    let seed = sim::Source::next(&mut src);
    let tl = sim::Timeline::generate(&mut src);
    if let Err(report) = sim::check_timeline(&tl, seed) {
        panic!("{report}");
    }
}

/// One target: its corpus directory name and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by corpus directory name.
pub const TARGETS: &[Target] = &[
    ("options", options),
    ("yaml", yaml),
    ("cql_frame", cql_frame),
    ("http_request", http_request),
    ("attach_reply", attach_reply),
    ("status_json", status_json),
    ("socket_candidates", socket_candidates),
    ("notify", notify),
    ("status_connections", status_connections),
    ("tls_reply", tls_reply),
    ("sim_events", sim_events),
];
