//! The monitor's decisions under every timeline: generated timelines of
//! Cassandra's phases, CQL's answers, SIGTERM, a failing notify socket and
//! a stepping wall clock run through the pure core under a virtual clock,
//! each judged by a model of systemd (tests/support/sim/).
//!
//! `CQLREADY_SIM_SEED=0x…` replays one timeline (the seed a failure
//! printed); `CQLREADY_SIM_COUNT=N` and `CQLREADY_SIM_FIRST=S` run N
//! timelines from seed S (`tools/sim.sh` runs millions, release build).

#[path = "support/sim/mod.rs"]
mod sim;

use std::time::Instant;

/// Timelines per `cargo test`.
const COUNT: u64 = 10_000;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// How many failed timelines broke each kind of rule.
fn kinds(failed: &[String]) -> String {
    let mut count = std::collections::BTreeMap::new();
    for report in failed {
        let rules: std::collections::BTreeSet<String> = report
            .split("violations:\n")
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|l| l.starts_with("  "))
            .map(|l| sim::judge::rule(l.trim()))
            .collect();
        let seed = report.split_whitespace().nth(1).unwrap_or("?").to_string();
        for r in rules {
            count.entry(r).or_insert((0, seed.clone())).0 += 1;
        }
    }
    let parts: Vec<String> = count
        .iter()
        .map(|(r, (n, seed))| format!("{n} {r} (first {seed})"))
        .collect();
    parts.join("; ")
}

/// How the passing timelines ended: each kind must be common enough that
/// the rules were really exercised on it.
#[derive(Default)]
struct Tally {
    checks: u64,
    ready: u64,
    extended: u64,
    ends: std::collections::BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, p: &sim::Passed) {
        self.checks += p.checks;
        self.ready += u64::from(p.ready);
        self.extended += u64::from(p.extensions > 0);
        *self.ends.entry(format!("{:?}", p.end)).or_insert(0) += 1;
    }

    /// Each way a timeline can end, and READY=1 and extensions, seen in at
    /// least `share` of `count` timelines.
    fn assert_covers(&self, count: u64, share: f64) {
        let want = (count as f64 * share) as u64;
        let mut seen: Vec<(String, u64)> = vec![
            ("READY=1".into(), self.ready),
            ("an extension".into(), self.extended),
        ];
        for end in [
            "Some(Timeout(Start))",
            "Some(Timeout(Stop))",
            "Some(Exited(Stop))",
            "Some(Exited(Start))",
            "Some(Exited(Running))",
        ] {
            seen.push((end.into(), self.ends.get(end).copied().unwrap_or(0)));
        }
        for (what, n) in seen {
            assert!(
                n >= want.max(1),
                "{what}: {n} of {count} timelines ({:?})",
                self.ends
            );
        }
    }
}

/// Thread CPU time, for a rate that does not depend on what else runs.
fn cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn every_timeline() {
    if let Some(seed) = env_u64("CQLREADY_SIM_SEED") {
        match sim::check_seed(seed) {
            Ok(p) => eprintln!("timeline {seed:#x}: ok ({p:?})"),
            Err(report) => panic!("{report}"),
        }
        return;
    }
    let count = env_u64("CQLREADY_SIM_COUNT").unwrap_or(COUNT);
    let first = env_u64("CQLREADY_SIM_FIRST").unwrap_or(0x5eed_0000);
    let (t0, cpu0) = (Instant::now(), cpu_time());
    let (mut tally, mut failed) = (Tally::default(), Vec::new());
    for seed in first..first + count {
        match sim::check_seed(seed) {
            Ok(p) => tally.add(&p),
            Err(report) => failed.push(report),
        }
    }
    let (took, cpu) = (t0.elapsed(), cpu_time().saturating_sub(cpu0));
    println!(
        "sim: {count} timelines from {first:#x}, {} checks, {} failed, in {:.2} s ({:.2} s CPU, {:.0} timelines per CPU second); ends {:?}",
        tally.checks,
        failed.len(),
        took.as_secs_f64(),
        cpu.as_secs_f64(),
        count as f64 / cpu.as_secs_f64().max(1e-9),
        tally.ends
    );
    // One table row for bench/results-sim.md (tools/sim.sh).
    println!(
        "sim-row: | {} | {count} | {first:#x} | {} | {} | {:.2} | {:.2} | {:.0} |",
        if cfg!(debug_assertions) {
            "debug (cargo test)"
        } else {
            "release"
        },
        tally.checks,
        failed.len(),
        took.as_secs_f64(),
        cpu.as_secs_f64(),
        count as f64 / cpu.as_secs_f64().max(1e-9)
    );
    if let Some(first) = failed.first() {
        panic!(
            "{} of {count} timelines failed ({}); the first:\n{first}",
            failed.len(),
            kinds(&failed)
        );
    }
    if count >= 1000 {
        tally.assert_covers(count, 0.005);
    }
    assert!(
        count == 0 || tally.checks > count,
        "timelines that check nothing"
    );
}
