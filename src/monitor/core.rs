//! The monitor's decisions, pure: `(state, event, now) -> (messages, next
//! state)`. No clock is read, nothing sleeps, nothing is sent: `now` comes
//! in (a monotonic instant for decisions, a wall-clock time for the texts
//! that name one) and the messages go out, for `run.rs` to send with the
//! real clock and probe, or for `tests/sim.rs` to judge under a virtual one.
//!
//! ```text
//!  starting ──first good check──> ready ──`failures` bad checks in a row──> degraded
//!                                   ^                                          │
//!                                   └───────────────good check─────────────────┘
//!  any state ──VM death──> stopping
//! ```

use crate::notify::Field;
use crate::status::model::State;
use std::time::{Duration, Instant, SystemTime};

/// The time of one event: the monotonic instant decisions are made on, and
/// the wall-clock time that texts and the snapshot name.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

/// How the loop is paced and what it calls what it watches.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Probe period while not ready.
    pub interval: Duration,
    /// Probe period while ready.
    pub check: Duration,
    /// Consecutive failed checks that turn ready into degraded.
    pub failures: u32,
    /// What is watched and where, for STATUS= lines: "CQL", "127.0.0.1:9042".
    pub subject: String,
    pub place: String,
    /// How long a start or a drain may go without moving before its
    /// extensions stop.
    pub extend: Duration,
    /// End the loop when ready turns degraded (the `watch` command exits,
    /// so units bound to it stop) instead of waiting for recovery.
    pub exit_on_degraded: bool,
}

/// Start-up (or a drain) that moves: what it is doing and how long ago it
/// last moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Moving {
    /// The `STATUS=` text: "Cassandra STARTING (replaying the commit log, …)".
    pub text: String,
    /// Time since the last sign of movement.
    pub quiet: Duration,
}

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// When the check began (the next is due a period after it).
    pub started: Instant,
    /// `Ok(Some(v))` carries the CQL protocol version that answered.
    pub verdict: Result<Option<u8>, String>,
    /// Start-up or a drain moving, as the probe sees it.
    pub progress: Option<Moving>,
    /// Not ready, but deliberately so (a drained node).
    pub keep_alive: bool,
}

/// A change worth telling the service manager about.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// CQL answered for the first time, `after` the monitor started.
    FirstReady { after: Duration },
    /// CQL answers again after being degraded for `down`.
    Recovered { down: Duration },
    /// Ready, then `failures` consecutive failed checks.
    Degraded,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The snapshot was marked stopping.
    Stopped,
    /// Ready turned degraded and `exit_on_degraded` was set.
    Degraded,
}

/// The readiness state machine alone.
#[derive(Debug)]
pub struct Machine {
    state: State,
    started: Instant,
    since: Instant,
    failures_to_degrade: u32,
    consecutive_failures: u32,
}

impl Machine {
    pub fn new(now: Instant, failures_to_degrade: u32) -> Machine {
        Machine {
            state: State::Starting,
            started: now,
            since: now,
            failures_to_degrade: failures_to_degrade.max(1),
            consecutive_failures: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Feeds one check's verdict.
    pub fn observe(&mut self, ok: bool, now: Instant) -> Option<Transition> {
        if self.state == State::Stopping {
            return None;
        }
        if ok {
            self.consecutive_failures = 0;
            let t = match self.state {
                State::Starting => Transition::FirstReady {
                    after: now.saturating_duration_since(self.started),
                },
                State::Degraded => Transition::Recovered {
                    down: now.saturating_duration_since(self.since),
                },
                _ => return None,
            };
            self.enter(State::Ready, now);
            return Some(t);
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.state == State::Ready && self.consecutive_failures >= self.failures_to_degrade {
            self.enter(State::Degraded, now);
            return Some(Transition::Degraded);
        }
        None
    }

    /// The VM is going away; `false` if it already was.
    pub fn stop(&mut self, now: Instant) -> bool {
        if self.state == State::Stopping {
            return false;
        }
        self.enter(State::Stopping, now);
        true
    }

    fn enter(&mut self, state: State, now: Instant) {
        self.state = state;
        self.since = now;
    }
}

/// "12:03:04 UTC".
fn clock_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// The status line for a transition: "CQL ready on 127.0.0.1:9042 after 31.2 s".
pub fn status_text(pace: &Pace, t: &Transition, error: Option<&str>, now: SystemTime) -> String {
    let (what, place) = (&pace.subject, &pace.place);
    match t {
        Transition::FirstReady { after } => {
            format!("{what} ready on {place} after {:.1} s", after.as_secs_f64())
        }
        Transition::Recovered { down } => {
            format!(
                "{what} ready on {place} again, after {:.1} s not answering",
                down.as_secs_f64()
            )
        }
        Transition::Degraded => format!(
            "{what} on {place} not answering since {} ({})",
            clock_time(now),
            error.unwrap_or("no answer")
        ),
    }
}

/// The phase a progress text names: the text before its first comma, e.g.
/// "Cassandra STARTING (replaying the commit log" of "Cassandra STARTING
/// (replaying the commit log, 5000 writes applied, …)"; the counts after it
/// change at every read and are no new phase.
pub fn phase_of(text: &str) -> &str {
    text.split(',').next().unwrap_or(text)
}

/// The last message of all: `STOPPING=1` and why.
pub fn stopping(why: &str) -> Vec<Field> {
    vec![Field::Stopping, Field::Status(why.to_string())]
}

/// What the snapshot says of the state, for `/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub state: State,
    pub since: SystemTime,
    pub time_to_ready: Option<Duration>,
}

/// The monitor between two events.
#[derive(Debug)]
pub struct Core {
    pace: Pace,
    watchdog: Option<Duration>,
    machine: Machine,
    waiting: String,
    last_error: Option<String>,
    degraded_since: SystemTime,
    report: Report,
    /// When the last check began, and the next one is due.
    next_check: Instant,
    next_ping: Instant,
    keep_alive: bool,
    /// When `EXTEND_TIMEOUT_USEC` was last sent.
    extended: Option<Instant>,
    /// The phase the last progress `STATUS=` named.
    phase: Option<String>,
    ended: Option<Ended>,
}

impl Core {
    /// The monitor at its start, and its first message ("Waiting for CQL on …").
    pub fn new(pace: Pace, watchdog: Option<Duration>, now: Now) -> (Core, Vec<Field>) {
        let waiting = format!("Waiting for {} on {}", pace.subject, pace.place);
        let first = vec![Field::Status(waiting.clone())];
        let core = Core {
            machine: Machine::new(now.mono, pace.failures),
            pace,
            watchdog,
            waiting,
            last_error: None,
            degraded_since: now.wall,
            report: Report {
                state: State::Starting,
                since: now.wall,
                time_to_ready: None,
            },
            next_check: now.mono,
            next_ping: now.mono,
            keep_alive: false,
            extended: None,
            phase: None,
            ended: None,
        };
        (core, first)
    }

    pub fn state(&self) -> State {
        self.machine.state()
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.machine.consecutive_failures()
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    /// `Some` once the loop should end.
    pub fn ended(&self) -> Option<Ended> {
        self.ended
    }

    /// When the next check is due.
    pub fn next_check(&self) -> Instant {
        self.next_check
    }

    /// When the loop must run again: the next check, or a `WATCHDOG=1` before it.
    pub fn wake_at(&self) -> Instant {
        match self.watchdog {
            Some(_) if self.healthy() => self.next_check.min(self.next_ping),
            _ => self.next_check,
        }
    }

    fn healthy(&self) -> bool {
        self.machine.state() == State::Ready || self.keep_alive
    }

    /// One check's outcome: announce a transition or explain a new reason,
    /// ask for more time while starting or draining, feed the watchdog.
    pub fn checked(&mut self, check: Check, now: Now) -> Vec<Vec<Field>> {
        if self.ended.is_some() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let transition = self.machine.observe(check.verdict.is_ok(), now.mono);
        let new_error = match &check.verdict {
            Err(e) if self.last_error.as_deref() != Some(e) => Some(e.clone()),
            _ => None,
        };
        self.last_error = check.verdict.as_ref().err().cloned();
        self.keep_alive = check.keep_alive;
        if let Some(t) = &transition {
            out.push(self.announce(t, now));
            if self.pace.exit_on_degraded && *t == Transition::Degraded {
                self.ended = Some(Ended::Degraded);
                return out;
            }
        } else if let Some(e) = &new_error {
            out.extend(self.explain(e));
        }
        // Start-up, and a drain (a stop's, or an operator's: without
        // STOPPING=1 systemd applies the extension to nothing but
        // RuntimeMaxSec=), get more time while they move.
        if self.machine.state() == State::Starting || check.keep_alive {
            out.extend(self.ask_for_time(check.progress.as_ref(), now));
        }
        let period = match self.machine.state() {
            State::Ready => self.pace.check,
            _ => self.pace.interval,
        };
        self.next_check = check.started + period;
        out.extend(self.tick(now));
        out
    }

    /// Woken between checks: feed the watchdog when it is due.
    pub fn tick(&mut self, now: Now) -> Vec<Vec<Field>> {
        match self.watchdog {
            Some(wd) if self.ended.is_none() && self.healthy() && now.mono >= self.next_ping => {
                self.next_ping = now.mono + wd;
                vec![vec![Field::Watchdog]]
            }
            _ => Vec::new(),
        }
    }

    /// The VM is going away: the last message, once.
    pub fn stop(&mut self, why: &str, now: Now) -> Vec<Vec<Field>> {
        self.ended = Some(Ended::Stopped);
        if !self.machine.stop(now.mono) {
            return Vec::new();
        }
        self.report.state = State::Stopping;
        self.report.since = now.wall;
        vec![stopping(why)]
    }

    /// What a send's outcome changes (nothing yet: a lost datagram is lost).
    pub fn sent(&mut self, _fields: &[Field], _ok: bool, _now: Now) {}

    /// The message for a transition, and the report it changes.
    fn announce(&mut self, t: &Transition, now: Now) -> Vec<Field> {
        if *t == Transition::Degraded {
            self.degraded_since = now.wall;
        }
        let text = status_text(
            &self.pace,
            t,
            self.last_error.as_deref(),
            self.degraded_since,
        );
        self.report.state = self.machine.state();
        self.report.since = now.wall;
        if let Transition::FirstReady { after } = t {
            self.report.time_to_ready = Some(*after);
        }
        self.next_ping = now.mono;
        match t {
            Transition::FirstReady { .. } => vec![Field::Ready, Field::Status(text)],
            _ => vec![Field::Status(text)],
        }
    }

    /// Why it is not ready changed (Cassandra's mode, say): say so.
    fn explain(&self, e: &str) -> Option<Vec<Field>> {
        let text = match self.machine.state() {
            State::Starting => format!("{}: {e}", self.waiting),
            State::Degraded => status_text(
                &self.pace,
                &Transition::Degraded,
                Some(e),
                self.degraded_since,
            ),
            _ => return None,
        };
        Some(vec![Field::Status(text)])
    }

    /// While starting or draining with progress to show: more time, a third
    /// of `extend` apart at most; and between extensions, a `STATUS=` when
    /// the phase changes, so that a phase shorter than `extend`/3 (a quick
    /// commit-log replay) is still named.
    fn ask_for_time(&mut self, progress: Option<&Moving>, now: Now) -> Option<Vec<Field>> {
        let text = &progress?.text;
        let phase = phase_of(text);
        let fields = if self
            .extended
            .is_none_or(|t| now.mono.saturating_duration_since(t) >= self.pace.extend / 3)
        {
            self.extended = Some(now.mono);
            vec![
                Field::ExtendTimeout(self.pace.extend),
                Field::Status(text.clone()),
            ]
        } else if self.phase.as_deref() != Some(phase) {
            vec![Field::Status(text.clone())]
        } else {
            return None;
        };
        self.phase = Some(phase.to_string());
        Some(fields)
    }
}
