//! What every timeline must show, judged as the notifications arrive.

use super::flips::Flips;
use super::systemd::Job;
use cqlready::monitor::core::Check;
use cqlready::notify::Field;
use std::collections::HashMap;
use std::time::Duration;

/// Rounding in the texts and timers.
const SLACK: Duration = Duration::from_millis(1);

#[derive(Default)]
pub struct Judge {
    pub violations: Vec<String>,
    /// When checks completed.
    done: Vec<Duration>,
    last_ok: bool,
    last_keep_alive: bool,
    flips: Flips,
    figures: HashMap<String, f64>,
    figures_job: Option<Job>,
    /// The last `STATUS=` text that arrived.
    last_status: Option<String>,
}

/// The figures of a progress text ("Cassandra MODE (…)"), by what they count: "5000 writes applied" is
/// ("writes applied", 5000), "streaming 3.0/8.0 MiB" is ("streaming", 3).
pub fn figures(text: &str) -> Vec<(String, f64)> {
    if !text.starts_with("Cassandra ") {
        return Vec::new();
    }
    let inner = match (text.find('('), text.rfind(')')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => return Vec::new(),
    };
    inner
        .split(", ")
        .filter_map(|part| {
            let bytes = part.as_bytes();
            let at = bytes.iter().position(u8::is_ascii_digit)?;
            let len = bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b'.')
                .count();
            let label = format!("{}#{}", &part[..at], &part[at + len..]);
            Some((label, part[at..at + len].parse().ok()?))
        })
        .collect()
}

/// The rule a violation names (its words before the first colon).
pub fn rule(violation: &str) -> String {
    violation.split(':').next().unwrap_or(violation).to_string()
}

impl Judge {
    pub fn check_done(&mut self, t: Duration, check: &Check) {
        self.done.push(t);
        self.last_ok = check.verdict.is_ok();
        self.last_keep_alive = check.keep_alive;
    }

    /// Whether a check completed in (from, to): one that completed at
    /// `from` itself may have read the world just before it changed.
    pub fn checked_between(&self, from: Duration, to: Duration) -> bool {
        let i = self.done.partition_point(|&c| c <= from);
        self.done.get(i).is_some_and(|&c| c < to)
    }

    /// An extension of `n` arrived at `t`; the world last moved at `moved`:
    /// a stalled job must end within `extend` of its last movement (plus
    /// the unit's own timeout, which the extension cannot shorten).
    pub fn extension(&mut self, t: Duration, n: Duration, moved: Duration, extend: Duration) {
        if t + n > moved + extend + SLACK {
            self.violations.push(format!(
                "extension past the stall bound: EXTEND_TIMEOUT_USEC={} at {t:?} reaches past {:?}, `extend` after the last movement at {moved:?}",
                n.as_micros(),
                moved + extend
            ));
        }
    }

    /// A datagram arrived at `t` while the core's state was ready (`ready`).
    pub fn arrived(&mut self, t: Duration, fields: &[Field], ready: bool, job: Job) {
        let extends = fields.iter().any(|f| matches!(f, Field::ExtendTimeout(_)));
        for f in fields {
            match f {
                Field::Ready if !self.last_ok => self.violations.push(format!(
                    "ready too soon: READY=1 at {t:?} after a failed check"
                )),
                Field::Watchdog if !(ready || self.last_keep_alive) => self
                    .violations
                    .push(format!("watchdog while unhealthy: WATCHDOG=1 at {t:?}")),
                Field::Status(text) => {
                    // The same text again says nothing new, unless it comes
                    // with an extension (whose datagram carries it).
                    if !extends && self.last_status.as_deref() == Some(text.as_str()) {
                        self.violations.push(format!(
                            "status repeated: at {t:?}, {text:?} twice in a row"
                        ));
                    }
                    self.last_status = Some(text.clone());
                    self.status(t, text, job);
                }
                _ => {}
            }
        }
    }

    fn status(&mut self, t: Duration, text: &str, job: Job) {
        self.violations.extend(self.flips.see(t, text));
        if self.figures_job != Some(job) {
            self.figures.clear();
            self.figures_job = Some(job);
        }
        for (label, v) in figures(text) {
            if let Some(&before) = self.figures.get(&label) {
                if v + 1e-9 < before {
                    self.violations.push(format!(
                        "figure backwards: at {t:?}, {label} {before} then {v} ({text})"
                    ));
                }
            }
            self.figures.insert(label, v);
        }
    }
}
