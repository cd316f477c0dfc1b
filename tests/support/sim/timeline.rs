//! Timelines: what the outside world does (Cassandra's phases, CQL, the
//! service manager's timeouts and SIGTERM, a failing notify socket, the
//! wall clock), generated from any source of numbers: a seeded PRNG in
//! `tests/sim.rs`, the fuzzer's bytes in `fuzz/`.

use std::fmt;
use std::time::Duration;

/// Numbers to build a timeline from.
pub trait Source {
    fn next(&mut self) -> u64;
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// A duration in [lo, hi), in milliseconds.
    fn ms(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo).max(1)))
    }
}

/// splitmix64: a seeded, reproducible sequence.
pub struct SplitMix(pub u64);

impl Source for SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce5_e4b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The fuzzer's bytes, eight at a time; zeros once they run out.
pub struct Bytes<'a>(pub &'a [u8]);

impl Source for Bytes<'_> {
    fn next(&mut self) -> u64 {
        let n = self.0.len().min(8);
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(b)
    }
}

/// How CQL behaves while the transport runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cql {
    Answer,
    Refuse,
    /// Connects, then says nothing until the check's timeout.
    Hang,
    Reset,
}

/// What Cassandra does in one stretch of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// Before its MBeans exist: only the JVM's disk I/O tells.
    PreMBean,
    /// STARTING: writes applied grow.
    Replay,
    /// STARTING: SSTables open.
    SSTables,
    /// STARTING: replay and SSTable opening by turns (replay flushes).
    Interleaved,
    /// JOINING: bootstrap streaming.
    Joining,
    /// NORMAL, transport running, CQL behaving so.
    Normal(Cql),
    /// NORMAL, transport switched off (`nodetool disablebinary`).
    TransportOff,
    /// DRAINING after SIGTERM: memtables flushing.
    Draining,
}

/// One stretch: what, whether it moves, how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    pub what: What,
    pub moving: bool,
    pub len: Duration,
}

/// When the service manager sends SIGTERM (`systemctl stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Term {
    At(Duration),
    /// This long after `READY=1` arrived.
    AfterReady(Duration),
    /// This long after the n-th `EXTEND_TIMEOUT_USEC=` arrived.
    AfterExtend(u32, Duration),
}

/// One generated timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    pub interval: Duration,
    pub check: Duration,
    pub timeout: Duration,
    pub extend: Duration,
    pub failures: u32,
    /// `TimeoutStartSec=`, `TimeoutStopSec=` (`None`: infinity), `WatchdogSec=`.
    pub start_timeout: Option<Duration>,
    pub stop_timeout: Option<Duration>,
    pub watchdog: Option<Duration>,
    /// Start-up, then NORMAL and whatever CQL does, then SIGTERM.
    pub boot: Vec<Seg>,
    pub term: Term,
    /// After SIGTERM while NORMAL; then the JVM exits.
    pub drain: Vec<Seg>,
    /// After SIGTERM during start-up: the JVM exits this much later.
    pub term_exit: Duration,
    /// The JVM exits by itself at this time.
    pub crash: Option<Duration>,
    /// Stretches (from, length) in which every notification fails.
    pub outages: Vec<(Duration, Duration)>,
    /// Wall-clock steps (at, seconds).
    pub jumps: Vec<(Duration, i64)>,
}

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

fn timeout_of(src: &mut impl Source, extend: Duration, check: Duration) -> Option<Duration> {
    match src.below(6) {
        0 => None,
        1 => Some(src.ms(MS(100), check.max(MS(101)))),
        2 => Some(src.ms(MS(100), extend.max(MS(101)))),
        _ => Some(src.ms(MS(500), extend * 3)),
    }
}

fn boot_seg(src: &mut impl Source, extend: Duration) -> Seg {
    let what = src.pick(&[
        What::PreMBean,
        What::Replay,
        What::SSTables,
        What::Interleaved,
        What::Joining,
    ]);
    Seg {
        what,
        moving: src.chance(75),
        len: src.ms(MS(0), extend * 3),
    }
}

fn run_seg(src: &mut impl Source, extend: Duration) -> Seg {
    let what = match src.below(10) {
        0 => What::TransportOff,
        1 => What::Normal(Cql::Refuse),
        2 => What::Normal(Cql::Hang),
        3 => What::Normal(Cql::Reset),
        _ => What::Normal(Cql::Answer),
    };
    Seg {
        what,
        moving: false,
        len: src.ms(MS(0), extend * 2),
    }
}

impl Timeline {
    /// A timeline from `src`: the agent's pacing within the options' limits
    /// (each period and the check's timeout at most `extend`/4), the unit's
    /// timeouts any value.
    pub fn generate(src: &mut impl Source) -> Timeline {
        let extend = src.pick(&[S(1), S(2), S(5), S(10), S(30), S(120)]);
        let interval = (extend / src.pick(&[4, 6, 10, 20])).max(MS(10));
        let check = (interval * src.pick(&[1, 2, 4])).min(extend / 4);
        let timeout = src.ms(MS(5), extend / 4);
        let mut boot: Vec<Seg> = (0..src.below(5)).map(|_| boot_seg(src, extend)).collect();
        boot.extend((0..src.below(4)).map(|_| run_seg(src, extend)));
        let term = match src.below(4) {
            0 => Term::At(src.ms(MS(0), extend * 8)),
            1 => Term::AfterReady(src.ms(MS(0), MS(300))),
            2 => Term::AfterExtend(1 + src.below(4) as u32, src.ms(MS(0), MS(300))),
            _ => Term::AfterReady(src.ms(MS(0), extend * 2)),
        };
        let drain = (0..src.below(4))
            .map(|_| Seg {
                what: What::Draining,
                moving: src.chance(70),
                len: src.ms(MS(0), extend * 3),
            })
            .collect();
        let start_timeout = timeout_of(src, extend, check);
        let stop_timeout = timeout_of(src, extend, check);
        let watchdog = src
            .chance(30)
            .then(|| (check + timeout) * 2 + src.ms(MS(0), S(5)));
        let crash = src.chance(5).then(|| src.ms(MS(0), extend * 6));
        let outages = (0..src.below(3).saturating_sub(1))
            .map(|_| (src.ms(MS(0), extend * 6), src.ms(MS(0), extend)))
            .collect();
        let jumps = (0..src.below(3).saturating_sub(1))
            .map(|_| (src.ms(MS(0), extend * 6), src.below(7200) as i64 - 3600))
            .collect();
        Timeline {
            interval,
            check,
            timeout,
            extend,
            failures: 1 + src.below(4) as u32,
            start_timeout,
            stop_timeout,
            watchdog,
            boot,
            term,
            drain,
            term_exit: src.ms(MS(0), S(3)),
            crash,
            outages,
            jumps,
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn opt(d: Option<Duration>) -> String {
    d.map(secs).unwrap_or_else(|| "infinity".into())
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  agent: interval={} check={} timeout={} extend={} failures={}",
            secs(self.interval),
            secs(self.check),
            secs(self.timeout),
            secs(self.extend),
            self.failures
        )?;
        writeln!(
            f,
            "  unit: TimeoutStartSec={} TimeoutStopSec={} WatchdogSec={}",
            opt(self.start_timeout),
            opt(self.stop_timeout),
            opt(self.watchdog)
        )?;
        for s in &self.boot {
            let how = if s.moving { "moving" } else { "still" };
            writeln!(f, "  boot: {:?} {how} for {}", s.what, secs(s.len))?;
        }
        writeln!(f, "  then NORMAL, CQL answering; SIGTERM {:?}", self.term)?;
        for s in &self.drain {
            let how = if s.moving { "moving" } else { "stalled" };
            writeln!(f, "  drain: {how} for {}", secs(s.len))?;
        }
        writeln!(
            f,
            "  SIGTERM while starting: exit after {}; crash at {}; notify fails {:?}; clock jumps {:?}",
            secs(self.term_exit),
            opt(self.crash),
            self.outages,
            self.jumps
        )
    }
}
