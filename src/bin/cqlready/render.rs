//! The command's text: the agent's snapshot as `cqlready status` shows it,
//! and a `/cluster` answer as `cqlready status --cluster` shows it.

use cqlready::status::model::{Cassandra, NotifyInfo, Snapshot, Tls};
use cqlready::status::view::{Level, Node, UNKNOWN};
use cqlready::text::format_duration;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long ago `unix_ms` was: `12s ago`, `5m ago`, `2h3m ago`.
pub fn ago(unix_ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let secs = now.saturating_sub(unix_ms) / 1000;
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        _ => format!("{}h{}m ago", secs / 3600, secs / 60 % 60),
    }
}

/// `cqlready status`'s text: the state and the CQL endpoint, then a line
/// for each part the snapshot has (TLS, the node, readiness, the last
/// check, the service manager).
pub fn summary(s: &Snapshot) -> String {
    let mut out = head(s);
    out += &s.cql.tls.as_ref().map(tls_line).unwrap_or_default();
    out += &s.cassandra.as_ref().map(cassandra_line).unwrap_or_default();
    if let Some(t) = s.time_to_ready_ms {
        out += &format!("ready    after {:.1} s\n", t / 1e3);
    }
    out += &check_line(s);
    out += &notify_lines(&s.notify);
    out
}

/// The state, since when, the agent, and where CQL is checked.
fn head(s: &Snapshot) -> String {
    format!(
        "{} since {} (pid {}, cqlready {}{})\nCQL      {}:{} (port from {}, host from {}){}\n",
        s.state.as_str(),
        ago(s.state_since_unix_ms),
        s.pid,
        s.version,
        if s.commit.is_empty() {
            String::new()
        } else {
            format!(", commit {}", s.commit)
        },
        s.cql.host,
        s.cql.port,
        s.cql.source,
        s.cql.host_source,
        s.cql
            .protocol_version
            .map(|v| format!(", protocol v{v}"))
            .unwrap_or_default()
    )
}

fn tls_line(t: &Tls) -> String {
    format!(
        "TLS      from {}, certificate {}{}{}{}\n",
        t.why,
        t.ca.as_deref()
            .map(|ca| format!("verified against {ca}"))
            .unwrap_or_else(|| "not verified".into()),
        if t.client_cert {
            ", client certificate given"
        } else {
            ""
        },
        t.reached
            .as_deref()
            .map(|r| format!("; last check reached: {r}"))
            .unwrap_or_default(),
        match (t.kept, t.resumed) {
            (true, Some(true)) => " on a kept connection (its handshake resumed a session)",
            (true, Some(false)) => " on a kept connection (its handshake was a full one)",
            (true, None) => " on a kept connection",
            (false, Some(true)) => " (handshake resumed a session)",
            (false, Some(false)) => " (full handshake)",
            (false, None) => "",
        }
    )
}

fn cassandra_line(c: &Cassandra) -> String {
    match (&c.mode, &c.error) {
        (Some(mode), _) => format!(
            "node     Cassandra {mode}, native transport {}\n",
            match c.native_transport {
                Some(true) => "on",
                Some(false) => "off",
                None => "unknown",
            }
        ),
        (None, Some(e)) => format!("node     Cassandra's view unavailable: {e}\n"),
        (None, None) => String::new(),
    }
}

fn check_line(s: &Snapshot) -> String {
    let Some(c) = &s.last_check else {
        return String::new();
    };
    format!(
        "check    {} {:.2} ms, {}{}; {} checks, {} failed\n",
        if c.ok { "ok" } else { "FAILED" },
        c.latency_ms,
        ago(c.at_unix_ms),
        c.error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        s.checks.total,
        s.checks.failed
    )
}

/// What the service manager was told, and the last STATUS= text.
fn notify_lines(n: &NotifyInfo) -> String {
    let mut out = match &n.socket {
        None => "notify   no service manager (NOTIFY_SOCKET unset)\n".to_string(),
        Some(sock) => format!(
            "notify   {sock}: READY {}, STOPPING {}, watchdog {}{}\n",
            if n.ready_sent { "sent" } else { "not yet" },
            if n.stopping_sent { "sent" } else { "not sent" },
            n.watchdog_usec
                .map(|u| format!(
                    "every {} ({} pings)",
                    format_duration(Duration::from_micros(u / 2)),
                    n.watchdog_pings
                ))
                .unwrap_or_else(|| "off".into()),
            if n.errors > 0 {
                format!(", {} send errors", n.errors)
            } else {
                String::new()
            }
        ),
    };
    if let Some(st) = &n.last_status {
        out += &format!("status   {st}\n");
    }
    out
}

/// `nodetool status`-like lines: one per node, grouped by datacenter, each
/// datacenter followed by `after(dc)` (its keyspaces' lines).
pub fn table(nodes: &[Node], after: impl Fn(&str) -> String) -> String {
    let mut dcs: Vec<&str> = nodes.iter().map(|n| n.dc.as_str()).collect();
    dcs.sort_unstable();
    dcs.dedup();
    let mut out = String::new();
    for dc in dcs {
        let _ = writeln!(out, "Datacenter: {dc}\nStatus=Up/Down/?(unknown) State=Normal/Leaving/Joining/Moving/?(unknown)");
        let _ = writeln!(out, "--  {:<40} {:<12} Release", "Address", "Rack");
        for n in nodes.iter().filter(|n| n.dc == dc) {
            let _ = writeln!(out, "{}", node_line(n));
        }
        out.push_str(&after(dc));
    }
    out
}

pub fn node_line(n: &Node) -> String {
    let s = match n.status.as_str() {
        "UP" => 'U',
        "DOWN" => 'D',
        _ => '?',
    };
    let t = match n.state.as_str() {
        "NORMAL" => 'N',
        "LEAVING" => 'L',
        "JOINING" => 'J',
        "MOVING" => 'M',
        _ => '?',
    };
    let line = format!(
        "{s}{t}  {:<40} {:<12} {:<10} {}",
        n.address,
        n.rack,
        n.release_version,
        if n.local { "(this node)" } else { "" }
    );
    line.trim_end().to_string()
}

/// Per keyspace, the ranges below quorum in datacenter `dc` (`None`: the
/// whole ring, for SimpleStrategy), from an EACH_QUORUM level.
pub fn quorum_lines(level: &Level, dc: Option<&str>) -> String {
    let mut out = String::new();
    for k in &level.keyspaces {
        let replication = k.replication.as_deref().unwrap_or(UNKNOWN);
        if let Some(e) = &k.error {
            if dc.is_none() {
                let _ = writeln!(
                    out,
                    "keyspace {} ({replication}): cannot tell ({e})",
                    k.keyspace
                );
            }
            continue;
        }
        for g in k.groups.iter().filter(|g| g.dc.as_deref() == dc) {
            let _ = writeln!(
                out,
                "keyspace {} ({replication}): {} of {} ranges below quorum ({} live) {}, {} if this node stops",
                k.keyspace,
                g.below,
                k.ranges.unwrap_or(0),
                g.needed,
                dc.map_or("in the ring".to_string(), |d| format!("in {d}")),
                g.below_if_stopped
            );
        }
    }
    out
}

/// From a `/cluster` answer: whether stopping is safe at its level, and why.
/// Unknown is not safe.
pub fn verdict(body: &str) -> Result<(bool, String), String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not a cluster view: {e}"))?;
    let level = v
        .get("availability")
        .filter(|l| !l.is_null())
        .ok_or("the cluster view has no availability")?;
    let why = level
        .get("why")
        .and_then(|w| w.as_str())
        .unwrap_or("")
        .to_string();
    Ok(match level.get("safe_to_stop").and_then(|s| s.as_bool()) {
        Some(safe) => (safe, why),
        None => (false, format!("cannot tell: {why}")),
    })
}

/// A `/cluster?cl=EACH_QUORUM` answer as text: the node table and each
/// keyspace's quorum per datacenter, then every level now and without this
/// node.
pub fn cluster(body: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not a cluster view: {e}"))?;
    let nodes: Vec<Node> = serde_json::from_value(v.get("nodes").cloned().unwrap_or_default())
        .map_err(|e| format!("not a cluster view: {e}"))?;
    let level = v
        .get("availability")
        .and_then(|l| serde_json::from_value::<Level>(l.clone()).ok());
    let per_dc = |dc: &str| {
        level
            .as_ref()
            .map(|l| quorum_lines(l, Some(dc)))
            .unwrap_or_default()
    };
    let mut out = table(&nodes, per_dc);
    if let Some(l) = &level {
        out.push_str(&quorum_lines(l, None));
    }
    let word = |v: &serde_json::Value| match v.as_bool() {
        Some(true) => "yes",
        Some(false) => "no",
        None => UNKNOWN,
    };
    let levels = v
        .get("levels")
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    if !levels.is_empty() {
        let _ = writeln!(out, "{:<14} {:<8} if this node stops", "level", "now");
    }
    for l in &levels {
        let stop = word(&l["safe_to_stop"]);
        let _ = writeln!(
            out,
            "{:<14} {:<8} {stop}{}",
            l["cl"].as_str().unwrap_or(UNKNOWN),
            word(&l["available"]),
            match stop {
                "yes" => String::new(),
                _ => format!(" ({})", l["why"].as_str().unwrap_or("")),
            }
        );
    }
    if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
        for e in errors.iter().filter_map(|e| e.as_str()) {
            let _ = writeln!(out, "unreadable: {e}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqlready::status::cluster::{answer, request};
    use cqlready::status::model::State;
    use cqlready::status::view::{Cl, ClusterView};

    fn node(address: &str, dc: &str, status: &str, local: bool) -> Node {
        Node {
            address: address.into(),
            dc: dc.into(),
            rack: "r1".into(),
            status: status.into(),
            state: "NORMAL".into(),
            release_version: "5.0.9".into(),
            local,
        }
    }

    fn level(cl: Cl, available: Option<bool>, safe: Option<bool>, why: &str) -> Level {
        Level {
            cl,
            keyspaces: vec![],
            available,
            available_why: why.into(),
            safe_to_stop: safe,
            why: why.into(),
        }
    }

    /// The agent's `/cluster` answer at `cl` for a view of two
    /// datacenters: dc1 with this node and a DOWN one, dc2 all UP.
    fn answered(cl: &str, levels: Vec<Level>) -> String {
        let mut s = Snapshot::new(1, Default::default());
        s.state = State::Ready;
        s.cluster = Some(ClusterView {
            local: Some("127.0.0.1".into()),
            local_dc: Some("dc1".into()),
            nodes: vec![
                node("127.0.0.1", "dc1", "UP", true),
                node("127.0.0.2", "dc1", "DOWN", false),
                node("127.0.0.4", "dc2", "UP", false),
            ],
            levels,
            ..ClusterView::default()
        });
        let q = request("/cluster", Some(cl)).unwrap().unwrap();
        let (code, _, body) = answer(&q, &s, 0);
        assert_eq!(code, 200, "{body}");
        body
    }

    #[test]
    fn the_cluster_as_text() {
        let stop = "ks: range (1, 2] would have 1 of 3 live replicas in dc1 (127.0.0.3), 2 needed";
        let body = answered(
            "cl=EACH_QUORUM",
            vec![
                level(Cl::LocalQuorum, Some(true), Some(false), stop),
                level(Cl::EachQuorum, None, None, "ks: boom"),
            ],
        );
        let text = cluster(&body).unwrap();
        for line in [
            "Datacenter: dc1",
            "UN  127.0.0.1                                r1           5.0.9      (this node)",
            "DN  127.0.0.2                                r1           5.0.9",
            "Datacenter: dc2",
            "LOCAL_QUORUM   yes      no (ks: range (1, 2] would have 1 of 3 live replicas in dc1 (127.0.0.3), 2 needed)",
            "EACH_QUORUM    unknown  unknown (ks: boom)",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        let nodes: Vec<Node> = vec![node("127.0.0.3", "dc1", "UP", false)];
        let t = table(&nodes, |dc| format!("after {dc}\n"));
        assert!(
            t.ends_with(
                "UN  127.0.0.3                                r1           5.0.9\nafter dc1\n"
            ),
            "{t}"
        );
        assert!(cluster("nope").is_err());
    }

    #[test]
    fn verdicts_from_the_answer() {
        let levels = || {
            vec![
                level(
                    Cl::Quorum,
                    Some(true),
                    Some(true),
                    "every range keeps QUORUM",
                ),
                level(
                    Cl::All,
                    Some(false),
                    Some(false),
                    "ks: range (1, 2] would have 2 of 3",
                ),
                level(Cl::One, None, None, "ks: boom"),
            ]
        };
        for (cl, want) in [
            (
                "cl=QUORUM",
                Ok((true, "every range keeps QUORUM".to_string())),
            ),
            (
                "cl=ALL",
                Ok((false, "ks: range (1, 2] would have 2 of 3".to_string())),
            ),
            ("cl=ONE", Ok((false, "cannot tell: ks: boom".to_string()))),
        ] {
            assert_eq!(verdict(&answered(cl, levels())), want, "{cl}");
        }
        assert!(
            verdict(&answered("cl=TWO", levels())).is_err(),
            "no TWO in this view"
        );
        assert!(verdict("nope").is_err());
    }
}
