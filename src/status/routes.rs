//! What the status socket answers: a pure function from one parsed request
//! and a snapshot to a reply. No I/O, no clock, no locks: the event loop
//! (`status/event_loop.rs`) reads, calls [`route`], and writes.
//!
//! | request | answer |
//! |---|---|
//! | `GET /status` | the snapshot as JSON |
//! | `GET /ready[?wait=DUR]` | 200 when ready, else 503; with `wait`, answers as soon as ready or stopping, or when DUR passes |
//! | `GET /live` | 200 while the agent runs |
//! | `GET /metrics` | Prometheus text (with the cluster view's lines when it is read) |
//! | `GET /cluster[?cl=CL]` | the cluster view at a consistency level ([`crate::status::cluster`]) |
//! | `GET /ready?scope=cluster[&cl=CL][&wait=DUR]` | the cluster gate: every node UP and NORMAL, or with `cl` no token range below CL |
//! | `GET /ready?scope=dc[&dc=NAME][&wait=DUR]` | the datacenter gate: every node of this node's datacenter (or NAME's) UP and NORMAL |
//!
//! `HEAD` is `GET` without the body. Every other method is 405, every other
//! path 404, a query parameter a route does not take (or a bad value) 400.
//! New routes go in [`ROUTES`]: a path, the query parameters it takes, and
//! a function of the snapshot.

use crate::status::model::{Snapshot, State};
use crate::status::store::MAX_WAIT;
use std::time::Duration;

/// The largest request head read.
pub const MAX_REQUEST: usize = 8 * 1024;

const TEXT: &str = "text/plain; charset=utf-8";

/// One route: the path, the query parameters it accepts, and its answer.
pub struct Route {
    pub path: &'static str,
    pub params: &'static [&'static str],
    pub answer: fn(&Params<'_>, &Snapshot) -> Result<Reply, String>,
}

/// Every path the socket answers. The 404 text lists them.
pub const ROUTES: &[Route] = &[
    Route {
        path: "/status",
        params: &[],
        answer: |_, snap| {
            Ok(Reply::Now(Answer::ok(
                "application/json",
                snap.to_json() + "\n",
            )))
        },
    },
    Route {
        path: "/ready",
        params: &["wait", "scope"],
        answer: ready,
    },
    Route {
        path: "/live",
        params: &[],
        answer: |_, _| Ok(Reply::Now(Answer::ok(TEXT, "live\n".into()))),
    },
    Route {
        path: "/metrics",
        params: &[],
        answer: |_, snap| {
            Ok(Reply::Now(Answer::ok(
                "text/plain; version=0.0.4",
                snap.to_prometheus() + &crate::status::cluster::metrics(snap),
            )))
        },
    },
];

/// A parsed request: what the router needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
}

impl Request {
    pub fn head_only(&self) -> bool {
        self.method == "HEAD"
    }
}

/// An answer: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn ok(content_type: &'static str, body: String) -> Answer {
        Answer {
            code: 200,
            content_type,
            body,
        }
    }

    /// A plain-text answer with `code`.
    pub fn text(code: u16, body: impl Into<String>) -> Answer {
        Answer {
            code,
            content_type: TEXT,
            body: body.into(),
        }
    }

    /// An error answer whose body is the reason phrase (408, 431, ...).
    pub fn error(code: u16) -> Answer {
        Answer::text(code, format!("{}\n", reason(code)))
    }

    /// The bytes on the wire (`Connection: close`; no body for `HEAD`).
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.code,
            reason(self.code),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// What the router decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Answer now.
    Now(Answer),
    /// A long-poll: answer [`ready_answer`] once [`wait_over`] holds, or
    /// when this long has passed.
    Wait(Duration),
    /// A cluster request: the event loop records the ask, then answers
    /// once the view is fresh (see [`crate::status::cluster::settled`]).
    Cluster(crate::status::cluster::Query),
}

/// The query parameters of a request, checked against its route's list.
#[derive(Debug, Default)]
pub struct Params<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Params<'a> {
    /// Splits `query`; any name not in `allowed`, a piece without `=`, or
    /// a name given twice is an error naming it.
    pub fn parse(query: Option<&'a str>, path: &str, allowed: &[&str]) -> Result<Self, String> {
        let mut out = Vec::new();
        for piece in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            if !allowed.contains(&name) {
                let takes = match allowed {
                    [] => "takes no query parameters".to_string(),
                    _ => format!("takes only {}", allowed.join(", ")),
                };
                return Err(format!(
                    "unknown query parameter \"{}\" for {path} ({path} {takes})",
                    printable(name)
                ));
            }
            if out.iter().any(|(n, _)| *n == name) {
                return Err(format!("query parameter \"{name}\" given twice"));
            }
            out.push((name, value));
        }
        Ok(Params(out))
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// Outside text in an error message: at most 64 printable characters.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Routes one request to its reply.
pub fn route(req: &Request, snap: &Snapshot) -> Reply {
    if req.method != "GET" && req.method != "HEAD" {
        return Reply::Now(Answer::text(405, "only GET\n"));
    }
    // `/cluster` and `/ready?scope=cluster` are the cluster view's.
    if let Some(q) = crate::status::cluster::request(&req.path, req.query.as_deref()) {
        return match q {
            Ok(q) => Reply::Cluster(q),
            Err(e) => Reply::Now(Answer::text(400, e + "\n")),
        };
    }
    let Some(r) = ROUTES.iter().find(|r| r.path == req.path) else {
        let paths: Vec<&str> = ROUTES.iter().map(|r| r.path).collect();
        let (last, rest) = paths.split_last().unwrap_or((&"", &[]));
        return Reply::Now(Answer::text(
            404,
            format!("not found: try {} or {last}\n", rest.join(", ")),
        ));
    };
    Params::parse(req.query.as_deref(), r.path, r.params)
        .and_then(|p| (r.answer)(&p, snap))
        .unwrap_or_else(|e| Reply::Now(Answer::text(400, e + "\n")))
}

/// `/ready`: now, or a long-poll when `wait=` is given and it is not over.
fn ready(params: &Params<'_>, snap: &Snapshot) -> Result<Reply, String> {
    // scope=cluster went to the cluster view; only the node's scope is left.
    if let Some(scope) = params.get("scope").filter(|s| *s != "node") {
        return Err(format!(
            "scope=\"{}\" is not one of node, cluster, dc",
            printable(scope)
        ));
    }
    let wait = match params.get("wait") {
        None => None,
        Some(v) => Some(
            crate::text::parse_duration(v)
                .ok_or("wait= takes a duration like 500ms or 30s")?
                .min(MAX_WAIT),
        ),
    };
    Ok(match wait {
        Some(d) if !d.is_zero() && !wait_over(snap) => Reply::Wait(d),
        _ => Reply::Now(ready_answer(snap)),
    })
}

/// Whether a long-poll on `/ready` has its answer: ready, or never will be.
pub fn wait_over(snap: &Snapshot) -> bool {
    matches!(snap.state, State::Ready | State::Stopping)
}

/// `/ready`'s answer for the snapshot: 200 "ready", else 503 and the state.
pub fn ready_answer(snap: &Snapshot) -> Answer {
    let code = if snap.state == State::Ready { 200 } else { 503 };
    Answer::text(code, format!("{}\n", snap.state.as_str()))
}

pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// `Ok(None)`: incomplete. `Err(status)`: malformed.
pub fn parse_request(bytes: &[u8]) -> Result<Option<Request>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(431),
        Err(_) => return Err(400),
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(400);
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::Cql;

    fn req(method: &str, target: &str) -> Request {
        parse_request(format!("{method} {target} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap()
    }

    fn answer(target: &str, snap: &Snapshot) -> Answer {
        match route(&req("GET", target), snap) {
            Reply::Now(a) => a,
            other => panic!("{target}: {other:?}"),
        }
    }

    #[test]
    fn parses_requests() {
        assert_eq!(parse_request(b"GET /status HTTP/1.1\r\n"), Ok(None));
        assert_eq!(
            parse_request(b"GET /ready?wait=5s HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(Request {
                method: "GET".into(),
                path: "/ready".into(),
                query: Some("wait=5s".into())
            }))
        );
        assert_eq!(parse_request(b"\x00\x01junk\r\n\r\n"), Err(400));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert_eq!(parse_request(many.as_bytes()), Err(431));
    }

    #[test]
    fn routes_and_their_queries() {
        let mut snap = Snapshot::new(1, Cql::default());
        assert_eq!(answer("/live", &snap).code, 200);
        assert_eq!(answer("/status", &snap).content_type, "application/json");
        assert_eq!(answer("/metrics", &snap).code, 200);
        assert_eq!(
            answer("/ready", &snap),
            Answer::text(503, "starting\n"),
            "not ready"
        );
        assert_eq!(
            route(&req("GET", "/ready?wait=250ms"), &snap),
            Reply::Wait(Duration::from_millis(250))
        );
        assert_eq!(
            route(&req("HEAD", "/ready?wait=1h"), &snap),
            Reply::Wait(MAX_WAIT)
        );
        assert_eq!(answer("/ready?wait=0s", &snap).code, 503);
        assert_eq!(answer("/ready?", &snap).code, 503);
        let nope = answer("/nope", &snap);
        assert_eq!(
            (nope.code, nope.body.as_str()),
            (404, "not found: try /status, /ready, /live or /metrics\n")
        );
        assert_eq!(
            route(&req("POST", "/status"), &snap),
            Reply::Now(Answer::text(405, "only GET\n"))
        );
        // The cluster's routes go to the cluster view; the node's scope is /ready.
        assert!(matches!(
            route(&req("GET", "/ready?scope=cluster&wait=5s"), &snap),
            Reply::Cluster(_)
        ));
        assert!(matches!(
            route(&req("GET", "/cluster"), &snap),
            Reply::Cluster(_)
        ));
        assert_eq!(answer("/ready?scope=node", &snap).code, 503);
        // Strict queries: nothing a route does not take is ignored.
        for (target, says) in [
            (
                "/ready?scope=galaxy",
                "scope=\"galaxy\" is not one of node, cluster, dc",
            ),
            ("/ready?scope=cluster&cl=ANY", "is not one of ONE, TWO"),
            ("/ready?scope=dc&cl=ALL", "unknown query parameter \"cl\""),
            ("/ready?scope=node&cl=ALL", "unknown query parameter \"cl\""),
            ("/cluster?cl=SERIAL", "LOCAL_QUORUM, EACH_QUORUM"),
            ("/cluster?scope=node", "unknown query parameter \"scope\""),
            ("/ready?wait=soon", "wait= takes a duration"),
            ("/ready?wait", "wait= takes a duration"),
            ("/ready?wait=1s&wait=2s", "\"wait\" given twice"),
            ("/ready?x=1&wait=250ms", "unknown query parameter \"x\""),
            ("/status?wait=1s", "/status takes no query parameters"),
            ("/live?verbose", "unknown query parameter \"verbose\""),
            ("/metrics?a=%00", "unknown query parameter \"a\""),
        ] {
            let a = answer(target, &snap);
            assert_eq!(a.code, 400, "{target}: {a:?}");
            assert!(a.body.contains(says), "{target}: {}", a.body);
        }
        snap.state = State::Ready;
        assert_eq!(
            answer("/ready?wait=5s", &snap),
            Answer::text(200, "ready\n")
        );
        snap.state = State::Stopping;
        assert!(wait_over(&snap));
        assert_eq!(answer("/ready?wait=5s", &snap).code, 503);
    }

    #[test]
    fn head_has_no_body() {
        let a = Answer::text(200, "live\n");
        let full = String::from_utf8(a.to_bytes(false)).unwrap();
        let head = String::from_utf8(a.to_bytes(true)).unwrap();
        assert!(full.ends_with("\r\n\r\nlive\n"), "{full}");
        assert!(head.ends_with(
            "Content-Length: 5\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(Answer::error(408).body, "Request Timeout\n");
    }
}
