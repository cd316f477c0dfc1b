//! The agent's status: the snapshot (`model`), the HTTP server on the Unix
//! socket (`server`) and the client the `cqlready` command uses (`client`).

pub mod client;
pub mod cluster;
pub mod model;
pub mod server;
