//! One thread, one state machine: probe, decide, tell the world.
//!
//! ```text
//!  starting ──first good check──> ready ──`failures` bad checks in a row──> degraded
//!                                   ^                                          │
//!                                   └───────────────good check─────────────────┘
//!  any state ──VM death──> stopping
//! ```
//!
//! [`Machine`] is the pure state machine (time passed in, no I/O). [`run`]
//! drives it with a [`Probe`], sends notifications and publishes each
//! change to [`Shared`] (`status/store.rs`), where the status server and long-polls read it. All
//! timing uses the monotonic clock. The agent probes CQL inside the JVM; the
//! `watch` command runs the same loop from outside.

use crate::notify::{Field, Notifier};
use crate::options::Options;
use crate::status::model::{millis, unix_ms, LastCheck, Snapshot, State};
/// The store the loop publishes to; re-exported for the monitor's callers.
pub use crate::status::store::Shared;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What the monitor checks: one call, one verdict.
pub trait Probe: Send {
    /// `Ok(Some(v))` carries the CQL protocol version that answered.
    fn check(&mut self) -> Result<Option<u8>, String>;
    /// Adds what the probe saw to the snapshot (Cassandra's view).
    fn annotate(&self, _snap: &mut Snapshot) {}
    /// While not ready (or kept alive, draining): a description of progress
    /// worth more start or stop time (`EXTEND_TIMEOUT_USEC`), or `None`.
    fn progress(&mut self) -> Option<String> {
        None
    }
    /// Not ready, but deliberately so (a drained node): keep feeding the watchdog.
    fn keep_alive(&self) -> bool {
        false
    }
    /// Whether the thread running the probe is now bound to the JVM and so
    /// must not end while it runs.
    fn bound_to_thread(&self) -> bool {
        false
    }
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

/// The pure state machine.
#[derive(Debug)]
pub struct Machine {
    state: State,
    started: Instant,
    since: Instant,
    failures_to_degrade: u32,
    consecutive_failures: u32,
    ever_ready: bool,
}

impl Machine {
    pub fn new(now: Instant, failures_to_degrade: u32) -> Machine {
        Machine {
            state: State::Starting,
            started: now,
            since: now,
            failures_to_degrade: failures_to_degrade.max(1),
            consecutive_failures: 0,
            ever_ready: false,
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
            self.ever_ready = true;
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
    /// How much more start time to ask for while the probe reports progress.
    pub extend: Duration,
    /// End the loop when ready turns degraded (the `watch` command exits,
    /// so units bound to it stop) instead of waiting for recovery.
    pub exit_on_degraded: bool,
}

impl Pace {
    /// The pacing `options` ask for, watching `subject` at `place`: the one
    /// builder the agent and `cqlready watch` share, so a default changed in
    /// the options table changes both.
    pub fn from_options(options: &Options, subject: String, place: String) -> Pace {
        Pace {
            interval: options.interval,
            check: options.check,
            failures: options.failures,
            subject,
            place,
            extend: options.extend,
            exit_on_degraded: false,
        }
    }
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The snapshot was marked stopping.
    Stopped,
    /// Ready turned degraded and `exit_on_degraded` was set.
    Degraded,
}

/// Sends `fields`, then records the outcome and `also` in one snapshot
/// update, so nobody sees a state before its notification went out.
pub fn tell(
    notifier: &Notifier,
    shared: &Shared,
    fields: &[Field<'_>],
    also: impl FnOnce(&mut Snapshot),
) {
    let result = notifier.send(fields);
    shared.update(|s| {
        also(s);
        for f in fields {
            match (f, &result) {
                (Field::Ready, Ok(true)) => s.notify.ready_sent = true,
                (Field::Stopping, Ok(true)) => s.notify.stopping_sent = true,
                (Field::Watchdog, Ok(true)) => s.notify.watchdog_pings += 1,
                _ => {}
            }
            if let Field::Status(text) = f {
                s.notify.last_status = Some(crate::notify::sanitize(text));
            }
        }
        if result.is_err() {
            s.notify.errors += 1;
        }
    });
}

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
fn progress_phase(text: &str) -> &str {
    text.split(',').next().unwrap_or(text)
}

/// Runs the loop until the snapshot's state becomes `stopping` (or, with
/// `exit_on_degraded`, until ready turns degraded). Each turn: check,
/// record the verdict, announce a transition or explain a new reason, ask
/// for more start time while starting, then pause until the next check,
/// feeding the watchdog (one method of `Loop` each).
pub fn run(
    probe: &mut impl Probe,
    pace: Pace,
    notifier: Arc<Notifier>,
    shared: Arc<Shared>,
) -> Ended {
    let mut l = Loop {
        machine: Machine::new(Instant::now(), pace.failures),
        waiting: format!("Waiting for {} on {}", pace.subject, pace.place),
        pace,
        notifier,
        shared,
        next_ping: Instant::now(),
        last_error: None,
        extended: None,
        phase: None,
        degraded_since: SystemTime::now(),
    };
    tell(&l.notifier, &l.shared, &[Field::Status(&l.waiting)], |_| {});
    loop {
        let started = Instant::now();
        let verdict = probe.check();
        let latency = started.elapsed();
        let now = Instant::now();
        if l.shared.state() == State::Stopping {
            return Ended::Stopped;
        }
        let ok = verdict.is_ok();
        let transition = l.machine.observe(ok, now);
        let new_error = l.record(probe, verdict, latency);
        if let Some(t) = &transition {
            l.announce(t, now);
            if l.pace.exit_on_degraded && *t == Transition::Degraded {
                return Ended::Degraded;
            }
        } else if let Some(e) = &new_error {
            l.explain(e);
        }
        // Start-up, and a drain (a stop's, or an operator's: without
        // STOPPING=1 systemd applies the extension to nothing but
        // RuntimeMaxSec=), get more time while they move.
        if l.machine.state() == State::Starting || probe.keep_alive() {
            l.ask_for_time(probe);
        }
        if let Some(ended) = l.pause(probe, started) {
            return ended;
        }
    }
}

/// What [`run`] carries from one check to the next.
struct Loop {
    machine: Machine,
    pace: Pace,
    notifier: Arc<Notifier>,
    shared: Arc<Shared>,
    /// The `STATUS=` text while starting.
    waiting: String,
    next_ping: Instant,
    last_error: Option<String>,
    /// When `EXTEND_TIMEOUT_USEC` was last sent.
    extended: Option<Instant>,
    /// The phase the last progress `STATUS=` named.
    phase: Option<String>,
    degraded_since: SystemTime,
}

impl Loop {
    /// Publishes one check's outcome; returns its error if it is a new one.
    fn record(
        &mut self,
        probe: &impl Probe,
        verdict: Result<Option<u8>, String>,
        latency: Duration,
    ) -> Option<String> {
        let ok = verdict.is_ok();
        let new_error = match &verdict {
            Err(e) if self.last_error.as_deref() != Some(e) => Some(e.clone()),
            _ => None,
        };
        self.last_error = verdict.as_ref().err().cloned();
        let failures = u64::from(self.machine.consecutive_failures());
        let last_error = self.last_error.clone();
        self.shared.update(|s| {
            s.checks.total += 1;
            if ok {
                s.checks.ok += 1;
            } else {
                s.checks.failed += 1;
            }
            s.checks.consecutive_failures = failures;
            if let Ok(Some(v)) = verdict {
                s.cql.protocol_version = Some(v);
            }
            probe.annotate(s);
            s.last_check = Some(LastCheck {
                ok,
                latency_ms: millis(latency),
                error: last_error,
                at_unix_ms: unix_ms(SystemTime::now()),
            });
        });
        new_error
    }

    /// Tells the service manager and the snapshot about a transition.
    fn announce(&mut self, t: &Transition, now: Instant) {
        if *t == Transition::Degraded {
            self.degraded_since = SystemTime::now();
        }
        let text = status_text(
            &self.pace,
            t,
            self.last_error.as_deref(),
            self.degraded_since,
        );
        crate::info!("{text}");
        let fields: &[Field<'_>] = match t {
            Transition::FirstReady { .. } => &[Field::Ready, Field::Status(&text)],
            _ => &[Field::Status(&text)],
        };
        let state = self.machine.state();
        tell(&self.notifier, &self.shared, fields, |s| {
            s.state = state;
            s.state_since_unix_ms = unix_ms(SystemTime::now());
            if let Transition::FirstReady { after } = t {
                s.time_to_ready_ms = Some(millis(*after));
            }
        });
        self.next_ping = now;
    }

    /// Why it is not ready changed (Cassandra's mode, say): say so.
    fn explain(&self, e: &str) {
        crate::debug!("{} on {}: {e}", self.pace.subject, self.pace.place);
        let text = match self.machine.state() {
            State::Starting => Some(format!("{}: {e}", self.waiting)),
            State::Degraded => Some(status_text(
                &self.pace,
                &Transition::Degraded,
                Some(e),
                self.degraded_since,
            )),
            _ => None,
        };
        if let Some(text) = text {
            tell(
                &self.notifier,
                &self.shared,
                &[Field::Status(&text)],
                |_| {},
            );
        }
    }

    /// While starting or draining with progress to show: more time, a third
    /// of `extend` apart at most; and between extensions, a `STATUS=` when
    /// the phase changes, so that a phase shorter than `extend`/3 (a quick
    /// commit-log replay) is still named.
    fn ask_for_time(&mut self, probe: &mut impl Probe) {
        let Some(text) = probe.progress() else {
            return;
        };
        let phase = progress_phase(&text);
        if self
            .extended
            .is_none_or(|t| t.elapsed() >= self.pace.extend / 3)
        {
            let fields = [Field::ExtendTimeout(self.pace.extend), Field::Status(&text)];
            tell(&self.notifier, &self.shared, &fields, |_| {});
            self.extended = Some(Instant::now());
        } else if self.phase.as_deref() != Some(phase) {
            tell(
                &self.notifier,
                &self.shared,
                &[Field::Status(&text)],
                |_| {},
            );
        } else {
            return;
        }
        self.phase = Some(phase.to_string());
    }

    /// Waits until the next check is due, feeding the watchdog meanwhile;
    /// `Some` when the snapshot turned stopping.
    fn pause(&mut self, probe: &impl Probe, started: Instant) -> Option<Ended> {
        let period = if self.machine.state() == State::Ready {
            self.pace.check
        } else {
            self.pace.interval
        };
        let next_check = started + period;
        let watchdog = self.notifier.watchdog;
        loop {
            let ready = self.machine.state() == State::Ready || probe.keep_alive();
            if let (true, Some(wd)) = (ready, watchdog) {
                if Instant::now() >= self.next_ping {
                    tell(&self.notifier, &self.shared, &[Field::Watchdog], |_| {});
                    self.next_ping = Instant::now() + wd;
                }
            }
            let wake = match (ready, watchdog) {
                (true, Some(_)) => next_check.min(self.next_ping),
                _ => next_check,
            };
            let snap = self.shared.wait_until(wake, |s| s.state == State::Stopping);
            if snap.state == State::Stopping {
                return Some(Ended::Stopped);
            }
            if Instant::now() >= next_check {
                return None;
            }
        }
    }
}

/// Marks the snapshot stopping (which ends [`run`]) and sends `STOPPING=1`.
/// Called from the VM-death callback: it only sends one non-blocking datagram.
pub fn stop(notifier: &Notifier, shared: &Shared, why: &str) {
    let mut first = false;
    shared.update(|s| {
        if s.state != State::Stopping {
            first = true;
            s.state = State::Stopping;
            s.state_since_unix_ms = unix_ms(SystemTime::now());
        }
    });
    if first {
        tell(
            notifier,
            shared,
            &[Field::Stopping, Field::Status(why)],
            |_| {},
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_state_machine() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut m = Machine::new(t0, 2);
        assert_eq!(m.state(), State::Starting);
        assert_eq!(m.observe(false, at(100)), None);
        assert_eq!(m.observe(false, at(200)), None);
        assert_eq!(m.observe(false, at(300)), None, "starting never degrades");
        assert_eq!(m.state(), State::Starting);
        assert_eq!(
            m.observe(true, at(400)),
            Some(Transition::FirstReady {
                after: Duration::from_millis(400)
            })
        );
        assert_eq!(m.observe(true, at(500)), None);
        assert_eq!(m.observe(false, at(600)), None, "one failure is not enough");
        assert_eq!(m.observe(true, at(700)), None);
        assert_eq!(m.observe(false, at(800)), None);
        assert_eq!(m.observe(false, at(900)), Some(Transition::Degraded));
        assert_eq!(m.state(), State::Degraded);
        assert_eq!(m.observe(false, at(1000)), None);
        assert_eq!(
            m.observe(true, at(1400)),
            Some(Transition::Recovered {
                down: Duration::from_millis(500)
            })
        );
        assert!(m.stop(at(1500)));
        assert!(!m.stop(at(1600)));
        assert_eq!(m.observe(true, at(1700)), None);
        assert_eq!(m.state(), State::Stopping);
    }

    /// A fast pace for loop tests (here and in `cassandra`'s).
    pub(crate) fn pace() -> Pace {
        Pace {
            interval: Duration::from_millis(1),
            check: Duration::from_millis(1),
            failures: 2,
            subject: "CQL".into(),
            place: "127.0.0.1:9042".into(),
            extend: Duration::from_secs(60),
            exit_on_degraded: false,
        }
    }

    #[test]
    fn status_lines() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(12 * 3600 + 3 * 60 + 4);
        let first = Transition::FirstReady {
            after: Duration::from_millis(31240),
        };
        assert_eq!(
            status_text(&pace(), &first, None, t),
            "CQL ready on 127.0.0.1:9042 after 31.2 s"
        );
        assert_eq!(
            status_text(&pace(), &Transition::Degraded, Some("connect: refused"), t),
            "CQL on 127.0.0.1:9042 not answering since 12:03:04 UTC (connect: refused)"
        );
        let back = Transition::Recovered {
            down: Duration::from_millis(4100),
        };
        assert_eq!(
            status_text(&pace(), &back, None, t),
            "CQL ready on 127.0.0.1:9042 again, after 4.1 s not answering"
        );
    }

    struct Scripted(Vec<bool>);
    impl Probe for Scripted {
        fn check(&mut self) -> Result<Option<u8>, String> {
            match self.0.pop() {
                Some(false) => Err("refused".into()),
                _ => Ok(Some(4)),
            }
        }
    }

    #[test]
    fn the_loop_publishes_and_stops() {
        let shared = Shared::new(Snapshot::new(
            1,
            crate::status::model::Cql {
                host: "h".into(),
                port: 1,
                source: "option".into(),
                host_source: "option".into(),
                protocol_version: None,
                ..Default::default()
            },
        ));
        let pace = pace();
        // Popped from the end: fail, ok, fail, fail, then ok forever.
        let probe = Scripted(vec![
            true, true, true, true, true, false, false, true, false,
        ]);
        let notifier = Arc::new(Notifier::disabled());
        let (n, s) = (notifier.clone(), shared.clone());
        let thread = std::thread::spawn(move || run(&mut { probe }, pace, n, s));
        let deadline = Instant::now() + Duration::from_secs(10);
        let snap = shared.wait_until(deadline, |s| s.checks.total >= 8);
        assert_eq!(snap.state, State::Ready);
        assert_eq!(snap.cql.protocol_version, Some(4));
        assert!(snap.time_to_ready_ms.is_some());
        assert_eq!(
            snap.notify
                .last_status
                .as_deref()
                .map(|t| t.contains("ready on 127.0.0.1:9042 again")),
            Some(true)
        );
        stop(&notifier, &shared, "JVM shutting down");
        assert_eq!(thread.join().unwrap(), Ended::Stopped);
        assert_eq!(shared.snapshot().state, State::Stopping);
    }

    /// Never ready; its progress says "starting up" for three checks, then
    /// "replaying the commit log" with a count that grows.
    struct Replaying(u32);
    impl Probe for Replaying {
        fn check(&mut self) -> Result<Option<u8>, String> {
            self.0 += 1;
            Err("connect: refused".into())
        }
        fn progress(&mut self) -> Option<String> {
            Some(if self.0 <= 3 {
                "Cassandra starting (starting up, 1.0 MiB of disk I/O so far)".into()
            } else {
                format!(
                    "Cassandra starting (replaying the commit log, {} writes applied)",
                    self.0
                )
            })
        }
    }

    #[test]
    fn a_new_phase_is_named_between_extensions() {
        use std::os::unix::net::UnixDatagram;
        let dir = std::env::temp_dir().join(format!("cqlready-phase-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let notifier = Arc::new(Notifier::new(
            Some(path.to_string_lossy().into_owned()),
            None,
            None,
            1,
        ));
        let shared = Shared::new(Snapshot::new(1, Default::default()));
        let (n, s) = (notifier.clone(), shared.clone());
        let thread = std::thread::spawn(move || run(&mut Replaying(0), pace(), n, s));
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen
            .iter()
            .any(|m: &String| m.contains("replaying the commit log"))
        {
            let len = rx.recv(&mut buf).expect("a datagram within 10 s");
            seen.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        // 200 ms more of 1 ms checks, each with a new count: nothing new.
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while let Ok(len) = rx.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        stop(&notifier, &shared, "JVM shutting down");
        let _ = thread.join();
        let _ = std::fs::remove_dir_all(&dir);
        // extend=60s: one extension ("starting up"), then the new phase
        // named by a STATUS= alone, once (the counts after it are no phase).
        let progress: Vec<&String> = seen
            .iter()
            .filter(|m| m.contains("Cassandra starting"))
            .collect();
        assert_eq!(progress.len(), 2, "{seen:?}");
        assert!(
            progress[0].starts_with(
                "EXTEND_TIMEOUT_USEC=60000000\nSTATUS=Cassandra starting (starting up"
            ),
            "{seen:?}"
        );
        assert!(
            progress[1].starts_with("STATUS=Cassandra starting (replaying the commit log, "),
            "{seen:?}"
        );
    }
}
