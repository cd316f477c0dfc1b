//! `STATUS=` must be calm: a phase (the text without its figures) once
//! left is not named again within a second. Used by the simulation's judge
//! and on real Cassandra boots (tests/cassandra.rs).

use std::collections::HashMap;
use std::time::Duration;

/// How long a phase that was left stays unnamed.
pub const HOLD: Duration = Duration::from_secs(1);

/// The phase of a `STATUS=` text: the text without its figures.
pub fn phase(text: &str) -> Vec<u8> {
    text.bytes()
        .filter(|c| !c.is_ascii_digit() && *c != b'.' && *c != b'/')
        .collect()
}

/// The texts seen so far, as phases.
#[derive(Default)]
pub struct Flips {
    shown: Option<Vec<u8>>,
    left: HashMap<Vec<u8>, Duration>,
}

impl Flips {
    /// `text` shown at `t` (since any fixed origin); the violation, if it
    /// names again a phase left less than [`HOLD`] before.
    pub fn see(&mut self, t: Duration, text: &str) -> Option<String> {
        let key = phase(text);
        if self.shown.as_ref() == Some(&key) {
            return None;
        }
        let wrong = self
            .left
            .get(&key)
            .filter(|&&left| t < left + HOLD)
            .map(|left| {
                format!("flip-back: STATUS= at {t:?} names again a phase left at {left:?}: {text}")
            });
        if let Some(old) = self.shown.replace(key) {
            self.left.insert(old, t);
        }
        wrong
    }
}
