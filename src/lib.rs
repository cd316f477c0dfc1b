//! cqlready: a JVMTI agent that tells systemd when Cassandra really serves CQL,
//! and the `cqlready` command that asks it.
//!
//! The flow: `jvm` (entry points) -> `agent` (`options`, `discovery`,
//! `config`) -> `monitor` (one thread, one state machine) which probes with
//! `cassandra::NodeProbe` (over `probe::cql`), tells the service manager
//! through `notify` and publishes snapshots to `status`. docs/design.md
//! has the map of every file.

pub mod agent;
pub mod agent_process;
pub mod attach;
pub mod cassandra;
pub mod config;
pub mod discovery;
pub mod jvm;
pub mod log;
pub mod monitor;
pub mod netif;
pub mod notify;
pub mod options;
pub mod probe;
pub mod process;
pub mod status;
pub mod text;

/// One version string for the library, the command and the shim jar.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this was built from (build.rs), or "unknown".
pub const COMMIT: &str = env!("CQLREADY_COMMIT");

/// Runs `f`, turning a panic into one log line: the panic fence every
/// thread entry and `extern "C"` edge goes through. `None` if it panicked.
pub fn fence<T>(what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            error!("internal error in {what}: {msg}; the JVM is unaffected");
            None
        }
    }
}
