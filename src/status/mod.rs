//! The agent's status: the snapshot (`model`) and its shared store
//! (`store`), the HTTP answers (`routes`, pure), the server on the Unix
//! socket (`server`: placement and the event loop) and the client the
//! `cqlready` command uses (`client`).

pub mod client;
pub mod cluster;
pub mod event_loop;
pub mod model;
pub mod routes;
pub mod server;
pub mod store;
pub mod view;
