//! cqlready: a JVMTI agent that tells systemd when Cassandra really serves CQL,
//! and the `cqlready` command that asks it.
//!
//! The flow: `jvm` (entry points) -> `options` (+ `discovery`) -> `monitor`
//! (one thread, one state machine) which probes with `cql`, tells the service
//! manager through `notify` and publishes snapshots to `status`.

pub mod attach;
pub mod cql;
pub mod discovery;
pub mod jvm;
pub mod log;
pub mod monitor;
pub mod notify;
pub mod options;
pub mod process;
pub mod status;

/// One version string for the library, the command and the shim jar.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
