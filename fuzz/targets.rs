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
    if let Some(d) = cqlready::options::parse_duration(s) {
        let _ = cqlready::options::format_duration(d);
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
    let _ = cqlready::tls::feed_server_bytes(data);
    // PEM files named by tls_ca/tls_cert are outside input too.
    let _ = cqlready::tls::parse_certs(data);
}

/// `cql::decode`: one CQL response frame (body at most 64 KiB).
pub fn cql_frame(data: &[u8]) {
    let r = cqlready::cql::decode(data);
    if let Ok(Some(ref resp)) = r {
        // More bytes after a complete frame change nothing.
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"\x85\0\0\0");
        assert_eq!(cqlready::cql::decode(&longer), r);
        // Every strict prefix of a complete frame is "need more", never a
        // different answer (some cut points, to keep it linear).
        let n = data.len();
        for cut in [0, 1, 4, 8, 9, n / 2, n.saturating_sub(1)] {
            if cut < n {
                match cqlready::cql::decode(&data[..cut]) {
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

/// `notify::sanitize` and `notify::message`: outside text can never add a
/// field to a datagram.
pub fn notify(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let clean = notify::sanitize(s);
    assert!(clean.len() <= notify::MAX_STATUS);
    assert!(!clean.chars().any(char::is_control));
    assert!(clean.chars().count() <= s.chars().count());
    let m = notify::message(&[
        Field::Status(s),
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
    ("tls_reply", tls_reply),
];
