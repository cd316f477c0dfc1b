//! `cqlready wait`: block until the agent says ready, or the timeout passes.

use crate::ask::{asked, no_agent, socket_of, usage, Asked, CLUSTER_TIMEOUT};
use crate::{Which, NOT_READY, READY};
use cqlready::status::client::{self, ClientError, Response};
use cqlready::status::model::State;
use cqlready::text::format_duration;
use std::time::{Duration, Instant};

/// The longest one long-poll of `/ready` lasts, so that a socket that
/// appears late (the JVM is starting) is found.
const SLICE: Duration = Duration::from_secs(30);

/// What the wait has seen so far.
struct Waiting {
    /// The last answer or failure, printed when the time is up.
    last: String,
    /// Whether "waiting up to ..." was said (once).
    said_waiting: bool,
}

/// `scope`: the gate's query part ([`crate::Gate::query`]), empty for the node alone.
pub fn wait(which: &Which, timeout: Duration, scope: &str) -> u8 {
    let asked = match asked(which) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // A PID that is no process, or no JVM, will never get an agent: say so
    // now rather than after the whole timeout.
    if let Asked::Pid(pid) = asked {
        if let Err(e) = client::check_jvm(pid) {
            return no_agent(&e);
        }
    }
    let deadline = Instant::now() + timeout;
    let mut w = Waiting {
        last: String::from("no answer yet"),
        said_waiting: false,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!(
                "cqlready: not ready after {}: {}",
                format_duration(timeout),
                w.last
            );
            return NOT_READY;
        }
        let code = match poll(&asked, scope, left) {
            Ok(r) => answered(&r, &mut w),
            Err(e) => unanswered(e, &asked, timeout, left, &mut w),
        };
        if let Some(code) = code {
            return code;
        }
    }
}

/// One long-poll of `/ready` (with the gate's `scope`), at most `left`.
fn poll(asked: &Asked, scope: &str, left: Duration) -> Result<Response, ClientError> {
    let slice = left.min(SLICE);
    // A first ask of the cluster view waits for one read of it.
    let extra = if scope.is_empty() {
        Duration::ZERO
    } else {
        CLUSTER_TIMEOUT
    };
    let target = format!("/ready?{scope}wait={}ms", slice.as_millis().max(1));
    socket_of(asked).and_then(|s| client::get(&s, &target, slice + Duration::from_secs(2) + extra))
}

/// The agent answered: the exit code, or `None` to ask again.
fn answered(r: &Response, w: &mut Waiting) -> Option<u8> {
    match r.code {
        200 => {
            println!("ready");
            Some(READY)
        }
        // A question the agent cannot take (a datacenter it does not know).
        400 => Some(usage(r.body.trim())),
        _ if r.body.trim() == State::Stopping.as_str() => {
            eprintln!("cqlready: the JVM is stopping");
            Some(NOT_READY)
        }
        _ => {
            w.last = format!("agent says {}", r.body.trim());
            None
        }
    }
}

/// No answer: the exit code when there will never be one, else `None`
/// after a short pause (no agent yet: the JVM is starting).
fn unanswered(
    e: ClientError,
    asked: &Asked,
    timeout: Duration,
    left: Duration,
    w: &mut Waiting,
) -> Option<u8> {
    if let ClientError::Permission(_) = e {
        return Some(no_agent(&e));
    }
    if let Asked::Pid(pid) = asked {
        if let Err(gone) = client::check_jvm(*pid) {
            return Some(no_agent(&gone));
        }
    }
    if !w.said_waiting && matches!(e, ClientError::NoAgent(_)) {
        w.said_waiting = true;
        let what = match asked {
            Asked::Socket(p) => format!("{} to appear", p.display()),
            Asked::Pid(pid) => format!("process {pid}'s agent to open its status socket"),
        };
        eprintln!(
            "cqlready: waiting up to {} for {what}",
            format_duration(timeout)
        );
    }
    w.last = e.to_string();
    std::thread::sleep(left.min(Duration::from_millis(100)));
    None
}
