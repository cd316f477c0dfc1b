//! The checks themselves: CQL's `OPTIONS` → `SUPPORTED` ([`cql`]), over TLS
//! or mutual TLS when asked ([`tls`]), and the errors both report. Below
//! everything that decides: it knows sockets and frames, not Cassandra's
//! modes or systemd.

pub mod cql;
pub mod tls;

use crate::status::model::Snapshot;
use std::fmt;
use std::time::{Duration, Instant};

/// What the monitor checks: one call, one verdict.
pub trait Probe: Send {
    /// `Ok(Some(v))` carries the CQL protocol version that answered.
    fn check(&mut self) -> Result<Option<u8>, String>;
    /// Adds what the probe saw to the snapshot (Cassandra's view).
    fn annotate(&self, _snap: &mut Snapshot) {}
    /// While not ready (or kept alive, draining): what start-up or the
    /// drain is doing and how long ago it last moved, or `None` when it
    /// does not move.
    fn progress(&mut self) -> Option<Moving> {
        None
    }
    /// Not ready, but deliberately so (a drained node): keep feeding the watchdog.
    fn keep_alive(&self) -> bool {
        false
    }
    /// Whether the thread running the probe is now bound to the JVM and so
    /// must not end while it runs.
    fn bound_to_thread(&self) -> bool {
        false
    }
}

/// Start-up (or a drain) that moves: what it is doing and how long ago it
/// last moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Moving {
    /// The `STATUS=` text: "Cassandra STARTING (replaying the commit log, …)".
    pub text: String,
    /// Time since the last sign of movement.
    pub quiet: Duration,
}

/// Why a probe did not count as CQL answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    Resolve(String),
    Connect(String),
    /// Nothing listens on the address and port.
    Refused(String),
    Io(String),
    Timeout(&'static str),
    Closed,
    /// Bytes that are not a CQL response frame.
    Malformed(String),
    /// A well-formed CQL error or an unexpected frame.
    Server(String),
    /// TLS was expected and the server did not speak it.
    NotTls(String),
    /// The TLS session failed: a certificate that did not verify, an alert.
    Tls(String),
    /// The server finished its half of the TLS handshake and then wanted a
    /// client certificate the check did not have: CQL is served over TLS.
    ClientCertRequired,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Resolve(e) => write!(f, "cannot resolve host: {e}"),
            ProbeError::Connect(e) | ProbeError::Refused(e) => write!(f, "connect: {e}"),
            ProbeError::Io(e) => write!(f, "i/o: {e}"),
            ProbeError::Timeout(stage) => write!(f, "timed out {stage}"),
            ProbeError::Closed => f.write_str("connection closed before a CQL response"),
            ProbeError::Malformed(e) => write!(f, "not a CQL response: {e}"),
            ProbeError::Server(e) => write!(f, "server answered {e}"),
            ProbeError::NotTls(e) => write!(f, "the server did not speak TLS ({e})"),
            ProbeError::Tls(e) => write!(f, "TLS: {e}"),
            ProbeError::ClientCertRequired => f.write_str(
                "CQL serving TLS, client certificate required (give tls_cert and tls_key, or --tls-cert and --tls-key)",
            ),
        }
    }
}

/// The time left before `deadline`, or a timeout naming `stage`.
pub fn remaining(deadline: Instant, stage: &'static str) -> Result<Duration, ProbeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ProbeError::Timeout(stage))
    } else {
        Ok(left)
    }
}
