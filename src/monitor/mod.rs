//! One thread, one state machine: probe, decide, tell the world.
//!
//! `core.rs` decides (pure: state, event and time in; messages and the next
//! state out); `run.rs` is the loop around it (the real clock, the
//! [`Probe`], the notifier, the [`Shared`] store, the sleeps). The agent
//! probes CQL inside the JVM; the `watch` command runs the same loop from
//! outside; `tests/sim.rs` drives the core through generated timelines.

pub mod core;
pub mod line;
pub mod run;

pub use self::core::{status_text, Ended, Machine, Pace, Transition};
pub use self::run::run;
use crate::notify::{Field, Notifier};
use crate::options::Options;
pub use crate::probe::{Moving, Probe};
use crate::status::model::{unix_ms, Snapshot, State};
/// The store the loop publishes to; re-exported for the monitor's callers.
pub use crate::status::store::Shared;
use std::time::SystemTime;

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

/// Sends `fields` and records the outcome and `also` in one snapshot
/// update, so nobody sees a state before its notification went out. Both
/// happen under the store's lock, which [`stop`] holds too: once
/// `STOPPING=1` went out, nothing but `STATUS=` follows it. `true` when
/// the datagram went out (or there is no service manager to tell).
pub fn tell(
    notifier: &Notifier,
    shared: &Shared,
    fields: &[Field],
    also: impl FnOnce(&mut Snapshot),
) -> bool {
    let mut ok = true;
    shared.update(|s| {
        let after_stop = s.state == State::Stopping
            && !fields.contains(&Field::Stopping)
            && fields.iter().any(|f| !matches!(f, Field::Status(_)));
        if after_stop {
            return;
        }
        let result = notifier.send(fields);
        also(s);
        for f in fields {
            match (f, &result) {
                (Field::Ready, Ok(true)) => s.notify.ready_sent = true,
                (Field::Stopping, Ok(true)) => s.notify.stopping_sent = true,
                (Field::Watchdog, Ok(true)) => s.notify.watchdog_pings += 1,
                _ => {}
            }
            if let Field::Status(text) = f {
                s.notify.last_status = Some(crate::text::sanitize(text));
            }
        }
        if result.is_err() {
            s.notify.errors += 1;
            ok = false;
        }
    });
    ok
}

/// Marks the snapshot stopping (which ends [`run`]) and sends the core's
/// last message ([`core::stopping`]; `held`: the start failed because
/// another process holds a port). Called from the VM-death callback: it
/// only sends one non-blocking datagram.
pub fn stop(notifier: &Notifier, shared: &Shared, why: &str, held: Option<&str>) {
    let mut first = false;
    shared.update(|s| {
        if s.state != State::Stopping {
            first = true;
            s.state = State::Stopping;
            s.state_since_unix_ms = unix_ms(SystemTime::now());
        }
    });
    if first {
        tell(notifier, shared, &self::core::stopping(why, held), |_| {});
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

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
        stop(&notifier, &shared, "JVM shutting down", None);
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
        fn progress(&mut self) -> Option<Moving> {
            let text = if self.0 <= 3 {
                "Cassandra starting (starting up, 1.0 MiB of disk I/O so far)".into()
            } else {
                format!(
                    "Cassandra starting (replaying the commit log, {} writes applied)",
                    self.0
                )
            };
            Some(Moving {
                text,
                quiet: Duration::ZERO,
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
        stop(&notifier, &shared, "JVM shutting down", None);
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
