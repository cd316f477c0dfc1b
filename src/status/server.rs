//! The status server: HTTP/1.1 over a Unix stream socket, never TCP. This
//! file places the socket safely; `event_loop.rs` checks who may ask
//! ([`Access`](crate::status::event_loop::Access));
//! `routes.rs` decides the answers (a pure function of the snapshot) and
//! `event_loop.rs` serves them from one thread with a bounded table of
//! connections: no thread per connection, none that touches the JVM.

use crate::agent_process;
use crate::status::event_loop::{Access, EventLoop};
use crate::status::store::Shared;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::status::event_loop::{IO_TIMEOUT, MAX_CONNECTIONS};
pub use crate::status::routes::{parse_request, Request, MAX_REQUEST};

const SOCKET_MODE: u32 = 0o660;
/// How many nice steps below the JVM the status thread runs: a weight of
/// about a tenth under contention, never starved (a liveness probe must
/// still be answered while Cassandra is busy).
const STATUS_NICE: i32 = 10;
const THREAD_STACK: usize = 128 * 1024;

/// The socket's default place: `$RUNTIME_DIRECTORY/cqlready.sock` when
/// systemd's `RuntimeDirectory=` set it, else a private per-PID directory.
pub fn default_path(pid: u32, runtime_directory: Option<&str>) -> PathBuf {
    match runtime_directory.and_then(|r| r.split(':').find(|d| d.starts_with('/'))) {
        Some(dir) => Path::new(dir).join("cqlready.sock"),
        None => private_dir(pid).join("cqlready.sock"),
    }
}

/// `/tmp/cqlready-<pid>`: mode 0700, owned by the JVM's user.
pub fn private_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/cqlready-{pid}"))
}

/// A serving socket; [`Server::remove`] unlinks it if it is still ours.
#[derive(Debug)]
pub struct Server {
    pub path: PathBuf,
    /// How many connections its table holds.
    pub capacity: usize,
    inode: (u64, u64),
    made_dir: Option<PathBuf>,
}

fn refuse(path: &Path, why: impl std::fmt::Display) -> String {
    format!("status socket {}: {why}", path.display())
}

/// Creates the private directory, or checks that an existing one is a real
/// directory of ours and nobody else's.
fn make_private_dir(dir: &Path) -> Result<bool, String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refuse(dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| refuse(dir, e))?;
    if !meta.file_type().is_dir() {
        return Err(refuse(dir, "exists and is not a directory; refusing it"));
    }
    if meta.uid() != crate::process::euid() {
        return Err(refuse(
            dir,
            format!(
                "belongs to uid {}, not to this process; refusing it",
                meta.uid()
            ),
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| refuse(dir, e))?;
    Ok(false)
}

/// Makes `path` free for a new socket: nothing there, or a stale socket
/// that nobody answers on (removed). A symlink, another kind of file or a
/// live socket is refused and left alone.
fn clear_path(path: &Path) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(path, e)),
        Ok(m) => m,
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(refuse(
            path,
            "is a symlink; refusing to follow or replace it",
        ));
    }
    if !kind.is_socket() {
        return Err(refuse(path, "exists and is not a socket; leaving it alone"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(refuse(path, "another live process serves on it")),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            crate::info!("replacing stale status socket {}", path.display());
            std::fs::remove_file(path).map_err(|e| refuse(path, e))
        }
        Err(e) => Err(refuse(path, e)),
    }
}

impl Server {
    /// Binds `path` safely (mode 0660, set before the name appears) and
    /// starts serving `shared` on a thread of its own.
    pub fn start(
        path: &Path,
        private: bool,
        access: Access,
        shared: Arc<Shared>,
    ) -> Result<Server, String> {
        let made_dir = match (private, path.parent()) {
            (true, Some(dir)) => make_private_dir(dir)?.then(|| dir.to_path_buf()),
            _ => None,
        };
        let result = Server::bind(path, access, shared);
        if result.is_err() {
            if let Some(dir) = &made_dir {
                let _ = std::fs::remove_dir(dir);
            }
        }
        result.map(|(path, inode, capacity)| Server {
            path,
            capacity,
            inode,
            made_dir,
        })
    }

    fn bind(
        path: &Path,
        access: Access,
        shared: Arc<Shared>,
    ) -> Result<(PathBuf, (u64, u64), usize), String> {
        clear_path(path)?;
        // Bind under a temporary name, set the mode, then rename into place:
        // the socket never exists at its real path with a wider mode.
        let tmp = path.with_file_name(format!(
            ".{}.{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(|e| refuse(path, e))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
            .and_then(|()| match access.group {
                Some(g) => std::os::unix::fs::chown(&tmp, None, Some(g)),
                None => Ok(()),
            })
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| std::fs::symlink_metadata(path));
        let meta = match placed {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(refuse(path, e));
            }
        };
        let served = path.to_path_buf();
        let cap = crate::status::event_loop::capacity(agent_process::fd_limit());
        let mut event_loop = EventLoop::new(listener, access, shared, cap).map_err(|e| {
            let _ = std::fs::remove_file(path);
            refuse(path, format!("cannot start its event loop: {e}"))
        })?;
        std::thread::Builder::new()
            .name("cqlready-status".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                // Requests come from outside; under a flood of them the
                // JVM's own threads go first.
                agent_process::lower_this_thread(STATUS_NICE);
                // A panic is a bug, logged once by the fence; the table is
                // plain data, so serving goes on (a few times, not forever).
                for _ in 0..8 {
                    crate::fence("status server", || event_loop.run());
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                crate::error!("the status server stopped after repeated internal errors");
            })
            .map_err(|e| {
                let _ = std::fs::remove_file(path);
                refuse(path, format!("cannot start its thread: {e}"))
            })?;
        Ok((served, (meta.dev(), meta.ino()), cap))
    }

    /// Unlinks the socket (and the private directory) if they are still
    /// the ones this server made.
    pub fn remove(&self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        if let Some(dir) = &self.made_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_paths() {
        assert_eq!(
            default_path(7, Some("/run/cassandra")),
            PathBuf::from("/run/cassandra/cqlready.sock")
        );
        assert_eq!(
            default_path(7, Some("/run/a:/run/b")),
            PathBuf::from("/run/a/cqlready.sock")
        );
        assert_eq!(
            default_path(7, None),
            PathBuf::from("/tmp/cqlready-7/cqlready.sock")
        );
        assert_eq!(
            default_path(7, Some("")),
            PathBuf::from("/tmp/cqlready-7/cqlready.sock")
        );
    }
}
