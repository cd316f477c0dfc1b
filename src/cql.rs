//! The CQL readiness check: one short connection, `OPTIONS` out, `SUPPORTED` back.
//!
//! A port that accepts TCP is not enough: Cassandra binds the native port
//! before it serves, and something else may hold the port. Only a well-formed
//! `SUPPORTED` frame counts. The frame layout is the native protocol's
//! (`native_protocol_v5.spec`, section 2): v3 and later have a 9-byte header
//! `version flags stream:i16 opcode length:i32`; v1 and v2 an 8-byte one
//! with a one-byte stream. Before `STARTUP`, v5 uses the same legacy framing.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

pub const OPCODE_ERROR: u8 = 0x00;
pub const OPCODE_OPTIONS: u8 = 0x05;
pub const OPCODE_SUPPORTED: u8 = 0x06;
/// The server's error code for a protocol version it does not speak.
pub const ERROR_PROTOCOL: i32 = 0x000A;
/// The newest protocol version the probe offers first.
pub const MAX_VERSION: u8 = 5;
/// A `SUPPORTED` body is a few hundred bytes; anything past this is not CQL.
pub const MAX_BODY: usize = 64 * 1024;
/// The stream id the probe uses; the response must echo it.
const STREAM: i16 = 0x2a;

/// An `OPTIONS` request frame for `version`.
pub fn options_frame(version: u8) -> Vec<u8> {
    let mut f = vec![version & 0x7f, 0];
    if version >= 3 {
        f.extend_from_slice(&STREAM.to_be_bytes());
    } else {
        f.push(STREAM as u8);
    }
    f.push(OPCODE_OPTIONS);
    f.extend_from_slice(&0i32.to_be_bytes());
    f
}

fn header_len(version_byte: u8) -> usize {
    if version_byte & 0x7f >= 3 {
        9
    } else {
        8
    }
}

/// What a server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `SUPPORTED`: the option names and values (CQL_VERSION, COMPRESSION, ...).
    Supported {
        version: u8,
        options: Vec<(String, Vec<String>)>,
    },
    Error {
        version: u8,
        code: i32,
        message: String,
    },
}

/// Why a probe did not count as CQL answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    Resolve(String),
    Connect(String),
    Io(String),
    Timeout(&'static str),
    Closed,
    /// Bytes that are not a CQL response frame.
    Malformed(String),
    /// A well-formed CQL error or an unexpected frame.
    Server(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Resolve(e) => write!(f, "cannot resolve host: {e}"),
            ProbeError::Connect(e) => write!(f, "connect: {e}"),
            ProbeError::Io(e) => write!(f, "i/o: {e}"),
            ProbeError::Timeout(stage) => write!(f, "timed out {stage}"),
            ProbeError::Closed => f.write_str("connection closed before a CQL response"),
            ProbeError::Malformed(e) => write!(f, "not a CQL response: {e}"),
            ProbeError::Server(e) => write!(f, "server answered {e}"),
        }
    }
}

/// A cursor over a frame body with the protocol's primitive types.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProbeError> {
        if self.0.len() < n {
            return Err(ProbeError::Malformed(
                "body shorter than its contents".into(),
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn short(&mut self) -> Result<usize, ProbeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn int(&mut self) -> Result<i32, ProbeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, ProbeError> {
        let n = self.short()?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| ProbeError::Malformed("string is not UTF-8".into()))
    }
}

/// Decodes one complete response frame from `buf`. `Ok(None)`: more bytes
/// are needed. The stream id must be the probe's.
pub fn decode(buf: &[u8]) -> Result<Option<Response>, ProbeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let version = first & 0x7f;
    if first & 0x80 == 0 || !(1..=6).contains(&version) {
        return Err(ProbeError::Malformed(format!("first byte 0x{first:02x}")));
    }
    let hl = header_len(first);
    if buf.len() < hl {
        return Ok(None);
    }
    let (stream, opcode, len_at) = if hl == 9 {
        (i16::from_be_bytes([buf[2], buf[3]]), buf[4], 5)
    } else {
        (buf[2] as i8 as i16, buf[3], 4)
    };
    let len = i32::from_be_bytes([
        buf[len_at],
        buf[len_at + 1],
        buf[len_at + 2],
        buf[len_at + 3],
    ]);
    if len < 0 || len as usize > MAX_BODY {
        return Err(ProbeError::Malformed(format!("body length {len}")));
    }
    // A protocol error about the version may come on stream 0 (older servers).
    if stream != STREAM && !(opcode == OPCODE_ERROR && stream == 0) {
        return Err(ProbeError::Malformed(format!("stream {stream}")));
    }
    let Some(body) = buf.get(hl..hl + len as usize) else {
        return Ok(None);
    };
    let mut body = Body(body);
    match opcode {
        OPCODE_SUPPORTED => {
            let n = body.short()?;
            let mut options = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                let key = body.string()?;
                let m = body.short()?;
                let mut values = Vec::with_capacity(m.min(64));
                for _ in 0..m {
                    values.push(body.string()?);
                }
                options.push((key, values));
            }
            Ok(Some(Response::Supported { version, options }))
        }
        OPCODE_ERROR => {
            let code = body.int()?;
            let message = body.string()?;
            Ok(Some(Response::Error {
                version,
                code,
                message,
            }))
        }
        other => Err(ProbeError::Server(format!(
            "opcode 0x{other:02x} to OPTIONS"
        ))),
    }
}

/// Where and how to probe.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub timeout: Duration,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A successful check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The protocol version the server accepted.
    pub version: u8,
    pub options: Vec<(String, Vec<String>)>,
}

/// The probe, remembering the protocol version the server last accepted so
/// later checks need one round trip.
#[derive(Debug, Clone)]
pub struct Prober {
    pub target: Target,
    pub version: u8,
}

impl Prober {
    pub fn new(target: Target) -> Self {
        Prober {
            target,
            version: MAX_VERSION,
        }
    }

    /// One check within `target.timeout`, negotiating the version down when
    /// the server says it does not speak the offered one.
    pub fn check(&mut self) -> Result<Answer, ProbeError> {
        let deadline = Instant::now() + self.target.timeout;
        loop {
            match exchange(&self.target, self.version, deadline)? {
                Response::Supported { options, .. } => {
                    return Ok(Answer {
                        version: self.version,
                        options,
                    })
                }
                Response::Error {
                    version,
                    code,
                    message,
                } => {
                    let lower = if version < self.version {
                        version
                    } else {
                        self.version - 1
                    };
                    if code == ERROR_PROTOCOL && lower >= 1 && self.version > 1 {
                        crate::debug!(
                            "{} does not speak CQL v{}; trying v{lower}",
                            self.target,
                            self.version
                        );
                        self.version = lower;
                        continue;
                    }
                    return Err(ProbeError::Server(format!("error 0x{code:04x}: {message}")));
                }
            }
        }
    }
}

fn remaining(deadline: Instant, stage: &'static str) -> Result<Duration, ProbeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ProbeError::Timeout(stage))
    } else {
        Ok(left)
    }
}

fn resolve(target: &Target) -> Result<Vec<SocketAddr>, ProbeError> {
    if let Ok(ip) = target.host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| ProbeError::Resolve(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(ProbeError::Resolve(format!(
            "{} has no address",
            target.host
        )));
    }
    Ok(addrs)
}

fn io_error(e: std::io::Error, stage: &'static str) -> ProbeError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ProbeError::Timeout(stage),
        _ => ProbeError::Io(e.to_string()),
    }
}

/// Connects to the first address of `target` that answers, by `deadline`.
fn connect(target: &Target, deadline: Instant) -> Result<TcpStream, ProbeError> {
    let mut last = ProbeError::Connect("no address".into());
    for addr in resolve(target)? {
        match TcpStream::connect_timeout(&addr, remaining(deadline, "connecting")?) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = ProbeError::Timeout("connecting")
            }
            Err(e) => last = ProbeError::Connect(e.to_string()),
        }
    }
    Err(last)
}

/// A plain TCP check, for ports that do not speak CQL (JMX, storage).
pub fn tcp_check(target: &Target) -> Result<(), ProbeError> {
    let stream = connect(target, Instant::now() + target.timeout)?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// One connection: connect, send `OPTIONS`, read one response, close.
fn exchange(target: &Target, version: u8, deadline: Instant) -> Result<Response, ProbeError> {
    let mut stream = connect(target, deadline)?;
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(remaining(deadline, "sending OPTIONS")?))
        .map_err(|e| io_error(e, "sending OPTIONS"))?;
    stream
        .write_all(&options_frame(version))
        .map_err(|e| io_error(e, "sending OPTIONS"))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(response) = decode(&buf)? {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return Ok(response);
        }
        stream
            .set_read_timeout(Some(remaining(deadline, "waiting for SUPPORTED")?))
            .map_err(|e| io_error(e, "waiting for SUPPORTED"))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ProbeError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e, "waiting for SUPPORTED")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn frame(version: u8, stream: i16, opcode: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | version, 0];
        if version >= 3 {
            f.extend_from_slice(&stream.to_be_bytes());
        } else {
            f.push(stream as u8);
        }
        f.push(opcode);
        f.extend_from_slice(&(body.len() as i32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn string(s: &str) -> Vec<u8> {
        let mut b = (s.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(s.as_bytes());
        b
    }

    pub fn supported_body() -> Vec<u8> {
        let mut b = 2u16.to_be_bytes().to_vec();
        b.extend(string("CQL_VERSION"));
        b.extend(1u16.to_be_bytes());
        b.extend(string("3.4.7"));
        b.extend(string("COMPRESSION"));
        b.extend(0u16.to_be_bytes());
        b
    }

    pub fn error_body(code: i32, msg: &str) -> Vec<u8> {
        let mut b = code.to_be_bytes().to_vec();
        b.extend(string(msg));
        b
    }

    #[test]
    fn options_frames() {
        assert_eq!(options_frame(5), [5, 0, 0, 0x2a, 5, 0, 0, 0, 0]);
        assert_eq!(options_frame(4), [4, 0, 0, 0x2a, 5, 0, 0, 0, 0]);
        assert_eq!(options_frame(2), [2, 0, 0x2a, 5, 0, 0, 0, 0]);
    }

    #[test]
    fn decodes_supported_in_every_header_size() {
        for v in 1..=5 {
            let f = frame(v, STREAM, OPCODE_SUPPORTED, &supported_body());
            for cut in 0..f.len() {
                assert_eq!(decode(&f[..cut]), Ok(None), "v{v} cut {cut}");
            }
            let Some(Response::Supported { version, options }) = decode(&f).unwrap() else {
                panic!("v{v}");
            };
            assert_eq!(version, v);
            assert_eq!(options[0], ("CQL_VERSION".into(), vec!["3.4.7".into()]));
            assert_eq!(options[1], ("COMPRESSION".into(), vec![]));
        }
    }

    #[test]
    fn decodes_errors() {
        let f = frame(
            4,
            0,
            OPCODE_ERROR,
            &error_body(
                ERROR_PROTOCOL,
                "Invalid or unsupported protocol version (5)",
            ),
        );
        assert_eq!(
            decode(&f).unwrap(),
            Some(Response::Error {
                version: 4,
                code: ERROR_PROTOCOL,
                message: "Invalid or unsupported protocol version (5)".into()
            })
        );
    }

    #[test]
    fn rejects_what_is_not_cql() {
        let bad: &[&[u8]] = &[
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            &[0x05, 0, 0, 0x2a, 6, 0, 0, 0, 0], // a request, not a response
            &[0x87, 0, 0, 0x2a, 6, 0, 0, 0, 0], // version 7
            &[0x84, 0, 0, 0x2a, 6, 0x7f, 0xff, 0xff, 0xff], // huge length
            &[0x84, 0, 0, 0x2a, 6, 0xff, 0xff, 0xff, 0xff], // negative length
            &[0x84, 0, 0, 0x01, 6, 0, 0, 0, 0], // other stream
            &[0x84, 0, 0, 0x2a, 6, 0, 0, 0, 2, 0, 1], // one option, no bytes for it
            &[0x84, 0, 0, 0x2a, 8, 0, 0, 0, 0], // RESULT to OPTIONS
        ];
        for b in bad {
            assert!(decode(b).is_err(), "{b:?}");
        }
        let mut lying = frame(4, STREAM, OPCODE_SUPPORTED, &supported_body());
        lying[11] = 0xff; // the first string claims 0xff0b bytes
        assert!(decode(&lying).is_err());
        let invalid_utf8 = frame(4, STREAM, OPCODE_SUPPORTED, &[0, 1, 0, 2, 0xff, 0xfe, 0, 0]);
        assert!(decode(&invalid_utf8).is_err());
    }
}
