//! Who holds the CQL port when Cassandra cannot: a listening socket on it in
//! `/proc/net/tcp` or `tcp6` that is not one of this process's descriptors,
//! and the process whose `/proc/PID/fd` has it (when this user may look).
//! Read only while CQL fails (not refused: then nothing listens) and
//! Cassandra's transport is not running, and
//! at most every [`EVERY`].

use std::path::Path;
use std::time::Duration;

/// How often the tables are read again while the check keeps failing.
pub const EVERY: Duration = Duration::from_secs(2);

/// A listener found on the port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub inode: u64,
    pub pid: Option<u32>,
    pub name: Option<String>,
}

impl Holder {
    /// "CQL port 127.0.0.1:9042 is held by another process (pid 4242, nc)".
    pub fn describe(&self, place: &str) -> String {
        self.describe_port("CQL", place)
    }

    /// The same for `what` port ("storage") at `place`.
    pub fn describe_port(&self, what: &str, place: &str) -> String {
        let who = match (self.pid, &self.name) {
            (Some(pid), Some(name)) => format!("pid {pid}, {name}"),
            (Some(pid), None) => format!("pid {pid}"),
            _ => format!(
                "socket inode {}, a process this user cannot see",
                self.inode
            ),
        };
        format!(
            "{what} port {place} is held by another process ({who}), so Cassandra cannot bind it"
        )
    }
}

/// The IPv4 address of a `/proc/net/tcp` column (`0100007F` is 127.0.0.1).
fn v4(hex: &str) -> Option<[u8; 4]> {
    let n = u32::from_str_radix(hex, 16).ok()?;
    Some(n.to_le_bytes())
}

/// Inodes of the sockets listening on `port` at `host` or a wildcard, from
/// the text of `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn listening(table: &str, port: u16, host: Option<std::net::IpAddr>) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let (local, state, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
            if *state != "0A" {
                return None;
            }
            let (addr, p) = local.split_once(':')?;
            if u16::from_str_radix(p, 16).ok()? != port {
                return None;
            }
            let wildcard = addr.bytes().all(|b| b == b'0');
            let same = match (addr.len(), host) {
                (8, Some(std::net::IpAddr::V4(h))) => v4(addr) == Some(h.octets()),
                (32, Some(std::net::IpAddr::V4(h))) => {
                    // ::ffff:a.b.c.d
                    addr.starts_with("0000000000000000FFFF0000")
                        && v4(&addr[24..]) == Some(h.octets())
                }
                (32, Some(std::net::IpAddr::V6(h))) => {
                    let words: Option<Vec<u8>> = (0..4)
                        .map(|i| v4(&addr[i * 8..i * 8 + 8]))
                        .collect::<Option<Vec<[u8; 4]>>>()
                        .map(|w| w.concat());
                    words.as_deref() == Some(&h.octets()[..])
                }
                (_, None) => true,
                _ => false,
            };
            (wildcard || same).then(|| inode.parse().ok()).flatten()
        })
        .filter(|&i| i != 0)
        .collect()
}

/// The process (under `proc`, normally `/proc`) one of whose descriptors is
/// socket `inode`, and its name.
pub fn owner(proc: &Path, inode: u64) -> Option<(u32, Option<String>)> {
    let want = format!("socket:[{inode}]");
    for entry in std::fs::read_dir(proc).ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let has = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()));
        if has {
            let name = std::fs::read_to_string(entry.path().join("comm"))
                .ok()
                .map(|n| crate::text::sanitize(n.trim()));
            return Some((pid, name));
        }
    }
    None
}

/// A listener on `port` (at `host` or a wildcard) that is not this
/// process's own, with its owner when visible.
pub fn find(port: u16, host: &str) -> Option<Holder> {
    let ip = host.parse().ok();
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|t| listening(&t, port, ip))
        .collect();
    let inode = inodes
        .into_iter()
        .find(|&i| !crate::agent_process::is_own_socket(i))?;
    let (pid, name) = match owner(Path::new("/proc"), inode) {
        Some((pid, name)) => (Some(pid), name),
        None => (None, None),
    };
    Some(Holder { inode, pid, name })
}

/// The first of `ports` (what, port) another process listens on at
/// `host` (or a wildcard), described: why a start that never served may
/// have failed. Read once, at VM death, only after a failed start.
pub fn taken(ports: &[(&str, u16)], host: &str) -> Option<String> {
    ports.iter().find_map(|&(what, port)| {
        let place = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        find(port, host).map(|h| h.describe_port(what, &place))
    })
}

/// A python3 child listening on a port of 127.0.0.1: (child, port).
#[cfg(test)]
pub fn stray_listener() -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); \
             print(s.getsockname()[1], flush=True); time.sleep(30)",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let port = line.trim().parse().expect("the listener's port");
    (child, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2352 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0200007F:2352 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100007F:2352 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
   3: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4545 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2352 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5151 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5252 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listeners_on_the_port_and_address() {
        let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            listening(TCP, 9042, Some(lo)),
            vec![4242],
            "LISTEN rows only, this address"
        );
        let two: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(listening(TCP, 9042, Some(two)), vec![4343]);
        assert_eq!(
            listening(TCP, 8080, Some(two)),
            vec![4545],
            "a wildcard holds every address"
        );
        assert_eq!(listening(TCP, 9042, None), vec![4242, 4343]);
        assert_eq!(
            listening(TCP6, 9042, Some(lo)),
            vec![5151],
            ":: holds IPv4 too"
        );
        assert_eq!(listening(TCP6, 8080, Some(lo)), vec![5252], "v4-mapped");
        assert!(listening(TCP6, 8080, Some(two)).is_empty());
        assert!(listening("garbage\n1 2 3\n", 9042, None).is_empty());
    }

    #[test]
    fn the_holder_of_a_real_listener() {
        // Our own listener is never blamed.
        let own = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = own.local_addr().unwrap().port();
        assert_eq!(find(port, "127.0.0.1"), None, "this process's own socket");
        // Another process's is, by pid and name.
        let (mut child, port) = stray_listener();
        let found = find(port, "127.0.0.1");
        let _ = child.kill();
        let _ = child.wait();
        let h = found.expect("the child's listener");
        assert_eq!(h.pid, Some(child.id()));
        assert_eq!(h.name.as_deref(), Some("python3"));
        assert!(h
            .describe("x")
            .contains(&format!("(pid {}, python3)", child.id())));
        let unseen = Holder {
            inode: 9,
            pid: None,
            name: None,
        };
        assert!(unseen
            .describe("x")
            .contains("socket inode 9, a process this user cannot see"));
    }
}
