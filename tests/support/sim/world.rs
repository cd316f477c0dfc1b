//! Cassandra as the agent's probe sees it, driven by a timeline: its mode,
//! its transport, what CQL does, and the counters the start-up and drain
//! progress is read from (grown at each read while a stretch moves).

use super::timeline::{Cql, Seg, Source, SplitMix, Timeline, What};
use cqlready::cassandra::progress::{Signals, IO_STEP};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// The world at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truth {
    pub what: What,
    pub moving: bool,
    /// The JVM got SIGTERM while starting: nothing moves any more.
    pub frozen: bool,
}

pub struct World {
    boot: Vec<Seg>,
    drain: Vec<Seg>,
    /// When SIGTERM came and whether Cassandra was NORMAL then.
    term: Option<(Duration, bool)>,
    rng: SplitMix,
    writes: u64,
    sstables: u64,
    io: u64,
    load: u64,
    streamed: u64,
    turn: bool,
    last_mode: Option<Option<&'static str>>,
    pub transport_ran: bool,
    /// When a read last saw something change (a count, or the mode).
    pub moved_at: Duration,
}

fn find(segs: &[Seg], mut t: Duration) -> Option<Seg> {
    for s in segs {
        if t < s.len {
            return Some(*s);
        }
        t -= s.len;
    }
    None
}

fn total(segs: &[Seg]) -> Duration {
    segs.iter().map(|s| s.len).sum()
}

impl World {
    pub fn new(tl: &Timeline, seed: u64) -> World {
        World {
            boot: tl.boot.clone(),
            drain: tl.drain.clone(),
            term: None,
            rng: SplitMix(seed ^ 0x5eed),
            writes: 0,
            sstables: 0,
            io: 0,
            load: 0,
            streamed: 0,
            turn: false,
            last_mode: None,
            transport_ran: false,
            moved_at: Duration::ZERO,
        }
    }

    /// What Cassandra does at `t`.
    pub fn at(&self, t: Duration) -> Truth {
        let normal = Seg {
            what: What::Normal(Cql::Answer),
            moving: false,
            len: Duration::MAX,
        };
        let (seg, frozen) = match self.term {
            Some((s, true)) if t >= s => {
                let drained = Seg {
                    what: What::Draining,
                    ..normal
                };
                (find(&self.drain, t - s).unwrap_or(drained), false)
            }
            Some((s, false)) if t >= s => (find(&self.boot, s).unwrap_or(normal), true),
            _ => (find(&self.boot, t).unwrap_or(normal), false),
        };
        Truth {
            what: seg.what,
            moving: seg.moving && !frozen,
            frozen,
        }
    }

    /// SIGTERM at `t`; when the JVM will exit.
    pub fn sigterm(&mut self, t: Duration, tl: &Timeline) -> Duration {
        let normal = matches!(
            self.at(t).what,
            What::Normal(_) | What::TransportOff | What::Draining
        );
        self.term = Some((t, normal));
        t + if normal {
            total(&tl.drain)
        } else {
            tl.term_exit
        }
    }

    /// Since when the stretch at `t` has kept moving (`None`: it does not).
    pub fn moving_since(&self, t: Duration) -> Option<Duration> {
        if !self.at(t).moving {
            return None;
        }
        let (segs, origin) = match self.term {
            Some((s, true)) if t >= s => (&self.drain, s),
            _ => (&self.boot, Duration::ZERO),
        };
        let mut since = origin;
        let mut at = origin;
        for s in segs {
            if t < at + s.len {
                return Some(since);
            }
            at += s.len;
            if !s.moving {
                since = at;
            }
        }
        Some(since)
    }

    pub fn mode(&self, t: Duration) -> Option<&'static str> {
        match self.at(t).what {
            What::PreMBean => None,
            What::Replay | What::SSTables | What::Interleaved => Some("STARTING"),
            What::Joining => Some("JOINING"),
            What::Normal(_) | What::TransportOff => Some("NORMAL"),
            What::Draining => Some("DRAINING"),
        }
    }

    /// Whether the native transport runs at `t`, and what CQL does then.
    pub fn cql(&mut self, t: Duration) -> (bool, Cql) {
        match self.at(t).what {
            What::Normal(c) => {
                self.transport_ran = true;
                (true, c)
            }
            _ => (false, Cql::Refuse),
        }
    }

    /// One read of the signs at `t`, the counters grown if the stretch moves.
    pub fn read(&mut self, t: Duration) -> Signals {
        let truth = self.at(t);
        let mode = self.mode(t);
        let mut grow = |n: u64| 1 + self.rng.below(n);
        if truth.moving {
            match truth.what {
                What::PreMBean | What::Draining => self.io += IO_STEP + grow(32 * MIB),
                What::Replay => self.writes += grow(5000),
                What::SSTables => self.sstables += grow(3),
                What::Interleaved => {
                    self.turn = !self.turn;
                    if self.turn {
                        self.writes += grow(5000);
                    } else {
                        self.sstables += 1;
                    }
                }
                What::Joining => {
                    self.streamed += grow(8 * MIB);
                    self.load += grow(8 * MIB);
                }
                _ => {}
            }
            self.io += self.rng.below(MIB);
        }
        if truth.moving || self.last_mode != Some(mode) {
            self.moved_at = t;
        }
        self.last_mode = Some(mode);
        self.signals(mode)
    }

    fn signals(&self, mode: Option<&'static str>) -> Signals {
        let joining = mode == Some("JOINING");
        let starting = matches!(mode, None | Some("STARTING"));
        Signals {
            mode: mode.map(str::to_string),
            bootstrap: joining.then_some(true),
            load_bytes: (mode.is_some()).then_some(self.load as f64),
            streams: if joining { self.streamed } else { 0 },
            streamed: joining.then_some((self.streamed, self.streamed + 64 * MIB)),
            writes: (mode == Some("STARTING")).then_some(self.writes),
            sstables: (mode == Some("STARTING")).then_some(self.sstables),
            io_bytes: (mode != Some("NORMAL") || starting).then_some(self.io),
        }
    }
}
