//! The loop around the core: the real clock, the real probe, the
//! [`Notifier`] and the [`Shared`] store, and the sleeps between checks.
//! Everything it decides, `core.rs` decides.

use super::core::{Check, Core, Ended, Now, Pace};
use super::{tell, Probe};
use crate::notify::{Field, Notifier};
use crate::status::model::{millis, unix_ms, LastCheck, State};
use crate::status::store::Shared;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall: SystemTime::now(),
    }
}

/// Runs the loop until the snapshot's state becomes `stopping` (or, with
/// `exit_on_degraded`, until ready turns degraded): check, let the core
/// decide, send what it says, sleep until it wants to run again.
pub fn run(
    probe: &mut impl Probe,
    pace: Pace,
    notifier: Arc<Notifier>,
    shared: Arc<Shared>,
) -> Ended {
    let (mut core, first) = Core::new(pace, notifier.watchdog, now());
    deliver(&mut core, &notifier, &shared, vec![first]);
    loop {
        let started = Instant::now();
        let verdict = probe.check();
        let latency = started.elapsed();
        if shared.state() == State::Stopping {
            return Ended::Stopped;
        }
        let check = Check {
            started,
            verdict: verdict.clone(),
            progress: probe.progress(),
            keep_alive: probe.keep_alive(),
        };
        let before = core.state();
        let out = core.checked(check, now());
        log(before, &core, &out);
        record(&core, &shared, probe, verdict, latency);
        deliver(&mut core, &notifier, &shared, out);
        if let Some(ended) = core.ended() {
            return ended;
        }
        if pause(&mut core, &notifier, &shared) {
            return Ended::Stopped;
        }
    }
}

/// Sleeps until the next check is due, running the core whenever it wants
/// to (the watchdog); `true` when the snapshot turned stopping.
fn pause(core: &mut Core, notifier: &Notifier, shared: &Shared) -> bool {
    loop {
        let snap = shared.wait_until(core.wake_at(), |s| s.state == State::Stopping);
        if snap.state == State::Stopping {
            return true;
        }
        let n = now();
        if n.mono >= core.next_check() {
            return false;
        }
        let out = core.tick(n);
        deliver(core, notifier, shared, out);
    }
}

/// One info line per change of state, said as its `STATUS=` would be (a
/// `STATUS=` may be held back a moment so the line does not flicker; the
/// log never is), and each `STATUS=` sent at debug.
fn log(before: State, core: &Core, out: &[Vec<Field>]) {
    if core.state() != before && core.state() != State::Stopping {
        crate::info!("{}", core.state_text());
    }
    for text in out.iter().flatten().filter_map(|f| match f {
        Field::Status(t) => Some(t),
        _ => None,
    }) {
        crate::debug!("STATUS={text}");
    }
}

/// Sends the core's messages, telling it how each went, and publishes its
/// report with them.
fn deliver(core: &mut Core, notifier: &Notifier, shared: &Shared, out: Vec<Vec<Field>>) {
    for fields in &out {
        let report = core.report().clone();
        let ok = tell(notifier, shared, fields, |s| {
            if s.state != State::Stopping {
                s.state = report.state;
                s.state_since_unix_ms = unix_ms(report.since);
                s.time_to_ready_ms = report.time_to_ready.map(millis);
            }
        });
        core.sent(fields, ok, now());
    }
}

/// Publishes one check's outcome.
fn record(
    core: &Core,
    shared: &Shared,
    probe: &impl Probe,
    verdict: Result<Option<u8>, String>,
    latency: Duration,
) {
    let ok = verdict.is_ok();
    let failures = u64::from(core.consecutive_failures());
    let last_error = core.last_error().map(str::to_string);
    shared.update(|s| {
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
}
