//! The `STATUS=` line, calm and true: operators read it in `systemctl
//! status` and the journal. A phase is a text without its figures ("5000
//! writes applied" and "5100 writes applied" are one phase); once the line
//! leaves a phase it names it again only [`HOLD`] later, so two phases that
//! interleave (commit-log replay flushing SSTables) do not flicker. Pure:
//! time is passed in.

use std::time::{Duration, Instant};

/// How long a phase that was left stays unnamed.
pub const HOLD: Duration = Duration::from_secs(1);
/// Phases left that are remembered.
const REMEMBERED: usize = 8;

/// The phase a text names: the text without its figures.
pub fn phase_of(text: &str) -> String {
    // Only ASCII bytes are dropped, so what is left is still UTF-8.
    let kept: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_digit() && !matches!(b, b'.' | b'/'))
        .collect();
    String::from_utf8(kept).unwrap_or_default()
}

#[derive(Debug, Default)]
pub struct Line {
    /// The phase the service manager shows (the last `STATUS=` it got).
    shown: Option<String>,
    /// Phases left lately, and when.
    left: Vec<(String, Instant)>,
    /// The text wanted now, and its phase.
    want: Option<(String, String)>,
}

impl Line {
    /// The text that is true now.
    pub fn want(&mut self, text: String) {
        if self.want.as_ref().is_none_or(|(t, _)| *t != text) {
            let phase = phase_of(&text);
            self.want = Some((text, phase));
        }
    }

    /// Until when the phase of `text` may not be named again.
    fn held_until(&self, phase: &str) -> Option<Instant> {
        self.left
            .iter()
            .find(|(p, _)| p == phase)
            .map(|(_, at)| *at + HOLD)
    }

    /// The wanted text if it may go out at `now`: a new phase not left
    /// within [`HOLD`], or (with `refresh`) the shown phase's new figures.
    pub fn offer(&self, now: Instant, refresh: bool) -> Option<String> {
        let (want, phase) = self.want.as_ref()?;
        if self.shown.as_ref() == Some(phase) {
            return refresh.then(|| want.clone());
        }
        match self.held_until(phase) {
            Some(t) if now < t => None,
            _ => Some(want.clone()),
        }
    }

    /// When a wanted text that is held back may go.
    pub fn due(&self) -> Option<Instant> {
        let (_, phase) = self.want.as_ref()?;
        if self.shown.as_ref() == Some(phase) {
            return None;
        }
        self.held_until(phase)
    }

    /// The service manager got `text` at `now`.
    pub fn shown(&mut self, text: &str, now: Instant) {
        let phase = phase_of(text);
        if self.shown.as_deref() == Some(phase.as_str()) {
            return;
        }
        self.left.retain(|(p, _)| *p != phase);
        if let Some(old) = self.shown.replace(phase) {
            self.left.retain(|(p, _)| *p != old);
            self.left.push((old, now));
            if self.left.len() > REMEMBERED {
                self.left.remove(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_left_is_named_again_only_after_the_hold() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut line = Line::default();
        line.want("replaying the commit log, 10 writes applied".into());
        let text = line.offer(at(0), false).unwrap();
        line.shown(&text, at(0));
        line.want("replaying the commit log, 20 writes applied".into());
        assert_eq!(line.offer(at(100), false), None, "the same phase");
        assert_eq!(
            line.offer(at(100), true).as_deref(),
            Some("replaying the commit log, 20 writes applied"),
            "its figures, with an extension"
        );
        line.want("opening SSTables, 3 open".into());
        let text = line.offer(at(200), false).unwrap();
        line.shown(&text, at(200));
        line.want("replaying the commit log, 30 writes applied".into());
        assert_eq!(line.offer(at(900), false), None, "left 700 ms ago");
        assert_eq!(line.due(), Some(at(1200)));
        assert!(line.offer(at(1200), false).is_some());
    }
}
