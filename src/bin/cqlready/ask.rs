//! How the command reaches an agent: which socket, one request, and what
//! a failed or refused answer exits with.

use crate::{Which, NOT_READY, NO_AGENT, USAGE};
use cqlready::status::client::{self, ClientError};
use cqlready::status::view::Cl;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The agent to ask, as the user named it.
pub enum Asked {
    /// `--socket`, or when neither is given `$RUNTIME_DIRECTORY/cqlready.sock`,
    /// else the packaged unit's socket.
    Socket(PathBuf),
    /// `--pid`: the JVM's socket is found from its command line.
    Pid(u32),
}

/// `--socket`, `--pid`, or (neither) `$RUNTIME_DIRECTORY`, else the packaged
/// unit's socket when it exists; none of them is a usage error, said at once
/// (exit 64), never a wait for nothing.
pub fn asked(which: &Which) -> Result<Asked, u8> {
    if let Some(p) = &which.socket {
        return Ok(Asked::Socket(p.clone()));
    }
    if let Some(pid) = which.pid {
        return Ok(Asked::Pid(pid));
    }
    match std::env::var("RUNTIME_DIRECTORY") {
        Ok(dir) if !dir.is_empty() => Ok(Asked::Socket(cqlready::status::server::default_path(
            0,
            Some(&dir),
        ))),
        _ if Path::new(PACKAGED_SOCKET).exists() => Ok(Asked::Socket(PACKAGED_SOCKET.into())),
        _ => {
            eprintln!(
                "cqlready: which agent? give --socket PATH or --pid PID (no {PACKAGED_SOCKET} here, and RUNTIME_DIRECTORY is not set)"
            );
            Err(USAGE)
        }
    }
}

/// Where the packages' `cassandra.service` puts the status socket
/// (`RuntimeDirectory=cassandra`): the default on a host that runs it.
pub const PACKAGED_SOCKET: &str = "/run/cassandra/cqlready.sock";

pub fn socket_of(asked: &Asked) -> Result<PathBuf, ClientError> {
    match asked {
        Asked::Socket(p) => Ok(p.clone()),
        Asked::Pid(pid) => client::locate(*pid),
    }
}

pub fn ask(which: &Which, target: &str, timeout: Duration) -> Result<client::Response, u8> {
    let asked = asked(which)?;
    socket_of(&asked)
        .and_then(|s| client::get(&s, target, timeout))
        .map_err(|e| no_agent(&e))
}

pub fn no_agent(e: &ClientError) -> u8 {
    eprintln!("cqlready: {e}");
    NO_AGENT
}

pub fn usage(e: &str) -> u8 {
    eprintln!("cqlready: {e}");
    USAGE
}

/// How long a cluster request may take: a first ask waits for one read of the view.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);

pub fn cluster_view(which: &Which, cl: Cl, timeout: Duration) -> Result<String, u8> {
    match ask(which, &format!("/cluster?cl={}", cl.as_str()), timeout) {
        Ok(r) if r.code == 200 => Ok(r.body),
        Ok(r) if r.code == 503 => {
            println!("not ready: {}", r.body.trim());
            Err(NOT_READY)
        }
        Ok(r) if r.code == 400 => Err(usage(r.body.trim())),
        Ok(r) => Err(no_agent(&ClientError::Protocol(format!(
            "unexpected answer {}: {}",
            r.code,
            r.body.trim()
        )))),
        Err(code) => Err(code),
    }
}
