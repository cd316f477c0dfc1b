//! Whether start-up (or a drain at stop) is moving, and what it is doing:
//! the policy behind `EXTEND_TIMEOUT_USEC`, pure (time passed in).
//!
//! Signs of movement, each compared with the previous read:
//! - Cassandra's mode changing (STARTING, JOINING, NORMAL, DRAINING ...);
//! - while joining: the bytes on disk and the current streams;
//! - while starting: writes applied (the all-tables `WriteLatency` count,
//!   which commit-log replay drives) and SSTables open (`LiveSSTableCount`);
//! - any phase: the JVM's own disk I/O (`read_bytes` + `write_bytes` of
//!   `/proc/self/io`), counted only in steps of [`IO_STEP`] so that a wedged
//!   start-up that still logs does not look like progress.
//!
//! Extensions are asked for while something moved within `extend`; once
//! nothing has, they stop, and the unit's own timeout ends a wedged start
//! (or stop) as it should.

use crate::probe::Moving;
use std::time::{Duration, Instant};

/// Disk I/O that counts as movement.
pub const IO_STEP: u64 = 8 * 1024 * 1024;
/// The aggregate table metrics read while starting.
pub const WRITES: &str = "org.apache.cassandra.metrics:type=Table,name=WriteLatency";
pub const SSTABLES: &str = "org.apache.cassandra.metrics:type=Table,name=LiveSSTableCount";

/// One read of the signs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signals {
    pub mode: Option<String>,
    pub bootstrap: Option<bool>,
    pub load_bytes: Option<f64>,
    /// A digest of the current streams (0 when not read).
    pub streams: u64,
    /// Bytes received and to receive across the current streams.
    pub streamed: Option<(u64, u64)>,
    pub writes: Option<u64>,
    pub sstables: Option<u64>,
    pub io_bytes: Option<u64>,
}

impl Signals {
    fn joining(&self) -> bool {
        self.mode.as_deref() == Some("JOINING") || self.bootstrap == Some(true)
    }
}

/// What moved last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moved {
    Mode,
    Streaming,
    Replay,
    SSTables,
    Io,
}

#[derive(Debug)]
pub struct Progress {
    extend: Duration,
    last: Option<Signals>,
    io_mark: Option<u64>,
    /// I/O when the job began: the start's first read, or the drain's
    /// (for "N MiB of disk I/O so far" and "since the drain began"). One
    /// base through the whole start, whatever its modes.
    io_base: Option<u64>,
    changed: Option<(Instant, Moved)>,
    /// When writes applied (commit-log replay) and SSTables open last grew.
    replayed: Option<Instant>,
    opened: Option<Instant>,
    /// The last writes applied and SSTables open read (a read that lacks
    /// them, the MBeans not there yet or failing, names these).
    writes: Option<u64>,
    sstables: Option<u64>,
}

/// How long a start-up phase is named after it last moved: commit-log
/// replay flushes SSTables, so the two move by turns, and the one named is
/// the replay (the higher in rank) until it has been still this long.
pub const PHASE_WINDOW: Duration = Duration::from_secs(5);

/// `read_bytes + write_bytes` from the text of `/proc/self/io`.
pub fn io_bytes(text: &str) -> Option<u64> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(field("read_bytes:")?.saturating_add(field("write_bytes:")?))
}

/// Bytes received and to receive across the streams in the text of
/// StreamManager's `CurrentStreams`: the sum of each stream's
/// `currentRxBytes=` and `totalRxBytes=` (so Cassandra 4.0 to 5.0 name them
/// in the composite data's `toString`). `None` when no stream names a total.
pub fn stream_bytes(text: &str) -> Option<(u64, u64)> {
    let sum = |key: &str| {
        let mut found = false;
        let mut total = 0u64;
        for (at, _) in text.match_indices(key) {
            let digits: &str = &text[at + key.len()..];
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            if let Ok(n) = digits[..end].parse::<u64>() {
                found = true;
                total = total.saturating_add(n);
            }
        }
        found.then_some(total)
    };
    let total = sum("totalRxBytes=")?;
    Some((sum("currentRxBytes=").unwrap_or(0).min(total), total))
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

impl Progress {
    pub fn new(extend: Duration) -> Progress {
        Progress {
            extend,
            last: None,
            io_mark: None,
            io_base: None,
            changed: None,
            replayed: None,
            opened: None,
            writes: None,
            sstables: None,
        }
    }

    /// Feeds one read.
    pub fn observe(&mut self, now: Instant, s: Signals) {
        let prev = self.last.take();
        let grew = |a: Option<u64>, b: Option<u64>| matches!((a, b), (Some(a), Some(b)) if b > a);
        let io_moved = match (self.io_mark, s.io_bytes) {
            (Some(mark), Some(io)) => io.saturating_sub(mark) >= IO_STEP,
            (None, Some(_)) => {
                self.io_mark = s.io_bytes;
                false
            }
            _ => false,
        };
        let moved = match &prev {
            None => Some(Moved::Mode),
            Some(p) if p.mode != s.mode => Some(Moved::Mode),
            Some(p)
                if s.joining()
                    && (p.streams != s.streams
                        || p.streamed != s.streamed
                        || p.load_bytes.map(f64::to_bits) != s.load_bytes.map(f64::to_bits)) =>
            {
                Some(Moved::Streaming)
            }
            Some(p) if grew(p.writes, s.writes) => Some(Moved::Replay),
            Some(p) if grew(p.sstables, s.sstables) => Some(Moved::SSTables),
            _ if io_moved => Some(Moved::Io),
            _ => None,
        };
        let drain_began =
            s.mode.as_deref() == Some("DRAINING") && prev.as_ref().is_none_or(|p| p.mode != s.mode);
        if drain_began || self.io_base.is_none() {
            self.io_base = s.io_bytes;
        }
        self.writes = s.writes.or(self.writes);
        self.sstables = s.sstables.or(self.sstables);
        if let Some(p) = &prev {
            if p.mode == s.mode && grew(p.writes, s.writes) {
                self.replayed = Some(now);
            }
            if p.mode == s.mode && grew(p.sstables, s.sstables) {
                self.opened = Some(now);
            }
        }
        if let Some(m) = moved {
            self.changed = Some((now, m));
            if s.io_bytes.is_some() {
                self.io_mark = s.io_bytes;
            }
        }
        self.last = Some(s);
    }

    /// While start-up (or a drain) moved within `extend`: the `STATUS=`
    /// text naming the phase. `None` in other modes, or once nothing moved.
    pub fn status(&self, now: Instant) -> Option<Moving> {
        let s = self.last.as_ref()?;
        let (at, moved) = self.changed?;
        let quiet = now.saturating_duration_since(at);
        if quiet >= self.extend {
            return None;
        }
        let text = self.text(s, moved, now)?;
        Some(Moving { text, quiet })
    }

    /// The start-up phase to name at `now`: the replay while it moved within
    /// [`PHASE_WINDOW`], else SSTables opening, else what moved last.
    fn start_phase(&self, moved: Moved, now: Instant) -> Moved {
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < PHASE_WINDOW);
        if recent(self.replayed) {
            Moved::Replay
        } else if recent(self.opened) {
            Moved::SSTables
        } else {
            moved
        }
    }

    /// The text naming the phase of read `s`, in which `moved` moved last.
    fn text(&self, s: &Signals, moved: Moved, now: Instant) -> Option<String> {
        let since_mode = match (self.io_base, s.io_bytes) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64),
            _ => None,
        };
        let io = |what: &str| {
            since_mode
                .map(|b| format!(", {} of disk I/O {what}", mib(b)))
                .unwrap_or_default()
        };
        let mode = s.mode.as_deref();
        Some(match mode {
            _ if s.joining() => {
                let streaming = match s.streamed {
                    Some((rx, total)) if total > 0 => format!(
                        ", streaming {:.1}/{}",
                        rx as f64 / (1024.0 * 1024.0),
                        mib(total as f64)
                    ),
                    _ => String::new(),
                };
                let load = s
                    .load_bytes
                    .map(|b| format!("{streaming}, {} on disk", mib(b)))
                    .unwrap_or(streaming);
                let what = if s.bootstrap == Some(true) {
                    "bootstrap in progress"
                } else {
                    "joining the ring"
                };
                format!("Cassandra {} ({what}{load})", mode.unwrap_or("JOINING"))
            }
            Some("DRAINING") => format!(
                "Cassandra DRAINING (flushing memtables{})",
                io("since the drain began")
            ),
            None | Some("STARTING") => {
                let phase = match self.start_phase(moved, now) {
                    Moved::Replay => format!(
                        "replaying the commit log, {} writes applied",
                        self.writes.unwrap_or(0)
                    ),
                    Moved::SSTables => {
                        format!("opening SSTables, {} open", self.sstables.unwrap_or(0))
                    }
                    _ => "starting up".to_string(),
                };
                format!(
                    "Cassandra {} ({phase}{})",
                    mode.unwrap_or("starting"),
                    io("so far")
                )
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mode: Option<&str>, io: u64) -> Signals {
        Signals {
            mode: mode.map(str::to_string),
            io_bytes: Some(io),
            ..Signals::default()
        }
    }

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn proc_self_io() {
        let text = "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(io_bytes(text), Some(12288));
        assert_eq!(io_bytes("rchar: 1\n"), None);
        if let Ok(t) = std::fs::read_to_string("/proc/self/io") {
            assert!(io_bytes(&t).is_some(), "{t}");
        }
    }

    #[test]
    fn a_moving_start_up_is_extended_and_a_wedged_one_is_not() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut p = Progress::new(Duration::from_secs(60));
        p.observe(s(0), at(None, 0));
        assert_eq!(
            p.status(s(1)).map(|m| m.text).as_deref(),
            Some("Cassandra starting (starting up, 0.0 MiB of disk I/O so far)")
        );
        // Commit-log replay: writes applied grow.
        let replay = |w: u64, io: u64| Signals {
            writes: Some(w),
            ..at(Some("STARTING"), io)
        };
        p.observe(s(10), replay(0, MIB));
        p.observe(s(20), replay(5000, 2 * MIB));
        assert_eq!(
            p.status(s(21)).map(|m| m.text).as_deref(),
            Some("Cassandra STARTING (replaying the commit log, 5000 writes applied, 2.0 MiB of disk I/O so far)"),
            "the I/O counts from the start's first read, not from the mode's"
        );
        // SSTables opening.
        p.observe(
            s(30),
            Signals {
                sstables: Some(3),
                ..replay(5000, 2 * MIB)
            },
        );
        p.observe(
            s(40),
            Signals {
                sstables: Some(12),
                ..replay(5000, 2 * MIB)
            },
        );
        assert!(p
            .status(s(41))
            .unwrap()
            .text
            .contains("opening SSTables, 12 open"));
        // Wedged: only a trickle of log writes, below IO_STEP, for longer than extend.
        for k in 0..10u64 {
            p.observe(
                s(50 + k * 10),
                Signals {
                    sstables: Some(12),
                    ..replay(5000, 2 * MIB + k * 100_000)
                },
            );
        }
        assert_eq!(p.status(s(141)), None, "nothing moved for 100 s > extend");
        // Real disk I/O counts again.
        p.observe(
            s(150),
            Signals {
                sstables: Some(12),
                ..replay(5000, 2 * MIB + IO_STEP + MIB)
            },
        );
        assert!(p.status(s(151)).is_some());
        // NORMAL: no more extensions.
        p.observe(s(160), at(Some("NORMAL"), 100 * MIB));
        assert_eq!(p.status(s(161)), None);
    }

    /// Replay flushes SSTables: the two grow by turns, and the replay is
    /// named throughout, until it has been still for PHASE_WINDOW.
    #[test]
    fn interleaved_phases_name_the_replay() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut p = Progress::new(Duration::from_secs(60));
        let read = |w: u64, t: u64| Signals {
            writes: Some(w),
            sstables: Some(t),
            ..at(Some("STARTING"), 0)
        };
        p.observe(ms(0), read(0, 0));
        for k in 1..20u64 {
            // Odd reads: writes grew; even reads: SSTables grew.
            p.observe(ms(k * 100), read(k.div_ceil(2) * 10, k / 2));
            let text = p.status(ms(k * 100)).unwrap().text;
            assert!(text.contains("replaying the commit log"), "{k}: {text}");
        }
        p.observe(ms(2000), read(100, 10));
        p.observe(ms(8000), read(100, 21));
        assert!(p
            .status(ms(8000))
            .unwrap()
            .text
            .contains("opening SSTables, 21 open"));
    }

    #[test]
    fn bootstrap_streaming() {
        let t0 = Instant::now();
        let mut p = Progress::new(Duration::from_secs(2));
        let join = |load: f64, streams: u64| Signals {
            mode: Some("JOINING".into()),
            bootstrap: Some(true),
            load_bytes: Some(load),
            streams,
            ..Signals::default()
        };
        p.observe(t0, join(1048576.0, 1));
        p.observe(t0 + Duration::from_secs(1), join(2097152.0, 2));
        assert_eq!(
            p.status(t0 + Duration::from_secs(2))
                .map(|m| m.text)
                .as_deref(),
            Some("Cassandra JOINING (bootstrap in progress, 2.0 MiB on disk)")
        );
        // Streaming stalls (the source stopped): extensions stop after `extend`.
        p.observe(t0 + Duration::from_secs(2), join(2097152.0, 2));
        p.observe(t0 + Duration::from_secs(4), join(2097152.0, 2));
        assert_eq!(p.status(t0 + Duration::from_secs(4)), None);
    }

    /// The shape of `CurrentStreams`' text (a set of `CompositeDataSupport`s,
    /// their contents sorted by key, arrays written out in full).
    const STREAMS: &str = "[javax.management.openmbean.CompositeDataSupport(compositeType=\
javax.management.openmbean.CompositeType(name=org.apache.cassandra.streaming.StreamState,items=(\
(itemName=currentRxBytes,itemType=javax.management.openmbean.SimpleType(name=java.lang.Long)))),\
contents={currentRxBytes=327155712, currentTxBytes=0, description=Bootstrap, planId=3b1c, \
rxPercentage=39.0, sessions=[javax.management.openmbean.CompositeDataSupport(compositeType=x,\
contents={receivingFiles=[javax.management.openmbean.CompositeDataSupport(compositeType=y,\
contents={currentBytes=1024, totalBytes=2048})]})], totalRxBytes=838860800, totalTxBytes=0, \
txPercentage=0.0})]";

    #[test]
    fn streamed_bytes_from_current_streams() {
        assert_eq!(stream_bytes(STREAMS), Some((327_155_712, 838_860_800)));
        let two = format!("{STREAMS}, {STREAMS}");
        assert_eq!(stream_bytes(&two), Some((654_311_424, 1_677_721_600)));
        assert_eq!(stream_bytes("[]"), None, "no streams");
        for bad in [
            "totalRxBytes=",
            "totalRxBytes=x",
            "currentRxBytes=5",
            "totalRxBytes=99999999999999999999999",
            "totalRxBytes=-1",
        ] {
            assert_eq!(stream_bytes(bad), None, "{bad}");
        }
        assert_eq!(
            stream_bytes("currentRxBytes=9, totalRxBytes=4"),
            Some((4, 4)),
            "never more received than the total"
        );
        assert_eq!(
            stream_bytes("totalRxBytes=18446744073709551615 totalRxBytes=1"),
            Some((0, u64::MAX))
        );
        // Any prefix of the text, cut anywhere (also inside a char), is not a panic.
        let text = format!("{STREAMS}é");
        for i in 0..text.len() {
            if text.is_char_boundary(i) {
                let _ = stream_bytes(&text[..i]);
            }
        }
        let mut p = Progress::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let joining = Signals {
            mode: Some("JOINING".into()),
            bootstrap: Some(true),
            load_bytes: Some(104857.6),
            streamed: stream_bytes(STREAMS),
            ..Signals::default()
        };
        p.observe(t0, joining);
        assert_eq!(
            p.status(t0).map(|m| m.text).as_deref(),
            Some("Cassandra JOINING (bootstrap in progress, streaming 312.0/800.0 MiB, 0.1 MiB on disk)")
        );
    }

    #[test]
    fn a_drain_that_flushes_is_extended_until_it_stops_moving() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut p = Progress::new(Duration::from_secs(30));
        p.observe(s(0), at(Some("NORMAL"), 100 * MIB));
        assert_eq!(p.status(s(1)), None, "NORMAL is not extended");
        p.observe(s(2), at(Some("DRAINING"), 100 * MIB));
        p.observe(s(12), at(Some("DRAINING"), 100 * MIB + 2 * IO_STEP));
        assert_eq!(
            p.status(s(13)).map(|m| m.text).as_deref(),
            Some("Cassandra DRAINING (flushing memtables, 16.0 MiB of disk I/O since the drain began)")
        );
        p.observe(s(50), at(Some("DRAINING"), 100 * MIB + 2 * IO_STEP));
        assert_eq!(p.status(s(50)), None, "a drain that stopped moving");
        p.observe(s(51), at(Some("DRAINED"), 100 * MIB + 2 * IO_STEP));
        assert_eq!(p.status(s(52)), None, "DRAINED: done, nothing to extend");
    }
}
