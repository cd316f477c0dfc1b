//! The cluster view: the types `cassandra::cluster` builds from the MBeans,
//! the snapshot carries and `/cluster` serialises (nodes, consistency
//! levels, keyspaces and their ranges below a level), and the clock its
//! freshness is measured on.
//!
//! Anything that could not be read is `"unknown"`, and unknown never counts
//! as UP, NORMAL or live.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::Instant;

/// What could not be read.
pub const UNKNOWN: &str = "unknown";

/// A consistency level, as Cassandra counts it for `Unavailable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cl {
    One,
    Two,
    Three,
    Quorum,
    All,
    LocalOne,
    LocalQuorum,
    EachQuorum,
}

impl Cl {
    pub const LEVELS: [Cl; 8] = [
        Cl::One,
        Cl::Two,
        Cl::Three,
        Cl::Quorum,
        Cl::All,
        Cl::LocalOne,
        Cl::LocalQuorum,
        Cl::EachQuorum,
    ];
    pub const ACCEPTED: &'static str =
        "ONE, TWO, THREE, QUORUM, ALL, LOCAL_ONE, LOCAL_QUORUM, EACH_QUORUM";

    pub fn as_str(self) -> &'static str {
        match self {
            Cl::One => "ONE",
            Cl::Two => "TWO",
            Cl::Three => "THREE",
            Cl::Quorum => "QUORUM",
            Cl::All => "ALL",
            Cl::LocalOne => "LOCAL_ONE",
            Cl::LocalQuorum => "LOCAL_QUORUM",
            Cl::EachQuorum => "EACH_QUORUM",
        }
    }

    /// Whether only this node's datacenter counts.
    pub fn local(self) -> bool {
        matches!(self, Cl::LocalOne | Cl::LocalQuorum)
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

/// A token range below a level: its replicas of the group the level counts
/// (the whole ring, or one datacenter) and the live ones among them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// `(start, end]`.
    pub start: String,
    pub end: String,
    /// The datacenter the level counts in; `None`: every replica counts.
    #[serde(default)]
    pub dc: Option<String>,
    pub replicas: Vec<String>,
    /// The replicas counted live (for safe-to-stop: without this node).
    pub live: Vec<String>,
    /// Live replicas the consistency level needs.
    pub needed: usize,
}

impl Gap {
    /// "range (a, b] would have 1 of 3 live replicas in dc1 (127.0.0.3), 2 needed";
    /// `verb` is "has" (now) or "would have" (without this node).
    pub fn describe(&self, verb: &str) -> String {
        format!(
            "range ({}, {}] {verb} {} of {} live replicas{} ({}), {} needed",
            self.start,
            self.end,
            self.live.len(),
            self.replicas.len(),
            self.dc
                .as_deref()
                .map(|d| format!(" in {d}"))
                .unwrap_or_default(),
            if self.live.is_empty() {
                "none".to_string()
            } else {
                self.live.join(", ")
            },
            self.needed
        )
    }
}

/// One keyspace at one consistency level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyspaceLevel {
    pub keyspace: String,
    /// Its replication as Cassandra gives it (`NetworkTopologyStrategy {dc1=3, dc2=2}`).
    #[serde(default)]
    pub replication: Option<String>,
    /// `None`: the ranges could not be read (see `error`).
    pub ranges: Option<usize>,
    /// Ranges with fewer live replicas than the level needs, now.
    pub below: Option<usize>,
    /// The same, counting this node as gone.
    pub below_if_stopped: Option<usize>,
    /// Per group the level counts (one per datacenter for EACH_QUORUM).
    #[serde(default)]
    pub groups: Vec<GroupBelow>,
    /// A few of each, to name them.
    pub examples: Vec<Gap>,
    pub stop_examples: Vec<Gap>,
    pub error: Option<String>,
}

/// One group a level counts in a keyspace: the whole ring or one
/// datacenter, the live replicas it needs, and its ranges below that.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupBelow {
    /// `None`: the whole ring.
    pub dc: Option<String>,
    pub needed: usize,
    pub below: usize,
    pub below_if_stopped: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub cl: Cl,
    pub keyspaces: Vec<KeyspaceLevel>,
    /// Whether every range of every keyspace has the level now; `None`
    /// when that cannot be known (see `available_why`).
    #[serde(default)]
    pub available: Option<bool>,
    #[serde(default)]
    pub available_why: String,
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
    /// are UP and NORMAL and the list could be read. With `dc`, only that
    /// datacenter's nodes count.
    pub fn not_ready(&self, dc: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| dc.is_none_or(|d| n.dc == d) && !n.up_normal())
            .map(|n| format!("{} {} {}", n.address, n.status, n.state))
            .collect();
        if !self.nodes.iter().any(|n| dc.is_none_or(|d| n.dc == d)) {
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

    /// The datacenters of the view's nodes, sorted.
    pub fn datacenters(&self) -> Vec<&str> {
        let mut dcs: Vec<&str> = self
            .nodes
            .iter()
            .map(|n| n.dc.as_str())
            .filter(|d| *d != UNKNOWN)
            .collect();
        dcs.sort_unstable();
        dcs.dedup();
        dcs
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_refuse() {
        assert_eq!(Cl::parse("local_quorum"), Ok(Cl::LocalQuorum));
        assert_eq!(Cl::parse("ALL"), Ok(Cl::All));
        assert_eq!(Cl::parse("each_quorum"), Ok(Cl::EachQuorum));
        for cl in Cl::LEVELS {
            assert_eq!(Cl::parse(cl.as_str()), Ok(cl));
        }
        let e = Cl::parse("ANY").unwrap_err();
        assert!(
            e.contains("ONE, TWO, THREE, QUORUM, ALL, LOCAL_ONE, LOCAL_QUORUM, EACH_QUORUM"),
            "{e}"
        );
    }
}
