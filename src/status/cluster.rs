//! The cluster requests: the `/cluster`, `/ready?scope=cluster` and
//! `/ready?scope=dc` answers (pure functions of the snapshot and the query)
//! and the cluster's `/metrics` lines. The view's types are in
//! `status/view.rs`; the command's text of it in its `render.rs`.
//!
//! The view is read by `cassandra::cluster` at the check period only while
//! someone asked for it (the store's
//! [`Demand`](crate::status::store::Demand)). An answer is given only
//! from a view read after the current run of asking began, so a view left
//! over from an hour ago is never served as today's.

use crate::status::view::{Cl, ClusterView, Level};
use std::fmt::Write;
use std::time::Duration;

/// The longest a request waits for a first fresh view after idling.
pub const FRESH_WAIT: Duration = Duration::from_secs(15);

/// What a cluster request asks.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub what: What,
    /// `/cluster`: the level shown (LOCAL_QUORUM when not given);
    /// `scope=cluster`: the level the gate asks for, or every node UP.
    pub cl: Option<Cl>,
    /// `scope=dc`: the datacenter (this node's when not given).
    pub dc: Option<String>,
    pub wait: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// `GET /cluster`
    View,
    /// `GET /ready?scope=cluster`
    Ready,
    /// `GET /ready?scope=dc`
    Dc,
}

/// A query string's `key=value` pairs; a pair without `=` is an error.
fn pairs(query: Option<&str>) -> Result<Vec<(&str, &str)>, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .ok_or_else(|| format!("\"{}\" is not key=value", crate::text::sanitize(p)))
        })
        .collect()
}

/// Whether this request is a cluster one: `/cluster`, or `/ready` with
/// `scope=` other than `node`. `None`: not ours (the node's `/ready`).
/// `Err`: a 400 with the accepted keys and values.
pub fn request(path: &str, query: Option<&str>) -> Option<Result<Query, String>> {
    let what = match path {
        "/cluster" => What::View,
        "/ready" => match query?.split('&').find_map(|p| p.strip_prefix("scope="))? {
            "node" => return None,
            "dc" => What::Dc,
            _ => What::Ready,
        },
        _ => return None,
    };
    Some(parse_query(what, query))
}

/// The query parameters each cluster request takes.
fn accepted(what: What) -> &'static str {
    match what {
        What::View => "cl=LEVEL",
        What::Ready => "scope=node|cluster|dc, cl=LEVEL (scope=cluster only), wait=DURATION",
        What::Dc => "scope=node|cluster|dc, dc=NAME (scope=dc only), wait=DURATION",
    }
}

fn parse_query(what: What, query: Option<&str>) -> Result<Query, String> {
    let mut q = Query {
        what,
        cl: None,
        dc: None,
        wait: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in pairs(query)? {
        if seen.contains(&k) {
            return Err(format!(
                "query parameter \"{}\" given twice",
                crate::text::sanitize(k)
            ));
        }
        seen.push(k);
        match (what, k) {
            (What::View | What::Ready, "cl") => q.cl = Some(Cl::parse(v)?),
            (What::Dc, "dc") if !v.is_empty() => q.dc = Some(crate::text::sanitize(v)),
            (What::Dc, "dc") => return Err("dc= takes a datacenter name".into()),
            (What::Ready, "scope") if v == "cluster" => {}
            (What::Dc, "scope") => {}
            (What::Ready, "scope") => {
                return Err(format!(
                    "scope=\"{}\" is not one of node, cluster, dc",
                    crate::text::sanitize(v)
                ))
            }
            (What::Ready | What::Dc, "wait") => {
                let d = crate::text::parse_duration(v)
                    .ok_or("wait= takes a duration like 500ms or 30s")?;
                q.wait = Some(d.min(crate::status::store::MAX_WAIT));
            }
            _ => {
                return Err(format!(
                    "unknown query parameter \"{}\"; accepted: {}",
                    crate::text::sanitize(k),
                    accepted(what)
                ))
            }
        }
    }
    Ok(q)
}

/// Whether the snapshot's view is fresh for a request that asked when the
/// run of asking began at `since`.
pub fn fresh(snap: &crate::status::model::Snapshot, since: u64) -> bool {
    snap.cluster
        .as_ref()
        .is_some_and(|c| c.read_mono_ms >= since)
        || snap.cassandra.is_none()
        || snap.state == crate::status::model::State::Stopping
}

/// How long to wait, and for what: a fresh view, and with `wait=` the
/// cluster gate holding.
pub fn deadline(q: &Query) -> Duration {
    q.wait.unwrap_or(Duration::ZERO).max(FRESH_WAIT)
}

/// The wait is over: a fresh view, and (with `wait=`) the gate holds.
pub fn settled(q: &Query, snap: &crate::status::model::Snapshot, since: u64) -> bool {
    if !fresh(snap, since) {
        return false;
    }
    q.wait.is_none()
        || snap.state == crate::status::model::State::Stopping
        || ready(q, snap).is_ok()
}

/// The cluster gates, `Err` naming what keeps them shut:
/// * `scope=cluster`: this node ready, and every node in its view UP and NORMAL;
/// * `scope=cluster&cl=LEVEL`: this node ready, and no range of any keyspace
///   below LEVEL now (unknown is below);
/// * `scope=dc`: this node ready, and every node of the datacenter UP and NORMAL.
pub fn ready(q: &Query, snap: &crate::status::model::Snapshot) -> Result<String, String> {
    use crate::status::model::State;
    let mut not = Vec::new();
    if snap.state != State::Ready {
        not.push(format!("this node is {}", snap.state.as_str()));
    }
    let Some(c) = &snap.cluster else {
        not.push("no cluster view (not Cassandra, or not read yet)".into());
        return Err(not.join("; "));
    };
    let ok = match (q.what, q.cl) {
        (What::Ready, Some(cl)) => match c.level(cl) {
            Some(l) if l.available == Some(true) => Some(l.available_why.clone()),
            Some(l) if l.available == Some(false) => {
                not.push(l.available_why.clone());
                None
            }
            Some(l) => {
                not.push(format!("cannot tell: {}", l.available_why));
                None
            }
            None => {
                not.push(format!("cannot tell: no {} in the view", cl.as_str()));
                None
            }
        },
        (What::Dc, _) => match q.dc.as_deref().or(c.local_dc.as_deref()) {
            None => {
                not.push("this node's datacenter is unknown".into());
                None
            }
            Some(dc) => {
                not.extend(c.not_ready(Some(dc)));
                let n = c.nodes.iter().filter(|n| n.dc == dc).count();
                Some(format!("{n} nodes of {dc} UP and NORMAL"))
            }
        },
        _ => {
            not.extend(c.not_ready(None));
            Some(format!("{} nodes UP and NORMAL", c.nodes.len()))
        }
    };
    match ok {
        Some(text) if not.is_empty() => Ok(text),
        _ => Err(not.join("; ")),
    }
}

/// A datacenter a `scope=dc` request names that the view does not know: the
/// 400's text.
fn unknown_dc(q: &Query, c: &ClusterView) -> Option<String> {
    let dc = q.dc.as_deref()?;
    let known = c.datacenters();
    (!known.contains(&dc)).then(|| {
        format!(
            "datacenter \"{dc}\" is not in this node's view; known: {}\n",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    })
}

/// The answer to a cluster request from the snapshot: (status, content type, body).
/// `since`: when the current run of asking began ([`Demand::ask`](crate::status::store::Demand::ask)); an older view is
/// not used.
pub fn answer(
    q: &Query,
    snap: &crate::status::model::Snapshot,
    since: u64,
) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if snap.cluster.is_some() && !fresh(snap, since) {
        return (
            503,
            TEXT,
            format!(
                "not ready: no cluster view read in the last {} s (is check= longer?)\n",
                FRESH_WAIT.as_secs()
            ),
        );
    }
    if let Some(text) = snap.cluster.as_ref().and_then(|c| unknown_dc(q, c)) {
        return (400, TEXT, text);
    }
    match q.what {
        What::Ready | What::Dc => match ready(q, snap) {
            Ok(text) => (200, TEXT, format!("ready: {text}\n")),
            Err(text) => (503, TEXT, format!("not ready: {text}\n")),
        },
        What::View => match &snap.cluster {
            Some(c) => (
                200,
                "application/json",
                view(c, q.cl.unwrap_or(Cl::LocalQuorum)),
            ),
            None => (
                503,
                TEXT,
                "no cluster view: not Cassandra, or its MBeans are not readable yet\n".into(),
            ),
        },
    }
}

/// The `/cluster` body: the nodes, the level `cl` in full, and every
/// level's verdicts.
fn view(c: &ClusterView, cl: Cl) -> String {
    let summary: Vec<serde_json::Value> = c
        .levels
        .iter()
        .map(|l| {
            serde_json::json!({
                "cl": l.cl,
                "available": l.available,
                "available_why": l.available_why,
                "safe_to_stop": l.safe_to_stop,
                "why": l.why,
            })
        })
        .collect();
    let body = serde_json::json!({
        "local": c.local,
        "local_dc": c.local_dc,
        "read_unix_ms": c.read_unix_ms,
        "read_ms": c.read_ms,
        "nodes": c.nodes,
        "cl": cl,
        "availability": c.level(cl),
        "levels": summary,
        "errors": c.errors,
    });
    let text =
        serde_json::to_string_pretty(&body).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text + "\n"
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// Prometheus lines for the view, empty when there is none.
pub fn metrics(snap: &crate::status::model::Snapshot) -> String {
    let Some(c) = &snap.cluster else {
        return String::new();
    };
    let mut m = node_counts(c);
    m += &ranges_below(c);
    m += &level_gauge(
        c,
        "cqlready_cluster_available",
        "1 when every range has the level now, 0 when not; absent when unknown.",
        |l| l.available,
    );
    m += &level_gauge(
        c,
        "cqlready_cluster_safe_to_stop",
        "1 when stopping this node keeps every range at the level, 0 when not; absent when unknown.",
        |l| l.safe_to_stop,
    );
    m
}

/// `cqlready_cluster_nodes`: the view's nodes by status and state.
fn node_counts(c: &ClusterView) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# HELP cqlready_cluster_nodes Nodes in this node's view by status and state.\n# TYPE cqlready_cluster_nodes gauge"
    );
    let mut counts: Vec<((&str, &str), usize)> = Vec::new();
    for n in &c.nodes {
        let key = (n.status.as_str(), n.state.as_str());
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v += 1,
            None => counts.push((key, 1)),
        }
    }
    counts.sort();
    for ((status, state), v) in counts {
        let _ = writeln!(
            m,
            "cqlready_cluster_nodes{{status=\"{}\",state=\"{}\"}} {v}",
            label(status),
            label(state)
        );
    }
    m
}

/// `cqlready_cluster_ranges_below`: per keyspace and level, where known.
fn ranges_below(c: &ClusterView) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# HELP cqlready_cluster_ranges_below Token ranges with fewer live replicas than the consistency level needs.\n# TYPE cqlready_cluster_ranges_below gauge"
    );
    for l in &c.levels {
        for k in &l.keyspaces {
            if let Some(below) = k.below {
                let _ = writeln!(
                    m,
                    "cqlready_cluster_ranges_below{{keyspace=\"{}\",cl=\"{}\"}} {below}",
                    label(&k.keyspace),
                    l.cl.as_str()
                );
            }
        }
    }
    m
}

/// A 0/1 gauge per level, absent for a level where `value` is unknown.
fn level_gauge(
    c: &ClusterView,
    name: &str,
    help: &str,
    value: impl Fn(&Level) -> Option<bool>,
) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} gauge");
    for l in &c.levels {
        if let Some(v) = value(l) {
            let _ = writeln!(m, "{name}{{cl=\"{}\"}} {}", l.cl.as_str(), u8::from(v));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::{Snapshot, State};
    use crate::status::view::{Node, UNKNOWN};

    fn node(a: &str, status: &str, state: &str, local: bool) -> Node {
        Node {
            address: a.into(),
            dc: "dc1".into(),
            rack: "r1".into(),
            status: status.into(),
            state: state.into(),
            release_version: "5.0.9".into(),
            local,
        }
    }

    fn snap(nodes: Vec<Node>) -> Snapshot {
        let mut s = Snapshot::new(1, Default::default());
        s.state = State::Ready;
        s.cluster = Some(ClusterView {
            local: Some("127.0.0.1".into()),
            nodes,
            read_mono_ms: 10,
            ..ClusterView::default()
        });
        s
    }

    #[test]
    fn queries() {
        assert_eq!(request("/status", None), None);
        assert_eq!(request("/ready", None), None);
        assert_eq!(request("/ready", Some("wait=1s")), None);
        assert_eq!(request("/ready", Some("scope=node&wait=1s")), None);
        let q = request("/ready", Some("scope=cluster&wait=2s"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (q.what, q.wait),
            (What::Ready, Some(Duration::from_secs(2)))
        );
        let e = request("/ready", Some("scope=galaxy"))
            .unwrap()
            .unwrap_err();
        assert!(e.contains("node, cluster, dc"), "{e}");
        let q = request("/ready", Some("scope=cluster&cl=each_quorum&wait=1s"))
            .unwrap()
            .unwrap();
        assert_eq!((q.what, q.cl), (What::Ready, Some(Cl::EachQuorum)));
        let q = request("/ready", Some("scope=dc&dc=dc2")).unwrap().unwrap();
        assert_eq!((q.what, q.dc.as_deref()), (What::Dc, Some("dc2")));
        let q = request("/cluster", None).unwrap().unwrap();
        assert_eq!(q.cl, None, "LOCAL_QUORUM is shown when none is asked");
        let q = request("/cluster", Some("cl=quorum")).unwrap().unwrap();
        assert_eq!(q.cl, Some(Cl::Quorum));
        for (path, bad, says) in [
            ("/cluster", "cl=ANY", "is not one of ONE, TWO"),
            ("/cluster", "wait=1s", "accepted: cl=LEVEL"),
            ("/cluster", "cl", "is not key=value"),
            ("/cluster", "x=1", "unknown query parameter \"x\""),
            (
                "/ready",
                "scope=cluster&wait=soon",
                "wait= takes a duration",
            ),
            ("/ready", "scope=cluster&cl=SERIAL", "is not one of ONE"),
            (
                "/ready",
                "scope=cluster&cl=ONE&cl=ALL",
                "\"cl\" given twice",
            ),
            (
                "/ready",
                "scope=dc&cl=ONE",
                "accepted: scope=node|cluster|dc, dc=NAME",
            ),
            (
                "/ready",
                "scope=cluster&dc=dc1",
                "cl=LEVEL (scope=cluster only)",
            ),
            ("/ready", "scope=dc&dc=", "dc= takes a datacenter name"),
        ] {
            let e = request(path, Some(bad)).unwrap().unwrap_err();
            assert!(e.contains(says), "{path}?{bad}: {e}");
        }
    }

    /// A view of two datacenters: dc1 with this node and a DOWN one, dc2 all UP.
    fn two_dcs() -> Snapshot {
        let mut s = snap(vec![
            node("127.0.0.1", "UP", "NORMAL", true),
            node("127.0.0.2", "DOWN", "NORMAL", false),
            Node {
                dc: "dc2".into(),
                ..node("127.0.0.4", "UP", "NORMAL", false)
            },
        ]);
        if let Some(c) = s.cluster.as_mut() {
            c.local_dc = Some("dc1".into());
            c.levels = vec![
                Level {
                    cl: Cl::LocalQuorum,
                    keyspaces: vec![],
                    available: Some(true),
                    available_why: "every range of 1 keyspace(s) has LOCAL_QUORUM".into(),
                    safe_to_stop: Some(false),
                    why: "ks: range (1, 2] would have 1 of 3 live replicas in dc1 (127.0.0.3), 2 needed".into(),
                },
                Level {
                    cl: Cl::EachQuorum,
                    keyspaces: vec![],
                    available: None,
                    available_why: "ks: boom".into(),
                    safe_to_stop: None,
                    why: "ks: boom".into(),
                },
            ];
        }
        s
    }

    #[test]
    fn gates_per_level_and_datacenter() {
        let s = two_dcs();
        let m = metrics(&s);
        for line in [
            "cqlready_cluster_available{cl=\"LOCAL_QUORUM\"} 1",
            "cqlready_cluster_safe_to_stop{cl=\"LOCAL_QUORUM\"} 0",
        ] {
            assert!(m.lines().any(|l| l == line), "{line}: {m}");
        }
        assert!(!m.contains("EACH_QUORUM"), "unknown is absent: {m}");
        let ask = |query: &str| {
            let q = request("/ready", Some(query)).unwrap().unwrap();
            let (code, _, body) = answer(&q, &s, 0);
            (code, body)
        };
        for (query, code, says) in [
            ("scope=cluster", 503, "127.0.0.2 DOWN NORMAL"),
            (
                "scope=cluster&cl=LOCAL_QUORUM",
                200,
                "ready: every range of 1 keyspace(s) has LOCAL_QUORUM",
            ),
            (
                "scope=cluster&cl=EACH_QUORUM",
                503,
                "not ready: cannot tell: ks: boom",
            ),
            (
                "scope=cluster&cl=ONE",
                503,
                "cannot tell: no ONE in the view",
            ),
            ("scope=dc", 503, "127.0.0.2 DOWN NORMAL"),
            (
                "scope=dc&dc=dc2",
                200,
                "ready: 1 nodes of dc2 UP and NORMAL",
            ),
            (
                "scope=dc&dc=dc9",
                400,
                "datacenter \"dc9\" is not in this node's view; known: dc1, dc2",
            ),
        ] {
            let (got, body) = ask(query);
            assert_eq!(got, code, "{query}: {body}");
            assert!(body.contains(says), "{query}: {body}");
        }
        let mut starting = s.clone();
        starting.state = State::Starting;
        let q = request("/ready", Some("scope=cluster&cl=LOCAL_QUORUM"))
            .unwrap()
            .unwrap();
        assert_eq!(
            answer(&q, &starting, 0).0,
            503,
            "this node must be ready too"
        );
        let mut lost = s.clone();
        if let Some(c) = lost.cluster.as_mut() {
            c.local_dc = None;
        }
        let q = request("/ready", Some("scope=dc")).unwrap().unwrap();
        let (code, _, body) = answer(&q, &lost, 0);
        assert_eq!(
            (code, body.as_str()),
            (503, "not ready: this node's datacenter is unknown\n")
        );
    }

    #[test]
    fn the_gate_names_who_is_not_up() {
        let s = snap(vec![
            node("127.0.0.1", "DOWN", "NORMAL", false),
            node("127.0.0.2", "UP", "NORMAL", true),
            node("127.0.0.3", "UP", "NORMAL", false),
        ]);
        let q = request("/ready", Some("scope=cluster")).unwrap().unwrap();
        let (code, _, body) = answer(&q, &s, 0);
        assert_eq!(code, 503);
        assert!(body.contains("127.0.0.1 DOWN NORMAL"), "{body}");
        assert!(!body.contains("127.0.0.2"), "{body}");
        let s = snap(vec![
            node("127.0.0.1", "UP", "NORMAL", false),
            node("127.0.0.2", "UP", "NORMAL", true),
        ]);
        assert_eq!(answer(&q, &s, 0).0, 200);
        let mut joining = s.clone();
        if let Some(c) = joining.cluster.as_mut() {
            c.nodes[0].state = UNKNOWN.into();
        }
        let (code, _, body) = answer(&q, &joining, 0);
        assert_eq!(code, 503, "unknown is not NORMAL");
        assert!(body.contains("127.0.0.1 UP unknown"), "{body}");
    }

    #[test]
    fn never_a_false_all_up() {
        let q = request("/ready", Some("scope=cluster")).unwrap().unwrap();
        let empty = snap(vec![]);
        let (code, _, body) = answer(&q, &empty, 0);
        assert_eq!(code, 503);
        assert!(body.contains("no nodes could be read"), "{body}");
        let mut none = snap(vec![]);
        none.cluster = None;
        assert_eq!(answer(&q, &none, 0).0, 503);
        let mut starting = snap(vec![node("127.0.0.1", "UP", "NORMAL", true)]);
        assert_eq!(answer(&q, &starting, 0).0, 200);
        starting.state = State::Starting;
        let (code, _, body) = answer(&q, &starting, 0);
        assert_eq!(code, 503);
        assert!(body.contains("this node is starting"), "{body}");
        let mut lost = snap(vec![node("127.0.0.1", "UP", "NORMAL", true)]);
        if let Some(c) = lost.cluster.as_mut() {
            c.local = None;
        }
        assert_eq!(answer(&q, &lost, 0).0, 503);
    }

    #[test]
    fn freshness_and_settling() {
        let s = snap(vec![node("127.0.0.1", "UP", "NORMAL", true)]);
        let mut s = s;
        s.cassandra = Some(Default::default());
        assert!(fresh(&s, 10));
        assert!(!fresh(&s, 11), "read before this run of asking");
        let stale = answer(&request("/cluster", None).unwrap().unwrap(), &s, 11);
        assert_eq!(stale.0, 503, "a stale view is not served");
        let q = request("/ready", Some("scope=cluster&wait=5s"))
            .unwrap()
            .unwrap();
        assert!(settled(&q, &s, 5));
        if let Some(c) = s.cluster.as_mut() {
            c.nodes[0].status = "DOWN".into();
        }
        assert!(!settled(&q, &s, 5), "with wait=, until the gate holds");
        let q = request("/ready", Some("scope=cluster")).unwrap().unwrap();
        assert!(settled(&q, &s, 5), "without wait=, a fresh view is enough");
        assert_eq!(deadline(&q), FRESH_WAIT);
    }

    #[test]
    fn node_counts_in_metrics() {
        let s = snap(vec![
            node("127.0.0.1", "DOWN", "NORMAL", false),
            node("127.0.0.2", "UP", "NORMAL", true),
            node("127.0.0.3", "UP", "NORMAL", false),
        ]);
        let m = metrics(&s);
        assert!(
            m.lines()
                .any(|l| l == "cqlready_cluster_nodes{status=\"UP\",state=\"NORMAL\"} 2"),
            "{m}"
        );
        assert!(metrics(&Snapshot::new(1, Default::default())).is_empty());
    }
}
