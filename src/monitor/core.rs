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

use super::line::Line;
use crate::notify::Field;
use crate::probe::Moving;
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

/// The last message of all: `STOPPING=1` and why. When the start failed
/// because another process `held` a port it needs, `STATUS=` names it and
/// `ERRNO=` carries `EADDRINUSE` (98), which `systemctl status` shows.
pub fn stopping(why: &str, held: Option<&str>) -> Vec<Field> {
    match held {
        Some(h) => vec![
            Field::Stopping,
            Field::Status(format!("Did not start: {h}")),
            Field::Errno(libc::EADDRINUSE),
        ],
        None => vec![Field::Stopping, Field::Status(why.to_string())],
    }
}

/// What the snapshot says of the state, for `/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub state: State,
    pub since: SystemTime,
    pub time_to_ready: Option<Duration>,
}

/// The job of the service manager's that an extension is for: a start's
/// and a stop's timeouts are separate (systemd.service(5)), so each gets
/// its own pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Start,
    Drain,
}

/// The monitor between two events.
#[derive(Debug)]
pub struct Core {
    pace: Pace,
    watchdog: Option<Duration>,
    machine: Machine,
    waiting: String,
    /// The text of the last transition to ready.
    ready_text: String,
    last_error: Option<String>,
    degraded_since: SystemTime,
    report: Report,
    next_check: Instant,
    next_ping: Instant,
    keep_alive: bool,
    /// `READY=1` is owed (decided, not yet delivered).
    ready_owed: bool,
    /// The job the last extension was for, and until when it holds.
    extended: Option<(Job, Instant)>,
    line: Line,
    /// When the core last ran (a held-back line is due only after it).
    last_step: Instant,
    ended: Option<Ended>,
}

impl Core {
    /// The monitor at its start, and its first message ("Waiting for CQL on …").
    pub fn new(pace: Pace, watchdog: Option<Duration>, now: Now) -> (Core, Vec<Field>) {
        let waiting = format!("Waiting for {} on {}", pace.subject, pace.place);
        let mut line = Line::default();
        line.want(waiting.clone());
        let core = Core {
            machine: Machine::new(now.mono, pace.failures),
            pace,
            watchdog,
            waiting: waiting.clone(),
            ready_text: String::new(),
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
            ready_owed: false,
            extended: None,
            line,
            last_step: now.mono,
            ended: None,
        };
        (core, vec![Field::Status(waiting)])
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

    /// What the current state says, as its `STATUS=` would: the log's line
    /// for a change of state, whether or not that `STATUS=` goes out now.
    pub fn state_text(&self) -> String {
        self.wanted(None)
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

    /// When the loop must run again: the next check, or before it a
    /// `WATCHDOG=1` or a `STATUS=` held back.
    pub fn wake_at(&self) -> Instant {
        let ping = match self.watchdog {
            Some(_) if self.healthy() => Some(self.next_ping),
            _ => None,
        };
        let held = self.line.due().filter(|t| *t > self.last_step);
        [ping, held]
            .into_iter()
            .flatten()
            .fold(self.next_check, Instant::min)
    }

    fn healthy(&self) -> bool {
        self.machine.state() == State::Ready || self.keep_alive
    }

    /// One check's outcome: a transition, the line that is true now, more
    /// time while starting or draining, the watchdog.
    pub fn checked(&mut self, check: Check, now: Now) -> Vec<Vec<Field>> {
        if self.ended.is_some() {
            return Vec::new();
        }
        let ok = check.verdict.is_ok();
        let transition = self.machine.observe(ok, now.mono);
        self.last_error = check.verdict.err();
        self.keep_alive = check.keep_alive;
        if let Some(t) = &transition {
            self.enter(t, now);
        }
        // Start-up, and a drain (a stop's, or an operator's: without
        // STOPPING=1 systemd applies the extension to nothing but
        // RuntimeMaxSec=), get more time while they move.
        let starting = self.machine.state() == State::Starting;
        let moving = check.progress.filter(|_| starting || check.keep_alive);
        self.line.want(self.wanted(moving.as_ref()));
        let mut out = Vec::new();
        if self.pace.exit_on_degraded && transition == Some(Transition::Degraded) {
            self.ended = Some(Ended::Degraded);
            out.push(vec![Field::Status(self.wanted(None))]);
            return out;
        }
        let mut first = Vec::new();
        if self.ready_owed && ok && self.machine.state() == State::Ready {
            first.push(Field::Ready);
        }
        let extension = moving.as_ref().and_then(|m| self.extension(m, now));
        first.extend(extension.map(Field::ExtendTimeout));
        first.extend(
            self.line
                .offer(now.mono, extension.is_some())
                .map(Field::Status),
        );
        if !first.is_empty() {
            out.push(first);
        }
        let period = match self.machine.state() {
            State::Ready => self.pace.check,
            _ => self.pace.interval,
        };
        self.next_check = check.started + period;
        // The line was offered above: only the watchdog is left to do (a
        // second offer before the first is sent would repeat the text).
        self.last_step = now.mono;
        out.extend(self.ping(now));
        out
    }

    /// Woken between checks: feed the watchdog when it is due, name a
    /// phase that was held back.
    pub fn tick(&mut self, now: Now) -> Vec<Vec<Field>> {
        if self.ended.is_some() {
            return Vec::new();
        }
        self.last_step = now.mono;
        let mut out: Vec<Vec<Field>> = self.ping(now).into_iter().collect();
        if self.line.due().is_some_and(|t| now.mono >= t) {
            out.extend(
                self.line
                    .offer(now.mono, false)
                    .map(|t| vec![Field::Status(t)]),
            );
        }
        out
    }

    /// `WATCHDOG=1` when it is due and the node is healthy.
    fn ping(&mut self, now: Now) -> Option<Vec<Field>> {
        let wd = self.watchdog?;
        if !self.healthy() || now.mono < self.next_ping {
            return None;
        }
        self.next_ping = now.mono + wd;
        Some(vec![Field::Watchdog])
    }

    /// The VM is going away: the last message, once.
    pub fn stop(&mut self, why: &str, now: Now) -> Vec<Vec<Field>> {
        self.ended = Some(Ended::Stopped);
        if !self.machine.stop(now.mono) {
            return Vec::new();
        }
        self.report.state = State::Stopping;
        self.report.since = now.wall;
        vec![stopping(why, None)]
    }

    /// How a message went: a lost `READY=1` or extension is sent again at
    /// the next chance, a lost `STATUS=` is not what the line shows.
    pub fn sent(&mut self, fields: &[Field], ok: bool, now: Now) {
        for f in fields {
            match f {
                Field::Ready if ok => self.ready_owed = false,
                Field::ExtendTimeout(_) if !ok => self.extended = None,
                Field::Status(text) if ok => self.line.shown(text, now.mono),
                _ => {}
            }
        }
    }

    /// A transition: the texts and the report it changes.
    fn enter(&mut self, t: &Transition, now: Now) {
        if *t == Transition::Degraded {
            self.degraded_since = now.wall;
        } else {
            self.ready_text = status_text(&self.pace, t, None, now.wall);
        }
        self.report.state = self.machine.state();
        self.report.since = now.wall;
        if let Transition::FirstReady { after } = t {
            self.report.time_to_ready = Some(*after);
            self.ready_owed = true;
        }
        self.next_ping = now.mono;
    }

    /// The line that is true now: what start-up or the drain is doing
    /// while it moves, else what the state and the last error say.
    fn wanted(&self, moving: Option<&Moving>) -> String {
        if let Some(m) = moving {
            return m.text.clone();
        }
        let (pace, e) = (&self.pace, self.last_error.as_deref());
        match (self.machine.state(), e) {
            (State::Starting, Some(e)) => format!("{}: {e}", self.waiting),
            (State::Starting, None) => self.waiting.clone(),
            (State::Degraded, _) => {
                status_text(pace, &Transition::Degraded, e, self.degraded_since)
            }
            (_, Some(e)) if self.keep_alive => format!("{} on {}: {e}", pace.subject, pace.place),
            _ => self.ready_text.clone(),
        }
    }

    /// More time for the current job while it moves, asking for what is
    /// left of `extend` since the last movement (so that a job that stalls
    /// ends within `extend` of its last movement, or at the unit's own
    /// timeout): at once for a job's first sign, then whenever the time
    /// systemd still grants falls below two thirds of `extend` and a newer
    /// movement can push it further.
    fn extension(&mut self, m: &Moving, now: Now) -> Option<Duration> {
        // A drain is a drain even when the start never saw NORMAL (a stop
        // that came between two checks).
        let job = if self.keep_alive {
            Job::Drain
        } else {
            Job::Start
        };
        let left = self.pace.extend.saturating_sub(m.quiet);
        let until = now.mono + left;
        let due = match self.extended {
            Some((j, granted)) if j == job => {
                granted.saturating_duration_since(now.mono) < self.pace.extend * 2 / 3
                    && until > granted
            }
            _ => true,
        };
        if !due || left.is_zero() {
            return None;
        }
        self.extended = Some((job, until));
        Some(left)
    }
}
