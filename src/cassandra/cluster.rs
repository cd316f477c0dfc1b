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
use crate::status::cluster::{Cl, ClusterView, Gap, KeyspaceLevel, Level, Node, UNKNOWN};
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

/// What [`availability`] needs: per address index, whether it is live and
/// its datacenter; which index is this node; the keyspaces' ranges.
pub struct Ring<'a> {
    pub names: &'a [String],
    /// `Some(true)` only for a node seen UP.
    pub live: &'a [Option<bool>],
    pub dc: &'a [Option<String>],
    pub local: Option<u32>,
    pub local_dc: Option<&'a str>,
    pub keyspaces: &'a [(String, Result<Vec<Range>, String>)],
}

impl Ring<'_> {
    fn is_live(&self, i: u32) -> bool {
        self.live.get(i as usize).copied().flatten() == Some(true)
    }

    /// Whether replica `i` counts for LOCAL_QUORUM: in this node's DC, or
    /// of an unknown DC (counted as local so that it raises what is needed
    /// without counting as live when unknown).
    fn is_local(&self, i: u32) -> bool {
        match (
            self.dc.get(i as usize).and_then(Option::as_deref),
            self.local_dc,
        ) {
            (Some(d), Some(l)) => d == l,
            _ => true,
        }
    }

    fn name(&self, i: u32) -> String {
        self.names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| UNKNOWN.into())
    }

    /// One pass over a range's replicas: what every level needs to know.
    fn tally(&self, replicas: &[u32]) -> Tally {
        let mut t = Tally::default();
        for &i in replicas {
            let (live, local) = (self.is_live(i), self.is_local(i));
            t.all += 1;
            t.live += usize::from(live);
            t.local_all += usize::from(local);
            t.local_live += usize::from(live && local);
            if Some(i) == self.local && live {
                t.self_live = true;
                t.self_local = local;
            }
        }
        t
    }

    fn gap(&self, r: &Range, needed: usize, gone: Option<u32>) -> Gap {
        Gap {
            start: r.start.clone(),
            end: r.end.clone(),
            replicas: r.replicas.iter().map(|i| self.name(*i)).collect(),
            live: r
                .replicas
                .iter()
                .filter(|i| Some(**i) != gone && self.is_live(**i))
                .map(|i| self.name(*i))
                .collect(),
            needed,
        }
    }
}

/// A range's replicas counted once.
#[derive(Default, Clone, Copy)]
struct Tally {
    all: usize,
    live: usize,
    local_all: usize,
    local_live: usize,
    /// This node is a live replica (of the local DC).
    self_live: bool,
    self_local: bool,
}

impl Tally {
    /// (live, needed) at `cl`; with `gone`, this node counted dead.
    fn at(&self, cl: Cl, gone: bool) -> (usize, usize) {
        let lost = usize::from(gone && self.self_live);
        match cl {
            Cl::One => (self.live - lost, 1),
            Cl::Quorum => (self.live - lost, self.all / 2 + 1),
            Cl::All => (self.live - lost, self.all.max(1)),
            Cl::LocalQuorum => {
                let lost = usize::from(gone && self.self_live && self.self_local);
                (self.local_live - lost, self.local_all / 2 + 1)
            }
        }
    }
}

/// One level's running totals over the keyspaces.
struct Acc {
    cl: Cl,
    keyspaces: Vec<KeyspaceLevel>,
    unsafe_to_stop: Option<String>,
    unknown: Option<String>,
}

/// Per level and keyspace: the ranges below the level now and with this
/// node gone, and whether stopping this node is safe. One pass over each
/// range's replicas serves all levels.
pub fn availability(ring: &Ring<'_>) -> Vec<Level> {
    let mut accs: Vec<Acc> = Cl::LEVELS
        .iter()
        .map(|&cl| Acc {
            cl,
            keyspaces: Vec::with_capacity(ring.keyspaces.len()),
            unsafe_to_stop: None,
            unknown: if ring.local.is_none() {
                Some("this node is not in its own view".into())
            } else if cl == Cl::LocalQuorum && ring.local_dc.is_none() {
                Some("this node's datacenter is unknown".into())
            } else {
                None
            },
        })
        .collect();
    for (name, ranges) in ring.keyspaces {
        let ranges = match ranges {
            Ok(r) => r,
            Err(e) => {
                for a in &mut accs {
                    a.unknown.get_or_insert_with(|| format!("{name}: {e}"));
                    a.keyspaces.push(KeyspaceLevel {
                        keyspace: name.clone(),
                        ranges: None,
                        below: None,
                        below_if_stopped: None,
                        examples: Vec::new(),
                        stop_examples: Vec::new(),
                        error: Some(e.clone()),
                    });
                }
                continue;
            }
        };
        for a in &mut accs {
            a.keyspaces.push(KeyspaceLevel {
                keyspace: name.clone(),
                ranges: Some(ranges.len()),
                below: Some(0),
                below_if_stopped: ring.local.map(|_| 0),
                examples: Vec::new(),
                stop_examples: Vec::new(),
                error: None,
            });
        }
        for r in ranges {
            let t = ring.tally(&r.replicas);
            for a in &mut accs {
                let Some(k) = a.keyspaces.last_mut() else {
                    continue;
                };
                let (live, needed) = t.at(a.cl, false);
                if live < needed {
                    k.below = k.below.map(|b| b + 1);
                    if k.examples.len() < EXAMPLES {
                        k.examples.push(ring.gap(r, needed, None));
                    }
                }
                let (live, needed) = t.at(a.cl, true);
                if ring.local.is_some() && live < needed {
                    k.below_if_stopped = k.below_if_stopped.map(|b| b + 1);
                    if k.stop_examples.len() < EXAMPLES {
                        k.stop_examples.push(ring.gap(r, needed, ring.local));
                    }
                }
            }
        }
        for a in &mut accs {
            let first = a.keyspaces.last().and_then(|k| k.stop_examples.first());
            if let (Some(g), None) = (first, &a.unsafe_to_stop) {
                a.unsafe_to_stop = Some(format!(
                    "{name}: range ({}, {}] would have {} of {} live replicas ({}), {} needed",
                    g.start,
                    g.end,
                    g.live.len(),
                    g.replicas.len(),
                    if g.live.is_empty() {
                        "none".to_string()
                    } else {
                        g.live.join(", ")
                    },
                    g.needed
                ));
            }
        }
    }
    accs.into_iter()
        .map(|a| {
            let (safe_to_stop, why) = match (a.unsafe_to_stop, a.unknown) {
                (Some(why), _) => (Some(false), why),
                (None, Some(why)) => (None, why),
                (None, None) => (
                    Some(true),
                    format!(
                        "every range of {} keyspace(s) keeps {} without this node",
                        a.keyspaces.len(),
                        a.cl.as_str()
                    ),
                ),
            };
            Level {
                cl: a.cl,
                keyspaces: a.keyspaces,
                safe_to_stop,
                why,
            }
        })
        .collect()
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
    keyspaces: Vec<(String, Result<Vec<Range>, String>)>,
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
        // Two reads: the failure detector's two attributes, then StorageService's.
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
                let mut fallback = |attr: &str, is_up: bool| match text(m, STORAGE_SERVICE, attr)
                    .and_then(|t| list(&t))
                {
                    Ok(l) => {
                        for a in l {
                            up.insert(address(&a), is_up);
                        }
                    }
                    Err(e2) => {
                        errors.push(format!("nodes: {attr}: {}", crate::text::sanitize(&e2)))
                    }
                };
                fallback("LiveNodes", true);
                fallback("UnreachableNodes", false);
                errors.push(format!("SimpleStates: {}", crate::text::sanitize(&e)));
            }
        }
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
        let host_id = self.host_id.clone();
        let mut nodes: Vec<Node> = gossip
            .iter()
            .filter_map(|g| {
                let state = ring_state(g, &lists)?;
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
                    local: host_id.is_some() && g.host_id == host_id,
                })
            })
            .collect();
        self.refresh_ranges(m, keyspaces, &nodes, &mut errors);
        // Replicas gossip does not know are nodes too, of unknown status.
        for (i, name) in self.names.all.iter().enumerate() {
            let replica = self.keyspaces.iter().any(|(_, r)| {
                r.as_ref()
                    .is_ok_and(|r| r.iter().any(|r| r.replicas.contains(&(i as u32))))
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
        nodes.sort_by(|a, b| a.address.cmp(&b.address));
        let local = nodes.iter().find(|n| n.local).cloned();
        for n in &nodes {
            self.names.id(&n.address);
        }
        let count = self.names.all.len();
        let (mut live, mut dc) = (vec![None; count], vec![None; count]);
        for n in &nodes {
            if let Some(i) = self.names.get(&n.address) {
                live[i as usize] = Some(n.status == "UP");
                dc[i as usize] = (n.dc != UNKNOWN).then(|| n.dc.clone());
            }
        }
        let local_dc = local
            .as_ref()
            .and_then(|n| (n.dc != UNKNOWN).then(|| n.dc.clone()));
        let levels = availability(&Ring {
            names: &self.names.all,
            live: &live,
            dc: &dc,
            local: local.as_ref().and_then(|n| self.names.get(&n.address)),
            local_dc: local_dc.as_deref(),
            keyspaces: &self.keyspaces,
        });
        ClusterView {
            read_unix_ms: crate::status::model::unix_ms(SystemTime::now()),
            read_ms: crate::status::model::millis(started.elapsed()),
            local: local.map(|n| n.address),
            local_dc,
            nodes,
            levels,
            errors,
            read_mono_ms: crate::status::cluster::mono_ms(),
        }
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
                let ranges = m
                    .invoke(STORAGE_SERVICE, "getRangeToEndpointMap", &[ks])
                    .and_then(|t| t.ok_or_else(|| "no answer".to_string()))
                    .and_then(|t| range_map(&t, &mut self.names))
                    // No ranges is no knowledge (a keyspace just created), never "safe".
                    .and_then(|r| {
                        if r.is_empty() {
                            Err("no token ranges read yet".to_string())
                        } else {
                            Ok(r)
                        }
                    })
                    .map_err(|e| crate::text::sanitize(&e));
                (crate::text::sanitize(ks), ranges)
            })
            .collect();
        self.ranges_key = key;
        self.ranges_at = Some(Instant::now());
    }
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

    /// A ring of `n` nodes, `tokens` ranges each, replicas on the next `rf`
    /// nodes; `down` nodes are not live.
    pub fn synthetic(n: u32, tokens: u32, rf: u32) -> (Vec<String>, Vec<Range>) {
        let names = (0..n)
            .map(|i| format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256))
            .collect();
        let ranges = (0..n * tokens)
            .map(|t| Range {
                start: (i64::from(t) * 1000).to_string(),
                end: (i64::from(t) * 1000 + 1000).to_string(),
                replicas: (0..rf).map(|k| (t + k) % n).collect(),
            })
            .collect();
        (names, ranges)
    }

    fn ring_of<'a>(
        names: &'a [String],
        live: &'a [Option<bool>],
        dc: &'a [Option<String>],
        local: Option<u32>,
        keyspaces: &'a [(String, Result<Vec<Range>, String>)],
    ) -> Ring<'a> {
        Ring {
            names,
            live,
            dc,
            local,
            local_dc: Some("dc1"),
            keyspaces,
        }
    }

    #[test]
    fn availability_per_level() {
        let (names, ranges) = synthetic(3, 2, 3);
        let ks = vec![("ks".to_string(), Ok(ranges))];
        let dc = vec![Some("dc1".to_string()); 3];
        // Node 0 down, this node is 1.
        let live = vec![Some(false), Some(true), Some(true)];
        let levels = availability(&ring_of(&names, &live, &dc, Some(1), &ks));
        let at = |cl: Cl| levels.iter().find(|l| l.cl == cl).unwrap();
        assert_eq!(at(Cl::One).keyspaces[0].below, Some(0));
        assert_eq!(at(Cl::Quorum).keyspaces[0].below, Some(0));
        assert_eq!(at(Cl::All).keyspaces[0].below, Some(6));
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
        // All up: QUORUM is safe to lose one.
        let live = vec![Some(true); 3];
        let levels = availability(&ring_of(&names, &live, &dc, Some(1), &ks));
        let at = |cl: Cl| levels.iter().find(|l| l.cl == cl).unwrap();
        assert_eq!(at(Cl::Quorum).safe_to_stop, Some(true));
        assert_eq!(at(Cl::All).safe_to_stop, Some(false));
    }

    #[test]
    fn unknown_is_never_live() {
        let (names, ranges) = synthetic(3, 1, 3);
        let ks = vec![("ks".to_string(), Ok(ranges))];
        let dc = vec![Some("dc1".to_string()); 3];
        let live = vec![None, Some(true), Some(true)];
        let levels = availability(&ring_of(&names, &live, &dc, Some(1), &ks));
        let all = levels.iter().find(|l| l.cl == Cl::All).unwrap();
        assert_eq!(all.keyspaces[0].below, Some(3));
        // This node unknown: safe-to-stop is unknown, not "safe".
        let live = vec![Some(true); 3];
        let levels = availability(&ring_of(&names, &live, &dc, None, &ks));
        assert!(
            levels.iter().all(|l| l.safe_to_stop.is_none()),
            "{levels:?}"
        );
        // A keyspace that could not be read.
        let ks = vec![("ks".to_string(), Err("boom".to_string()))];
        let levels = availability(&ring_of(&names, &live, &dc, Some(0), &ks));
        let one = &levels[0];
        assert_eq!(one.safe_to_stop, None);
        assert!(one.why.contains("ks: boom"), "{}", one.why);
        // Replicas of an unknown DC count as local for LOCAL_QUORUM.
        let (names, ranges) = synthetic(3, 1, 3);
        let ks = vec![("ks".to_string(), Ok(ranges))];
        let dc = vec![Some("dc1".into()), Some("dc2".into()), None];
        let live = vec![Some(true), Some(true), Some(false)];
        let levels = availability(&ring_of(&names, &live, &dc, Some(0), &ks));
        let lq = levels.iter().find(|l| l.cl == Cl::LocalQuorum).unwrap();
        // Local: node 0 (live) and node 2 (unknown DC, down): 1 of 2 needed,
        // in each of the 3 ranges.
        assert_eq!(lq.keyspaces[0].below, Some(3));
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
            match self.0.get(&format!("{op}/{}", args[0])) {
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
        assert_eq!(v.not_ready(), vec!["127.0.0.1 DOWN NORMAL".to_string()]);
        let mut m = three_nodes("{/127.0.0.1=UP, /127.0.0.2=UP, /127.0.0.3=UP}");
        let v = Reader::default().read(&mut m);
        assert!(v.not_ready().is_empty());
        assert_eq!(v.level(Cl::Quorum).unwrap().safe_to_stop, Some(true));
        // Through the HTTP answer and the command's reading of it.
        use crate::status::cluster::{answer, request, verdict};
        let mut snap = crate::status::model::Snapshot::new(1, Default::default());
        snap.cluster = Some(v);
        let q = |cl: &str| request("/cluster", Some(cl)).unwrap().unwrap();
        let (code, _, body) = answer(&q("cl=QUORUM"), &snap, 0);
        assert_eq!(code, 200);
        assert!(verdict(&body).unwrap().0, "{body}");
        let (_, _, body) = answer(&q("cl=ALL"), &snap, 0);
        let (safe, why) = verdict(&body).unwrap();
        assert!(!safe);
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
        assert!(!v.not_ready().is_empty());
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
        let not = v.not_ready();
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
            v.not_ready().iter().any(|e| e.contains("no nodes")),
            "{:?}",
            v.not_ready()
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
        assert_eq!(v.not_ready(), vec!["127.0.0.3 UP JOINING".to_string()]);
    }

    /// `cargo test --release --lib cassandra::cluster::tests::bench_availability -- --ignored --nocapture`
    #[test]
    #[ignore = "a benchmark: run with --ignored --release"]
    fn bench_availability() {
        let (names, ranges) = synthetic(1000, 256, 3);
        let ks = vec![("ks".to_string(), Ok(ranges))];
        let dc = vec![Some("dc1".to_string()); 1000];
        let mut live = vec![Some(true); 1000];
        live[7] = Some(false);
        let ring = ring_of(&names, &live, &dc, Some(3), &ks);
        let mut times = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            let levels = availability(&ring);
            times.push(t.elapsed());
            assert_eq!(levels[3].keyspaces[0].below, Some(768));
        }
        times.sort();
        // The text one read of such a ring is, and parsing it.
        let text = {
            let mut s = String::from("{");
            for (i, r) in ks[0].1.as_ref().unwrap().iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let reps: Vec<&str> = r
                    .replicas
                    .iter()
                    .map(|i| names[*i as usize].as_str())
                    .collect();
                s.push_str(&format!("[{}, {}]=[{}]", r.start, r.end, reps.join(", ")));
            }
            s.push('}');
            s
        };
        let t = Instant::now();
        let parsed = range_map(&text, &mut Names::default()).unwrap();
        let parse = t.elapsed();
        assert_eq!(parsed.len(), 256_000);
        println!(
            "availability, 1000 nodes x 256 tokens, RF=3, 4 levels now and without this node: median {:.2} ms, max {:.2} ms (21 runs); parsing its {:.1} MB range map: {:.1} ms",
            times[10].as_secs_f64() * 1e3,
            times[20].as_secs_f64() * 1e3,
            text.len() as f64 / 1e6,
            parse.as_secs_f64() * 1e3
        );
    }
}
