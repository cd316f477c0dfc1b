//! `cqlready watch`: a `Type=notify` service of its own that watches ports
//! (and an agent's socket) with the agent's monitor.

use crate::{ProbeKind, WatchArgs, NOT_READY, READY, USAGE};
use cqlready::config::{Config, Endpoint};
use cqlready::monitor::{self, Ended, Pace, Probe, Shared};
use cqlready::notify::Notifier;
use cqlready::probe::cql::{self, Prober, Target};
use cqlready::status::client;
use cqlready::status::model::Snapshot;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Every watched thing must pass for the whole to be ready.
pub struct All(Vec<Watched>);

pub enum Watched {
    Cql(Prober),
    Tcp(Target),
    Agent(PathBuf, Duration),
}

impl Probe for All {
    fn check(&mut self) -> Result<Option<u8>, String> {
        let mut version = None;
        for w in &mut self.0 {
            match w {
                Watched::Cql(p) => {
                    version = p
                        .check()
                        .map(|a| Some(a.version))
                        .map_err(|e| format!("CQL on {}: {e}", p.target))?
                }
                Watched::Tcp(t) => cql::tcp_check(t).map_err(|e| format!("TCP {t}: {e}"))?,
                Watched::Agent(path, timeout) => match client::get(path, "/ready", *timeout) {
                    Ok(r) if r.code == 200 => {}
                    Ok(r) => {
                        return Err(format!(
                            "agent at {} says {}",
                            path.display(),
                            r.body.trim()
                        ))
                    }
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
        Ok(version)
    }
}

pub fn watch(a: WatchArgs) -> u8 {
    if a.ports.is_empty() && a.socket.is_none() {
        eprintln!("cqlready: watch needs at least one --port or --socket");
        return USAGE;
    }
    let tls = match a.tls.choose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cqlready: {e}");
            return USAGE;
        }
    };
    let endpoint = Endpoint {
        host: a.host.clone(),
        port: a.ports.first().copied().unwrap_or(0),
        port_source: "option".into(),
        host_source: "option".into(),
    };
    let Config {
        prober,
        pace,
        mut cql,
    } = Config::new(&a.options(), endpoint, tls);
    let (watched, labels) = watched(&a, prober);
    if !matches!(watched.first(), Some(Watched::Cql(_))) {
        cql.tls = None;
    }
    let pid = std::process::id();
    let notifier = Arc::new(Notifier::from_env(pid));
    let mut snap = Snapshot::new(pid, cql);
    snap.notify.socket = notifier.socket.clone();
    let shared = Shared::new(snap);
    let only_cql = watched.len() == 1 && matches!(watched[0], Watched::Cql(_));
    let pace = Pace {
        exit_on_degraded: true,
        ..if only_cql {
            pace
        } else {
            Pace {
                subject: "All watched".into(),
                place: labels.join(", "),
                ..pace
            }
        }
    };
    match monitor::run(&mut All(watched), pace, notifier, shared.clone()) {
        Ended::Degraded => {
            let s = shared.snapshot();
            eprintln!(
                "cqlready: {}",
                s.notify
                    .last_status
                    .unwrap_or_else(|| "stopped answering".into())
            );
            NOT_READY
        }
        Ended::Stopped => READY,
    }
}

/// What `watch` checks, each with its label: the first port by CQL (with
/// `prober`) unless `--probe tcp`, the other ports by TCP, then the agent.
pub fn watched(a: &WatchArgs, prober: Prober) -> (Vec<Watched>, Vec<String>) {
    let (mut watched, mut labels) = (Vec::new(), Vec::new());
    let mut prober = (a.probe == ProbeKind::Cql).then_some(prober);
    for &port in &a.ports {
        let t = Target {
            host: a.host.clone(),
            port,
            timeout: a.timeout,
        };
        match prober.take() {
            Some(p) => {
                labels.push(format!("{t} (CQL)"));
                watched.push(Watched::Cql(p));
            }
            None => {
                labels.push(format!("{t} (TCP)"));
                watched.push(Watched::Tcp(t));
            }
        }
    }
    if let Some(s) = &a.socket {
        labels.push(format!("the agent at {}", s.display()));
        watched.push(Watched::Agent(s.clone(), a.timeout));
    }
    (watched, labels)
}
