//! A tiny HTTP/1.1 client over a Unix socket, and JSON/Prometheus helpers.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

// ---------------------------------------------------------------------------
// HTTP over a Unix socket

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {:?}", self.body))
    }
}

/// `GET path` with `Connection: close`.
pub fn http_get(sock: &Path, path: &str) -> io::Result<Response> {
    http_request(sock, "GET", path)
}

pub fn http_request(sock: &Path, method: &str, path: &str) -> io::Result<Response> {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let raw = http_raw(sock, req.as_bytes())?;
    parse_response(&raw)
}

/// Sends `bytes` and reads until the server closes. Runs on a worker thread
/// so that even a connect that never completes cannot hang the test.
pub fn http_raw(sock: &Path, bytes: &[u8]) -> io::Result<Vec<u8>> {
    http_raw_timeout(sock, bytes, Duration::from_secs(30))
}

pub fn http_raw_timeout(sock: &Path, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    let sock = sock.to_path_buf();
    let bytes = bytes.to_vec();
    thread::spawn(move || {
        let _ = tx.send(exchange(&sock, &bytes, timeout));
    });
    match rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "HTTP exchange timed out",
        )),
    }
}

fn exchange(sock: &Path, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(sock)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let written = stream.write_all(bytes);
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The server answered and closed with our request partly unread.
            Err(e) if !out.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() {
        written?;
    }
    Ok(out)
}

pub fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what}: {:?}", String::from_utf8_lossy(raw)),
        )
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not an HTTP/1.x status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some((_, len)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if body.len() < len {
            return Err(bad("body shorter than Content-Length"));
        }
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Prometheus text: the value of the sample whose name (with labels) is `key`.
pub fn metric(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.trim().parse().ok())
}

// ---------------------------------------------------------------------------
// JSON helpers

pub fn json_u64(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{ptr} is not an unsigned integer in {v}"))
}

pub fn json_str<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{ptr} is not a string in {v}"))
}
