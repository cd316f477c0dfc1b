//! The shared snapshot store: the monitor writes it, the status server and
//! whoever stops the agent read it. It sits under `status/` so that the
//! server needs nothing from `monitor/` (the monitor imports it, never
//! the other way round). It also carries the cluster view's [`Demand`]:
//! the status server asks for the view, the node probe reads it while asked.

use crate::status::model::{Snapshot, State};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest a request waits on the store (`/ready?wait=`, a cluster
/// gate's `wait=`).
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long after the last ask the cluster view keeps being read.
pub const DEMAND: Duration = Duration::from_secs(60);

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
    demand: Arc<Demand>,
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
            demand: Arc::default(),
        })
    }

    /// Who wants the cluster view: the status server asks through it, the
    /// node probe (which holds a clone) reads the view while it is wanted.
    pub fn demand(&self) -> &Arc<Demand> {
        &self.demand
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

/// The cluster view's demand: requests ask for it, the reader reads it
/// while asked within [`DEMAND`] (or always, with `cluster=on`). Times are
/// milliseconds from 1 on one monotonic clock (`status::view::mono_ms`),
/// passed in.
#[derive(Debug, Default)]
pub struct Demand {
    last_ask: AtomicU64,
    run_start: AtomicU64,
    always: AtomicBool,
}

impl Demand {
    /// `cluster=on`: the view is read at every check.
    pub fn always(&self) {
        self.always.store(true, Ordering::Relaxed);
    }

    /// Someone asks for the view at `now`; returns when the current run of
    /// asking began (views read before it are stale).
    pub fn ask(&self, now: u64) -> u64 {
        let last = self.last_ask.swap(now, Ordering::AcqRel);
        if self.always.load(Ordering::Relaxed) {
            return 0;
        }
        if last == 0 || now.saturating_sub(last) > DEMAND.as_millis() as u64 {
            self.run_start.store(now, Ordering::Release);
            now
        } else {
            self.run_start.load(Ordering::Acquire)
        }
    }

    /// Whether the reader should read the view at the check at `now`.
    pub fn wanted(&self, now: u64) -> bool {
        if self.always.load(Ordering::Relaxed) {
            return true;
        }
        let last = self.last_ask.load(Ordering::Acquire);
        last != 0 && now.saturating_sub(last) <= DEMAND.as_millis() as u64
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

    #[test]
    fn demand_runs() {
        let d = Demand::default();
        let window = DEMAND.as_millis() as u64;
        assert!(!d.wanted(1), "nobody asked yet");
        let since = d.ask(100);
        assert_eq!(since, 100);
        assert!(d.wanted(100 + window));
        assert_eq!(
            d.ask(100 + window),
            since,
            "asking again within the window keeps its start"
        );
        assert!(!d.wanted(101 + 2 * window), "nobody asked for a window");
        assert_eq!(d.ask(102 + 2 * window), 102 + 2 * window, "a new run");
        d.always();
        assert!(d.wanted(u64::MAX));
        assert_eq!(d.ask(5), 0, "with cluster=on every view is fresh");
    }

    #[test]
    fn each_store_has_its_own_demand() {
        let (a, b) = (
            Shared::new(Snapshot::new(1, Cql::default())),
            Shared::new(Snapshot::new(1, Cql::default())),
        );
        a.demand().ask(10);
        assert!(a.demand().wanted(10));
        assert!(!b.demand().wanted(10));
    }
}
