//! Per-backend live state: admin state, health, load and counters, all
//! atomics so that every request path and the admin side share them without
//! locks.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// A backend's state as an operator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendState {
    /// Takes pinned sessions and new ones.
    Active,
    /// Keeps its pinned sessions, gets no new ones.
    Draining,
    /// Ejected by passive health checking (or marked down by an active
    /// probe) until its cool-down ends; its sessions fail over.
    Ejected,
    /// Removed by discovery (or from the configuration) but within its
    /// removal grace: it keeps serving its pinned sessions and takes no new
    /// ones, as a draining backend does, until the grace ends; then it is
    /// dropped. Reported as `removed` (never as `draining`) so that an
    /// operator can tell it from a backend drained by hand;
    /// [`BackendStats::removal_deadline_ms`](crate::BackendStats::removal_deadline_ms)
    /// says when the grace ends.
    Removed,
}

impl BackendState {
    /// A short name for logs, metrics and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            BackendState::Active => "active",
            BackendState::Draining => "draining",
            BackendState::Ejected => "ejected",
            BackendState::Removed => "removed",
        }
    }
}

impl std::fmt::Display for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const ADMIN_ACTIVE: u8 = 0;
const ADMIN_DRAINING: u8 = 1;

/// Live state of one backend. Shared (`Arc`) between the table, in-flight
/// guards and whoever administers the backend.
#[derive(Debug)]
pub struct BackendStatus {
    admin: AtomicU8,
    /// Active health probes mark a backend down independently of passive ejection.
    probe_down: AtomicU8,
    weight: AtomicU32,
    added_ms: u64,
    removed_ms: AtomicU64,
    ejected_until_ms: AtomicU64,
    consecutive_failures: AtomicU32,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) requests: AtomicU64,
    pub(crate) new_sessions: AtomicU64,
    pub(crate) pinned_hits: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) ejections: AtomicU64,
    pub(crate) sessions: super::sessions::SessionSketch,
    pub(crate) shared: Arc<TableLoad>,
}

/// What all backends of one table share: the in-flight total (bounded-load
/// hashing needs the mean) and an upper bound of the weights (weighted
/// placement samples against it).
#[derive(Debug, Default)]
pub(crate) struct TableLoad {
    pub(crate) in_flight: AtomicUsize,
    pub(crate) max_weight: AtomicU32,
}

impl BackendStatus {
    pub(crate) fn new(added_ms: u64, weight: u32, shared: Arc<TableLoad>) -> Self {
        shared.max_weight.fetch_max(weight.max(1), Relaxed);
        Self {
            admin: AtomicU8::new(ADMIN_ACTIVE),
            probe_down: AtomicU8::new(0),
            weight: AtomicU32::new(weight.max(1)),
            added_ms,
            removed_ms: AtomicU64::new(0),
            ejected_until_ms: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            new_sessions: AtomicU64::new(0),
            pinned_hits: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            sessions: super::sessions::SessionSketch::new(),
            shared,
        }
    }

    /// Stops giving this backend new sessions; its pinned sessions stay.
    pub fn drain(&self) {
        self.admin.store(ADMIN_DRAINING, Relaxed);
    }

    /// Returns a drained backend to service.
    pub fn activate(&self) {
        self.admin.store(ADMIN_ACTIVE, Relaxed);
    }

    /// Whether an operator drained this backend.
    pub fn is_draining(&self) -> bool {
        self.admin.load(Relaxed) == ADMIN_DRAINING
    }

    /// Marks the backend up or down from an active health probe. A backend
    /// that is down is treated like an ejected one until marked up again.
    pub fn set_probe_healthy(&self, healthy: bool) {
        self.probe_down.store(u8::from(!healthy), Relaxed);
    }

    /// Whether the last active probe verdict was healthy (true when no probe ran).
    pub fn probe_healthy(&self) -> bool {
        self.probe_down.load(Relaxed) == 0
    }

    /// Ejects the backend now for `cool_down`, whatever its failure streak:
    /// for signals that leave no doubt (connection refused).
    pub fn eject(&self, now_ms: u64, cool_down: std::time::Duration) {
        self.consecutive_failures.store(0, Relaxed);
        self.ejected_until_ms
            .store(now_ms + cool_down.as_millis() as u64, Relaxed);
        self.ejections.fetch_add(1, Relaxed);
    }

    /// Sets the weight used by weighted placement (at least 1).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight.max(1), Relaxed);
        // An upper bound is all weighted placement needs; it never shrinks.
        self.shared.max_weight.fetch_max(weight.max(1), Relaxed);
    }

    /// The weight used by weighted placement.
    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    /// When the backend joined, ms since the UNIX epoch (slow start counts from here).
    pub fn added_ms(&self) -> u64 {
        self.added_ms
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Requests routed here so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// New sessions placed here so far.
    pub fn new_sessions(&self) -> u64 {
        self.new_sessions.load(Relaxed)
    }

    /// Requests that arrived pinned here and were served here.
    pub fn pinned_hits(&self) -> u64 {
        self.pinned_hits.load(Relaxed)
    }

    /// Failed requests (service errors and 5xx) so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Times this backend was ejected.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Relaxed)
    }

    /// The estimated number of distinct sessions that reached this backend
    /// within `window` before `now_ms` (HyperLogLog, about 1.6 % standard
    /// error; 0 exactly when none did). What "safe to stop" waits on: a
    /// draining backend with nothing in flight and no session within the
    /// idle timeout has no user left to lose.
    pub fn active_sessions(&self, now_ms: u64, window: std::time::Duration) -> u64 {
        self.sessions.estimate(now_ms, window.as_millis() as u64)
    }

    /// The sketch behind [`active_sessions`](Self::active_sessions) as a
    /// value, for a replica to publish and a fleet to merge (see
    /// [`SessionSummary`](super::SessionSummary)).
    pub fn session_summary(
        &self,
        now_ms: u64,
        window: std::time::Duration,
    ) -> super::SessionSummary {
        self.sessions.summary(now_ms, window.as_millis() as u64)
    }

    /// Marks the backend removed; false if it already was.
    pub(crate) fn mark_removed(&self, now_ms: u64) -> bool {
        self.removed_ms
            .compare_exchange(0, now_ms.max(1), Relaxed, Relaxed)
            .is_ok()
    }

    /// Clears a removal mark; false if there was none.
    pub(crate) fn clear_removed(&self) -> bool {
        self.removed_ms.swap(0, Relaxed) != 0
    }

    pub(crate) fn removed_ms(&self) -> Option<u64> {
        match self.removed_ms.load(Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Whether the backend is ejected or probed down at `now_ms`.
    #[inline]
    pub fn is_unhealthy(&self, now_ms: u64) -> bool {
        self.probe_down.load(Relaxed) != 0 || self.ejected_until_ms.load(Relaxed) > now_ms
    }

    /// The state at `now_ms`.
    pub fn state(&self, now_ms: u64) -> BackendState {
        if self.removed_ms().is_some() {
            BackendState::Removed
        } else if self.is_unhealthy(now_ms) {
            BackendState::Ejected
        } else if self.is_draining() {
            BackendState::Draining
        } else {
            BackendState::Active
        }
    }

    /// Active, healthy and not removed: may take new sessions.
    #[inline]
    pub(crate) fn takes_new(&self, now_ms: u64) -> bool {
        self.admin.load(Relaxed) == ADMIN_ACTIVE
            && self.removed_ms.load(Relaxed) == 0
            && !self.is_unhealthy(now_ms)
    }

    /// Passive health: a success clears the failure streak; `threshold`
    /// consecutive failures eject the backend until `now + cool_down`.
    pub(crate) fn record(&self, ok: bool, now_ms: u64, ejection: &crate::Ejection) {
        if ok {
            // Only write when there is something to clear: keeps the line shared.
            if self.consecutive_failures.load(Relaxed) != 0 {
                self.consecutive_failures.store(0, Relaxed);
            }
            return;
        }
        self.failures.fetch_add(1, Relaxed);
        let Some(threshold) = ejection.threshold() else {
            return;
        };
        let streak = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if streak >= threshold {
            self.consecutive_failures.store(0, Relaxed);
            let until = now_ms + ejection.cool_down().as_millis() as u64;
            self.ejected_until_ms.store(until, Relaxed);
            self.ejections.fetch_add(1, Relaxed);
            tracing::warn!(
                failures = streak,
                "backend ejected after consecutive failures"
            );
        }
    }
}

/// An in-flight request on a backend: counted while alive, uncounted on drop.
///
/// Report the result with [`InFlight::record`] (keeping the request counted,
/// e.g. while its response body streams) or [`InFlight::finish`], so passive
/// health checking sees it; a guard dropped without a result (the request
/// was cancelled) counts as neither success nor failure.
#[derive(Debug)]
pub struct InFlight {
    status: Arc<BackendStatus>,
    ejection: crate::Ejection,
    clock: crate::Clock,
    recorded: bool,
}

impl InFlight {
    pub(crate) fn new(
        status: Arc<BackendStatus>,
        ejection: crate::Ejection,
        clock: crate::Clock,
    ) -> Self {
        status.in_flight.fetch_add(1, Relaxed);
        status.shared.in_flight.fetch_add(1, Relaxed);
        Self {
            status,
            ejection,
            clock,
            recorded: false,
        }
    }

    /// Reports the request's result (`ok == false` for a service error or a
    /// 5xx response) and keeps it counted in flight until the guard drops.
    /// Only the first report counts.
    pub fn record(&mut self, ok: bool) {
        if !std::mem::replace(&mut self.recorded, true) {
            self.status.record(ok, self.clock.now_ms(), &self.ejection);
        }
    }

    /// Reports the request's result and stops counting it in flight.
    pub fn finish(mut self, ok: bool) {
        self.record(ok);
    }

    /// The backend's status.
    pub fn status(&self) -> &Arc<BackendStatus> {
        &self.status
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.status.in_flight.fetch_sub(1, Relaxed);
        self.status.shared.in_flight.fetch_sub(1, Relaxed);
    }
}
