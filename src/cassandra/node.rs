//! The agent's probe of its own node: CQL answers and, where Cassandra's
//! view is there, the node says it serves (mode NORMAL, native transport
//! on); while it does not, what it is doing and whether it moves, and who
//! else may hold its port.

use super::{cluster, deliberately_out, holder, progress, view, MBeans, ATTRIBUTES};
use super::{STORAGE_LOAD, STORAGE_SERVICE, STREAM_MANAGER};
use crate::probe::cql::Prober;
use crate::probe::Probe;
use crate::status::model::{Cassandra, Snapshot};
use crate::status::store::Demand;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The agent's probe: CQL answers, and (when Cassandra's view is there and
/// `require_normal`) the node says NORMAL and its native transport runs.
pub struct NodeProbe {
    pub cql: Prober,
    mbeans: Option<Box<dyn MBeans>>,
    require_normal: bool,
    last: Option<Cassandra>,
    /// Whether start-up or a drain moves, and what it is doing.
    progress: progress::Progress,
    /// The cluster view: how it is wanted, its reader, its last read.
    cluster: crate::text::Toggle,
    demand: Arc<Demand>,
    reader: cluster::Reader,
    cluster_view: Option<crate::status::view::ClusterView>,
    /// Whether the native transport was ever seen running.
    transport_ran: bool,
    /// The last look for another process on the port, and when.
    held: Option<String>,
    holder_at: Option<Instant>,
}

impl NodeProbe {
    pub fn new(
        cql: Prober,
        mbeans: Option<Box<dyn MBeans>>,
        require_normal: bool,
        extend: Duration,
    ) -> NodeProbe {
        NodeProbe {
            cql,
            mbeans,
            require_normal,
            last: None,
            progress: progress::Progress::new(extend),
            cluster: crate::text::Toggle::Auto,
            demand: Arc::default(),
            reader: cluster::Reader::default(),
            cluster_view: None,
            transport_ran: false,
            held: None,
            holder_at: None,
        }
    }

    /// Whether Cassandra's own view is read (the JVM is Cassandra).
    pub fn reads_cassandra(&self) -> bool {
        self.mbeans.is_some()
    }

    /// How the cluster view is read: `auto` while `demand` (the status
    /// store's) wants it, `on` always, `off` never.
    pub fn with_cluster(mut self, cluster: crate::text::Toggle, demand: Arc<Demand>) -> NodeProbe {
        if cluster == crate::text::Toggle::On {
            demand.always();
        }
        self.cluster = cluster;
        self.demand = demand;
        self
    }

    /// Reads the cluster view when it is wanted; drops it when not, so no
    /// stale view is kept.
    fn read_cluster(&mut self) {
        use crate::status::view::ClusterView;
        use crate::text::Toggle;
        self.cluster_view = match (self.cluster, self.mbeans.as_mut()) {
            (Toggle::Off, _) => Some(ClusterView {
                errors: vec!["nodes: the cluster view is off (cluster=off)".into()],
                read_mono_ms: u64::MAX,
                ..ClusterView::default()
            }),
            (_, Some(m)) if self.demand.wanted(crate::status::view::mono_ms()) => {
                Some(self.reader.read(m.as_mut()))
            }
            _ => None,
        };
    }

    fn read(&mut self) {
        let Some(m) = self.mbeans.as_mut() else {
            return;
        };
        let mut c = match m.attributes(STORAGE_SERVICE, &ATTRIBUTES) {
            Ok(values) => {
                let mut c = view(&values);
                c.load_bytes = m
                    .attributes(STORAGE_LOAD, &["Count"])
                    .ok()
                    .and_then(|v| v.into_iter().next().flatten())
                    .and_then(|v| v.parse::<f64>().ok());
                c
            }
            Err(e) => Cassandra {
                error: Some(crate::text::sanitize(&e)),
                ..Cassandra::default()
            },
        };
        let mut signals = progress::Signals {
            mode: c.mode.clone(),
            bootstrap: c.bootstrap,
            load_bytes: c.load_bytes,
            ..progress::Signals::default()
        };
        if c.mode.as_deref() == Some("JOINING") || c.bootstrap == Some(true) {
            if let Ok(v) = m.attributes(STREAM_MANAGER, &["CurrentStreams"]) {
                let mut h = DefaultHasher::new();
                v.hash(&mut h);
                signals.streams = h.finish();
                signals.streamed = v
                    .first()
                    .and_then(|t| t.as_deref())
                    .and_then(progress::stream_bytes);
            }
        }
        // The signs of start-up and drain progress cost nothing while NORMAL.
        if c.mode.as_deref() != Some("NORMAL") {
            let count = |m: &mut Box<dyn MBeans>, object: &str, attr: &str| {
                m.attributes(object, &[attr])
                    .ok()
                    .and_then(|v| v.into_iter().next().flatten())
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|v| v as u64)
            };
            if matches!(c.mode.as_deref(), None | Some("STARTING")) {
                signals.writes = count(m, progress::WRITES, "Count");
                signals.sstables = count(m, progress::SSTABLES, "Value");
            }
            signals.io_bytes = std::fs::read_to_string("/proc/self/io")
                .ok()
                .and_then(|t| progress::io_bytes(&t));
        }
        self.progress.observe(Instant::now(), signals);
        if c.mode.is_none() && c.error.is_none() {
            c.error = Some("no OperationMode".into());
        }
        self.last = Some(c);
        self.read_cluster();
    }

    fn mode(&self) -> Option<&str> {
        self.last.as_ref()?.mode.as_deref()
    }

    /// Another process listening on the CQL port, described; read at most
    /// every [`holder::EVERY`].
    fn holder(&mut self) -> Option<String> {
        if self.holder_at.is_none_or(|t| t.elapsed() >= holder::EVERY) {
            self.holder_at = Some(Instant::now());
            let t = &self.cql.target;
            self.held = holder::find(t.port, &t.host).map(|h| h.describe(&t.to_string()));
        }
        self.held.clone()
    }
}

/// Why CQL is not ready, in words true to Cassandra's phase: the transport
/// has not started yet (STARTING, JOINING, or NORMAL before it first ran),
/// is shutting down (DRAINING), was disabled after it had run
/// (`nodetool disablebinary`), or another process holds the port.
pub fn why_not(
    mode: Option<&str>,
    transport: Option<bool>,
    ran: bool,
    held: Option<&str>,
    e: &str,
) -> String {
    if let Some(h) = held {
        return format!("{h}: {e}");
    }
    let Some(mode) = mode else {
        return e.to_string();
    };
    let off = transport != Some(true);
    match mode {
        "STARTING" | "JOINING" => {
            format!("{e}; Cassandra's native transport not started yet, mode {mode}")
        }
        "DRAINING" | "DRAINED" | "DECOMMISSIONED" => {
            format!("{e}; Cassandra's native transport shutting down, mode {mode}")
        }
        "NORMAL" if off && ran => format!(
            "{e}; Cassandra's native transport disabled (nodetool disablebinary?), mode NORMAL"
        ),
        "NORMAL" if off => {
            format!("{e}; Cassandra's native transport not started yet, mode NORMAL")
        }
        _ => format!("{e}; Cassandra is {mode}"),
    }
}

impl NodeProbe {
    fn check_node(&mut self) -> Result<Option<u8>, String> {
        let cql = Prober::check(&mut self.cql);
        self.read();
        let transport = self.last.as_ref().and_then(|c| c.native_transport);
        if transport == Some(true) {
            self.transport_ran = true;
        }
        // A TLS server that finished its half of the handshake and wants a
        // client certificate the check lacks serves CQL: Cassandra's own
        // view decides (without it, the error names tls_cert).
        let serving = self.last.as_ref().is_some_and(|c| {
            c.mode.as_deref() == Some("NORMAL") && c.native_transport == Some(true)
        });
        if serving && matches!(cql, Err(crate::probe::ProbeError::ClientCertRequired)) {
            return Ok(None);
        }
        // Someone else on the port is worth naming only while Cassandra's
        // own transport does not run (it would be Cassandra's otherwise),
        // and only when something listens: reading the kernel's socket
        // tables costs milliseconds, and a refused connection has no holder.
        let held = match (&cql, transport) {
            (_, Some(true)) | (Err(crate::probe::ProbeError::Refused(_)), _) => None,
            (Err(_), _) | (Ok(_), Some(false)) => self.holder(),
            _ => None,
        };
        let answer = cql.map_err(|e| {
            why_not(
                self.mode(),
                transport,
                self.transport_ran,
                held.as_deref(),
                &e.to_string(),
            )
        })?;
        if self.require_normal {
            if let Some(c) = &self.last {
                if c.native_transport == Some(false) {
                    return Err(why_not(
                        c.mode.as_deref(),
                        Some(false),
                        self.transport_ran,
                        held.as_deref(),
                        "CQL answers",
                    ));
                }
                if let Some(mode) = c.mode.as_deref().filter(|m| *m != "NORMAL") {
                    return Err(format!("CQL answers but Cassandra is {mode}"));
                }
            }
        }
        Ok(Some(answer.version))
    }
}

impl Probe for NodeProbe {
    fn check(&mut self) -> Result<Option<u8>, String> {
        let result = self.check_node();
        // Cassandra keeps its clients' connections when the transport is
        // switched off (4.0.19 and 5.0.9 do): after a failed check the next
        // one opens a new connection, so a closed port is seen as closed.
        if result.is_err() {
            self.cql.forget_connection();
        }
        result
    }

    fn annotate(&self, snap: &mut Snapshot) {
        snap.cassandra = self.last.clone();
        if let Some(tls) = snap.cql.tls.as_mut() {
            tls.reached = self.cql.reached.map(String::from);
            tls.resumed = self.cql.tls.as_ref().and_then(|c| c.last_resumed());
            tls.kept = self.cql.on_kept;
        }
        snap.cluster = self.cluster_view.clone();
    }

    fn progress(&mut self) -> Option<crate::probe::Moving> {
        self.progress.status(Instant::now())
    }

    fn keep_alive(&self) -> bool {
        self.mode().is_some_and(deliberately_out)
    }

    fn bound_to_thread(&self) -> bool {
        self.mbeans.as_ref().is_some_and(|m| m.thread_attached())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassandra::wanted;
    use crate::text::Toggle;

    #[test]
    fn who_is_cassandra() {
        assert!(wanted(
            Toggle::Auto,
            Some("org.apache.cassandra.service.CassandraDaemon")
        ));
        assert!(wanted(Toggle::Auto, Some("com.datastax.bdp.DseModule")));
        assert!(!wanted(Toggle::Auto, Some("CqlFixture 9042")));
        assert!(!wanted(Toggle::Auto, None));
        assert!(wanted(Toggle::On, None));
        assert!(!wanted(
            Toggle::Off,
            Some("org.apache.cassandra.service.CassandraDaemon")
        ));
    }

    #[test]
    fn views() {
        let v = view(&[
            Some("NORMAL".into()),
            Some("true".into()),
            Some("true".into()),
            Some("false".into()),
        ]);
        assert_eq!(v.mode.as_deref(), Some("NORMAL"));
        assert_eq!(v.native_transport, Some(true));
        assert_eq!(v.bootstrap, Some(false));
        let v = view(&[Some("JOIN\nING".into()), None, Some("maybe".into())]);
        assert_eq!(v.mode.as_deref(), Some("JOIN ING"));
        assert_eq!(
            (v.native_transport, v.joined, v.load_bytes),
            (None, None, None)
        );
    }

    /// StorageService attributes from a script, one read per check.
    struct Table(Vec<Result<Vec<Option<String>>, String>>);
    impl MBeans for Table {
        fn attributes(&mut self, object: &str, _: &[&str]) -> Result<Vec<Option<String>>, String> {
            if object == STREAM_MANAGER {
                return Ok(vec![None]);
            }
            if object == STORAGE_LOAD {
                return Ok(vec![Some("1048576".into())]);
            }
            if self.0.len() > 1 {
                self.0.remove(0)
            } else {
                self.0[0].clone()
            }
        }
    }

    fn row(mode: &str, native: bool) -> Result<Vec<Option<String>>, String> {
        Ok(vec![
            Some(mode.into()),
            Some(native.to_string()),
            Some("true".into()),
            Some("false".into()),
        ])
    }

    /// A probe of 127.0.0.1:`port` with a budget of `ms` milliseconds.
    fn local(port: u16, ms: u64) -> Prober {
        Prober::new(crate::probe::cql::Target {
            host: "127.0.0.1".into(),
            port,
            timeout: Duration::from_millis(ms),
        })
    }

    #[test]
    fn readiness_follows_the_mode_only_when_asked() {
        // No CQL listener on this port: the CQL part fails first.
        let dead = || local(1, 200);
        let mut p = NodeProbe::new(
            dead(),
            Some(Box::new(Table(vec![row("JOINING", true)]))),
            true,
            Duration::from_secs(60),
        );
        let why = p.check().unwrap_err();
        assert!(
            why.ends_with("; Cassandra's native transport not started yet, mode JOINING"),
            "{why}"
        );
        assert_eq!(
            p.progress().unwrap().text,
            "Cassandra JOINING (joining the ring, 1.0 MiB on disk)"
        );
        let mut p = NodeProbe::new(
            dead(),
            Some(Box::new(Table(vec![row("DRAINED", false)]))),
            true,
            Duration::from_secs(60),
        );
        let why = p.check().unwrap_err();
        assert!(why.starts_with("connect"), "{why}");
        assert!(
            why.ends_with("; Cassandra's native transport shutting down, mode DRAINED"),
            "{why}"
        );
        assert!(p.keep_alive());
        assert_eq!(p.progress(), None);
        let mut p = NodeProbe::new(
            dead(),
            Some(Box::new(Table(vec![Err(
                "InstanceNotFoundException".into()
            )]))),
            true,
            Duration::from_secs(60),
        );
        assert!(p.check().is_err());
        let mut snap = Snapshot::new(1, Default::default());
        p.annotate(&mut snap);
        assert!(snap
            .cassandra
            .unwrap()
            .error
            .unwrap()
            .contains("InstanceNotFound"));
    }

    #[test]
    fn status_texts_true_in_every_phase() {
        let e = "connect: Connection refused";
        let t = |mode, transport, ran| why_not(Some(mode), transport, ran, None, e);
        for mode in ["STARTING", "JOINING"] {
            assert!(t(mode, Some(false), false).contains("not started yet"));
            assert!(!t(mode, Some(false), false).contains("disablebinary"));
        }
        assert!(t("DRAINING", Some(false), true).contains("shutting down, mode DRAINING"));
        assert!(!t("DRAINING", Some(false), true).contains("disablebinary"));
        assert!(t("NORMAL", Some(false), true).contains("disabled (nodetool disablebinary?)"));
        assert!(
            t("NORMAL", Some(false), false).contains("not started yet, mode NORMAL"),
            "NORMAL before the transport first ran"
        );
        assert_eq!(
            t("LEAVING", Some(true), true),
            format!("{e}; Cassandra is LEAVING")
        );
        assert_eq!(why_not(None, None, false, None, e), e);
        let held = why_not(
            Some("STARTING"),
            Some(false),
            false,
            Some("CQL port 127.0.0.1:9042 is held by another process (pid 7, nc), so Cassandra cannot bind it"),
            e,
        );
        assert!(
            held.starts_with("CQL port 127.0.0.1:9042 is held by another process (pid 7, nc)"),
            "{held}"
        );
    }

    #[test]
    fn a_stray_listener_is_named() {
        let (mut child, port) = holder::stray_listener();
        let mut p = NodeProbe::new(
            local(port, 300),
            Some(Box::new(Table(vec![row("STARTING", false)]))),
            true,
            Duration::from_secs(60),
        );
        let why = p.check().unwrap_err();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            why.starts_with(&format!(
                "CQL port 127.0.0.1:{port} is held by another process (pid {}, python3), so Cassandra cannot bind it: ",
                child.id()
            )),
            "{why}"
        );
    }

    /// Ready, then draining with progress: the loop asks for more time.
    struct Draining(u32);
    impl Probe for Draining {
        fn check(&mut self) -> Result<Option<u8>, String> {
            self.0 += 1;
            if self.0 <= 2 {
                Ok(Some(5))
            } else {
                Err(
                    "connect: refused; Cassandra's native transport shutting down, mode DRAINING"
                        .into(),
                )
            }
        }
        fn keep_alive(&self) -> bool {
            self.0 > 2
        }
        fn progress(&mut self) -> Option<crate::probe::Moving> {
            (self.0 > 2).then(|| crate::probe::Moving {
                text: "Cassandra DRAINING (flushing memtables, 16.0 MiB of disk I/O since the drain began)".into(),
                quiet: Duration::ZERO,
            })
        }
    }

    #[test]
    fn a_drain_in_progress_gets_more_time() {
        use crate::monitor::{self, Shared};
        let shared = Shared::new(Snapshot::new(1, Default::default()));
        let pace = crate::monitor::tests::pace();
        let notifier = std::sync::Arc::new(crate::notify::Notifier::disabled());
        let (n, s) = (notifier.clone(), shared.clone());
        let thread = std::thread::spawn(move || monitor::run(&mut Draining(0), pace, n, s));
        let snap = shared.wait_until(Instant::now() + Duration::from_secs(10), |s| {
            s.notify
                .last_status
                .as_deref()
                .is_some_and(|t| t.starts_with("Cassandra DRAINING (flushing"))
        });
        monitor::stop(&notifier, &shared, "JVM shutting down", None);
        let _ = thread.join();
        assert!(
            snap.notify
                .last_status
                .as_deref()
                .is_some_and(|t| t.starts_with("Cassandra DRAINING (flushing")),
            "{:?}",
            snap.notify
        );
        assert!(!snap.notify.stopping_sent, "a drain is not a stop");
    }

    #[test]
    fn a_refused_connection_reads_no_socket_tables() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut p = NodeProbe::new(
            local(port, 500),
            Some(Box::new(Table(vec![row("STARTING", false)]))),
            true,
            Duration::from_secs(60),
        );
        let e = p.check().unwrap_err();
        assert!(e.contains("refused"), "{e}");
        assert_eq!(p.holder_at, None, "nothing listens: no holder to look for");
        // Something listens and does not speak CQL: who holds the port is looked for.
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let _ = p.check().unwrap_err();
        assert!(p.holder_at.is_some());
        drop(listener);
    }

    #[test]
    fn progress_stops_when_nothing_changes() {
        let mut p = NodeProbe::new(
            local(1, 100),
            Some(Box::new(Table(vec![row("JOINING", true)]))),
            true,
            Duration::from_millis(1),
        );
        let _ = p.check();
        std::thread::sleep(Duration::from_millis(5));
        let _ = p.check();
        assert_eq!(
            p.progress(),
            None,
            "the same view twice, past the window, is no progress"
        );
    }
}
