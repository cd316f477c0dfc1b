//! Cassandra's own view of itself, read in-process from the platform MBean
//! server with the standard JMX API only: no Cassandra classes (so DSE works
//! too), no JMX port, no credentials.
//!
//! | attribute of `org.apache.cassandra.db:type=StorageService` | used for |
//! |---|---|
//! | `OperationMode` | STARTING, JOINING, NORMAL, LEAVING, DECOMMISSIONED, MOVING, DRAINING, DRAINED |
//! | `NativeTransportRunning` | whether CQL was switched off (`nodetool disablebinary`) |
//! | `Joined`, `BootstrapMode` | join and bootstrap state |
//!
//! plus `Count` of `org.apache.cassandra.metrics:type=Storage,name=Load`
//! (bytes on disk) and, while joining,
//! `org.apache.cassandra.net:type=StreamManager`'s `CurrentStreams`: their
//! changes are the signs of bootstrap progress, and their bytes received of
//! the total are named in `STATUS=`. When the
//! MBean is absent (not Cassandra, or too early) readiness is CQL alone.

pub mod cluster;
pub mod holder;
pub mod node;
pub mod progress;

pub use node::NodeProbe;

use crate::status::model::Cassandra;

pub const STORAGE_SERVICE: &str = "org.apache.cassandra.db:type=StorageService";
pub const STREAM_MANAGER: &str = "org.apache.cassandra.net:type=StreamManager";
/// Bytes on disk (StorageService's own `Load` is gone in 5.0; this metric is in 3.x to 5.x).
pub const STORAGE_LOAD: &str = "org.apache.cassandra.metrics:type=Storage,name=Load";
const ATTRIBUTES: [&str; 4] = [
    "OperationMode",
    "NativeTransportRunning",
    "Joined",
    "BootstrapMode",
];

/// Reads MBean attributes as text. The agent's implementation calls into
/// the JVM through JNI (`jvm/mbeans.rs`); tests use a table.
pub trait MBeans: Send {
    /// The attributes of `object`, `None` where one is missing. `Err` when
    /// the object itself is absent or the JVM cannot be asked.
    fn attributes(&mut self, object: &str, attrs: &[&str]) -> Result<Vec<Option<String>>, String>;
    /// Invokes `operation` of `object` with `String` arguments (signature
    /// `java.lang.String` for each) and returns its result as text
    /// (`String.valueOf`), `None` for a null result. `Err` when the object
    /// or operation is absent, it throws, or the JVM cannot be asked.
    fn invoke(
        &mut self,
        object: &str,
        operation: &str,
        args: &[&str],
    ) -> Result<Option<String>, String> {
        let _ = (object, args);
        Err(format!(
            "{operation}: MBean operations are not available here"
        ))
    }
    /// Whether the calling thread is attached to the JVM (it must then never
    /// end while the JVM runs).
    fn thread_attached(&self) -> bool {
        false
    }
}

/// Whether to ask Cassandra, from `cassandra=auto|on|off` and the JVM's
/// main class (`sun.java.command`): Apache Cassandra's or DSE's.
pub fn wanted(setting: crate::text::Toggle, java_command: Option<&str>) -> bool {
    use crate::text::Toggle;
    match setting {
        Toggle::On => true,
        Toggle::Off => false,
        Toggle::Auto => java_command.is_some_and(|c| {
            let main = c.split_whitespace().next().unwrap_or("");
            main.starts_with("org.apache.cassandra.") || main.starts_with("com.datastax.")
        }),
    }
}

/// Parses one read of the StorageService attributes.
pub fn view(values: &[Option<String>]) -> Cassandra {
    let get = |i: usize| values.get(i).cloned().flatten();
    let flag = |i: usize| get(i).and_then(|v| v.parse::<bool>().ok());
    Cassandra {
        mode: get(0).map(|m| crate::text::sanitize(&m)),
        native_transport: flag(1),
        joined: flag(2),
        bootstrap: flag(3),
        load_bytes: None,
        error: None,
    }
}

/// Modes in which the operator took the node out on purpose: not ready, but
/// alive, so the watchdog keeps being fed and does not restart it.
pub fn deliberately_out(mode: &str) -> bool {
    matches!(mode, "DRAINING" | "DRAINED" | "DECOMMISSIONED")
}
