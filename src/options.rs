//! The agent's option string, parsed in one place.
//!
//! `-agentpath:/path/libcqlready.so=port=9042,interval=50ms,log=debug`
//!
//! Every key, its default and what it accepts stand in [`KEYS`]; defaults go
//! through the same parser as user values, so the table cannot lie. The
//! command line's `attach` reuses this parser, and `watch` takes its flags'
//! defaults from the table ([`default_of`]).

use crate::log::Level;
use crate::text::{format_duration, parse_duration, Toggle};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where the status socket goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketChoice {
    /// `$RUNTIME_DIRECTORY/cqlready.sock`, else `/tmp/cqlready-<pid>/cqlready.sock`.
    Auto,
    /// No status socket at all.
    Disabled,
    Path(PathBuf),
}

/// What "ready" means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// CQL answers OPTIONS.
    Cql,
    /// CQL answers and, where Cassandra's view is available, the node is
    /// NORMAL with its native transport running.
    Normal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// CQL port; `None` means discover it as Cassandra does.
    pub port: Option<u16>,
    /// CQL host; `None` means discover it as Cassandra does.
    pub host: Option<String>,
    pub interval: Duration,
    pub check: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub socket: SocketChoice,
    pub log: Level,
    pub cassandra: Toggle,
    pub ready: Readiness,
    pub extend: Duration,
    /// A group (name or gid) whose members may also use the status socket.
    pub group: Option<String>,
    /// Speak TLS to CQL: auto (as cassandra.yaml's client_encryption_options
    /// says), on or off.
    pub tls: Toggle,
    /// Verify the server's certificate against these CAs.
    pub tls_ca: Option<crate::probe::tls::Certs>,
    /// The client certificate chain and its key, for require_client_auth.
    pub tls_cert: Option<crate::probe::tls::Certs>,
    pub tls_key: Option<crate::probe::tls::Key>,
    /// Over TLS: how long a connection is kept for later checks.
    pub tls_keep: Duration,
    /// The cluster view: auto reads it while someone asked within a minute.
    pub cluster: Toggle,
}

/// One option: its name, its default (as the user would write it), what it
/// means, and how its value is parsed into [`Options`].
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    set: fn(&mut Options, &str) -> Result<(), String>,
}

const DURATION_HELP: &str = "a duration like 20ms, 1.5s or 1m";

pub const KEYS: &[Key] = &[
    Key {
        name: "port",
        default: "auto",
        help: "CQL port; auto: -Dcassandra.native_transport_port, else native_transport_port in -Dcassandra.config's yaml, else 9042",
        set: |o, v| {
            o.port = match v {
                "auto" => None,
                _ => Some(match v.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err("a port number from 1 to 65535, or auto".into()),
                }),
            };
            Ok(())
        },
    },
    Key {
        name: "host",
        default: "auto",
        help: "CQL host; auto: rpc_address from the yaml when it is a concrete address, else 127.0.0.1",
        set: |o, v| {
            let valid = !v.is_empty()
                && v.len() <= 253
                && v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
            if !valid {
                return Err("a host name, an IPv4 or IPv6 address, or auto".into());
            }
            o.host = if v == "auto" { None } else { Some(v.to_string()) };
            Ok(())
        },
    },
    Key {
        name: "interval",
        default: "100ms",
        help: "probe period while CQL is not ready",
        set: |o, v| {
            o.interval = duration_in(v, Duration::from_millis(1), Duration::from_secs(3600))?;
            Ok(())
        },
    },
    Key {
        name: "check",
        default: "1s",
        help: "probe period once CQL is ready",
        set: |o, v| {
            o.check = duration_in(v, Duration::from_millis(1), Duration::from_secs(3600))?;
            Ok(())
        },
    },
    Key {
        name: "timeout",
        default: "1s",
        help: "time budget of one probe: connect, send OPTIONS, read SUPPORTED",
        set: |o, v| {
            o.timeout = duration_in(v, Duration::from_millis(1), Duration::from_secs(60))?;
            Ok(())
        },
    },
    Key {
        name: "failures",
        default: "3",
        help: "consecutive failed checks that turn ready into degraded",
        set: |o, v| {
            o.failures = match v.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => return Err("a whole number from 1 to 1000".into()),
            };
            Ok(())
        },
    },
    Key {
        name: "socket",
        default: "auto",
        help: "status socket path, none, or auto: $RUNTIME_DIRECTORY/cqlready.sock, else /tmp/cqlready-<pid>/cqlready.sock",
        set: |o, v| {
            o.socket = match v {
                "auto" => SocketChoice::Auto,
                "none" => SocketChoice::Disabled,
                p if p.starts_with('/') && p.len() <= 96 && !p.ends_with('/') => {
                    SocketChoice::Path(PathBuf::from(p))
                }
                _ => {
                    return Err(
                        "an absolute path of at most 96 bytes, none, or auto".into(),
                    )
                }
            };
            Ok(())
        },
    },
    Key {
        name: "log",
        default: "info",
        help: "what the agent writes to stderr: off|error|warn|info|debug|trace",
        set: |o, v| {
            o.log = Level::parse(v).ok_or_else(|| format!("one of {}", Level::NAMES))?;
            Ok(())
        },
    },
    Key {
        name: "cassandra",
        default: "auto",
        help: "read Cassandra's own view (StorageService MBean, in-process); auto: when the main class is Cassandra's or DSE's",
        set: |o, v| {
            o.cassandra = toggle(v)?;
            Ok(())
        },
    },
    Key {
        name: "ready",
        default: "normal",
        help: "cql: ready when CQL answers; normal: also require Cassandra's mode NORMAL and its native transport on (when its view is available)",
        set: |o, v| {
            o.ready = match v {
                "cql" => Readiness::Cql,
                "normal" => Readiness::Normal,
                _ => return Err("cql or normal".into()),
            };
            Ok(())
        },
    },
    Key {
        name: "group",
        default: "none",
        help: "a group (name or gid) whose members may use the status socket besides the JVM's user and root",
        set: |o, v| {
            let valid = !v.is_empty()
                && v.len() <= 32
                && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err("a group name or number, or none".into());
            }
            o.group = (v != "none").then(|| v.to_string());
            Ok(())
        },
    },
    Key {
        name: "extend",
        default: "2m",
        help: "while a bootstrap or join makes progress, EXTEND_TIMEOUT_USEC asks systemd for this much more start time",
        set: |o, v| {
            o.extend = duration_in(v, Duration::from_secs(1), Duration::from_secs(3600))?;
            Ok(())
        },
    },
    Key {
        name: "tls",
        default: "auto",
        help: "speak TLS to CQL; auto: when cassandra.yaml's client_encryption_options require it (enabled, not optional)",
        set: |o, v| {
            o.tls = toggle(v)?;
            Ok(())
        },
    },
    Key {
        name: "tls_ca",
        default: "none",
        help: "a PEM file of CAs the server's certificate must chain to; none: the certificate is not verified",
        set: |o, v| {
            o.tls_ca = pem(v, crate::probe::tls::read_certs)?;
            Ok(())
        },
    },
    Key {
        name: "tls_cert",
        default: "none",
        help: "a PEM client certificate (chain) to present when Cassandra requires client auth; needs tls_key",
        set: |o, v| {
            o.tls_cert = pem(v, crate::probe::tls::read_certs)?;
            Ok(())
        },
    },
    Key {
        name: "tls_key",
        default: "none",
        help: "the PEM private key of tls_cert",
        set: |o, v| {
            o.tls_key = pem(v, crate::probe::tls::read_key)?;
            Ok(())
        },
    },
    Key {
        name: "tls_keep",
        default: "1m",
        help: "over TLS, keep a connection that answered for the next checks this long, then open a new one (and at once when it fails); 0s: a new connection every check",
        set: |o, v| {
            o.tls_keep = duration_in(v, Duration::ZERO, Duration::from_secs(3600))?;
            Ok(())
        },
    },
    Key {
        name: "cluster",
        default: "auto",
        help: "Cassandra's view of the cluster (/cluster, /ready?scope=cluster); auto: read at the check period while asked for within the last minute; on: always; off: never",
        set: |o, v| {
            o.cluster = toggle(v)?;
            Ok(())
        },
    },
];

/// The table's default for `name`, as the user would write it; the command
/// line's flags for the same knobs take their defaults from here.
///
/// # Panics
/// When `name` is not in [`KEYS`]: a typo in the caller, caught by any test
/// that builds its arguments.
pub fn default_of(name: &str) -> &'static str {
    match KEYS.iter().find(|k| k.name == name) {
        Some(k) => k.default,
        None => panic!("no option \"{name}\" in the options table"),
    }
}

fn toggle(v: &str) -> Result<Toggle, String> {
    Ok(match v {
        "auto" => Toggle::Auto,
        "on" => Toggle::On,
        "off" => Toggle::Off,
        _ => return Err("auto, on or off".into()),
    })
}

/// `none`, or a PEM file read (and checked) now, so a bad file stops the
/// JVM at load like any bad option.
fn pem<T>(v: &str, read: fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if v == "none" {
        return Ok(None);
    }
    if !v.starts_with('/') {
        return Err("an absolute path to a PEM file, or none".into());
    }
    // The error names the file: outside text, so sanitised like any echo.
    read(v)
        .map(Some)
        .map_err(|e| format!("a readable PEM file: {}", crate::text::sanitize(&e)))
}

/// A bad option string: names the key or value and says what is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError(pub String);

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionError {}

fn valid_keys() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

impl Default for Options {
    fn default() -> Self {
        let mut o = Options {
            port: None,
            host: None,
            interval: Duration::ZERO,
            check: Duration::ZERO,
            timeout: Duration::ZERO,
            failures: 0,
            socket: SocketChoice::Auto,
            log: Level::Info,
            cassandra: Toggle::Auto,
            ready: Readiness::Normal,
            extend: Duration::ZERO,
            group: None,
            tls: Toggle::Auto,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_keep: Duration::from_secs(60),
            cluster: Toggle::Auto,
        };
        for key in KEYS {
            // The table's defaults are covered by a unit test.
            let _ = (key.set)(&mut o, key.default);
        }
        o
    }
}

impl Options {
    /// Settings that are valid but keep the agent from keeping its promise
    /// that a start or drain that moves is never cut short: every check
    /// period and the check's timeout must fit four times in `extend`
    /// (docs/timelines.md, rule 4). One line each, for the log.
    pub fn warnings(&self) -> Vec<String> {
        let limit = self.extend / 4;
        [
            ("interval", self.interval),
            ("check", self.check),
            ("timeout", self.timeout),
        ]
        .into_iter()
        .filter(|(_, d)| *d > limit)
        .map(|(name, d)| {
            format!(
                "{name}={} is more than a quarter of extend={}: a start or drain that moves may \
                 not be extended in time; raise extend= or lower {name}=",
                format_duration(d),
                format_duration(self.extend)
            )
        })
        .collect()
    }

    /// Parses `key=value,key=value`. An empty or absent string gives the defaults.
    pub fn parse(input: &str) -> Result<Options, OptionError> {
        let mut o = Options::default();
        let mut seen: Vec<&str> = Vec::new();
        for item in input.split(',').filter(|s| !s.is_empty()) {
            let Some((name, value)) = item.split_once('=') else {
                return Err(OptionError(format!(
                    "option \"{}\" has no value; write key=value (valid keys: {})",
                    printable(item),
                    valid_keys()
                )));
            };
            let Some(key) = KEYS.iter().find(|k| k.name == name) else {
                return Err(OptionError(format!(
                    "unknown option \"{}\"; valid keys: {}",
                    printable(name),
                    valid_keys()
                )));
            };
            if seen.contains(&key.name) {
                return Err(OptionError(format!(
                    "option \"{}\" is given twice",
                    key.name
                )));
            }
            seen.push(key.name);
            (key.set)(&mut o, value).map_err(|expected| {
                OptionError(format!(
                    "invalid value \"{}\" for option \"{}\": expected {}",
                    printable(value),
                    key.name,
                    expected
                ))
            })?;
        }
        match (&o.tls_cert, &o.tls_key) {
            (Some(_), None) => {
                return Err(OptionError(
                    "option \"tls_cert\" needs \"tls_key\" (the certificate's private key)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(OptionError(
                    "option \"tls_key\" needs \"tls_cert\" (the certificate it belongs to)".into(),
                ))
            }
            _ => {}
        }
        if o.tls == Toggle::Off && (o.tls_ca.is_some() || o.tls_cert.is_some()) {
            return Err(OptionError(
                "options \"tls_ca\"/\"tls_cert\" are given but \"tls\" is off".into(),
            ));
        }
        Ok(o)
    }
}

/// Values echoed in errors: control characters shown escaped, length capped.
fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_default).collect()
}

fn duration_in(v: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    match parse_duration(v) {
        Some(d) if d >= min && d <= max => Ok(d),
        Some(_) => Err(format!(
            "{} between {} and {}",
            DURATION_HELP,
            format_duration(min),
            format_duration(max)
        )),
        None => Err(DURATION_HELP.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_when_a_period_does_not_fit_four_times_in_extend() {
        assert!(Options::default().warnings().is_empty());
        let o = Options::parse("extend=4s,check=2s,timeout=1s").unwrap();
        let w = o.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("check=2s is more than a quarter of extend=4s"),
            "{w:?}"
        );
    }

    #[test]
    fn defaults_come_from_the_table() {
        for key in KEYS {
            let mut o = Options::default();
            assert!((key.set)(&mut o, key.default).is_ok(), "{}", key.name);
        }
        let o = Options::parse("").unwrap();
        assert_eq!(o.port, None);
        assert_eq!(o.host, None);
        assert_eq!(o.interval, Duration::from_millis(100));
        assert_eq!(o.check, Duration::from_secs(1));
        assert_eq!(o.timeout, Duration::from_secs(1));
        assert_eq!(o.failures, 3);
        assert_eq!(o.socket, SocketChoice::Auto);
        assert_eq!(o.log, Level::Info);
        assert_eq!(o.cassandra, Toggle::Auto);
        assert_eq!(o.ready, Readiness::Normal);
        assert_eq!(o.extend, Duration::from_secs(120));
    }

    #[test]
    fn parses_every_key() {
        let o = Options::parse(
            "port=9142,host=10.0.0.1,interval=20ms,check=2s,timeout=1500us,failures=5,socket=/run/c/s.sock,log=debug",
        )
        .unwrap();
        assert_eq!(o.port, Some(9142));
        assert_eq!(o.host.as_deref(), Some("10.0.0.1"));
        assert_eq!(o.interval, Duration::from_millis(20));
        assert_eq!(o.check, Duration::from_secs(2));
        assert_eq!(o.timeout, Duration::from_micros(1500));
        assert_eq!(o.failures, 5);
        assert_eq!(o.socket, SocketChoice::Path("/run/c/s.sock".into()));
        assert_eq!(o.log, Level::Debug);
        assert_eq!(
            Options::parse("socket=none").unwrap().socket,
            SocketChoice::Disabled
        );
        assert_eq!(
            Options::parse("host=::1").unwrap().host.as_deref(),
            Some("::1")
        );
        assert_eq!(Options::parse("port=auto,").unwrap().port, None);
    }

    #[test]
    fn errors_name_the_key_or_value() {
        let cases = [
            ("bogus=1", "unknown option \"bogus\""),
            ("port=abc", "invalid value \"abc\" for option \"port\""),
            ("port=0", "option \"port\""),
            ("port=70000", "option \"port\""),
            ("interval=5parsecs", "\"5parsecs\" for option \"interval\""),
            ("interval=0ms", "between 1ms and 3600s"),
            ("interval=5", "option \"interval\""),
            ("timeout=2m", "option \"timeout\""),
            (
                "log=loud",
                "\"loud\" for option \"log\": expected one of off|error",
            ),
            ("failures=0", "option \"failures\""),
            ("socket=relative.sock", "option \"socket\""),
            ("host=a b", "option \"host\""),
            ("port", "option \"port\" has no value"),
            ("port=1,port=2", "given twice"),
            ("log=\n", "\\n"),
        ];
        for (input, needle) in cases {
            let err = Options::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
        let err = Options::parse("nope=1").unwrap_err().to_string();
        assert!(
            err.contains("valid keys: port, host, interval, check, timeout, failures, socket, log")
        );
    }
}
