//! The shared snapshot store: the monitor writes it, the status server and
//! whoever stops the agent read it. It sits under `status/` so that the
//! server needs nothing from `monitor.rs` (the monitor imports it, never
//! the other way round).

use crate::status::model::{Snapshot, State};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest a request waits on the store (`/ready?wait=`, a cluster
/// gate's `wait=`).
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Called after an update that changed the snapshot's state; must not block
/// (the status server's hook writes to its event loop's waker).
pub type Hook = Box<dyn Fn(State) + Send + Sync>;

/// The snapshot, shared between the monitor, the status server and
/// whoever stops the agent. Threads in [`Shared::wait_until`] are woken on
/// every change; [`Shared::on_state_change`] hooks on every change of state.
pub struct Shared {
    snap: Mutex<Snapshot>,
    changed: Condvar,
    /// Threads in [`Shared::wait_until`]; counted under the lock, so an
    /// update skips the wake-up system call when nobody waits.
    waiters: AtomicUsize,
    hooks: Mutex<Vec<Hook>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("snap", &self.snap)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(snap: Snapshot) -> Arc<Shared> {
        Arc::new(Shared {
            snap: Mutex::new(snap),
            changed: Condvar::new(),
            waiters: AtomicUsize::new(0),
            hooks: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        // A panic while holding the lock is already logged by its thread's
        // fence; the snapshot is plain data and stays usable.
        self.snap.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Registers `hook`, called after each update that changes the state.
    pub fn on_state_change(&self, hook: Hook) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut guard = self.lock();
        let before = guard.state;
        f(&mut guard);
        let after = guard.state;
        let waiting = self.waiters.load(Ordering::Relaxed) > 0;
        drop(guard);
        if waiting {
            self.changed.notify_all();
        }
        if after != before {
            for hook in self.hooks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                hook(after);
            }
        }
    }

    /// Blocks until `done` holds or `deadline` passes; returns the snapshot then.
    pub fn wait_until(&self, deadline: Instant, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let mut guard = self.lock();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if done(&guard) || left.is_zero() {
                return guard.clone();
            }
            self.waiters.fetch_add(1, Ordering::Relaxed);
            guard = match self.changed.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::Cql;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn hooks_run_on_state_changes_only() {
        let shared = Shared::new(Snapshot::new(1, Cql::default()));
        let seen = Arc::new(AtomicU32::new(0));
        let s = seen.clone();
        shared.on_state_change(Box::new(move |state| {
            assert_eq!(state, State::Ready);
            s.fetch_add(1, Ordering::SeqCst);
        }));
        shared.update(|s| s.checks.total += 1);
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        shared.update(|s| s.state = State::Ready);
        shared.update(|s| s.checks.total += 1);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }
}
