//! Inputs at the edges of the parsers of outside input, kept as regression
//! tests next to the fuzz corpora. These pin the boundaries the fuzzers and
//! a review pointed at; the same inputs are files under
//! `fuzz/regressions/<target>/`, which tests/fuzz_corpus.rs replays through
//! the fuzz targets' own invariants. A future fuzz crash goes to both: the
//! reproducer there, its expected behaviour here.

use cqlready::discovery::{config_path, parse_yaml};
use cqlready::options::Options;
use cqlready::probe::cql::decode;
use cqlready::status::server::parse_request;
use cqlready::text::parse_duration;

fn frame_header(version: u8, len: i32) -> Vec<u8> {
    let mut f = vec![0x80 | version, 0, 0, 0x2a, 0x06];
    f.extend_from_slice(&len.to_be_bytes());
    f
}

#[test]
fn cql_body_length_bounds() {
    // 64 KiB is the cap: at the cap "need more", above it malformed, at
    // once, before any body byte (no allocation follows the length).
    assert_eq!(decode(&frame_header(4, 64 * 1024)), Ok(None));
    assert!(decode(&frame_header(4, 64 * 1024 + 1)).is_err());
    assert!(decode(&frame_header(4, i32::MAX)).is_err());
    assert!(decode(&frame_header(4, -1)).is_err());
    // A SUPPORTED body claiming 65535 options of 65535 values: malformed,
    // not a 4-billion-element allocation.
    let mut f = frame_header(4, 4);
    f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    assert!(decode(&f).is_err());
}

/// Found by the fuzz work: yaml-rust2's document loader recursed once per
/// nesting level, so a cassandra.yaml of nested block sequences (`- - - ...`,
/// 5,000 levels = 10 KB) overflowed a 1 MiB stack and killed the JVM at
/// start. `parse_yaml` now walks the parser's events and refuses nesting
/// past 64 levels with an error (the agent warns and uses the default port).
#[test]
fn yaml_deep_nesting_is_an_error_on_a_1mib_stack() {
    for (name, doc) in [
        ("block sequences", "- ".repeat(5_000)),
        (
            "closed flow sequences",
            format!("a: {}{}", "[".repeat(5_000), "]".repeat(5_000)),
        ),
        (
            "block mappings",
            (0..2_000)
                .map(|i| format!("{}a:\n", " ".repeat(i)))
                .collect(),
        ),
    ] {
        let r = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || cqlready::discovery::parse_yaml(&doc))
            .unwrap()
            .join()
            .unwrap();
        assert!(r.is_err(), "{name}: {r:?}");
    }
}

#[test]
fn yaml_unclosed_nesting() {
    // Unclosed flow nesting is refused early, at any depth.
    for depth in [1_000, 100_000] {
        assert!(parse_yaml(&"[".repeat(depth)).is_err());
        assert!(parse_yaml(&"{a: ".repeat(depth)).is_err());
    }
}

/// Found by the fuzz work: yaml-rust2's loader expanded every alias into a
/// copy, so a 394-byte cassandra.yaml of 8 levels of 10 aliases (10^9 nodes)
/// exhausted memory and the JVM died at start. Aliases are no longer
/// expanded: 12 levels (10^13 nodes if expanded) parse at once.
#[test]
fn yaml_alias_fan_out_is_not_expanded() {
    let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12u8 {
        let (prev, next) = ((b'a' + i) as char, (b'a' + i + 1) as char);
        let refs = vec![format!("*{prev}"); 10].join(", ");
        doc.push_str(&format!("{next}: &{next} [{refs}]\n"));
    }
    doc.push_str("native_transport_port: 9142\n");
    assert_eq!(parse_yaml(&doc).unwrap().native_transport_port, Some(9142));
}

#[test]
fn durations_at_the_edges() {
    assert_eq!(
        parse_duration("999999999999h"),
        parse_duration("999999999999h")
    );
    assert!(parse_duration("1e9s").is_none());
    assert!(parse_duration("1.2.3s").is_none());
    assert!(parse_duration("NaNs").is_none());
    assert!(parse_duration(".5s").is_none());
    assert!(Options::parse("interval=999999999999h").is_err());
    assert!(Options::parse("interval=0us").is_err());
    // Error lines stay one line whatever the input holds.
    let e = Options::parse("interval=\n\u{85}READY=1").unwrap_err().0;
    assert!(!e.chars().any(char::is_control), "{e:?}");
}

#[test]
fn config_path_edges() {
    assert!(config_path("file://").is_err());
    let _ = config_path("file:%");
    let _ = config_path("file:%f");
    let _ = config_path("file:/%ff%fe");
    assert_eq!(
        config_path("  /etc/c.yaml ").unwrap().to_str(),
        Some("/etc/c.yaml")
    );
}

#[test]
fn http_heads_at_the_edges() {
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
    assert_eq!(parse_request(many.as_bytes()), Err(431));
    assert_eq!(
        parse_request(b"GET /?? HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap()
            .query
            .as_deref(),
        Some("?")
    );
    assert!(parse_request(&[0xff; 8192]).is_err());
}

#[path = "support/sim/mod.rs"]
mod sim;

/// The timelines that showed the monitor's pacing and text bugs, kept as
/// `fuzz/regressions/sim_events/` inputs: a seed's eight bytes, then that
/// seed's splitmix64 outputs, so each file is exactly the timeline
/// `CQLREADY_SIM_SEED=` names (the same one from both drivers), and each
/// now keeps every rule.
#[test]
fn sim_regressions_are_the_seeds_timelines_and_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/sim_events");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions/sim_events") {
        let path = entry.expect("a regression file").path();
        let data = std::fs::read(&path).expect("read a regression file");
        let mut bytes = sim::Bytes(&data);
        let seed = sim::Source::next(&mut bytes);
        let from_bytes = sim::Timeline::generate(&mut bytes);
        let from_seed = sim::Timeline::generate(&mut sim::SplitMix(seed));
        assert_eq!(from_bytes, from_seed, "{}", path.display());
        if let Err(report) = sim::check_timeline(&from_bytes, seed) {
            panic!("{}: {report}", path.display());
        }
        n += 1;
    }
    assert!(n >= 6, "only {n} sim regressions");
}
