//! The CQL readiness check: one short connection, `OPTIONS` out, `SUPPORTED` back.
//! Over TLS the connection may be kept between checks for `keep` (a
//! handshake costs the server far more than an `OPTIONS`), and a new one is
//! opened after that, or at once when the kept one fails.
//!
//! A port that accepts TCP is not enough: Cassandra binds the native port
//! before it serves, and something else may hold the port. Only a well-formed
//! `SUPPORTED` frame counts. The frame layout is the native protocol's
//! (`native_protocol_v5.spec`, section 2): v3 and later have a 9-byte header
//! `version flags stream:i16 opcode length:i32`; v1 and v2 an 8-byte one
//! with a one-byte stream. Before `STARTUP`, v5 uses the same legacy framing.

use super::{remaining, ProbeError};
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
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

    /// `[string multimap]`: a `[short]` n, then n pairs of `[string]` and
    /// `[string list]`.
    fn string_multimap(&mut self) -> Result<Vec<(String, Vec<String>)>, ProbeError> {
        let n = self.short()?;
        let mut options = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let key = self.string()?;
            let m = self.short()?;
            let mut values = Vec::with_capacity(m.min(64));
            for _ in 0..m {
                values.push(self.string()?);
            }
            options.push((key, values));
        }
        Ok(options)
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
        OPCODE_SUPPORTED => Ok(Some(Response::Supported {
            version,
            options: body.string_multimap()?,
        })),
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
/// later checks need one round trip, and the host's addresses.
#[derive(Debug, Clone)]
pub struct Prober {
    pub target: Target,
    pub version: u8,
    /// Speak TLS (and with what settings), or plaintext.
    pub tls: Option<Arc<crate::probe::tls::Client>>,
    /// Over TLS: how far the last check got.
    pub reached: Option<&'static str>,
    /// Over TLS: how long a connection that answered is kept for later
    /// checks (zero: a new connection every check).
    pub keep: Duration,
    /// Over TLS: whether the last check ran on a connection kept from an
    /// earlier one.
    pub on_kept: bool,
    kept: Kept,
    addresses: Resolver,
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection that answered an earlier check: the stream, when it
/// was opened and the protocol version it speaks (boxed: a TLS session is
/// about a kilobyte). A clone of the prober starts without one.
#[derive(Default)]
struct Kept(Option<Box<(TlsStream, Instant, u8)>>);

impl Clone for Kept {
    fn clone(&self) -> Self {
        Kept(None)
    }
}

impl fmt::Debug for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_deref() {
            Some((_, opened, version)) => write!(f, "Kept(v{version}, {:?} old)", opened.elapsed()),
            None => f.write_str("Kept(none)"),
        }
    }
}

/// Ends a TLS session politely; nothing waits on it.
fn close(mut session: TlsStream) {
    session.conn.send_close_notify();
    let _ = session.conn.complete_io(&mut session.sock);
    let _ = session.sock.shutdown(std::net::Shutdown::Both);
}

impl Prober {
    pub fn new(target: Target) -> Self {
        Prober {
            target,
            version: MAX_VERSION,
            tls: None,
            reached: None,
            keep: Duration::ZERO,
            on_kept: false,
            kept: Kept::default(),
            addresses: Resolver::default(),
        }
    }

    /// The same probe over TLS.
    pub fn with_tls(target: Target, tls: Option<crate::probe::tls::Client>) -> Self {
        Prober {
            tls: tls.map(Arc::new),
            ..Prober::new(target)
        }
    }

    /// One check within `target.timeout`, negotiating the version down when
    /// the server says it does not speak the offered one.
    pub fn check(&mut self) -> Result<Answer, ProbeError> {
        let result = self.check_once();
        if self.tls.is_some() {
            self.reached = match &result {
                Ok(_) => Some("SUPPORTED over TLS"),
                Err(ProbeError::ClientCertRequired) => {
                    Some("TLS handshake; client certificate required")
                }
                Err(_) => None,
            };
        }
        result
    }

    /// Closes the kept connection: the next check opens a new one.
    pub fn forget_connection(&mut self) {
        if let Some(kept) = self.kept.0.take() {
            close(kept.0);
        }
    }

    /// `OPTIONS` on the kept TLS connection, if there is one young enough:
    /// `None` when a new connection must be tried instead (none kept, too
    /// old, or it failed at once: closed, reset, refused).
    fn on_kept_connection(&mut self, deadline: Instant) -> Option<Result<Answer, ProbeError>> {
        let (mut session, opened, version) = *self.kept.0.take()?;
        let client = self.tls.clone()?;
        if opened.elapsed() >= self.keep || version != self.version {
            close(session);
            return None;
        }
        match talk_tls(&mut session, &client, version, deadline) {
            Ok(Response::Supported { options, .. }) => {
                self.kept.0 = Some(Box::new((session, opened, version)));
                Some(Ok(Answer { version, options }))
            }
            // A server that does not answer in time is what the check is for.
            Err(e @ ProbeError::Timeout(_)) => Some(Err(e)),
            _ => {
                close(session);
                None
            }
        }
    }

    /// The server refused this protocol version: try the one it named (or
    /// the next lower one) on the next round, or give up with its error.
    fn step_down(&mut self, version: u8, code: i32, message: &str) -> Result<(), ProbeError> {
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
            return Ok(());
        }
        Err(ProbeError::Server(format!("error 0x{code:04x}: {message}")))
    }

    fn check_once(&mut self) -> Result<Answer, ProbeError> {
        let deadline = Instant::now() + self.target.timeout;
        self.on_kept = false;
        if let Some(answer) = self.on_kept_connection(deadline) {
            self.on_kept = answer.is_ok();
            return answer;
        }
        let keep = self.tls.is_some() && !self.keep.is_zero();
        loop {
            let addrs = self.addresses.get(&self.target, deadline)?;
            let (result, session) = exchange(
                &self.target,
                &addrs,
                self.tls.as_deref(),
                self.version,
                deadline,
                keep,
            );
            if let Some(session) = session {
                self.kept.0 = Some(Box::new((session, Instant::now(), self.version)));
            }
            if matches!(
                result,
                Err(ProbeError::Connect(_)
                    | ProbeError::Refused(_)
                    | ProbeError::Timeout("connecting"))
            ) {
                // The name may now point elsewhere: look it up again next time.
                self.addresses.forget();
            }
            match result? {
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
                } => self.step_down(version, code, &message)?,
            }
        }
    }
}

/// The bare CQL check as the monitor's probe (the `watch` command's).
impl super::Probe for Prober {
    fn check(&mut self) -> Result<Option<u8>, String> {
        Prober::check(self)
            .map(|a| Some(a.version))
            .map_err(|e| e.to_string())
    }
}

fn literal(target: &Target) -> Option<Vec<SocketAddr>> {
    let ip = target.host.parse::<std::net::IpAddr>().ok()?;
    Some(vec![SocketAddr::new(ip, target.port)])
}

fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, ProbeError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ProbeError::Resolve(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(ProbeError::Resolve(format!("{host} has no address")));
    }
    Ok(addrs)
}

type Lookup = Result<Vec<SocketAddr>, ProbeError>;

/// The host's addresses, looked up once and again only after a failed
/// connect. The lookup (`getaddrinfo`, which knows no deadline) runs on a
/// thread of its own, so a stalled DNS server costs a check no more than
/// its deadline; a lookup still running is waited for again by the next
/// check instead of starting another.
#[derive(Debug, Clone, Default)]
struct Resolver {
    known: Option<Vec<SocketAddr>>,
    pending: Option<Arc<Mutex<mpsc::Receiver<Lookup>>>>,
}

impl Resolver {
    fn get(&mut self, target: &Target, deadline: Instant) -> Lookup {
        if let Some(addrs) = literal(target) {
            return Ok(addrs);
        }
        if let Some(addrs) = &self.known {
            return Ok(addrs.clone());
        }
        let rx = match &self.pending {
            Some(rx) => rx.clone(),
            None => {
                let (tx, rx) = mpsc::channel();
                let (host, port) = (target.host.clone(), target.port);
                let spawned = std::thread::Builder::new()
                    .name("cqlready-dns".into())
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let _ = crate::fence("name lookup", || tx.send(lookup(&host, port)));
                    });
                if let Err(e) = spawned {
                    return Err(ProbeError::Resolve(format!(
                        "no thread for the lookup: {e}"
                    )));
                }
                let rx = Arc::new(Mutex::new(rx));
                self.pending = Some(rx.clone());
                rx
            }
        };
        let left = remaining(deadline, "resolving the host")?;
        let outcome = match rx.lock() {
            Ok(rx) => rx.recv_timeout(left),
            Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
        };
        match outcome {
            Ok(result) => {
                self.pending = None;
                self.known = result.as_ref().ok().cloned();
                result
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ProbeError::Timeout("resolving the host")),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.pending = None;
                Err(ProbeError::Resolve("the lookup failed".into()))
            }
        }
    }

    fn forget(&mut self) {
        self.known = None;
    }
}

fn io_error(e: std::io::Error, stage: &'static str) -> ProbeError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ProbeError::Timeout(stage),
        _ => ProbeError::Io(e.to_string()),
    }
}

/// Connects to the first of `addrs` that answers, by `deadline`.
fn connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, ProbeError> {
    let mut last = ProbeError::Connect("no address".into());
    for addr in addrs {
        match TcpStream::connect_timeout(addr, remaining(deadline, "connecting")?) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = ProbeError::Timeout("connecting")
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = ProbeError::Refused(e.to_string())
            }
            Err(e) => last = ProbeError::Connect(e.to_string()),
        }
    }
    Err(last)
}

/// A plain TCP check, for ports that do not speak CQL (JMX, storage).
pub fn tcp_check(target: &Target) -> Result<(), ProbeError> {
    let deadline = Instant::now() + target.timeout;
    let addrs = Resolver::default().get(target, deadline)?;
    let stream = connect(&addrs, deadline)?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// One connection: connect (and handshake), send `OPTIONS`, read one
/// response, close; over TLS with `keep`, a connection that answered
/// `SUPPORTED` is handed back open instead.
fn exchange(
    target: &Target,
    addrs: &[SocketAddr],
    tls: Option<&crate::probe::tls::Client>,
    version: u8,
    deadline: Instant,
    keep: bool,
) -> (Result<Response, ProbeError>, Option<TlsStream>) {
    let stream = match connect(addrs, deadline) {
        Ok(s) => s,
        Err(e) => return (Err(e), None),
    };
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            let mut plain = Plain(stream);
            let r = talk(&mut plain, version, deadline, io_error, || {
                ProbeError::Closed
            });
            let _ = plain.0.shutdown(std::net::Shutdown::Both);
            (r, None)
        }
        Some(client) => {
            let mut session = match client.connect(stream, &target.host, deadline) {
                Ok(s) => s,
                Err(e) => return (Err(e), None),
            };
            let r = talk_tls(&mut session, client, version, deadline);
            if keep && matches!(r, Ok(Response::Supported { .. })) {
                return (r, Some(session));
            }
            close(session);
            (r, None)
        }
    }
}

/// A stream whose socket timeouts can be set: plaintext or TLS over TCP.
trait Timed: Read + Write {
    fn socket(&self) -> &TcpStream;
}

struct Plain(TcpStream);

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Plain {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Timed for Plain {
    fn socket(&self) -> &TcpStream {
        &self.0
    }
}

impl Timed for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// [`talk`] on a TLS session, its errors read as the TLS client reads them.
fn talk_tls(
    session: &mut TlsStream,
    client: &crate::probe::tls::Client,
    version: u8,
    deadline: Instant,
) -> Result<Response, ProbeError> {
    talk(
        session,
        version,
        deadline,
        |e, stage| client.error(e, stage),
        || client.closed(),
    )
}

/// `OPTIONS` out, one response back, on an open stream.
fn talk(
    stream: &mut impl Timed,
    version: u8,
    deadline: Instant,
    error: impl Fn(std::io::Error, &'static str) -> ProbeError,
    closed: impl Fn() -> ProbeError,
) -> Result<Response, ProbeError> {
    stream
        .socket()
        .set_write_timeout(Some(remaining(deadline, "sending OPTIONS")?))
        .map_err(|e| io_error(e, "sending OPTIONS"))?;
    stream
        .write_all(&options_frame(version))
        .and_then(|_| stream.flush())
        .map_err(|e| error(e, "sending OPTIONS"))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(response) = decode(&buf)? {
            return Ok(response);
        }
        stream
            .socket()
            .set_read_timeout(Some(remaining(deadline, "waiting for SUPPORTED")?))
            .map_err(|e| io_error(e, "waiting for SUPPORTED"))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(closed()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(error(e, "waiting for SUPPORTED")),
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
