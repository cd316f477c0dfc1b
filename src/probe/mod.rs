//! The checks themselves: CQL's `OPTIONS` → `SUPPORTED` ([`cql`]), over TLS
//! or mutual TLS when asked ([`tls`]), and the errors both report. Below
//! everything that decides: it knows sockets and frames, not Cassandra's
//! modes or systemd.

pub mod cql;
pub mod tls;

use std::fmt;
use std::time::{Duration, Instant};

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
