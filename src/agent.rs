//! What the agent does when loaded and when the VM dies, with no JVM types:
//! discover the address, open the notifier, start the status server and the
//! monitor thread. `jvm.rs` calls [`start`] and [`stop`]; tests can too.

use crate::cassandra::{self, MBeans, NodeProbe};
use crate::cql::{Prober, Target};
use crate::discovery;
use crate::monitor::{self, Pace, Probe, Shared};
use crate::notify::Notifier;
use crate::options::Readiness;
use crate::options::{Options, SocketChoice};
use crate::status::model::{Cql, Snapshot};
use crate::status::server::{self, Server};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

struct Running {
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
    server: Mutex<Option<Server>>,
}

static AGENT: OnceLock<Running> = OnceLock::new();

/// Where the status socket goes, and whether its directory is our private one.
fn socket_path(choice: &SocketChoice, pid: u32) -> Option<(PathBuf, bool)> {
    match choice {
        SocketChoice::Disabled => None,
        SocketChoice::Path(p) => Some((p.clone(), false)),
        SocketChoice::Auto => {
            let rt = std::env::var("RUNTIME_DIRECTORY").ok();
            let path = server::default_path(pid, rt.as_deref());
            let private = path.parent() == Some(server::private_dir(pid).as_path());
            Some((path, private))
        }
    }
}

/// Held for the life of the process by the copy of the library that runs.
static CLAIM: OnceLock<UnixDatagram> = OnceLock::new();

/// Claims this process for one agent across copies of the library (a second
/// `-agentpath` with another file, the shim's copy, a copy `attach` placed in
/// a container): binds the abstract socket `cqlready-agent-<pid ns>-<pid>`,
/// which names this process uniquely on the host. `Ok(false)`: another copy
/// in this process holds it. A name held by another process (squatted by a
/// local user to keep the agent idle) is ignored with a warning. The socket
/// is close-on-exec, so children do not inherit it.
fn claim_process(pid: u32) -> std::io::Result<bool> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let ns = std::fs::read_link("/proc/self/ns/pid")?;
    let ns: String = ns
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let name = format!("cqlready-agent-{ns}-{pid}");
    match UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?) {
        Ok(sock) => {
            let _ = CLAIM.set(sock);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let here = crate::process::abstract_socket_inode(&name)
                .is_some_and(crate::process::is_own_socket);
            if !here {
                crate::warn!("@{name} is held by another process; running anyway");
            }
            Ok(!here)
        }
        Err(e) => Err(e),
    }
}

/// Whether the agent already runs in this process.
pub fn running() -> bool {
    AGENT.get().is_some()
}

/// Starts the agent once per process; a second call only logs.
/// `prop` reads the JVM's system properties; `mbeans` reads Cassandra's
/// MBeans, used when `cassandra=` says so.
/// `Err` only for options that turn out invalid here (an unknown group):
/// the JVM should not start with them.
pub fn start(
    options: &Options,
    prop: &dyn Fn(&str) -> Option<String>,
    mbeans: Box<dyn MBeans>,
) -> Result<(), String> {
    crate::log::set_level(options.log);
    if running() {
        crate::info!("already running in this JVM; the second load does nothing");
        return Ok(());
    }
    let group = match &options.group {
        None => None,
        Some(name) => Some(crate::process::group_id(name).ok_or_else(|| {
            format!("invalid value \"{name}\" for option \"group\": no such group in /etc/group")
        })?),
    };
    let access = server::Access {
        owner: crate::process::euid(),
        group,
    };
    let pid = std::process::id();
    match claim_process(pid) {
        Ok(true) => {}
        Ok(false) => {
            crate::warn!("another copy of cqlready already runs in this JVM; this one stays idle");
            return Ok(());
        }
        // Only a sandbox without abstract sockets gets here; a copy loaded
        // twice into it would run twice, which is all this guards against.
        Err(e) => crate::debug!("cannot claim this process for one agent: {e}"),
    }
    let socket = socket_path(&options.socket, pid);

    let ep = discovery::discover(options.port, options.host.as_deref(), prop);
    for w in &ep.warnings {
        crate::warn!("{w}");
    }
    let yaml = ep
        .yaml
        .as_ref()
        .map(|p| format!(" ({})", p.display()))
        .unwrap_or_default();
    crate::info!(
        "v{} watching CQL on {}:{} (port from {}{}, host from {})",
        crate::VERSION,
        ep.host,
        ep.port,
        ep.port_source,
        yaml,
        ep.host_source
    );

    let notifier = Arc::new(Notifier::from_env(pid));
    let mut snap = Snapshot::new(
        pid,
        Cql {
            host: ep.host.clone(),
            port: ep.port,
            source: ep.port_source.to_string(),
            host_source: ep.host_source.to_string(),
            protocol_version: None,
        },
    );
    snap.notify.socket = notifier
        .enabled()
        .then(|| notifier.socket.clone())
        .flatten();
    snap.notify.watchdog_usec = notifier.watchdog.map(|d| 2 * d.as_micros() as u64);
    // The path is in the snapshot before the first client can connect.
    snap.socket = socket.as_ref().map(|(p, _)| p.display().to_string());
    let shared = Shared::new(snap);

    let server = socket.and_then(|(path, private)| {
        match Server::start(&path, private, access, shared.clone()) {
            Ok(s) => {
                crate::info!("status on {}", s.path.display());
                Some(s)
            }
            Err(e) => {
                crate::error!("{e}; continuing without a status socket");
                shared.update(|snap| snap.socket = None);
                None
            }
        }
    });

    let target = Target {
        host: ep.host.clone(),
        port: ep.port,
        timeout: options.timeout,
    };
    let pace = Pace {
        interval: options.interval,
        check: options.check,
        failures: options.failures,
        subject: "CQL".into(),
        place: target.to_string(),
        extend: options.extend,
        exit_on_degraded: false,
    };
    let view = cassandra::wanted(options.cassandra, prop("sun.java.command").as_deref());
    if view {
        crate::info!(
            "reading Cassandra's own view from its StorageService MBean (ready={:?})",
            options.ready
        );
    }
    let probe = NodeProbe::new(
        Prober::new(target),
        view.then_some(mbeans),
        options.ready == Readiness::Normal,
        options.extend,
    )
    .with_cluster(options.cluster);
    let running = Running {
        shared: shared.clone(),
        notifier: notifier.clone(),
        server: Mutex::new(server),
    };
    if AGENT.set(running).is_err() {
        return Ok(());
    }
    let spawned = std::thread::Builder::new()
        .name("cqlready".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut probe = probe;
            crate::fence("the monitor", || {
                monitor::run(&mut probe, pace, notifier, shared)
            });
            // A thread attached to the JVM must not end while the JVM exits;
            // the process's exit ends it.
            if probe.bound_to_thread() {
                loop {
                    std::thread::park();
                }
            }
        });
    if let Err(e) = spawned {
        crate::error!("cannot start the monitor thread: {e}; nothing will be reported");
    }
    Ok(())
}

/// The VM is dying: tell the service manager, end the monitor, remove the
/// socket. Never blocks: one non-blocking datagram and two unlinks.
pub fn stop(why: &str) {
    let Some(a) = AGENT.get() else { return };
    monitor::stop(&a.notifier, &a.shared, why);
    if let Some(server) = a.server.lock().unwrap_or_else(|e| e.into_inner()).take() {
        server.remove();
    }
}
