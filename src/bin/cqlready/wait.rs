//! `cqlready wait`: block until the agent says ready, or the timeout passes.

use crate::ask::{asked, no_agent, socket_of, usage, Asked, CLUSTER_TIMEOUT};
use crate::{Which, NOT_READY, READY};
use cqlready::status::client::{self, ClientError};
use cqlready::status::model::State;
use cqlready::text::format_duration;
use std::time::{Duration, Instant};

pub fn wait(which: &Which, timeout: Duration, scope: &str) -> u8 {
    let cluster = !scope.is_empty();
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
    let mut last = String::from("no answer yet");
    let mut said_waiting = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!(
                "cqlready: not ready after {}: {last}",
                format_duration(timeout)
            );
            return NOT_READY;
        }
        // Long-poll in slices so a socket that appears late is found.
        let slice = left.min(Duration::from_secs(30));
        let answer = socket_of(&asked).and_then(|s| {
            client::get(
                &s,
                &format!("/ready?{scope}wait={}ms", slice.as_millis().max(1)),
                slice
                    + Duration::from_secs(2)
                    + if cluster {
                        CLUSTER_TIMEOUT
                    } else {
                        Duration::ZERO
                    },
            )
        });
        match answer {
            Ok(r) if r.code == 200 => {
                println!("ready");
                return READY;
            }
            // A question the agent cannot take (a datacenter it does not know).
            Ok(r) if r.code == 400 => return usage(r.body.trim()),
            Ok(r) => {
                last = format!("agent says {}", r.body.trim());
                if r.body.trim() == State::Stopping.as_str() {
                    eprintln!("cqlready: the JVM is stopping");
                    return NOT_READY;
                }
            }
            Err(ClientError::Permission(m)) => return no_agent(&ClientError::Permission(m)),
            Err(e) => {
                if let Asked::Pid(pid) = asked {
                    if let Err(gone) = client::check_jvm(pid) {
                        return no_agent(&gone);
                    }
                }
                if !said_waiting && matches!(e, ClientError::NoAgent(_)) {
                    said_waiting = true;
                    let what = match &asked {
                        Asked::Socket(p) => format!("{} to appear", p.display()),
                        Asked::Pid(pid) => {
                            format!("process {pid}'s agent to open its status socket")
                        }
                    };
                    eprintln!(
                        "cqlready: waiting up to {} for {what}",
                        format_duration(timeout)
                    );
                }
                last = e.to_string();
                // No agent yet (the JVM is starting): look again shortly.
                std::thread::sleep(left.min(Duration::from_millis(100)));
            }
        }
    }
}
