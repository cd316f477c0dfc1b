//! What the agent does when loaded and when the VM dies, with no JVM types:
//! discover the address, open the notifier, start the status server and the
//! monitor thread. `jvm/entry.rs` calls [`start`] and [`stop`]; tests can too.

use crate::agent_process;
use crate::cassandra::{self, MBeans, NodeProbe};
use crate::config::{self, Config};
use crate::discovery;
use crate::monitor::{self, Pace, Probe, Shared};
use crate::notify::Notifier;
use crate::options::Readiness;
use crate::options::{Options, SocketChoice};
use crate::probe::cql::Prober;
use crate::status::event_loop;
use crate::status::model::{Cql, Snapshot, State};
use crate::status::server::{self, Server};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

struct Running {
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
    server: Mutex<Option<Server>>,
    /// The ports Cassandra must bind (what, port) and the CQL host: who
    /// holds one is named if the JVM dies before CQL answered.
    ports: Vec<(&'static str, u16)>,
    host: String,
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
    let access = access(options)?;
    let pid = std::process::id();
    if !claim(pid) {
        return Ok(());
    }
    let socket = socket_path(&options.socket, pid);
    let (ep, tls) = discover(options, prop);
    let notifier = Arc::new(Notifier::from_env(pid));
    if let Some(w) = notifier
        .watchdog
        .and_then(|ping| crate::notify::watchdog_margin(options.timeout, options.check, ping))
    {
        crate::warn!("{w}");
    }
    for w in options.warnings() {
        crate::warn!("{w}");
    }
    let endpoint = config::Endpoint {
        host: ep.host.clone(),
        port: ep.port,
        port_source: ep.port_source.to_string(),
        host_source: ep.host_source.to_string(),
    };
    let Config { prober, pace, cql } = Config::new(options, endpoint, tls);
    let first = first_snapshot(pid, cql, &notifier, socket.as_ref());
    let shared = Shared::new(first);
    let server = socket.and_then(|(path, private)| serve(&path, private, access, &shared));
    let probe = node_probe(options, prober, prop, mbeans, &shared);
    let running = Running {
        shared: shared.clone(),
        notifier: notifier.clone(),
        server: Mutex::new(server),
        ports: needed_ports(ep.port, probe.reads_cassandra(), prop),
        host: ep.host.clone(),
    };
    if AGENT.set(running).is_err() {
        return Ok(());
    }
    spawn_monitor(probe, pace, notifier, shared);
    Ok(())
}

/// Who may use the status socket: the JVM's user, root and `group=`.
fn access(options: &Options) -> Result<event_loop::Access, String> {
    let group = match &options.group {
        None => None,
        Some(name) => Some(agent_process::group_id(name).ok_or_else(|| {
            format!("invalid value \"{name}\" for option \"group\": no such group in /etc/group")
        })?),
    };
    Ok(event_loop::Access {
        owner: crate::process::euid(),
        group,
    })
}

/// Claims the process for this copy of the library; `false`: another copy runs.
fn claim(pid: u32) -> bool {
    match agent_process::claim_process(pid) {
        Ok(true) => true,
        Ok(false) => {
            crate::warn!("another copy of cqlready already runs in this JVM; this one stays idle");
            false
        }
        // Only a sandbox without abstract sockets gets here; a copy loaded
        // twice into it would run twice, which is all this guards against.
        Err(e) => {
            crate::debug!("cannot claim this process for one agent: {e}");
            true
        }
    }
}

/// The CQL address as Cassandra sees it and whether it speaks TLS, with one
/// log line saying where each came from.
fn discover(
    options: &Options,
    prop: &dyn Fn(&str) -> Option<String>,
) -> (discovery::Endpoint, crate::probe::tls::Choice) {
    let ep = discovery::discover(options.port, options.host.as_deref(), prop);
    let tls = crate::probe::tls::choose(
        options.tls,
        ep.tls,
        ep.encryption.as_ref().map(|e| e.server()).as_ref(),
        options.tls_ca.as_ref(),
        options.tls_cert.as_ref().zip(options.tls_key.as_ref()),
    );
    for w in ep.warnings.iter().chain(&tls.warnings) {
        crate::warn!("{w}");
    }
    let yaml = ep
        .yaml
        .as_ref()
        .map(|p| format!(" ({})", p.display()))
        .unwrap_or_default();
    crate::info!(
        "v{} watching {} on {}:{} (port from {}{}, host from {}{})",
        crate::VERSION,
        tls.subject,
        ep.host,
        ep.port,
        ep.port_source,
        yaml,
        ep.host_source,
        match &tls.info {
            Some(t) => format!(", TLS from {}", t.why),
            None => String::new(),
        }
    );
    (ep, tls)
}

/// The snapshot before the first check; the socket's path is in it before
/// the first client can connect.
fn first_snapshot(
    pid: u32,
    cql: Cql,
    notifier: &Notifier,
    socket: Option<&(PathBuf, bool)>,
) -> Snapshot {
    let mut snap = Snapshot::new(pid, cql);
    snap.notify.socket = notifier
        .enabled()
        .then(|| notifier.socket.clone())
        .flatten();
    snap.notify.watchdog_usec = notifier.watchdog.map(|d| 2 * d.as_micros() as u64);
    snap.socket = socket.map(|(p, _)| p.display().to_string());
    snap
}

/// Starts the status server; a failure is one error line and no socket.
fn serve(
    path: &Path,
    private: bool,
    access: event_loop::Access,
    shared: &Arc<Shared>,
) -> Option<Server> {
    match Server::start(path, private, access, shared.clone()) {
        Ok(s) => {
            crate::info!(
                "status on {} (up to {} connections)",
                s.path.display(),
                s.capacity
            );
            Some(s)
        }
        Err(e) => {
            crate::error!("{e}; continuing without a status socket");
            shared.update(|snap| snap.socket = None);
            None
        }
    }
}

/// The probe: CQL, plus Cassandra's own view when `cassandra=` wants it;
/// it reads the cluster view while the status store's demand wants it.
fn node_probe(
    options: &Options,
    cql: Prober,
    prop: &dyn Fn(&str) -> Option<String>,
    mbeans: Box<dyn MBeans>,
    shared: &Shared,
) -> NodeProbe {
    let view = cassandra::wanted(options.cassandra, prop("sun.java.command").as_deref());
    if view {
        crate::info!(
            "reading Cassandra's own view from its StorageService MBean (ready={:?})",
            options.ready
        );
    }
    NodeProbe::new(
        cql,
        view.then_some(mbeans),
        options.ready == Readiness::Normal,
        options.extend,
    )
    .with_cluster(options.cluster, shared.demand().clone())
}

/// The CQL port, and for Cassandra its storage port too
/// (`-Dcassandra.storage_port`, else 7000; the yaml's `storage_port` is not
/// read).
fn needed_ports(
    cql: u16,
    cassandra: bool,
    prop: &dyn Fn(&str) -> Option<String>,
) -> Vec<(&'static str, u16)> {
    let mut ports = vec![("CQL", cql)];
    if cassandra {
        let storage = prop("cassandra.storage_port").and_then(|p| p.trim().parse().ok());
        ports.push(("storage", storage.unwrap_or(7000)));
    }
    ports
}

/// Runs the monitor on a thread of its own.
fn spawn_monitor(probe: NodeProbe, pace: Pace, notifier: Arc<Notifier>, shared: Arc<Shared>) {
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
}

/// The VM is dying: tell the service manager, end the monitor, remove the
/// socket. Never blocks: one non-blocking datagram and two unlinks.
pub fn stop(why: &str) {
    let Some(a) = AGENT.get() else { return };
    // A start that failed: only then are the socket tables read, once.
    let held = (a.shared.state() == State::Starting)
        .then(|| cassandra::holder::taken(&a.ports, &a.host))
        .flatten();
    monitor::stop(&a.notifier, &a.shared, why, held.as_deref());
    if let Some(server) = a.server.lock().unwrap_or_else(|e| e.into_inner()).take() {
        server.remove();
    }
}
