//! The small words every module uses: text made safe to show, durations as
//! operators write them, and the `auto`/`on`/`off` switch. The bottom of the
//! crate: it imports nothing of the crate's own.

use std::time::Duration;

/// The longest text kept of outside input: a `STATUS=` line, a reason, a
/// name; `systemctl status` shows one line anyway.
pub const MAX_TEXT: usize = 400;

/// Makes outside text safe for a `STATUS=` line: control characters become
/// spaces and the length is capped on a character boundary.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT));
    for c in text.chars() {
        if out.len() + c.len_utf8() > MAX_TEXT {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// `auto`, `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toggle {
    Auto,
    On,
    Off,
}

/// `1500us`, `20ms`, `1.5s`, `2m`, `1h`. A unit is required.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = v.split_at(split);
    if number.is_empty() || number.len() > 12 || number.starts_with('.') {
        return None;
    }
    let n: f64 = number.parse().ok()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// The inverse of [`parse_duration`] for display: `100ms`, `2s`, `1.5s`.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else if us >= 1_000_000 {
        format!("{}s", d.as_secs_f64())
    } else if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        for bad in [
            "",
            "s",
            "ms",
            ".5s",
            "1..2s",
            "1e3s",
            "-1s",
            "10",
            "1 s",
            "99999999999999s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1500us");
    }

    #[test]
    fn sanitized_text_is_one_capped_line() {
        assert_eq!(sanitize("boom\nREADY=1\r\0x"), "boom READY=1  x");
        let long = "é".repeat(1000);
        assert_eq!(sanitize(&long).len(), MAX_TEXT);
    }
}
