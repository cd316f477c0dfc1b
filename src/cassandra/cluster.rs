//! The cluster as this node's Cassandra sees it, from its MBeans, and what
//! that means per consistency level.
//!
//! | MBean | read | for |
//! |---|---|---|
//! | `org.apache.cassandra.net:type=FailureDetector` | `AllEndpointStates` | every endpoint, its DC, rack, release version, host id, gossip STATUS |
//! | same | `SimpleStates` | UP/DOWN per endpoint |
//! | `org.apache.cassandra.db:type=StorageService` | `LiveNodes`, `UnreachableNodes` | UP/DOWN when `SimpleStates` is missing |
//! | same | `JoiningNodes`, `LeavingNodes`, `MovingNodes` | the ring state |
//! | same | `LocalHostId` | which endpoint is this node |
//! | same | `NonSystemKeyspaces`, `getRangeToEndpointMap(keyspace)` | token ranges and their replicas |
//!
//! The parsers take the `String.valueOf` text of those values (Cassandra 3.x
//! to 5.0 layouts, with or without ports). [`availability`] is pure: for
//! each level and keyspace, the ranges whose live replicas are fewer than
//! the level needs, now and counting this node as gone. Anything unreadable
//! is unknown, and unknown is never live.

use super::MBeans;
use crate::status::view::{Cl, ClusterView, Gap, GroupBelow, KeyspaceLevel, Level, Node, UNKNOWN};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

pub const FAILURE_DETECTOR: &str = "org.apache.cassandra.net:type=FailureDetector";
use super::STORAGE_SERVICE;

/// How often the token ranges are read again while the view is wanted
/// (they change with topology and schema, not with UP/DOWN, which is read
/// at every check).
pub const RANGES_EVERY: Duration = Duration::from_secs(10);
/// Ranges named per keyspace and level.
const EXAMPLES: usize = 3;

/// `localhost/127.0.0.1:7000`, `/127.0.0.1`, `[::1]:7000` -> the address alone.
pub fn address(text: &str) -> String {
    let t = text.trim();
    let t = t.rsplit('/').next().unwrap_or(t);
    if let Some(rest) = t.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    match t.matches(':').count() {
        1 => t.split(':').next().unwrap_or(t).to_string(),
        _ => t.to_string(),
    }
}

/// One endpoint of `AllEndpointStates`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gossip {
    pub address: String,
    pub dc: Option<String>,
    pub rack: Option<String>,
    pub release: Option<String>,
    pub host_id: Option<String>,
    /// The gossip STATUS's first word: NORMAL, BOOT, LEAVING, LEFT, shutdown, ...
    pub status: Option<String>,
}

/// Parses `FailureDetector.AllEndpointStates`: a header line per endpoint,
/// then indented `KEY:value` (3.x) or `KEY:version:value` (4.0+) lines.
pub fn endpoint_states(text: &str) -> Vec<Gossip> {
    let mut out: Vec<Gossip> = Vec::new();
    let mut with_port_status = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            out.push(Gossip {
                address: address(line),
                ..Gossip::default()
            });
            with_port_status = false;
            continue;
        }
        let Some(g) = out.last_mut() else { continue };
        let Some((key, rest)) = line.trim().split_once(':') else {
            continue;
        };
        let value = match rest.split_once(':') {
            Some((v, value)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => value,
            _ => rest,
        };
        let value = crate::text::sanitize(value.trim());
        match key {
            "DC" => g.dc = Some(value),
            "RACK" => g.rack = Some(value),
            "RELEASE_VERSION" => g.release = Some(value),
            "HOST_ID" => g.host_id = Some(value),
            "STATUS_WITH_PORT" | "STATUS" if !with_port_status => {
                with_port_status = key == "STATUS_WITH_PORT";
                g.status = value.split(',').next().map(str::to_string);
            }
            _ => {}
        }
    }
    out
}

/// Parses `String.valueOf` of a `List<String>`: `[a, b]`.
pub fn list(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("not a list: {}", crate::text::sanitize(short(text))))?;
    Ok(inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

/// Parses `String.valueOf` of a `Map<String, String>`: `{k=v, k=v}`.
pub fn map(text: &str) -> Result<Vec<(String, String)>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("not a map: {}", crate::text::sanitize(short(text))))?;
    inner
        .split(", ")
        .filter(|s| !s.trim().is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("not a map entry: {}", crate::text::sanitize(short(kv))))
        })
        .collect()
}

fn short(text: &str) -> &str {
    let end = text
        .char_indices()
        .nth(80)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    &text[..end]
}

/// A token range `(start, end]` and its replicas, as indexes into
/// [`Names`].
#[derive(Clone, Debug, PartialEq)]
pub struct Range {
    pub start: String,
    pub end: String,
    pub replicas: Vec<u32>,
}

/// Addresses by index, append-only, so that ranges read earlier stay valid.
#[derive(Clone, Debug, Default)]
pub struct Names {
    pub all: Vec<String>,
    index: HashMap<String, u32>,
}

impl Names {
    pub fn id(&mut self, addr: &str) -> u32 {
        if let Some(&i) = self.index.get(addr) {
            return i;
        }
        let i = self.all.len() as u32;
        self.all.push(addr.to_string());
        self.index.insert(addr.to_string(), i);
        i
    }

    pub fn get(&self, addr: &str) -> Option<u32> {
        self.index.get(addr).copied()
    }
}

/// Parses `getRangeToEndpointMap(keyspace)`:
/// `{[start, end]=[127.0.0.1, 127.0.0.2], ...}`.
pub fn range_map(text: &str, names: &mut Names) -> Result<Vec<Range>, String> {
    let bad = |at: &str| {
        format!(
            "not a range map near \"{}\"",
            crate::text::sanitize(short(at))
        )
    };
    let mut rest = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| bad(text))?
        .trim_start();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let body = rest.strip_prefix('[').ok_or_else(|| bad(rest))?;
        let (key, after) = body.split_once(']').ok_or_else(|| bad(rest))?;
        let (start, end) = key.split_once(", ").ok_or_else(|| bad(key))?;
        let after = after.strip_prefix("=[").ok_or_else(|| bad(after))?;
        let (replicas, after) = after.split_once(']').ok_or_else(|| bad(after))?;
        let replicas = replicas
            .split(", ")
            .filter(|r| !r.is_empty())
            .map(|r| names.id(&address(r)))
            .collect();
        out.push(Range {
            start: start.trim().to_string(),
            end: end.trim().to_string(),
            replicas,
        });
        rest = match after.strip_prefix(", ") {
            Some(r) => r,
            None if after.is_empty() => "",
            None => return Err(bad(after)),
        };
    }
    Ok(out)
}

/// A keyspace's replication, from `getKeyspaceReplicationInfo(keyspace)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// `SimpleStrategy`: the replication factor.
    Simple(usize),
    /// `NetworkTopologyStrategy`: each configured datacenter's factor (a
    /// datacenter with RF 0 included, as Cassandra keeps it).
    Network(Vec<(String, usize)>),
    /// `LocalStrategy`: every node keeps its own; no other node matters.
    Local,
}

impl Strategy {
    /// The replication factor Cassandra's QUORUM and ALL count.
    pub fn total(&self) -> usize {
        match self {
            Strategy::Simple(rf) => *rf,
            Strategy::Network(dcs) => dcs.iter().map(|(_, rf)| rf).sum(),
            Strategy::Local => 1,
        }
    }

    /// Cassandra's `localQuorumFor(dc)`: a datacenter's quorum under
    /// NetworkTopologyStrategy (an absent one has RF 0, so needs 1 it does
    /// not have), the whole quorum otherwise.
    pub fn quorum_in(&self, dc: &str) -> usize {
        match self {
            Strategy::Network(dcs) => {
                dcs.iter().find(|(d, _)| d == dc).map_or(0, |(_, rf)| *rf) / 2 + 1
            }
            _ => self.total() / 2 + 1,
        }
    }
}

/// A replication factor: `3`, or `3/1` (three replicas, one transient).
fn factor(v: &str) -> Option<usize> {
    v.split('/').next()?.trim().parse().ok()
}

/// Parses `getKeyspaceReplicationInfo(keyspace)`: the strategy's class name,
/// then its options, `NetworkTopologyStrategy {dc1=3, dc2=2}`.
pub fn replication(text: &str) -> Result<Strategy, String> {
    let bad = || {
        format!(
            "replication \"{}\" is not one this view can read (SimpleStrategy, NetworkTopologyStrategy or LocalStrategy with numeric factors)",
            crate::text::sanitize(short(text))
        )
    };
    let (class, options) = text.trim().split_once(' ').unwrap_or((text.trim(), "{}"));
    let options = map(options).map_err(|_| bad())?;
    let class = class.rsplit('.').next().unwrap_or(class);
    match class {
        "LocalStrategy" => Ok(Strategy::Local),
        "SimpleStrategy" => options
            .iter()
            .find(|(k, _)| k == "replication_factor")
            .and_then(|(_, v)| factor(v))
            .map(Strategy::Simple)
            .ok_or_else(bad),
        "NetworkTopologyStrategy" => options
            .iter()
            .map(|(dc, v)| match factor(v) {
                Some(rf) if dc != "replication_factor" => Ok((dc.clone(), rf)),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Strategy::Network),
        _ => Err(bad()),
    }
}

/// A keyspace as the view reads it: its replication and its ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyspace {
    pub strategy: Strategy,
    /// The replication as Cassandra gave it.
    pub replication: String,
    pub ranges: Vec<Range>,
}

/// What [`availability`] needs: per address index, whether it is live and
/// its datacenter; which index is this node; the keyspaces.
pub struct Ring<'a> {
    pub names: &'a [String],
    /// `Some(true)` only for a node seen UP.
    pub live: &'a [Option<bool>],
    pub dc: &'a [Option<String>],
    pub local: Option<u32>,
    pub local_dc: Option<&'a str>,
    pub keyspaces: &'a [(String, Result<Keyspace, String>)],
}

impl Ring<'_> {
    fn is_live(&self, i: u32) -> bool {
        self.live.get(i as usize).copied().flatten() == Some(true)
    }

    fn dc_of(&self, i: u32) -> Option<&str> {
        self.dc.get(i as usize).and_then(Option::as_deref)
    }

    fn name(&self, i: u32) -> String {
        self.names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| UNKNOWN.into())
    }
}

/// No datacenter (unknown): never counts in a datacenter's group.
const NO_DC: u16 = u16::MAX;
/// Not live (DOWN or unknown): never counts.
const DEAD: u16 = u16::MAX - 1;

/// The datacenters by index: the nodes' and the keyspaces' own.
struct Dcs {
    names: Vec<String>,
    /// Per address index.
    of: Vec<u16>,
    local: Option<u16>,
    /// This node's own datacenter, by its address.
    mine: Option<u16>,
    /// Per address index: its datacenter when live, else [`DEAD`] (one
    /// lookup per replica in the hot loop).
    live_dc: Vec<u16>,
}

impl Dcs {
    fn new(ring: &Ring<'_>) -> Dcs {
        let mut names: Vec<String> = Vec::new();
        let index = |d: &str, names: &mut Vec<String>| match names.iter().position(|n| n == d) {
            Some(i) => i as u16,
            None => {
                names.push(d.to_string());
                (names.len() - 1) as u16
            }
        };
        let of = (0..ring.names.len().max(ring.dc.len()) as u32)
            .map(|i| ring.dc_of(i).map_or(NO_DC, |d| index(d, &mut names)))
            .collect();
        for (_, ks) in ring.keyspaces {
            if let Ok(Keyspace {
                strategy: Strategy::Network(dcs),
                ..
            }) = ks
            {
                for (d, _) in dcs {
                    index(d, &mut names);
                }
            }
        }
        let local = ring.local_dc.map(|d| index(d, &mut names));
        let mut dcs = Dcs {
            names,
            of,
            local,
            mine: None,
            live_dc: Vec::new(),
        };
        dcs.mine = ring.local.map(|i| dcs.of(i)).filter(|&d| d != NO_DC);
        dcs.live_dc = (0..dcs.of.len() as u32)
            .map(|i| if ring.is_live(i) { dcs.of(i) } else { DEAD })
            .collect();
        dcs
    }

    fn of(&self, i: u32) -> u16 {
        self.of.get(i as usize).copied().unwrap_or(NO_DC)
    }

    fn name(&self, d: Option<u16>) -> Option<String> {
        d.and_then(|d| self.names.get(d as usize).cloned())
    }

    fn index(&self, d: &str) -> u16 {
        self.names
            .iter()
            .position(|n| n == d)
            .map_or(NO_DC, |i| i as u16)
    }
}

/// One count a level makes of a range's live replicas: in the whole ring
/// (`dc: None`) or in one datacenter, and how many it needs.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Need {
    dc: Option<u16>,
    needed: usize,
}

/// What `cl` counts for a keyspace, as Cassandra's `blockFor` and
/// `assureSufficientLiveReplicas` do.
fn needs(strategy: &Strategy, cl: Cl, dcs: &Dcs) -> Result<Vec<Need>, String> {
    let all = |needed| Ok(vec![Need { dc: None, needed }]);
    let total = strategy.total();
    if *strategy == Strategy::Local {
        return Ok(Vec::new());
    }
    let local = || {
        let d = dcs.local.ok_or("this node's datacenter is unknown")?;
        Ok::<_, String>((d, dcs.name(Some(d)).unwrap_or_default()))
    };
    match cl {
        Cl::One => all(1),
        Cl::Two => all(2),
        Cl::Three => all(3),
        Cl::Quorum => all(total / 2 + 1),
        Cl::All => all(total),
        Cl::LocalOne => Ok(vec![Need {
            dc: Some(local()?.0),
            needed: 1,
        }]),
        Cl::LocalQuorum => {
            let (d, name) = local()?;
            Ok(vec![Need {
                dc: Some(d),
                needed: strategy.quorum_in(&name),
            }])
        }
        Cl::EachQuorum => match strategy {
            Strategy::Network(per_dc) => Ok(per_dc
                .iter()
                .map(|(d, rf)| Need {
                    dc: Some(dcs.index(d)),
                    needed: rf / 2 + 1,
                })
                .collect()),
            _ => all(total / 2 + 1),
        },
    }
}

/// One range's live replicas, in all and per datacenter.
struct Counts {
    all: usize,
    /// Per datacenter index.
    dc: Vec<usize>,
    /// This node is a live replica of the range.
    self_live: bool,
}

impl Counts {
    fn fill(&mut self, ring: &Ring<'_>, dcs: &Dcs, replicas: &[u32]) {
        self.all = 0;
        self.self_live = false;
        self.dc.iter_mut().for_each(|c| *c = 0);
        for &i in replicas {
            match dcs.live_dc.get(i as usize).copied().unwrap_or(DEAD) {
                DEAD => {}
                d => {
                    self.all += 1;
                    if let Some(c) = self.dc.get_mut(d as usize) {
                        *c += 1;
                    }
                    self.self_live |= Some(i) == ring.local;
                }
            }
        }
    }

    /// The counts packed in one word (with a bit for whether any is set),
    /// or `None` when they do not fit (over 6 datacenters or 255 replicas).
    fn key(&self) -> Option<u64> {
        if self.dc.len() > 6 || self.all > 255 || self.dc.iter().any(|&c| c > 255) {
            return None;
        }
        let dcs = self.dc.iter().fold(0u64, |k, &c| k << 8 | c as u64);
        Some(1 << 63 | u64::from(self.self_live) << 56 | (self.all as u64) << 48 | dcs)
    }

    /// Live replicas for `need`; with `gone`, this node counted dead.
    fn live(&self, need: &Need, gone: bool, dcs: &Dcs) -> usize {
        let (n, mine) = match need.dc {
            None => (self.all, true),
            Some(d) => (
                self.dc.get(d as usize).copied().unwrap_or(0),
                dcs.mine == Some(d),
            ),
        };
        n.saturating_sub(usize::from(gone && mine && self.self_live))
    }
}

/// Whether ranges of given [`Counts::key`] pass every level: a small
/// direct-mapped table, per keyspace.
struct Memo([(u64, bool); 64]);

impl Default for Memo {
    fn default() -> Memo {
        Memo([(0, false); 64])
    }
}

impl Memo {
    fn passes(&mut self, key: Option<u64>, compute: impl FnOnce() -> bool) -> bool {
        let Some(key) = key else { return compute() };
        let slot = &mut self.0[(key ^ key >> 29) as usize % 64];
        if slot.0 != key {
            *slot = (key, compute());
        }
        slot.1
    }
}

/// The replicas of `need`'s group in a range, and the live ones.
fn gap(ring: &Ring<'_>, dcs: &Dcs, r: &Range, need: &Need, gone: bool) -> Gap {
    let group: Vec<u32> = r
        .replicas
        .iter()
        .copied()
        .filter(|&i| need.dc.is_none() || need.dc == Some(dcs.of(i)))
        .collect();
    Gap {
        start: r.start.clone(),
        end: r.end.clone(),
        dc: dcs.name(need.dc),
        replicas: group.iter().map(|&i| ring.name(i)).collect(),
        live: group
            .iter()
            .copied()
            .filter(|&i| ring.is_live(i) && !(gone && Some(i) == ring.local))
            .map(|i| ring.name(i))
            .collect(),
        needed: need.needed,
    }
}

/// One level's running totals over the keyspaces.
struct Acc {
    cl: Cl,
    keyspaces: Vec<KeyspaceLevel>,
    /// The first range below the level now, and without this node.
    below_now: Option<String>,
    below_stop: Option<String>,
    unknown: Option<String>,
}

impl Acc {
    fn new(cl: Cl, ring: &Ring<'_>, count: usize) -> Acc {
        Acc {
            cl,
            keyspaces: Vec::with_capacity(count),
            below_now: None,
            below_stop: None,
            unknown: if cl.local() && ring.local_dc.is_none() {
                Some("this node's datacenter is unknown".into())
            } else {
                None
            },
        }
    }

    fn unreadable(&mut self, name: &str, replication: Option<String>, e: &str) {
        self.unknown.get_or_insert_with(|| format!("{name}: {e}"));
        self.keyspaces.push(KeyspaceLevel {
            keyspace: name.to_string(),
            replication,
            ranges: None,
            below: None,
            below_if_stopped: None,
            groups: Vec::new(),
            examples: Vec::new(),
            stop_examples: Vec::new(),
            error: Some(e.to_string()),
        });
    }

    /// The level's verdicts: now, and without this node.
    fn finish(self, ring: &Ring<'_>) -> Level {
        let verdict =
            |below: Option<String>, unknown: Option<String>, verb: &str| match (below, unknown) {
                (Some(why), _) => (Some(false), why),
                (None, Some(why)) => (None, why),
                (None, None) => (
                    Some(true),
                    format!(
                        "every range of {} keyspace(s) {verb} {}",
                        self.keyspaces.len(),
                        self.cl.as_str()
                    ),
                ),
            };
        let (available, available_why) = verdict(self.below_now, self.unknown.clone(), "has");
        let unknown_stop = match ring.local {
            None => Some("this node is not in its own view".to_string()),
            Some(_) => self.unknown,
        };
        let (safe_to_stop, why) = verdict(self.below_stop, unknown_stop, "keeps without this node");
        Level {
            cl: self.cl,
            keyspaces: self.keyspaces,
            available,
            available_why,
            safe_to_stop,
            why,
        }
    }
}

/// Per level and keyspace: the ranges below the level now and with this
/// node gone, and whether stopping this node is safe. One pass over each
/// range's replicas serves all levels.
pub fn availability(ring: &Ring<'_>) -> Vec<Level> {
    let dcs = Dcs::new(ring);
    let mut accs: Vec<Acc> = Cl::LEVELS
        .iter()
        .map(|&cl| Acc::new(cl, ring, ring.keyspaces.len()))
        .collect();
    let mut counts = Counts {
        all: 0,
        dc: vec![0; dcs.names.len()],
        self_live: false,
    };
    for (name, ks) in ring.keyspaces {
        match ks {
            Ok(ks) => keyspace(ring, &dcs, name, ks, &mut accs, &mut counts),
            Err(e) => accs.iter_mut().for_each(|a| a.unreadable(name, None, e)),
        }
    }
    accs.into_iter().map(|a| a.finish(ring)).collect()
}

/// One keyspace's ranges at every level.
fn keyspace(
    ring: &Ring<'_>,
    dcs: &Dcs,
    name: &str,
    ks: &Keyspace,
    accs: &mut [Acc],
    counts: &mut Counts,
) {
    let levels = open_keyspace(ring, dcs, name, ks, accs);
    if ks.strategy != Strategy::Local {
        count_ranges(ring, dcs, ks, &levels, accs, counts);
    }
    for (i, _) in &levels {
        name_first_gap(name, &mut accs[*i]);
    }
}

/// Each level's entry for this keyspace, and the counts it needs (the
/// levels it can tell; a level it cannot is unknown there).
fn open_keyspace(
    ring: &Ring<'_>,
    dcs: &Dcs,
    name: &str,
    ks: &Keyspace,
    accs: &mut [Acc],
) -> Vec<(usize, Vec<Need>)> {
    let replication = Some(ks.replication.clone());
    let mut levels: Vec<(usize, Vec<Need>)> = Vec::with_capacity(accs.len());
    for (i, a) in accs.iter_mut().enumerate() {
        match needs(&ks.strategy, a.cl, dcs) {
            Ok(n) => {
                a.keyspaces.push(KeyspaceLevel {
                    keyspace: name.to_string(),
                    replication: replication.clone(),
                    ranges: Some(ks.ranges.len()),
                    below: Some(0),
                    below_if_stopped: ring.local.map(|_| 0),
                    groups: n
                        .iter()
                        .map(|n| GroupBelow {
                            dc: dcs.name(n.dc),
                            needed: n.needed,
                            below: 0,
                            below_if_stopped: 0,
                        })
                        .collect(),
                    examples: Vec::new(),
                    stop_examples: Vec::new(),
                    error: None,
                });
                levels.push((i, n));
            }
            Err(e) => a.unreadable(name, replication.clone(), &e),
        }
    }
    levels
}

/// Counts the keyspace's ranges below each of `levels`.
fn count_ranges(
    ring: &Ring<'_>,
    dcs: &Dcs,
    ks: &Keyspace,
    levels: &[(usize, Vec<Need>)],
    accs: &mut [Acc],
    counts: &mut Counts,
) {
    let mut memo = Memo::default();
    for r in &ks.ranges {
        counts.fill(ring, dcs, &r.replicas);
        // Most ranges have every level now and without this node; their
        // counts repeat, so that verdict is remembered by the counts.
        let key = counts.key();
        let passes = |c: &Counts| {
            let stop = ring.local.is_some();
            levels.iter().flat_map(|(_, n)| n).all(|n| {
                c.live(n, false, dcs) >= n.needed && (!stop || c.live(n, true, dcs) >= n.needed)
            })
        };
        if memo.passes(key, || passes(counts)) {
            continue;
        }
        for (i, n) in levels {
            range_at(ring, dcs, r, n, counts, &mut accs[*i]);
        }
    }
}

/// The level's first range below it (now, and without this node), named
/// with its keyspace, unless an earlier keyspace named one.
fn name_first_gap(name: &str, a: &mut Acc) {
    let Some(k) = a.keyspaces.last() else {
        return;
    };
    if let (Some(g), None) = (k.examples.first(), &a.below_now) {
        a.below_now = Some(format!("{name}: {}", g.describe("has")));
    }
    if let (Some(g), None) = (k.stop_examples.first(), &a.below_stop) {
        a.below_stop = Some(format!("{name}: {}", g.describe("would have")));
    }
}

/// One range at one level: counts it below now and without this node.
fn range_at(ring: &Ring<'_>, dcs: &Dcs, r: &Range, needs: &[Need], counts: &Counts, a: &mut Acc) {
    let Some(k) = a.keyspaces.last_mut() else {
        return;
    };
    let (mut now, mut stop) = (None, None);
    for (g, need) in needs.iter().enumerate() {
        if counts.live(need, false, dcs) < need.needed {
            k.groups[g].below += 1;
            now.get_or_insert(need);
        }
        if ring.local.is_some() && counts.live(need, true, dcs) < need.needed {
            k.groups[g].below_if_stopped += 1;
            stop.get_or_insert(need);
        }
    }
    if let Some(need) = now {
        k.below = k.below.map(|b| b + 1);
        if k.examples.len() < EXAMPLES {
            k.examples.push(gap(ring, dcs, r, need, false));
        }
    }
    if let Some(need) = stop {
        k.below_if_stopped = k.below_if_stopped.map(|b| b + 1);
        if k.stop_examples.len() < EXAMPLES {
            k.stop_examples.push(gap(ring, dcs, r, need, true));
        }
    }
}

/// The ring state of one endpoint: StorageService's lists first, else the
/// gossip STATUS. `None`: the endpoint has left the ring.
fn ring_state(g: &Gossip, lists: &Lists) -> Option<String> {
    let a = g.address.as_str();
    let listed = |l: &Option<Vec<String>>| l.as_ref().is_some_and(|l| l.iter().any(|x| x == a));
    if listed(&lists.joining) {
        return Some("JOINING".into());
    }
    if listed(&lists.leaving) {
        return Some("LEAVING".into());
    }
    if listed(&lists.moving) {
        return Some("MOVING".into());
    }
    let state = match g.status.as_deref() {
        Some("LEFT" | "removed") => return None,
        Some("NORMAL" | "shutdown") => "NORMAL",
        Some("BOOT" | "BOOT_REPLACE" | "hibernate") => "JOINING",
        Some("LEAVING" | "removing") => "LEAVING",
        Some("MOVING") => "MOVING",
        _ => UNKNOWN,
    };
    Some(state.into())
}

#[derive(Default)]
struct Lists {
    joining: Option<Vec<String>>,
    leaving: Option<Vec<String>>,
    moving: Option<Vec<String>>,
}

/// Whether a keyspace counts for availability: Cassandra's replicated
/// system keyspaces (`system_auth`, `system_distributed`, `system_traces`)
/// have a replication of their own (`system_traces` has RF=2, which would
/// make every stop unsafe at QUORUM) and are left out.
pub fn counted(keyspace: &str) -> bool {
    !keyspace.starts_with("system_")
}

/// Reads the view from the MBeans, keeping the ranges between reads.
#[derive(Default)]
pub struct Reader {
    names: Names,
    host_id: Option<String>,
    keyspaces: Vec<(String, Result<Keyspace, String>)>,
    ranges_at: Option<Instant>,
    ranges_key: Vec<String>,
}

fn text(m: &mut dyn MBeans, object: &str, attr: &str) -> Result<String, String> {
    texts(m, object, &[attr]).remove(0)
}

/// Several attributes of one object in one read (one object name, one
/// local frame): one result per attribute, in order.
fn texts(m: &mut dyn MBeans, object: &str, attrs: &[&str]) -> Vec<Result<String, String>> {
    match m.attributes(object, attrs) {
        Ok(values) => attrs
            .iter()
            .enumerate()
            .map(|(i, attr)| {
                values
                    .get(i)
                    .cloned()
                    .flatten()
                    .ok_or_else(|| format!("{attr} is missing"))
            })
            .collect(),
        Err(e) => attrs.iter().map(|_| Err(e.clone())).collect(),
    }
}

/// The failure detector's two attributes in one read: every endpoint's
/// gossip, and which are UP (from StorageService's lists when
/// `SimpleStates` is missing).
fn failure_detector(
    m: &mut dyn MBeans,
    errors: &mut Vec<String>,
) -> (Vec<Gossip>, HashMap<String, bool>) {
    let mut fd = texts(m, FAILURE_DETECTOR, &["AllEndpointStates", "SimpleStates"]).into_iter();
    let (states, simple) = (fd.next(), fd.next());
    let gossip = match states.unwrap_or_else(|| Err("not read".into())) {
        Ok(t) => endpoint_states(&t),
        Err(e) => {
            errors.push(format!(
                "nodes: AllEndpointStates: {}",
                crate::text::sanitize(&e)
            ));
            Vec::new()
        }
    };
    let mut up: HashMap<String, bool> = HashMap::new();
    match simple
        .unwrap_or_else(|| Err("not read".into()))
        .and_then(|t| map(&t))
    {
        Ok(states) => {
            for (k, v) in states {
                up.insert(address(&k), v == "UP");
            }
        }
        Err(e) => {
            up_from_lists(m, &mut up, errors);
            errors.push(format!("SimpleStates: {}", crate::text::sanitize(&e)));
        }
    }
    (gossip, up)
}

/// UP and DOWN from StorageService's `LiveNodes` and `UnreachableNodes`.
fn up_from_lists(m: &mut dyn MBeans, up: &mut HashMap<String, bool>, errors: &mut Vec<String>) {
    for (attr, is_up) in [("LiveNodes", true), ("UnreachableNodes", false)] {
        match text(m, STORAGE_SERVICE, attr).and_then(|t| list(&t)) {
            Ok(l) => {
                for a in l {
                    up.insert(address(&a), is_up);
                }
            }
            Err(e) => errors.push(format!("nodes: {attr}: {}", crate::text::sanitize(&e))),
        }
    }
}

/// The endpoints still in the ring, as nodes; this node is the one with
/// `host_id`.
fn ring_nodes(
    gossip: &[Gossip],
    lists: &Lists,
    up: &HashMap<String, bool>,
    host_id: &Option<String>,
) -> Vec<Node> {
    gossip
        .iter()
        .filter_map(|g| {
            let state = ring_state(g, lists)?;
            let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| UNKNOWN.into());
            Some(Node {
                address: g.address.clone(),
                dc: or_unknown(&g.dc),
                rack: or_unknown(&g.rack),
                status: match up.get(&g.address) {
                    Some(true) => "UP".into(),
                    Some(false) => "DOWN".into(),
                    None => UNKNOWN.into(),
                },
                state,
                release_version: or_unknown(&g.release),
                local: host_id.is_some() && &g.host_id == host_id,
            })
        })
        .collect()
}

/// StorageService's attributes read every time, and the host ID until known.
const RING_LISTS: [&str; 5] = [
    "JoiningNodes",
    "LeavingNodes",
    "MovingNodes",
    "NonSystemKeyspaces",
    "LocalHostId",
];

impl Reader {
    /// One read of the view. Never fails: what cannot be read is in
    /// `errors` and shows as unknown.
    pub fn read(&mut self, m: &mut dyn MBeans) -> ClusterView {
        let started = Instant::now();
        let mut errors = Vec::new();
        let (gossip, up) = failure_detector(m, &mut errors);
        let (lists, keyspaces) = self.ring_lists(m, &mut errors);
        let mut nodes = ring_nodes(&gossip, &lists, &up, &self.host_id);
        self.refresh_ranges(m, keyspaces, &nodes, &mut errors);
        self.add_unknown_replicas(&mut nodes);
        nodes.sort_by(|a, b| a.address.cmp(&b.address));
        let local = nodes.iter().find(|n| n.local).cloned();
        let local_dc = local
            .as_ref()
            .and_then(|n| (n.dc != UNKNOWN).then(|| n.dc.clone()));
        let levels = self.levels(&nodes, local.as_ref(), local_dc.as_deref());
        ClusterView {
            read_unix_ms: crate::status::model::unix_ms(SystemTime::now()),
            read_ms: crate::status::model::millis(started.elapsed()),
            local: local.map(|n| n.address),
            local_dc,
            nodes,
            levels,
            errors,
            read_mono_ms: crate::status::view::mono_ms(),
        }
    }

    /// StorageService's ring lists (read every time), the host ID (until
    /// known), and the keyspaces' text for [`Reader::refresh_ranges`].
    fn ring_lists(
        &mut self,
        m: &mut dyn MBeans,
        errors: &mut Vec<String>,
    ) -> (Lists, Result<String, String>) {
        // The host ID never changes while the JVM runs: read until known.
        let wanted = if self.host_id.is_some() { 4 } else { 5 };
        let mut ss = texts(m, STORAGE_SERVICE, &RING_LISTS[..wanted]).into_iter();
        let mut next = || ss.next().unwrap_or_else(|| Err("not read".into()));
        let mut read_list = |attr: &str, t: Result<String, String>| match t.and_then(|t| list(&t)) {
            Ok(l) => Some(l.iter().map(|a| address(a)).collect()),
            Err(e) => {
                errors.push(format!("{attr}: {}", crate::text::sanitize(&e)));
                None
            }
        };
        let lists = Lists {
            joining: read_list("JoiningNodes", next()),
            leaving: read_list("LeavingNodes", next()),
            moving: read_list("MovingNodes", next()),
        };
        let keyspaces = next();
        if self.host_id.is_none() {
            self.host_id = next().ok();
        }
        (lists, keyspaces)
    }

    /// Replicas gossip does not know are nodes too, of unknown status.
    fn add_unknown_replicas(&self, nodes: &mut Vec<Node>) {
        for (i, name) in self.names.all.iter().enumerate() {
            let replica = self.keyspaces.iter().any(|(_, k)| {
                k.as_ref()
                    .is_ok_and(|k| k.ranges.iter().any(|r| r.replicas.contains(&(i as u32))))
            });
            if replica && !nodes.iter().any(|n| &n.address == name) {
                nodes.push(Node {
                    address: name.clone(),
                    dc: UNKNOWN.into(),
                    rack: UNKNOWN.into(),
                    status: UNKNOWN.into(),
                    state: UNKNOWN.into(),
                    release_version: UNKNOWN.into(),
                    local: false,
                });
            }
        }
    }

    /// Every level's verdicts over the nodes (by address index) and the
    /// keyspaces' ranges.
    fn levels(
        &mut self,
        nodes: &[Node],
        local: Option<&Node>,
        local_dc: Option<&str>,
    ) -> Vec<Level> {
        for n in nodes {
            self.names.id(&n.address);
        }
        let count = self.names.all.len();
        let (mut live, mut dc) = (vec![None; count], vec![None; count]);
        for n in nodes {
            if let Some(i) = self.names.get(&n.address) {
                live[i as usize] = Some(n.status == "UP");
                dc[i as usize] = (n.dc != UNKNOWN).then(|| n.dc.clone());
            }
        }
        availability(&Ring {
            names: &self.names.all,
            live: &live,
            dc: &dc,
            local: local.and_then(|n| self.names.get(&n.address)),
            local_dc,
            keyspaces: &self.keyspaces,
        })
    }

    /// Reads the keyspaces' ranges again when the keyspaces or the ring's
    /// members changed, or [`RANGES_EVERY`] passed.
    fn refresh_ranges(
        &mut self,
        m: &mut dyn MBeans,
        keyspaces: Result<String, String>,
        nodes: &[Node],
        errors: &mut Vec<String>,
    ) {
        let keyspaces = match keyspaces.and_then(|t| list(&t)) {
            Ok(k) => k.into_iter().filter(|k| counted(k)).collect::<Vec<_>>(),
            Err(e) => {
                errors.push(format!("keyspaces: {}", crate::text::sanitize(&e)));
                self.keyspaces.clear();
                self.ranges_at = None;
                return;
            }
        };
        let mut key: Vec<String> = keyspaces.clone();
        key.extend(nodes.iter().map(|n| format!("{} {}", n.address, n.state)));
        let due = self.ranges_at.is_none_or(|t| t.elapsed() >= RANGES_EVERY);
        if !due && key == self.ranges_key {
            return;
        }
        self.keyspaces = keyspaces
            .iter()
            .map(|ks| {
                let read = read_keyspace(m, ks, &mut self.names);
                (
                    crate::text::sanitize(ks),
                    read.map_err(|e| crate::text::sanitize(&e)),
                )
            })
            .collect();
        self.ranges_key = key;
        self.ranges_at = Some(Instant::now());
    }
}

/// One keyspace's replication, then (unless it is node-local) its ranges.
fn read_keyspace(m: &mut dyn MBeans, ks: &str, names: &mut Names) -> Result<Keyspace, String> {
    let call = |m: &mut dyn MBeans, op: &str| {
        m.invoke(STORAGE_SERVICE, op, &[ks])
            .and_then(|t| t.ok_or_else(|| "no answer".to_string()))
            .map_err(|e| format!("{op}: {e}"))
    };
    let text = call(m, "getKeyspaceReplicationInfo")?;
    let strategy = replication(&text)?;
    let ranges = if strategy == Strategy::Local {
        Vec::new()
    } else {
        let r = range_map(&call(m, "getRangeToEndpointMap")?, names)?;
        // No ranges is no knowledge (a keyspace just created), never "safe".
        if r.is_empty() {
            return Err("no token ranges read yet".to_string());
        }
        r
    };
    Ok(Keyspace {
        strategy,
        replication: crate::text::sanitize(text.trim()),
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES_50: &str = "/127.0.0.1\n  generation:1733040000\n  heartbeat:120\n  STATUS:18:NORMAL,-3074457345618258603\n  LOAD:108:123456.0\n  SCHEMA:16:8bd0b7a4-0000\n  DC:8:datacenter1\n  RACK:10:rack1\n  RELEASE_VERSION:5:5.0.9\n  HOST_ID:3:11111111-1111-1111-1111-111111111111\n  STATUS_WITH_PORT:17:NORMAL,-3074457345618258603\n  TOKENS:16:<hidden>\n/127.0.0.2\n  generation:1733040001\n  heartbeat:7\n  STATUS_WITH_PORT:20:shutdown,true\n  STATUS:21:shutdown,true\n  DC:8:datacenter1\n  RACK:10:rack1\n  RELEASE_VERSION:5:4.1.7\n  HOST_ID:3:22222222-2222-2222-2222-222222222222\n  TOKENS: not present\nlocalhost/127.0.0.3:7000\n  generation:1\n  heartbeat:1\n  STATUS:BOOT,123\n  DC:dc2\n/127.0.0.4\n  STATUS:3:LEFT,99,1733040000\n";

    #[test]
    fn addresses() {
        assert_eq!(address("/127.0.0.1"), "127.0.0.1");
        assert_eq!(address("/127.0.0.1:7000"), "127.0.0.1");
        assert_eq!(address("localhost/127.0.0.3:7000"), "127.0.0.3");
        assert_eq!(address(" 10.0.0.1 "), "10.0.0.1");
        assert_eq!(address("/[::1]:7000"), "::1");
        assert_eq!(address("/::1"), "::1");
    }

    #[test]
    fn gossip_text_of_several_versions() {
        let g = endpoint_states(STATES_50);
        assert_eq!(g.len(), 4);
        assert_eq!(g[0].address, "127.0.0.1");
        assert_eq!(g[0].dc.as_deref(), Some("datacenter1"));
        assert_eq!(g[0].release.as_deref(), Some("5.0.9"));
        assert_eq!(g[0].status.as_deref(), Some("NORMAL"));
        assert_eq!(g[1].status.as_deref(), Some("shutdown"));
        assert_eq!(g[1].release.as_deref(), Some("4.1.7"));
        assert_eq!(g[2].address, "127.0.0.3");
        assert_eq!(
            g[2].status.as_deref(),
            Some("BOOT"),
            "3.x layout, no versions"
        );
        assert_eq!(g[2].dc.as_deref(), Some("dc2"));
        assert_eq!(g[2].rack, None);
        assert!(endpoint_states("").is_empty());
        assert!(endpoint_states("  orphan:1:x\n").is_empty());
    }

    #[test]
    fn lists_and_maps() {
        assert_eq!(list("[]"), Ok(vec![]));
        assert_eq!(
            list("[127.0.0.1, 127.0.0.2]"),
            Ok(vec!["127.0.0.1".into(), "127.0.0.2".into()])
        );
        assert!(list("127.0.0.1").is_err());
        assert_eq!(
            map("{/127.0.0.1=UP, /127.0.0.2:7000=DOWN}").unwrap(),
            vec![
                ("/127.0.0.1".into(), "UP".into()),
                ("/127.0.0.2:7000".into(), "DOWN".into())
            ]
        );
        assert_eq!(map("{}"), Ok(vec![]));
        assert!(map("{a}").is_err());
        assert!(map("nope").is_err());
    }

    #[test]
    fn range_maps() {
        let mut names = Names::default();
        let r = range_map(
            "{[-9223372036854775808, -3]=[127.0.0.2, 127.0.0.3, 127.0.0.1], [-3, 5]=[/127.0.0.1:7000]}",
            &mut names,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].start, "-9223372036854775808");
        assert_eq!(r[0].replicas, vec![0, 1, 2]);
        assert_eq!(r[1].replicas, vec![2], "the same address, the same index");
        assert_eq!(range_map("{}", &mut names), Ok(vec![]));
        for bad in [
            "",
            "{[1]=[a]}",
            "{[1, 2]=a}",
            "{[1, 2]=[a]x}",
            "{[1, 2]=[a",
            "[1, 2]=[a]",
        ] {
            assert!(range_map(bad, &mut names).is_err(), "{bad:?}");
        }
    }

    /// A ring of `n` nodes in `dcs` datacenters (node `i` in `dc{i % dcs + 1}`),
    /// `tokens` ranges each, and each range's replicas placed as
    /// NetworkTopologyStrategy does: the next `rf` nodes of each datacenter
    /// clockwise (the same for every datacenter here).
    pub fn synthetic(
        n: u32,
        tokens: u32,
        dcs: u32,
        rf: u32,
    ) -> (Vec<String>, Vec<Option<String>>, Vec<Range>) {
        let names = (0..n)
            .map(|i| format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256))
            .collect();
        let dc = (0..n).map(|i| Some(format!("dc{}", i % dcs + 1))).collect();
        let members: Vec<Vec<u32>> = (0..dcs)
            .map(|d| (0..n).filter(|i| i % dcs == d).collect())
            .collect();
        let ranges = (0..n * tokens)
            .map(|t| {
                let owner = t % n;
                let replicas = members
                    .iter()
                    .flat_map(|m| {
                        // The datacenter's first node at or after the owner, clockwise.
                        let first = m.partition_point(|&i| i < owner);
                        (0..(rf as usize).min(m.len())).map(move |k| m[(first + k) % m.len()])
                    })
                    .collect();
                Range {
                    start: (i64::from(t) * 1000).to_string(),
                    end: (i64::from(t) * 1000 + 1000).to_string(),
                    replicas,
                }
            })
            .collect();
        (names, dc, ranges)
    }

    fn ks(
        name: &str,
        strategy: Strategy,
        ranges: Vec<Range>,
    ) -> (String, Result<Keyspace, String>) {
        (
            name.to_string(),
            Ok(Keyspace {
                replication: format!("{strategy:?}"),
                strategy,
                ranges,
            }),
        )
    }

    fn ring_of<'a>(
        names: &'a [String],
        live: &'a [Option<bool>],
        dc: &'a [Option<String>],
        local: Option<u32>,
        keyspaces: &'a [(String, Result<Keyspace, String>)],
    ) -> Ring<'a> {
        Ring {
            names,
            live,
            dc,
            local,
            local_dc: local
                .and_then(|l| dc.get(l as usize))
                .and_then(Option::as_deref),
            keyspaces,
        }
    }

    fn nts(dcs: &[(&str, usize)]) -> Strategy {
        Strategy::Network(dcs.iter().map(|(d, rf)| (d.to_string(), *rf)).collect())
    }

    #[test]
    fn replication_texts() {
        for (text, want) in [
            (
                "SimpleStrategy {replication_factor=3}",
                Ok(Strategy::Simple(3)),
            ),
            (
                "org.apache.cassandra.locator.SimpleStrategy {replication_factor=1}",
                Ok(Strategy::Simple(1)),
            ),
            (
                "NetworkTopologyStrategy {dc1=3, dc2=2}",
                Ok(nts(&[("dc1", 3), ("dc2", 2)])),
            ),
            (
                "NetworkTopologyStrategy {dc1=3/1, dc2=0}",
                Ok(nts(&[("dc1", 3), ("dc2", 0)])),
            ),
            ("NetworkTopologyStrategy {}", Ok(nts(&[]))),
            ("LocalStrategy {}", Ok(Strategy::Local)),
            ("LocalStrategy", Ok(Strategy::Local)),
            ("EverywhereStrategy {}", Err(())),
            ("SimpleStrategy {}", Err(())),
            ("SimpleStrategy {replication_factor=three}", Err(())),
            ("NetworkTopologyStrategy {replication_factor=3}", Err(())),
            ("NetworkTopologyStrategy {dc1=", Err(())),
            ("", Err(())),
        ] {
            let got = replication(text);
            match want {
                Ok(w) => assert_eq!(got, Ok(w), "{text}"),
                Err(()) => {
                    let e = got.expect_err(text);
                    assert!(
                        e.contains("SimpleStrategy, NetworkTopologyStrategy or LocalStrategy"),
                        "{e}"
                    );
                }
            }
        }
        let s = nts(&[("dc1", 3), ("dc2", 0)]);
        assert_eq!(
            (
                s.total(),
                s.quorum_in("dc1"),
                s.quorum_in("dc2"),
                s.quorum_in("dc9")
            ),
            (3, 2, 1, 1)
        );
        assert_eq!(Strategy::Simple(3).quorum_in("any"), 2);
    }

    #[test]
    fn availability_per_level() {
        let (names, dc, ranges) = synthetic(3, 2, 1, 3);
        let ks = vec![ks("ks", Strategy::Simple(3), ranges)];
        // Node 0 down, this node is 1.
        let live = vec![Some(false), Some(true), Some(true)];
        let levels = availability(&ring_of(&names, &live, &dc, Some(1), &ks));
        let at = |cl: Cl| levels.iter().find(|l| l.cl == cl).unwrap();
        assert_eq!(at(Cl::One).keyspaces[0].below, Some(0));
        assert_eq!(at(Cl::Quorum).keyspaces[0].below, Some(0));
        assert_eq!(at(Cl::All).keyspaces[0].below, Some(6));
        assert_eq!(at(Cl::Three).available, Some(false));
        assert!(
            at(Cl::Three)
                .available_why
                .contains("has 2 of 3 live replicas"),
            "{}",
            at(Cl::Three).available_why
        );
        assert_eq!(at(Cl::Two).available, Some(true));
        assert_eq!(at(Cl::One).safe_to_stop, Some(true));
        // Stopping 1 leaves 2 alone: below QUORUM everywhere.
        assert_eq!(at(Cl::Quorum).keyspaces[0].below_if_stopped, Some(6));
        assert_eq!(at(Cl::Quorum).safe_to_stop, Some(false));
        let why = &at(Cl::Quorum).why;
        assert!(
            why.contains("would have 1 of 3 live replicas (10.0.0.2), 2 needed"),
            "{why}"
        );
        assert_eq!(at(Cl::LocalQuorum).safe_to_stop, Some(false));
        assert!(
            at(Cl::LocalQuorum).why.contains("live replicas in dc1"),
            "{}",
            at(Cl::LocalQuorum).why
        );
        // All up: QUORUM is safe to lose one.
        let live = vec![Some(true); 3];
        let levels = availability(&ring_of(&names, &live, &dc, Some(1), &ks));
        let at = |cl: Cl| levels.iter().find(|l| l.cl == cl).unwrap();
        assert_eq!(at(Cl::Quorum).safe_to_stop, Some(true));
        assert_eq!(at(Cl::All).safe_to_stop, Some(false));
        assert_eq!(at(Cl::All).available, Some(true));
    }

    /// The two datacenters: dc1 on nodes 0-2, dc2 on 3-4, a keyspace
    /// {dc1: 3, dc2: 2}, node 4 (dc2) down.
    #[test]
    fn two_datacenters_count_their_own() {
        let names: Vec<String> = (1..=5).map(|i| format!("127.0.0.{i}")).collect();
        let dc: Vec<Option<String>> = ["dc1", "dc1", "dc1", "dc2", "dc2"]
            .iter()
            .map(|d| Some(d.to_string()))
            .collect();
        let ranges = vec![Range {
            start: "1".into(),
            end: "2".into(),
            replicas: vec![0, 1, 2, 3, 4],
        }];
        let keyspaces = vec![ks("ks", nts(&[("dc1", 3), ("dc2", 2)]), ranges)];
        let live = vec![Some(true), Some(true), Some(true), Some(true), Some(false)];
        let levels = availability(&ring_of(&names, &live, &dc, Some(0), &keyspaces));
        let at = |cl: Cl| levels.iter().find(|l| l.cl == cl).unwrap();
        assert_eq!(
            at(Cl::LocalQuorum).safe_to_stop,
            Some(true),
            "{:?}",
            at(Cl::LocalQuorum)
        );
        assert_eq!(at(Cl::LocalQuorum).available, Some(true));
        assert_eq!(
            at(Cl::Quorum).safe_to_stop,
            Some(true),
            "4 of 5 live, 3 needed"
        );
        assert_eq!(at(Cl::EachQuorum).available, Some(false));
        let why = &at(Cl::EachQuorum).available_why;
        assert_eq!(
            why,
            "ks: range (1, 2] has 1 of 2 live replicas in dc2 (127.0.0.4), 2 needed"
        );
        let groups = &at(Cl::EachQuorum).keyspaces[0].groups;
        assert_eq!(
            groups
                .iter()
                .map(|g| (g.dc.clone().unwrap(), g.needed, g.below))
                .collect::<Vec<_>>(),
            vec![("dc1".into(), 2, 0), ("dc2".into(), 2, 1)]
        );
        // Node 2 of dc1 down too: stopping node 0 leaves dc1 1 of 3.
        let live = vec![Some(true), Some(true), Some(false), Some(true), Some(false)];
        let levels = availability(&ring_of(&names, &live, &dc, Some(0), &keyspaces));
        let lq = levels.iter().find(|l| l.cl == Cl::LocalQuorum).unwrap();
        assert_eq!(
            lq.why,
            "ks: range (1, 2] would have 1 of 3 live replicas in dc1 (127.0.0.2), 2 needed"
        );
        // From dc2's node 3, LOCAL_QUORUM is dc2's: 1 of 2 now.
        let levels = availability(&ring_of(&names, &live, &dc, Some(3), &keyspaces));
        let lq = levels.iter().find(|l| l.cl == Cl::LocalQuorum).unwrap();
        assert_eq!(
            lq.available_why,
            "ks: range (1, 2] has 1 of 2 live replicas in dc2 (127.0.0.4), 2 needed"
        );
        let lo = levels.iter().find(|l| l.cl == Cl::LocalOne).unwrap();
        assert_eq!((lo.available, lo.safe_to_stop), (Some(true), Some(false)));
    }

    #[test]
    fn unknown_is_never_live() {
        let (names, dc, ranges) = synthetic(3, 1, 1, 3);
        let ks3 = vec![ks("ks", Strategy::Simple(3), ranges)];
        let live = vec![None, Some(true), Some(true)];
        let levels = availability(&ring_of(&names, &live, &dc, Some(1), &ks3));
        let all = levels.iter().find(|l| l.cl == Cl::All).unwrap();
        assert_eq!(all.keyspaces[0].below, Some(3));
        // This node unknown: safe-to-stop is unknown, not "safe".
        let live = vec![Some(true); 3];
        let levels = availability(&ring_of(&names, &live, &dc, None, &ks3));
        assert!(
            levels.iter().all(|l| l.safe_to_stop.is_none()),
            "{levels:?}"
        );
        let lq = levels.iter().find(|l| l.cl == Cl::LocalQuorum).unwrap();
        assert_eq!(lq.available, None, "no local datacenter: {lq:?}");
        assert_eq!(levels[0].available, Some(true), "ONE needs no datacenter");
        // A keyspace that could not be read.
        let bad = vec![("ks".to_string(), Err("boom".to_string()))];
        let levels = availability(&ring_of(&names, &live, &dc, Some(0), &bad));
        assert_eq!((levels[0].safe_to_stop, levels[0].available), (None, None));
        assert!(levels[0].why.contains("ks: boom"), "{}", levels[0].why);
        // A replica of unknown datacenter never counts in one.
        let dc = vec![Some("dc1".into()), None, Some("dc1".into())];
        let levels = availability(&ring_of(&names, &live, &dc, Some(0), &ks3));
        let lq = levels.iter().find(|l| l.cl == Cl::LocalQuorum).unwrap();
        assert_eq!(lq.keyspaces[0].below, Some(0), "2 of 3 known live in dc1");
        assert_eq!(lq.keyspaces[0].below_if_stopped, Some(3));
    }

    /// Cassandra's own rule, written out plainly: whether a request at `cl`
    /// on a range whose replicas are `(datacenter, live)` gets `Unavailable`
    /// (`ReplicaPlans.assureSufficientLiveReplicas` with `blockFor`).
    fn model_unavailable(
        s: &Strategy,
        cl: Cl,
        local_dc: &str,
        replicas: &[(Option<&str>, bool)],
    ) -> bool {
        let live_in = |dc: Option<&str>| {
            replicas
                .iter()
                .filter(|(d, live)| *live && (dc.is_none() || *d == dc))
                .count()
        };
        let rf_of = |dc: &str| match s {
            Strategy::Network(v) => v.iter().filter(|(d, _)| d == dc).map(|(_, rf)| *rf).sum(),
            _ => 0,
        };
        let total = match s {
            Strategy::Simple(rf) => *rf,
            Strategy::Network(v) => v.iter().map(|(_, rf)| rf).sum(),
            Strategy::Local => return false,
        };
        let local_quorum = match s {
            Strategy::Network(_) => rf_of(local_dc) / 2 + 1,
            _ => total / 2 + 1,
        };
        match cl {
            Cl::One => live_in(None) < 1,
            Cl::Two => live_in(None) < 2,
            Cl::Three => live_in(None) < 3,
            Cl::Quorum => live_in(None) < total / 2 + 1,
            Cl::All => live_in(None) < total,
            Cl::LocalOne => live_in(Some(local_dc)) < 1,
            Cl::LocalQuorum => live_in(Some(local_dc)) < local_quorum,
            Cl::EachQuorum => match s {
                Strategy::Network(v) => v.iter().any(|(d, rf)| live_in(Some(d)) < rf / 2 + 1),
                _ => live_in(None) < total / 2 + 1,
            },
        }
    }

    /// Random rings, strategies and UP/DOWN/unknown states against the model.
    #[test]
    fn every_level_agrees_with_the_model() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let strategies = [
            Strategy::Simple(1),
            Strategy::Simple(3),
            Strategy::Simple(5),
            nts(&[("dc1", 3), ("dc2", 2)]),
            nts(&[("dc1", 3), ("dc2", 0)]),
            nts(&[("dc1", 2)]),
            nts(&[("dc1", 1), ("dc2", 1), ("dc3", 3), ("gone", 2)]),
            Strategy::Local,
        ];
        let mut checked = 0;
        for round in 0..300 {
            let n = 2 + rnd(8) as u32;
            let dcs = 1 + rnd(3) as u32;
            let (names, mut dc, _) = synthetic(n, 1, dcs, 1);
            let live: Vec<Option<bool>> = (0..n)
                .map(|_| [Some(true), Some(true), Some(false), None][rnd(4) as usize])
                .collect();
            if rnd(5) == 0 {
                dc[rnd(u64::from(n)) as usize] = None;
            }
            let local = rnd(u64::from(n)) as u32;
            let strategy = strategies[round % strategies.len()].clone();
            // Random replica sets: any nodes, 0 to 6 of them, no repeats.
            let ranges: Vec<Range> = (0..6u32)
                .map(|t| {
                    let mut r: Vec<u32> = (0..n).filter(|_| rnd(2) == 0).collect();
                    r.truncate(6);
                    Range {
                        start: t.to_string(),
                        end: (t + 1).to_string(),
                        replicas: r,
                    }
                })
                .collect();
            let keyspaces = vec![ks("ks", strategy.clone(), ranges.clone())];
            let ring = ring_of(&names, &live, &dc, Some(local), &keyspaces);
            let Some(local_dc) = ring.local_dc else {
                continue;
            };
            for level in availability(&ring) {
                let k = &level.keyspaces[0];
                let count = |gone: bool| {
                    ranges
                        .iter()
                        .filter(|r| {
                            let reps: Vec<(Option<&str>, bool)> = r
                                .replicas
                                .iter()
                                .map(|&i| {
                                    (
                                        dc[i as usize].as_deref(),
                                        live[i as usize] == Some(true) && !(gone && i == local),
                                    )
                                })
                                .collect();
                            model_unavailable(&strategy, level.cl, local_dc, &reps)
                        })
                        .count()
                };
                let ctx = format!(
                    "round {round}, {strategy:?}, {:?}, local {local}, live {live:?}, dc {dc:?}",
                    level.cl
                );
                assert_eq!(k.below, Some(count(false)), "{ctx}");
                assert_eq!(k.below_if_stopped, Some(count(true)), "{ctx}");
                assert_eq!(level.available, Some(count(false) == 0), "{ctx}");
                assert_eq!(level.safe_to_stop, Some(count(true) == 0), "{ctx}");
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} levels checked");
    }

    /// Names, datacenters, liveness, keyspaces, and a count.
    type Synthetic = (
        Vec<String>,
        Vec<Option<String>>,
        Vec<Option<bool>>,
        Vec<(String, Result<Keyspace, String>)>,
        usize,
    );

    /// A 1,000-node ring in 3 datacenters, 256 tokens each, NTS {3, 3, 3},
    /// node 7 (dc2) down; this node is node 4 (dc2). Also: how many ranges
    /// node 7 is a replica of.
    pub fn thousand_nodes() -> Synthetic {
        let (names, dc, ranges) = synthetic(1000, 256, 3, 3);
        let of_7 = ranges.iter().filter(|r| r.replicas.contains(&7)).count();
        let keyspaces = vec![ks("ks", nts(&[("dc1", 3), ("dc2", 3), ("dc3", 3)]), ranges)];
        let mut live = vec![Some(true); 1000];
        live[7] = Some(false);
        (names, dc, live, keyspaces, of_7)
    }

    #[test]
    fn a_thousand_nodes_in_three_datacenters_in_time() {
        let (names, dc, live, keyspaces, of_7) = thousand_nodes();
        let t = Instant::now();
        let levels = availability(&ring_of(&names, &live, &dc, Some(4), &keyspaces));
        let took = t.elapsed();
        let at = |cl: Cl| levels.iter().find(|l| l.cl == cl).unwrap();
        assert_eq!(at(Cl::All).keyspaces[0].ranges, Some(256_000));
        assert!(of_7 > 0);
        assert_eq!(at(Cl::All).keyspaces[0].below, Some(of_7));
        assert_eq!(at(Cl::EachQuorum).available, Some(true));
        assert_eq!(
            at(Cl::LocalQuorum).safe_to_stop,
            Some(false),
            "nodes 4 and 7 share ranges in dc2"
        );
        assert_eq!(at(Cl::Quorum).safe_to_stop, Some(true));
        // A generous bound for an unoptimised build on a busy machine; the
        // release figure is bench/availability.py's.
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    /// MBeans from a table: attribute texts by name, operations by keyspace.
    struct Fake(HashMap<String, Result<String, String>>);
    impl MBeans for Fake {
        fn attributes(
            &mut self,
            object: &str,
            attrs: &[&str],
        ) -> Result<Vec<Option<String>>, String> {
            // Like the JVM's reads: an absent object fails the read, an
            // attribute that throws is missing.
            let mut out = Vec::new();
            for attr in attrs {
                out.push(match self.0.get(&format!("{object}/{attr}")) {
                    Some(Ok(t)) => Some(t.clone()),
                    Some(Err(e)) if e.contains("InstanceNotFound") => return Err(e.clone()),
                    Some(Err(_)) | None => None,
                });
            }
            Ok(out)
        }
        fn invoke(&mut self, _: &str, op: &str, args: &[&str]) -> Result<Option<String>, String> {
            match self.0.get(&format!("{op}/{}", args.first().unwrap_or(&""))) {
                Some(Ok(t)) => Ok(Some(t.clone())),
                Some(Err(e)) => Err(e.clone()),
                None => Err("InstanceNotFoundException".into()),
            }
        }
    }

    fn three_nodes(simple: &str) -> Fake {
        let states = "/127.0.0.1\n  STATUS:1:NORMAL,1\n  DC:1:dc1\n  RACK:1:r1\n  RELEASE_VERSION:1:5.0.9\n  HOST_ID:1:a\n/127.0.0.2\n  STATUS:1:NORMAL,2\n  DC:1:dc1\n  RACK:1:r1\n  RELEASE_VERSION:1:5.0.9\n  HOST_ID:1:b\n/127.0.0.3\n  STATUS:1:NORMAL,3\n  DC:1:dc1\n  RACK:1:r1\n  RELEASE_VERSION:1:5.0.9\n  HOST_ID:1:c\n";
        let ss = STORAGE_SERVICE;
        let fd = FAILURE_DETECTOR;
        Fake(HashMap::from([
            (format!("{fd}/AllEndpointStates"), Ok(states.to_string())),
            (format!("{fd}/SimpleStates"), Ok(simple.to_string())),
            (format!("{ss}/JoiningNodes"), Ok("[]".into())),
            (format!("{ss}/LeavingNodes"), Ok("[]".into())),
            (format!("{ss}/MovingNodes"), Ok("[]".into())),
            (format!("{ss}/LocalHostId"), Ok("b".into())),
            (
                format!("{ss}/NonSystemKeyspaces"),
                Ok("[system_traces, ks, system_auth]".into()),
            ),
            (
                "getKeyspaceReplicationInfo/ks".into(),
                Ok("SimpleStrategy {replication_factor=3}".into()),
            ),
            (
                "getRangeToEndpointMap/ks".into(),
                Ok("{[1, 2]=[127.0.0.2, 127.0.0.3, 127.0.0.1], [2, 3]=[127.0.0.3, 127.0.0.1, 127.0.0.2], [3, 1]=[127.0.0.1, 127.0.0.2, 127.0.0.3]}".into()),
            ),
        ]))
    }

    /// Counts the attribute reads and what they asked for.
    struct Counting(Fake, Vec<Vec<String>>);

    impl MBeans for Counting {
        fn attributes(
            &mut self,
            object: &str,
            attrs: &[&str],
        ) -> Result<Vec<Option<String>>, String> {
            self.1.push(attrs.iter().map(|a| a.to_string()).collect());
            self.0.attributes(object, attrs)
        }
        fn invoke(&mut self, o: &str, op: &str, args: &[&str]) -> Result<Option<String>, String> {
            self.0.invoke(o, op, args)
        }
    }

    #[test]
    fn a_view_is_two_attribute_reads() {
        let mut m = Counting(
            three_nodes("{/127.0.0.1=UP, /127.0.0.2=UP, /127.0.0.3=UP}"),
            vec![],
        );
        let mut r = Reader::default();
        let first = r.read(&mut m);
        assert_eq!(m.1.len(), 2, "{:?}", m.1);
        assert!(m.1[1].contains(&"LocalHostId".to_string()));
        m.1.clear();
        let second = r.read(&mut m);
        assert_eq!(m.1.len(), 2, "{:?}", m.1);
        assert!(
            !m.1[1].contains(&"LocalHostId".to_string()),
            "the host ID is kept"
        );
        assert_eq!(first.local, second.local);
        assert_eq!(second.local.as_deref(), Some("127.0.0.2"));
    }

    #[test]
    fn reads_a_view() {
        let mut m = three_nodes("{/127.0.0.1=DOWN, /127.0.0.2=UP, /127.0.0.3=UP}");
        let v = Reader::default().read(&mut m);
        assert_eq!(v.errors, Vec::<String>::new());
        let q = v.level(Cl::Quorum).unwrap();
        assert_eq!(q.keyspaces.len(), 1, "system_* keyspaces are left out");
        assert_eq!(v.local.as_deref(), Some("127.0.0.2"));
        assert_eq!(v.nodes.len(), 3);
        assert_eq!(v.nodes[0].status, "DOWN");
        assert_eq!(v.nodes[1].state, "NORMAL");
        let q = v.level(Cl::Quorum).unwrap();
        assert_eq!(q.keyspaces[0].below, Some(0));
        assert_eq!(q.safe_to_stop, Some(false), "{q:?}");
        assert_eq!(v.not_ready(None), vec!["127.0.0.1 DOWN NORMAL".to_string()]);
        let mut m = three_nodes("{/127.0.0.1=UP, /127.0.0.2=UP, /127.0.0.3=UP}");
        let v = Reader::default().read(&mut m);
        assert!(v.not_ready(None).is_empty());
        assert_eq!(v.level(Cl::Quorum).unwrap().safe_to_stop, Some(true));
        // Through the HTTP answer the command reads.
        use crate::status::cluster::{answer, request};
        let mut snap = crate::status::model::Snapshot::new(1, Default::default());
        snap.cluster = Some(v);
        let level = |cl: &str| {
            let q = request("/cluster", Some(cl)).unwrap().unwrap();
            let (code, _, body) = answer(&q, &snap, 0);
            assert_eq!(code, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["availability"].clone()
        };
        assert_eq!(level("cl=QUORUM")["safe_to_stop"], true);
        let all = level("cl=ALL");
        assert_eq!(all["safe_to_stop"], false);
        let why = all["why"].as_str().unwrap_or_default();
        assert!(why.contains("would have 2 of 3 live replicas"), "{why}");
    }

    #[test]
    fn unreadable_parts_are_unknown() {
        let fd = FAILURE_DETECTOR;
        let ss = STORAGE_SERVICE;
        // No SimpleStates, and no fallback either: every status unknown.
        let mut m = three_nodes("");
        m.0.insert(
            format!("{fd}/SimpleStates"),
            Err("AttributeNotFound".into()),
        );
        let v = Reader::default().read(&mut m);
        assert!(v.nodes.iter().all(|n| n.status == UNKNOWN), "{:?}", v.nodes);
        assert!(!v.not_ready(None).is_empty());
        // The fallback lists.
        m.0.insert(
            format!("{ss}/LiveNodes"),
            Ok("[127.0.0.2, 127.0.0.3]".into()),
        );
        m.0.insert(format!("{ss}/UnreachableNodes"), Ok("[127.0.0.1]".into()));
        let v = Reader::default().read(&mut m);
        assert_eq!(v.nodes[0].status, "DOWN");
        assert_eq!(v.nodes[2].status, "UP");
        // No endpoint states at all: the replicas are nodes of unknown
        // status, never "all UP".
        m.0.insert(
            format!("{fd}/AllEndpointStates"),
            Err("InstanceNotFoundException".into()),
        );
        let v = Reader::default().read(&mut m);
        let not = v.not_ready(None);
        assert!(
            not.iter().any(|e| e == "127.0.0.1 unknown unknown"),
            "{not:?}"
        );
        assert!(
            not.iter().any(|e| e.contains("AllEndpointStates")),
            "{not:?}"
        );
        m.0.insert(format!("{ss}/NonSystemKeyspaces"), Err("gone".into()));
        let v = Reader::default().read(&mut m);
        assert!(
            v.not_ready(None).iter().any(|e| e.contains("no nodes")),
            "{:?}",
            v.not_ready(None)
        );
        // A replica gossip does not know: a node of unknown status.
        let mut m = three_nodes("{/127.0.0.1=UP, /127.0.0.2=UP, /127.0.0.3=UP}");
        m.0.insert(
            "getRangeToEndpointMap/ks".into(),
            Ok("{[1, 2]=[127.0.0.2, 127.0.0.9]}".into()),
        );
        let v = Reader::default().read(&mut m);
        assert!(v
            .nodes
            .iter()
            .any(|n| n.address == "127.0.0.9" && n.status == UNKNOWN));
        // A keyspace without ranges yet: unknown, never safe.
        m.0.insert("getRangeToEndpointMap/ks".into(), Ok("{}".into()));
        let v = Reader::default().read(&mut m);
        let all = v.level(Cl::All).unwrap();
        assert_eq!(all.safe_to_stop, None, "{all:?}");
        assert!(all.why.contains("no token ranges read yet"), "{}", all.why);
        // A range map that is garbage, or an operation that throws.
        m.0.insert("getRangeToEndpointMap/ks".into(), Ok("{[1, 2]=".into()));
        let v = Reader::default().read(&mut m);
        assert_eq!(v.level(Cl::One).unwrap().safe_to_stop, None);
        m.0.insert(
            "getRangeToEndpointMap/ks".into(),
            Err("MBeanException".into()),
        );
        let v = Reader::default().read(&mut m);
        assert!(v.level(Cl::One).unwrap().why.contains("MBeanException"));
        // A joining node.
        let mut m = three_nodes("{/127.0.0.1=UP, /127.0.0.2=UP, /127.0.0.3=UP}");
        m.0.insert(format!("{ss}/JoiningNodes"), Ok("[127.0.0.3]".into()));
        let v = Reader::default().read(&mut m);
        assert_eq!(v.not_ready(None), vec!["127.0.0.3 UP JOINING".to_string()]);
    }

    /// `python3 bench/availability.py` runs this in a release build and
    /// writes bench/results-availability.md from its `result` lines.
    #[test]
    #[ignore = "a benchmark: run with --ignored --release (bench/availability.py)"]
    fn bench_availability() {
        let (names, dc, live, keyspaces, of_7) = thousand_nodes();
        let ring = ring_of(&names, &live, &dc, Some(4), &keyspaces);
        // This thread's CPU time: on a shared machine the wall clock also
        // counts the waits for a core.
        let cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes the timespec it is given.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        };
        let (mut times, mut cpus) = (Vec::new(), Vec::new());
        for _ in 0..21 {
            let (t, c) = (Instant::now(), cpu());
            let levels = availability(&ring);
            cpus.push(cpu() - c);
            times.push(t.elapsed());
            assert_eq!(levels.len(), 8);
            assert_eq!(levels[4].keyspaces[0].below, Some(of_7));
        }
        times.sort();
        cpus.sort();
        let Ok(ks) = &keyspaces[0].1 else { return };
        // The text one read of such a ring is, and parsing it.
        let mut text = String::from("{");
        for (i, r) in ks.ranges.iter().enumerate() {
            let reps: Vec<&str> = r
                .replicas
                .iter()
                .map(|i| names[*i as usize].as_str())
                .collect();
            let sep = if i > 0 { ", " } else { "" };
            text.push_str(&format!(
                "{sep}[{}, {}]=[{}]",
                r.start,
                r.end,
                reps.join(", ")
            ));
        }
        text.push('}');
        let t = Instant::now();
        let parsed = range_map(&text, &mut Names::default()).unwrap();
        let parse = t.elapsed();
        assert_eq!(parsed.len(), 256_000);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let what = "availability: 8 levels, now and without this node";
        println!(
            "result|{what}: CPU time, median of 21|{:.2} ms",
            ms(cpus[10])
        );
        println!(
            "result|{what}: CPU time, slowest of 21|{:.2} ms",
            ms(cpus[20])
        );
        println!(
            "result|{what}: wall clock (with the waits for a core), median|{:.2} ms",
            ms(times[10])
        );
        println!("result|{what}: wall clock, slowest|{:.2} ms", ms(times[20]));
        println!("result|parsing the keyspace's range map ({:.1} MB, 256,000 ranges x 9 replicas)|{:.1} ms", text.len() as f64 / 1e6, ms(parse));
    }
}
