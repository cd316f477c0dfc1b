//! `cqlready probe`: one readiness check, by the agent or on a port, and
//! whether stopping this node is safe.

use crate::ask::{ask, cluster_view, no_agent, usage, CLUSTER_TIMEOUT};
use crate::render::verdict;
use crate::{TlsArgs, Which, NOT_READY, READY, USAGE};
use cqlready::probe::cql::{Prober, Target};
use cqlready::status::client::ClientError;
use cqlready::status::view::Cl;
use std::time::{Duration, Instant};

/// `scope`: the gate's query part ([`crate::Gate::query`]), empty for the node alone.
pub fn probe(which: &Which, timeout: Duration, scope: &str) -> u8 {
    let target = format!("/ready?{}", scope.trim_end_matches('&'));
    let cluster = !scope.is_empty();
    // A first ask of the cluster view waits for one read of it.
    let timeout = timeout.max(if cluster { CLUSTER_TIMEOUT } else { timeout });
    match ask(which, &target, timeout) {
        Ok(r) if r.code == 200 => {
            println!("ready");
            READY
        }
        Ok(r) if r.code == 503 => {
            println!("not ready: {}", r.body.trim());
            NOT_READY
        }
        Ok(r) if r.code == 400 => usage(r.body.trim()),
        Ok(r) => no_agent(&ClientError::Protocol(format!(
            "unexpected answer {}: {}",
            r.code,
            r.body.trim()
        ))),
        Err(code) => code,
    }
}

pub fn probe_port(host: String, port: u16, timeout: Duration, tls: &TlsArgs) -> u8 {
    let choice = match tls.choose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cqlready: {e}");
            return USAGE;
        }
    };
    let subject = choice.subject;
    let mut p = Prober::with_tls(
        Target {
            host,
            port,
            timeout,
        },
        choice.client,
    );
    let started = Instant::now();
    match p.check() {
        Ok(a) => {
            println!(
                "ready: {subject} v{} on {} in {:.2} ms",
                a.version,
                p.target,
                started.elapsed().as_secs_f64() * 1e3
            );
            READY
        }
        Err(e) => {
            println!("not ready: {subject} on {}: {e}", p.target);
            NOT_READY
        }
    }
}

pub fn safe_to_stop_at(which: &Which, timeout: Duration, cl: Cl) -> u8 {
    let body = match cluster_view(which, cl, timeout.max(CLUSTER_TIMEOUT)) {
        Ok(b) => b,
        Err(code) => return code,
    };
    match verdict(&body) {
        Ok((true, why)) => {
            println!("safe to stop at {}: {why}", cl.as_str());
            READY
        }
        Ok((false, why)) => {
            println!("not safe to stop at {}: {why}", cl.as_str());
            NOT_READY
        }
        Err(e) => no_agent(&ClientError::Protocol(e)),
    }
}
