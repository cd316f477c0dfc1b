//! The agent's status: the snapshot (`model`, with the cluster view's types
//! in `view`) and its shared store (`store`), the HTTP answers (`routes`,
//! and `cluster` for the cluster requests; pure), the server on the Unix
//! socket (`server`: placement; `event_loop`: the peer check and the one
//! thread) and the client the `cqlready` command uses (`client`).

pub mod client;
pub mod cluster;
pub mod event_loop;
pub mod model;
pub mod routes;
pub mod server;
pub mod store;
pub mod view;
