//! The snapshot of the agent's state, and its JSON and Prometheus renderings.
//! The server renders it; the command-line client parses the same type back.

use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// CQL has not answered yet.
    Starting,
    /// CQL answers.
    Ready,
    /// CQL answered once, and now has failed `failures` checks in a row.
    Degraded,
    /// The JVM is shutting down.
    Stopping,
}

impl State {
    pub const ALL: [State; 4] = [
        State::Starting,
        State::Ready,
        State::Degraded,
        State::Stopping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Degraded => "degraded",
            State::Stopping => "stopping",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cql {
    pub host: String,
    pub port: u16,
    /// Where the port came from: option, property, yaml or default.
    pub source: String,
    pub host_source: String,
    /// The protocol version the server accepted at the last good check.
    pub protocol_version: Option<u8>,
    /// Present when the check speaks TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

/// How the check speaks TLS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tls {
    /// Why TLS: "option", or what in cassandra.yaml asks for it.
    pub why: String,
    /// The CA file the server's certificate must chain to; `None`: not verified.
    pub ca: Option<String>,
    /// Whether the check presents a client certificate.
    pub client_cert: bool,
    /// How far the last check got: "SUPPORTED over TLS", or
    /// "TLS handshake; client certificate required".
    pub reached: Option<String>,
    /// Whether the last handshake resumed an earlier session (the server
    /// skips sending and signing with its certificate) or was a full one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    /// Whether the last check ran on a connection kept from an earlier one
    /// (`tls_keep`).
    #[serde(default)]
    pub kept: bool,
}

/// Cassandra's own view, from its StorageService MBean.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cassandra {
    /// STARTING, JOINING, NORMAL, LEAVING, DECOMMISSIONED, MOVING, DRAINING, DRAINED.
    pub mode: Option<String>,
    pub native_transport: Option<bool>,
    pub joined: Option<bool>,
    pub bootstrap: Option<bool>,
    pub load_bytes: Option<f64>,
    /// Why the view is missing: not Cassandra, or too early in start-up.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastCheck {
    pub ok: bool,
    pub latency_ms: f64,
    pub error: Option<String>,
    pub at_unix_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    pub consecutive_failures: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NotifyInfo {
    /// `$NOTIFY_SOCKET`, when there is a service manager to tell.
    pub socket: Option<String>,
    pub ready_sent: bool,
    pub stopping_sent: bool,
    pub watchdog_usec: Option<u64>,
    pub watchdog_pings: u64,
    pub last_status: Option<String>,
    /// Notifications that could not be sent.
    pub errors: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    /// The git commit the agent was built from (`crate::COMMIT`).
    #[serde(default)]
    pub commit: String,
    pub pid: u32,
    pub state: State,
    pub state_since_unix_ms: u64,
    pub started_unix_ms: u64,
    pub cql: Cql,
    /// Present when the agent reads Cassandra's MBeans.
    #[serde(default)]
    pub cassandra: Option<Cassandra>,
    /// The cluster as this node sees it, while someone asks for it.
    #[serde(default)]
    pub cluster: Option<crate::status::view::ClusterView>,
    pub time_to_ready_ms: Option<f64>,
    pub last_check: Option<LastCheck>,
    pub checks: Checks,
    pub notify: NotifyInfo,
    /// The status socket's path, when it serves.
    pub socket: Option<String>,
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Snapshot {
    pub fn new(pid: u32, cql: Cql) -> Snapshot {
        let now = unix_ms(SystemTime::now());
        Snapshot {
            version: crate::VERSION.to_string(),
            commit: crate::COMMIT.to_string(),
            pid,
            state: State::Starting,
            state_since_unix_ms: now,
            started_unix_ms: now,
            cql,
            cassandra: None,
            cluster: None,
            time_to_ready_ms: None,
            last_check: None,
            checks: Checks::default(),
            notify: NotifyInfo::default(),
            socket: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn from_json(text: &str) -> Result<Snapshot, String> {
        serde_json::from_str(text).map_err(|e| format!("not a cqlready status: {e}"))
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn to_prometheus(&self) -> String {
        let mut m = String::with_capacity(1024);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            prometheus_metric(&mut m, name, kind, help, samples)
        };
        metric(
            "cqlready_up",
            "gauge",
            "1 while the agent runs.",
            &[(String::new(), 1.0)],
        );
        let states: Vec<(String, f64)> = State::ALL
            .iter()
            .map(|s| {
                (
                    format!("{{state=\"{}\"}}", s.as_str()),
                    f64::from(u8::from(*s == self.state)),
                )
            })
            .collect();
        metric(
            "cqlready_state",
            "gauge",
            "The agent's state: 1 for the current one.",
            &states,
        );
        metric(
            "cqlready_checks_total",
            "counter",
            "CQL checks by result.",
            &[
                ("{result=\"ok\"}".into(), self.checks.ok as f64),
                ("{result=\"failed\"}".into(), self.checks.failed as f64),
            ],
        );
        if let Some(c) = &self.last_check {
            metric(
                "cqlready_check_latency_seconds",
                "gauge",
                "Duration of the last CQL check.",
                &[(String::new(), c.latency_ms / 1e3)],
            );
        }
        if let Some(t) = self.time_to_ready_ms {
            metric(
                "cqlready_time_to_ready_seconds",
                "gauge",
                "From agent start to CQL first answering.",
                &[(String::new(), t / 1e3)],
            );
        }
        metric(
            "cqlready_watchdog_pings_total",
            "counter",
            "WATCHDOG=1 notifications sent.",
            &[(String::new(), self.notify.watchdog_pings as f64)],
        );
        m
    }
}

/// One metric in Prometheus' text format: its help, its type, its samples
/// (`labels` is `{k="v"}` or empty).
pub fn prometheus_metric(
    m: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, f64)],
) {
    let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(m, "{name}{labels} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut s = Snapshot::new(
            42,
            Cql {
                host: "127.0.0.1".into(),
                port: 9042,
                source: "yaml".into(),
                host_source: "default".into(),
                protocol_version: Some(5),
                ..Default::default()
            },
        );
        s.state = State::Ready;
        s.time_to_ready_ms = Some(1234.5);
        s.last_check = Some(LastCheck {
            ok: true,
            latency_ms: 0.25,
            error: None,
            at_unix_ms: 1,
        });
        s.checks = Checks {
            total: 10,
            ok: 7,
            failed: 3,
            consecutive_failures: 0,
        };
        s
    }

    #[test]
    fn json_round_trips() {
        let s = sample();
        let text = s.to_json();
        assert!(text.contains("\"state\": \"ready\""), "{text}");
        assert_eq!(Snapshot::from_json(&text).unwrap(), s);
        assert!(Snapshot::from_json("{}")
            .unwrap_err()
            .contains("not a cqlready status"));
        assert!(Snapshot::from_json("[1,").is_err());
    }

    #[test]
    fn prometheus_text() {
        let p = sample().to_prometheus();
        for line in [
            "cqlready_up 1",
            "cqlready_state{state=\"ready\"} 1",
            "cqlready_state{state=\"starting\"} 0",
            "cqlready_checks_total{result=\"ok\"} 7",
            "cqlready_checks_total{result=\"failed\"} 3",
            "cqlready_check_latency_seconds 0.00025",
            "cqlready_time_to_ready_seconds 1.2345",
            "# TYPE cqlready_checks_total counter",
        ] {
            assert!(p.lines().any(|l| l == line), "{line} missing from\n{p}");
        }
    }
}
