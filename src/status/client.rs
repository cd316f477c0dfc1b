//! Asking an agent over its status socket: one request, one answer.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest answer read; a status document is a few KiB.
pub const MAX_RESPONSE: usize = 1024 * 1024;

#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens there: no agent, or it has exited.
    NoAgent(String),
    /// The socket exists but this user may not use it.
    Permission(String),
    Timeout(String),
    /// It answered, but not in HTTP.
    Protocol(String),
    Io(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoAgent(s)
            | ClientError::Permission(s)
            | ClientError::Timeout(s)
            | ClientError::Protocol(s)
            | ClientError::Io(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub body: String,
}

/// Parses a complete HTTP/1.1 answer.
pub fn parse_response(bytes: &[u8]) -> Result<Response, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the answer ended inside its header".into()),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let code = r.code.ok_or("no status code")?;
    let body = String::from_utf8_lossy(&bytes[head..]).into_owned();
    Ok(Response { code, body })
}

/// `GET target` on the agent at `socket`, within `timeout`.
pub fn get(socket: &Path, target: &str, timeout: Duration) -> Result<Response, ClientError> {
    let shown = socket.display();
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ClientError::NoAgent(format!("no agent answers at {shown}: {e}"))
        }
        io::ErrorKind::PermissionDenied => ClientError::Permission(format!(
            "permission denied on {shown}: run as the JVM's user, root, or a member of the socket's group"
        )),
        _ => ClientError::Io(format!("{shown}: {e}")),
    })?;
    let deadline = Instant::now() + timeout;
    let timed_out = || ClientError::Timeout(format!("{shown} did not answer within {timeout:?}"));
    let left = |d: Instant| {
        Some(
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        )
    };
    stream
        .set_write_timeout(left(deadline))
        .map_err(|e| ClientError::Io(e.to_string()))?;
    stream
        .write_all(
            format!("GET {target} HTTP/1.1\r\nHost: cqlready\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| ClientError::Io(format!("{shown}: {e}")))?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if Instant::now() >= deadline {
            return Err(timed_out());
        }
        stream
            .set_read_timeout(left(deadline))
            .map_err(|e| ClientError::Io(e.to_string()))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if bytes.len() + n > MAX_RESPONSE => {
                return Err(ClientError::Protocol(format!(
                    "{shown}: answer larger than {MAX_RESPONSE} bytes"
                )))
            }
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ClientError::Io(format!("{shown}: {e}"))),
        }
    }
    parse_response(&bytes).map_err(|e| ClientError::Protocol(format!("{shown}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nstarting\n",
        )
        .unwrap();
        assert_eq!(
            r,
            Response {
                code: 503,
                body: "starting\n".into()
            }
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"\x00garbage").is_err());
    }
}
