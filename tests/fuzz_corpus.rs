//! The CI-sized fuzz check: every committed input under `fuzz/corpus/<target>/`
//! (seeds from the unit tests plus what libFuzzer found and kept) and every
//! crash reproducer under `fuzz/regressions/<target>/` runs through the same
//! target functions the libFuzzer binaries use (`fuzz/targets.rs`). Stable
//! Rust, no libFuzzer, well under a second. The long run is
//! `bash fuzz/run.sh 100000`.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::fs;
use std::path::Path;

/// Replays every file of `dir/<target>/` through its target; returns how
/// many there were. A directory that does not exist at all is an error (a
/// moved or misspelt path must not replay nothing and pass); a target with
/// no subdirectory simply has no inputs there.
fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    assert!(root.is_dir(), "{} does not exist", root.display());
    let mut total = 0;
    for (name, target) in targets::TARGETS {
        let Ok(entries) = fs::read_dir(root.join(name)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("read corpus dir").path();
            let data = fs::read(&path).expect("read corpus file");
            let ok = std::panic::catch_unwind(|| target(&data));
            assert!(
                ok.is_ok(),
                "fuzz target {name} panicked on {} ({} bytes: {:?})",
                path.display(),
                data.len(),
                String::from_utf8_lossy(&data[..data.len().min(200)])
            );
            total += 1;
        }
    }
    total
}

#[test]
fn every_corpus_input_passes() {
    let n = replay("fuzz/corpus");
    assert!(n >= 8, "only {n} corpus inputs found under fuzz/corpus");
    eprintln!("replayed {n} corpus inputs");
}

/// The reproducers of fuzz/regressions/ (each one's expected behaviour is
/// pinned in tests/fuzz_regressions.rs): replaying none is a failure.
#[test]
fn every_regression_input_passes() {
    let n = replay("fuzz/regressions");
    assert!(
        n >= 18,
        "only {n} regression inputs found under fuzz/regressions"
    );
}

/// Every target has seeds, so a new target cannot be forgotten.
#[test]
fn every_target_has_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, _) in targets::TARGETS {
        let n = fs::read_dir(root.join(name))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(n > 0, "fuzz/corpus/{name} is empty");
    }
}

/// The connection-table target on 300 scripts from a fixed pseudo-random
/// sequence (xorshift), so the interleavings it checks do not depend on a
/// libFuzzer run having happened: connects, partial writes, half-closes,
/// resets, clock steps and state changes, 40 to 200 operations each.
#[test]
fn status_connections_random_interleavings() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..300 {
        let len = 80 + (next() % 320) as usize;
        let script: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        targets::status_connections(&script);
    }
}
