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

#[test]
fn every_timeline() {
    if let Some(seed) = env_u64("CQLREADY_SIM_SEED") {
        match sim::check_seed(seed) {
            Ok(checks) => eprintln!("timeline {seed:#x}: ok ({checks} checks)"),
            Err(report) => panic!("{report}"),
        }
        return;
    }
    let count = env_u64("CQLREADY_SIM_COUNT").unwrap_or(COUNT);
    let first = env_u64("CQLREADY_SIM_FIRST").unwrap_or(0x5eed_0000);
    let t0 = Instant::now();
    let (mut checks, mut failed) = (0u64, Vec::new());
    for seed in first..first + count {
        match sim::check_seed(seed) {
            Ok(n) => checks += n,
            Err(report) => failed.push(report),
        }
    }
    let took = t0.elapsed();
    let rate = count as f64 / took.as_secs_f64().max(1e-9);
    println!(
        "sim: {count} timelines, {checks} checks, {} failed, in {:.2} s ({rate:.0} timelines/s)",
        failed.len(),
        took.as_secs_f64()
    );
    assert!(count == 0 || checks > count, "timelines that check nothing");
    if let Some(first) = failed.first() {
        panic!(
            "{} of {count} timelines failed ({}); the first:\n{first}",
            failed.len(),
            kinds(&failed)
        );
    }
}
