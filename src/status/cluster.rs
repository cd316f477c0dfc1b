//! The cluster view as the snapshot carries it, and its renderings: the
//! `/cluster` and `/ready?scope=cluster` answers (pure functions of the
//! snapshot and the query), the `/metrics` lines and the `nodetool
//! status`-like table of `cqlready status --cluster`.
//!
//! The view is read by `cassandra::cluster` at the check period only while
//! someone asked for it within [`DEMAND`] (or `cluster=on`): [`ask`] records
//! the asking, [`wanted`] tells the reader. An answer is given only from a
//! view read after the current run of asking began, so a view left over
//! from an hour ago is never served as today's.
//!
//! Anything that could not be read is `"unknown"`, and unknown never counts
//! as UP, NORMAL or live.

use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What could not be read.
pub const UNKNOWN: &str = "unknown";

/// How long after the last ask the view keeps being read.
pub const DEMAND: Duration = Duration::from_secs(60);
/// The longest a request waits for a first fresh view after idling.
pub const FRESH_WAIT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cl {
    One,
    Quorum,
    LocalQuorum,
    All,
}

impl Cl {
    pub const LEVELS: [Cl; 4] = [Cl::One, Cl::Quorum, Cl::LocalQuorum, Cl::All];
    pub const ACCEPTED: &'static str = "ONE, QUORUM, LOCAL_QUORUM, ALL";

    pub fn as_str(self) -> &'static str {
        match self {
            Cl::One => "ONE",
            Cl::Quorum => "QUORUM",
            Cl::LocalQuorum => "LOCAL_QUORUM",
            Cl::All => "ALL",
        }
    }

    /// Case-insensitive; anything else is an error naming the accepted values.
    pub fn parse(v: &str) -> Result<Cl, String> {
        Cl::LEVELS
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(v))
            .ok_or_else(|| {
                format!(
                    "consistency level \"{}\" is not one of {}",
                    crate::text::sanitize(v),
                    Cl::ACCEPTED
                )
            })
    }
}

/// One node as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub address: String,
    pub dc: String,
    pub rack: String,
    /// UP, DOWN or unknown.
    pub status: String,
    /// NORMAL, JOINING, LEAVING, MOVING or unknown.
    pub state: String,
    pub release_version: String,
    /// This node.
    pub local: bool,
}

impl Node {
    pub fn up_normal(&self) -> bool {
        self.status == "UP" && self.state == "NORMAL"
    }
}

/// A token range and its replicas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// `(start, end]`.
    pub start: String,
    pub end: String,
    pub replicas: Vec<String>,
    /// The replicas counted live (for safe-to-stop: without this node).
    pub live: Vec<String>,
    /// Live replicas the consistency level needs.
    pub needed: usize,
}

/// One keyspace at one consistency level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyspaceLevel {
    pub keyspace: String,
    /// `None`: the ranges could not be read (see `error`).
    pub ranges: Option<usize>,
    /// Ranges with fewer live replicas than the level needs, now.
    pub below: Option<usize>,
    /// The same, counting this node as gone.
    pub below_if_stopped: Option<usize>,
    /// A few of each, to name them.
    pub examples: Vec<Gap>,
    pub stop_examples: Vec<Gap>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub cl: Cl,
    pub keyspaces: Vec<KeyspaceLevel>,
    /// Whether stopping this node keeps every range at this level;
    /// `None` when that cannot be known (see `why`).
    pub safe_to_stop: Option<bool>,
    pub why: String,
}

/// The cluster as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    pub read_unix_ms: u64,
    /// How long the MBean reads took.
    pub read_ms: f64,
    /// This node's address, when it could be told apart.
    pub local: Option<String>,
    pub local_dc: Option<String>,
    pub nodes: Vec<Node>,
    pub levels: Vec<Level>,
    /// What could not be read.
    pub errors: Vec<String>,
    /// When it was read, on [`mono_ms`]'s clock (not serialised).
    #[serde(skip)]
    pub read_mono_ms: u64,
}

impl ClusterView {
    pub fn level(&self, cl: Cl) -> Option<&Level> {
        self.levels.iter().find(|l| l.cl == cl)
    }

    /// The nodes that keep the cluster gate shut, as text; empty when all
    /// are UP and NORMAL and the list could be read.
    pub fn not_ready(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !n.up_normal())
            .map(|n| format!("{} {} {}", n.address, n.status, n.state))
            .collect();
        if self.nodes.is_empty() {
            out.push("no nodes could be read".into());
        }
        if self.local.is_none() {
            out.push("this node is not in its own view".into());
        }
        out.extend(
            self.errors
                .iter()
                .filter(|e| e.starts_with("nodes:"))
                .cloned(),
        );
        out
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds on a monotonic clock private to this process, from 1.
pub fn mono_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

static LAST_ASK: AtomicU64 = AtomicU64::new(0);
static RUN_START: AtomicU64 = AtomicU64::new(0);
static ALWAYS: AtomicBool = AtomicBool::new(false);

/// `cluster=on`: read the view at every check.
pub fn always() {
    ALWAYS.store(true, Ordering::Relaxed);
}

/// Someone asks for the view now; returns when the current run of asking
/// began (views read before it are stale).
pub fn ask() -> u64 {
    let now = mono_ms();
    let last = LAST_ASK.swap(now, Ordering::AcqRel);
    if ALWAYS.load(Ordering::Relaxed) {
        return 0;
    }
    if last == 0 || now.saturating_sub(last) > DEMAND.as_millis() as u64 {
        RUN_START.store(now, Ordering::Release);
        now
    } else {
        RUN_START.load(Ordering::Acquire)
    }
}

/// Whether the reader should read the view at this check.
pub fn wanted() -> bool {
    if ALWAYS.load(Ordering::Relaxed) {
        return true;
    }
    let last = LAST_ASK.load(Ordering::Acquire);
    last != 0 && mono_ms().saturating_sub(last) <= DEMAND.as_millis() as u64
}

/// What a cluster request asks.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub what: What,
    pub cl: Cl,
    pub wait: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// `GET /cluster`
    View,
    /// `GET /ready?scope=cluster`
    Ready,
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
        "/ready" => {
            let scope = query?.split('&').find_map(|p| p.strip_prefix("scope="))?;
            if scope == "node" {
                return None;
            }
            What::Ready
        }
        _ => return None,
    };
    Some(parse_query(what, query))
}

fn parse_query(what: What, query: Option<&str>) -> Result<Query, String> {
    let mut q = Query {
        what,
        cl: Cl::LocalQuorum,
        wait: None,
    };
    let accepted = match what {
        What::View => "cl=ONE|QUORUM|LOCAL_QUORUM|ALL",
        What::Ready => "scope=node|cluster, wait=DURATION",
    };
    for (k, v) in pairs(query)? {
        match (what, k) {
            (What::View, "cl") => q.cl = Cl::parse(v)?,
            (What::Ready, "scope") if v == "cluster" => {}
            (What::Ready, "scope") => {
                return Err(format!(
                    "scope=\"{}\" is not one of node, cluster",
                    crate::text::sanitize(v)
                ))
            }
            (What::Ready, "wait") => {
                let d = crate::text::parse_duration(v)
                    .ok_or("wait= takes a duration like 500ms or 30s")?;
                q.wait = Some(d.min(crate::status::routes::MAX_WAIT));
            }
            _ => {
                return Err(format!(
                    "unknown query parameter \"{}\"; accepted: {accepted}",
                    crate::text::sanitize(k)
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
    q.wait.is_none() || snap.state == crate::status::model::State::Stopping || ready(snap).is_ok()
}

/// The cluster gate: this node ready, and every node in its view UP and
/// NORMAL. `Err` names what is not.
pub fn ready(snap: &crate::status::model::Snapshot) -> Result<String, String> {
    use crate::status::model::State;
    let mut not = Vec::new();
    if snap.state != State::Ready {
        not.push(format!("this node is {}", snap.state.as_str()));
    }
    match &snap.cluster {
        None => not.push("no cluster view (not Cassandra, or not read yet)".into()),
        Some(c) => not.extend(c.not_ready()),
    }
    match (&snap.cluster, not.is_empty()) {
        (Some(c), true) => Ok(format!("{} nodes UP and NORMAL", c.nodes.len())),
        _ => Err(not.join("; ")),
    }
}

/// The answer to a cluster request from the snapshot: (status, content type, body).
/// `since`: when the current run of asking began ([`ask`]); an older view is
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
    match q.what {
        What::Ready => match ready(snap) {
            Ok(text) => (200, TEXT, format!("ready: {text}\n")),
            Err(text) => (503, TEXT, format!("not ready: {text}\n")),
        },
        What::View => {
            let Some(c) = &snap.cluster else {
                return (
                    503,
                    TEXT,
                    "no cluster view: not Cassandra, or its MBeans are not readable yet\n".into(),
                );
            };
            let body = serde_json::json!({
                "local": c.local,
                "local_dc": c.local_dc,
                "read_unix_ms": c.read_unix_ms,
                "read_ms": c.read_ms,
                "nodes": c.nodes,
                "cl": q.cl,
                "availability": c.level(q.cl),
                "errors": c.errors,
            });
            let text = serde_json::to_string_pretty(&body)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            (200, "application/json", text + "\n")
        }
    }
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
    let _ = writeln!(
        m,
        "# HELP cqlready_cluster_safe_to_stop 1 when stopping this node keeps every range at the level, 0 when not; absent when unknown.\n# TYPE cqlready_cluster_safe_to_stop gauge"
    );
    for l in &c.levels {
        if let Some(safe) = l.safe_to_stop {
            let _ = writeln!(
                m,
                "cqlready_cluster_safe_to_stop{{cl=\"{}\"}} {}",
                l.cl.as_str(),
                u8::from(safe)
            );
        }
    }
    m
}

/// `nodetool status`-like lines: one per node, grouped by datacenter.
pub fn table(nodes: &[Node]) -> String {
    let mut dcs: Vec<&str> = nodes.iter().map(|n| n.dc.as_str()).collect();
    dcs.sort_unstable();
    dcs.dedup();
    let mut out = String::new();
    for dc in dcs {
        let _ = writeln!(out, "Datacenter: {dc}\nStatus=Up/Down/?(unknown) State=Normal/Leaving/Joining/Moving/?(unknown)");
        let _ = writeln!(out, "--  {:<40} {:<12} Release", "Address", "Rack");
        for n in nodes.iter().filter(|n| n.dc == dc) {
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
            let _ = writeln!(out, "{}", line.trim_end());
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

/// A `/cluster` answer as text: the node table, then the keyspaces.
pub fn render(body: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not a cluster view: {e}"))?;
    let nodes: Vec<Node> = serde_json::from_value(v.get("nodes").cloned().unwrap_or_default())
        .map_err(|e| format!("not a cluster view: {e}"))?;
    let mut out = table(&nodes);
    if let Some(level) = v
        .get("availability")
        .and_then(|l| serde_json::from_value::<Level>(l.clone()).ok())
    {
        for k in &level.keyspaces {
            let n = |v: Option<usize>| v.map_or_else(|| UNKNOWN.to_string(), |v| v.to_string());
            let _ = writeln!(
                out,
                "keyspace {}: {} ranges, {} below {}, {} if this node stops{}",
                k.keyspace,
                n(k.ranges),
                n(k.below),
                level.cl.as_str(),
                n(k.below_if_stopped),
                k.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "safe to stop at {}: {} ({})",
            level.cl.as_str(),
            match level.safe_to_stop {
                Some(true) => "yes",
                Some(false) => "no",
                None => UNKNOWN,
            },
            level.why
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
    use crate::status::model::{Snapshot, State};

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
    fn levels_parse_and_refuse() {
        assert_eq!(Cl::parse("local_quorum"), Ok(Cl::LocalQuorum));
        assert_eq!(Cl::parse("ALL"), Ok(Cl::All));
        let e = Cl::parse("TWO").unwrap_err();
        assert!(e.contains("ONE, QUORUM, LOCAL_QUORUM, ALL"), "{e}");
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
        assert!(e.contains("node, cluster"), "{e}");
        let e = request("/ready", Some("scope=cluster&cl=ONE"))
            .unwrap()
            .unwrap_err();
        assert!(e.contains("unknown query parameter \"cl\""), "{e}");
        let q = request("/cluster", None).unwrap().unwrap();
        assert_eq!(q.cl, Cl::LocalQuorum, "the default level");
        let q = request("/cluster", Some("cl=quorum")).unwrap().unwrap();
        assert_eq!(q.cl, Cl::Quorum);
        for bad in ["cl=TWO", "wait=1s", "cl", "x=1"] {
            assert!(request("/cluster", Some(bad)).unwrap().is_err(), "{bad}");
        }
        assert!(request("/ready", Some("scope=cluster&wait=soon"))
            .unwrap()
            .is_err());
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
    fn demand_runs() {
        let since = ask();
        assert!(wanted());
        assert_eq!(
            ask(),
            since,
            "asking again within the window keeps its start"
        );
    }

    #[test]
    fn metrics_and_table() {
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
        let q = request("/cluster", Some("cl=ALL")).unwrap().unwrap();
        let (code, _, body) = answer(&q, &s, 0);
        assert_eq!(code, 200);
        let text = render(&body).unwrap();
        assert!(text.contains("DN  127.0.0.1"), "{text}");
        assert!(verdict(&body).is_err(), "no levels in this view: {body}");
        assert!(verdict("nope").is_err());
        let t = table(&s.cluster.unwrap().nodes);
        assert!(t.contains("DN  127.0.0.1"), "{t}");
        assert!(t.contains("(this node)"), "{t}");
    }
}
