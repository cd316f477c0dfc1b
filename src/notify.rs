//! The service manager's notify protocol (`sd_notify(3)`), from this process.
//!
//! A notification is one datagram of `KEY=value` lines sent to the Unix socket
//! named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//! The kernel stamps it with the sender's PID, which is how systemd's
//! `NotifyAccess=main` knows it came from the service's main process: sent from
//! a thread of the JVM, it does. Sends never block: the socket is non-blocking
//! and a full or missing receiver is an error to count, not to wait on.

use crate::text::sanitize;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One field of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `READY=1`: start-up is finished. A `Type=notify` unit becomes active,
    /// `systemctl start` returns and units ordered after it may start.
    Ready,
    /// `STATUS=...`: one line shown by `systemctl status`. Sanitised to a
    /// single printable line, so outside text can never add a field.
    Status(String),
    /// `STOPPING=1`: the service is shutting down.
    Stopping,
    /// `WATCHDOG=1`: keep-alive. With `WatchdogSec=` set, systemd kills and
    /// (with `Restart=`) restarts a service that stops sending it.
    Watchdog,
    /// `EXTEND_TIMEOUT_USEC=N`: the running start or stop timeout is extended
    /// to N microseconds from now, so a long start that makes progress can
    /// keep a finite `TimeoutStartSec=`.
    ExtendTimeout(Duration),
    /// `ERRNO=N`: the service failed with this errno (98 when an address
    /// it needs is in use), shown by `systemctl status`.
    Errno(i32),
}

/// The datagram for `fields`, one `KEY=value` line each.
pub fn message(fields: &[Field]) -> String {
    let mut m = String::new();
    for f in fields {
        match f {
            Field::Ready => m.push_str("READY=1\n"),
            Field::Status(s) => {
                m.push_str("STATUS=");
                m.push_str(&sanitize(s));
                m.push('\n');
            }
            Field::Stopping => m.push_str("STOPPING=1\n"),
            Field::Watchdog => m.push_str("WATCHDOG=1\n"),
            Field::ExtendTimeout(d) => {
                m.push_str(&format!("EXTEND_TIMEOUT_USEC={}\n", d.as_micros()));
            }
            Field::Errno(n) => m.push_str(&format!("ERRNO={n}\n")),
        }
    }
    m
}

/// A connection to the service manager, or the knowledge that there is none.
#[derive(Debug)]
pub struct Notifier {
    /// `$NOTIFY_SOCKET` as given, for status output.
    pub socket: Option<String>,
    target: Option<(UnixDatagram, SocketAddr)>,
    /// `WATCHDOG_USEC`, when it is addressed to this process.
    pub watchdog: Option<Duration>,
    /// Whether the last send failed: a failing receiver is logged once,
    /// and again when it recovers, not on every datagram.
    failing: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` for `pid`.
    /// Problems are logged once and leave a notifier that sends nothing.
    pub fn from_env(pid: u32) -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let wpid = std::env::var("WATCHDOG_PID").ok();
        if let (Some(_), Ok(exec_pid)) = (&socket, std::env::var("SYSTEMD_EXEC_PID")) {
            if let Some(warning) = main_pid_warning(&exec_pid, pid) {
                crate::warn!("{warning}");
            }
        }
        Notifier::new(socket, usec.as_deref(), wpid.as_deref(), pid)
    }

    pub fn new(
        socket: Option<String>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Notifier {
        let target = match socket.as_deref() {
            None => {
                crate::info!(
                    "NOTIFY_SOCKET is not set: not under a Type=notify service; status socket only"
                );
                None
            }
            Some(s) => match open(s) {
                Ok(t) => Some(t),
                Err(e) => {
                    crate::warn!("NOTIFY_SOCKET={}: {e}; notifications disabled", sanitize(s));
                    None
                }
            },
        };
        let watchdog = watchdog_period(watchdog_usec, watchdog_pid, pid);
        Notifier {
            socket,
            target,
            watchdog,
            failing: AtomicBool::new(false),
        }
    }

    /// A notifier that sends nothing (tests, `socket=none` style uses).
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            target: None,
            watchdog: None,
            failing: AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one datagram. `Ok(false)` when there is no service manager.
    pub fn send(&self, fields: &[Field]) -> io::Result<bool> {
        let Some((sock, addr)) = &self.target else {
            return Ok(false);
        };
        let result = sock.send_to_addr(message(fields).as_bytes(), addr);
        let shown = self.socket.as_deref().map(sanitize).unwrap_or_default();
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                crate::warn!("cannot notify {shown}: {e}; will keep trying")
            }
            Ok(_) if self.failing.swap(false, Ordering::Relaxed) => {
                crate::info!("notifying {shown} works again")
            }
            _ => {}
        }
        result.map(|_| true)
    }
}

fn open(socket: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else if socket.starts_with('/') {
        SocketAddr::from_pathname(socket)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an @abstract name",
        ));
    };
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    Ok((sock, addr))
}

/// systemd sets `SYSTEMD_EXEC_PID` to the process it started. When that is
/// not this process (a start script ran java without `exec`), a unit with
/// `NotifyAccess=main` ignores every notification: say so once, with the fix.
pub fn main_pid_warning(exec_pid: &str, pid: u32) -> Option<String> {
    let started: u32 = exec_pid.trim().parse().ok()?;
    (started != pid).then(|| {
        format!(
            "systemd started PID {started}, not this JVM (PID {pid}): with NotifyAccess=main it will ignore \
             READY=1; make the start script `exec` java, or set NotifyAccess=all"
        )
    })
}

/// Half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises, when the
/// watchdog is meant for `pid` (no `WATCHDOG_PID`, or ours).
pub fn watchdog_period(
    usec: Option<&str>,
    watchdog_pid: Option<&str>,
    pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = watchdog_pid {
        if p.trim().parse::<u32>().ok() != Some(pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// A warning when one check (`timeout`) plus the pause between checks
/// (`check`) is not well inside the watchdog's limit: a check in progress
/// holds back the next `WATCHDOG=1`, so a slow (or stalled) check could
/// let systemd restart a healthy node. `ping` is [`watchdog_period`]'s
/// answer, half of `WATCHDOG_USEC`.
pub fn watchdog_margin(timeout: Duration, check: Duration, ping: Duration) -> Option<String> {
    let limit = ping * 2;
    (timeout + check > ping).then(|| {
        format!(
            "timeout={} plus check={} is not well inside WatchdogSec={}: a slow check could \
             hold WATCHDOG=1 back until systemd restarts the node; lower them or raise WatchdogSec=",
            crate::text::format_duration(timeout),
            crate::text::format_duration(check),
            crate::text::format_duration(limit)
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn watchdog_margin_warns_only_when_tight() {
        use std::time::Duration as D;
        let ping = D::from_secs(5); // WatchdogSec=10s
        assert_eq!(
            super::watchdog_margin(D::from_secs(1), D::from_secs(1), ping),
            None
        );
        let w = super::watchdog_margin(D::from_secs(4), D::from_secs(2), ping).unwrap();
        assert!(
            w.starts_with("timeout=4s plus check=2s is not well inside WatchdogSec=10s"),
            "{w}"
        );
    }

    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            message(&[
                Field::Ready,
                Field::Status("CQL ready on 127.0.0.1:9042 after 1.2 s".into())
            ]),
            "READY=1\nSTATUS=CQL ready on 127.0.0.1:9042 after 1.2 s\n"
        );
        assert_eq!(message(&[Field::Stopping]), "STOPPING=1\n");
        assert_eq!(message(&[Field::Watchdog]), "WATCHDOG=1\n");
        assert_eq!(
            message(&[Field::ExtendTimeout(Duration::from_secs(90))]),
            "EXTEND_TIMEOUT_USEC=90000000\n"
        );
    }

    #[test]
    fn status_text_cannot_forge_fields() {
        let m = message(&[Field::Status("boom\nREADY=1\r\nWATCHDOG=1\0x".into())]);
        assert_eq!(m, "STATUS=boom READY=1  WATCHDOG=1 x\n");
        assert_eq!(m.lines().count(), 1);
    }

    #[test]
    fn warns_when_not_the_main_pid() {
        assert_eq!(main_pid_warning("7", 7), None);
        assert!(main_pid_warning("6", 7).unwrap().contains("exec"));
        assert_eq!(main_pid_warning("x", 7), None);
    }

    #[test]
    fn watchdog_is_half_and_only_for_us() {
        assert_eq!(
            watchdog_period(Some("200000"), None, 7),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            watchdog_period(Some("200000"), Some("7"), 7),
            Some(Duration::from_millis(100))
        );
        assert_eq!(watchdog_period(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("x"), None, 7), None);
        assert_eq!(watchdog_period(None, None, 7), None);
    }

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let dir = std::env::temp_dir().join(format!("cqlready-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(path.to_string_lossy().into_owned()), None, None, 1);
        assert!(n.send(&[Field::Ready]).unwrap());
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\n");
        let _ = std::fs::remove_dir_all(&dir);

        use std::os::linux::net::SocketAddrExt;
        let name = format!("cqlready-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        let n = Notifier::new(Some(format!("@{name}")), None, None, 1);
        assert!(n.send(&[Field::Stopping]).unwrap());
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\n");

        let nowhere = Notifier::new(Some("/nonexistent/notify".into()), None, None, 1);
        assert!(nowhere.send(&[Field::Ready]).is_err());
        assert!(!Notifier::new(Some("relative".into()), None, None, 1).enabled());
        assert!(!Notifier::disabled().send(&[Field::Ready]).unwrap());
    }
}
