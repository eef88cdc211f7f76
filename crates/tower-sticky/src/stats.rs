//! A cheap snapshot of what the engine has done: per-backend state and load,
//! outcome counts by reason, invalid tokens by reason.
//!
//! Fields are behind accessors so that new counters can be added without
//! breaking the adapters and dashboards that read them.

use crate::outcome::Reason;
use crate::table::{Backend, BackendState};
use crate::token::InvalidToken;
use crate::BackendId;

/// One backend in a [`Stats`] snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendStats<K> {
    key: K,
    id: BackendId,
    state: BackendState,
    removal_deadline_ms: Option<u64>,
    in_flight: usize,
    requests: u64,
    new_sessions: u64,
    pinned_hits: u64,
    failures: u64,
    ejections: u64,
    weight: u32,
    active_sessions: u64,
    draining: bool,
    window_ms: u64,
}

impl<K: Clone> BackendStats<K> {
    pub(crate) fn of<T>(b: &Backend<K, T>, now_ms: u64, grace_ms: u64, window_ms: u64) -> Self {
        let s = b.status();
        Self {
            key: b.key().clone(),
            id: b.id(),
            state: s.state(now_ms),
            removal_deadline_ms: s.removed_ms().map(|t| t.saturating_add(grace_ms)),
            in_flight: s.in_flight(),
            requests: s.requests(),
            new_sessions: s.new_sessions(),
            pinned_hits: s.pinned_hits(),
            failures: s.failures(),
            ejections: s.ejections(),
            weight: s.weight(),
            active_sessions: s.sessions.estimate(now_ms, window_ms),
            draining: s.is_draining() || s.removed_ms().is_some(),
            window_ms,
        }
    }
}

impl<K> BackendStats<K> {
    /// The discovery key (the gateway's backend name).
    pub fn key(&self) -> &K {
        &self.key
    }
    /// The stable id tokens name the backend by.
    pub fn id(&self) -> BackendId {
        self.id
    }
    /// The state now.
    pub fn state(&self) -> BackendState {
        self.state
    }
    /// For a backend in state [`BackendState::Removed`]: when its removal
    /// grace ends (ms since the UNIX epoch). Until then it keeps serving its
    /// pinned sessions and takes no new ones, as a draining backend does.
    pub fn removal_deadline_ms(&self) -> Option<u64> {
        self.removal_deadline_ms
    }
    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
    /// Requests routed here (one per request, whatever its retries).
    pub fn requests(&self) -> u64 {
        self.requests
    }
    /// New sessions placed here.
    pub fn new_sessions(&self) -> u64 {
        self.new_sessions
    }
    /// Requests that arrived pinned here and were served here.
    pub fn pinned_hits(&self) -> u64 {
        self.pinned_hits
    }
    /// Failed requests (service errors, 5xx, unreachable).
    pub fn failures(&self) -> u64 {
        self.failures
    }
    /// Times ejected by passive health checking.
    pub fn ejections(&self) -> u64 {
        self.ejections
    }
    /// Placement weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }
    /// Estimated distinct sessions that reached this backend within the
    /// engine's [session window](crate::Engine::session_window) (a
    /// HyperLogLog: about 1.6 % standard error, fixed memory, 0 exactly
    /// when none did). The sessions a draining backend still holds: it is
    /// safe to stop when this and [`in_flight`](Self::in_flight) are 0.
    pub fn active_sessions(&self) -> u64 {
        self.active_sessions
    }
    /// The window [`active_sessions`](Self::active_sessions) covers: the
    /// engine's [session window](crate::Engine::session_window), so that a
    /// "not yet drained" answer can say how long the wait may be.
    pub fn session_window(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.window_ms)
    }
    /// Whether the backend takes no new sessions by intent: drained by an
    /// operator (whatever its health) or removed, within its grace.
    pub fn is_draining(&self) -> bool {
        self.draining
    }
    /// Whether stopping this backend now loses no user: it is
    /// [draining](Self::is_draining), nothing is in flight, and no session
    /// reached it within the session window.
    pub fn is_drained(&self) -> bool {
        self.draining && self.in_flight == 0 && self.active_sessions == 0
    }
}

/// Counters since the engine started, and the backends as they are now.
/// Every request counts exactly one outcome, whatever its retries.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats<K> {
    pub(crate) backends: Vec<BackendStats<K>>,
    pub(crate) pinned: u64,
    pub(crate) new: u64,
    pub(crate) repinned: [(Reason, u64); 5],
    pub(crate) temporary: [(Reason, u64); 5],
    pub(crate) rejected: [(Reason, u64); 5],
    pub(crate) invalid_tokens: [(InvalidToken, u64); 8],
}

fn count_for<R: PartialEq>(counts: &[(R, u64)], reason: R) -> u64 {
    counts
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| *n)
}

impl<K> Stats<K> {
    /// A snapshot with every count at zero and no backend: with
    /// [`Stats::add`] and [`Stats::add_invalid`], what fakes and tests of
    /// views that present stats (dashboards, metrics) start from. The
    /// engine's own snapshots come from [`Engine::stats`](crate::Engine::stats).
    pub fn empty() -> Self {
        Self {
            backends: Vec::new(),
            pinned: 0,
            new: 0,
            repinned: Reason::ALL.map(|r| (r, 0)),
            temporary: Reason::ALL.map(|r| (r, 0)),
            rejected: Reason::ALL.map(|r| (r, 0)),
            invalid_tokens: InvalidToken::ALL.map(|r| (r, 0)),
        }
    }

    /// Adds `n` requests with this outcome.
    pub fn add(mut self, outcome: crate::Outcome, n: u64) -> Self {
        use crate::Outcome::*;
        let bump = |counts: &mut [(Reason, u64)], reason: Reason| {
            if let Some(c) = counts.iter_mut().find(|(r, _)| *r == reason) {
                c.1 += n;
            }
        };
        match outcome {
            Pinned => self.pinned += n,
            New => self.new += n,
            Repinned(r) => bump(&mut self.repinned, r),
            Temporary(r) => bump(&mut self.temporary, r),
            Rejected(r) => bump(&mut self.rejected, r),
        }
        self
    }

    /// Adds `n` presented tokens not trusted for `reason`.
    pub fn add_invalid(mut self, reason: InvalidToken, n: u64) -> Self {
        if let Some(c) = self.invalid_tokens.iter_mut().find(|(r, _)| *r == reason) {
            c.1 += n;
        }
        self
    }

    /// Every backend in the table.
    pub fn backends(&self) -> &[BackendStats<K>] {
        &self.backends
    }

    /// Requests that went to their pinned backend.
    pub fn pinned(&self) -> u64 {
        self.pinned
    }

    /// New sessions placed (including after an invalid token).
    pub fn new_sessions(&self) -> u64 {
        self.new
    }

    /// Sessions re-pinned, by reason.
    pub fn repinned(&self) -> &[(Reason, u64)] {
        &self.repinned
    }

    /// Requests served temporarily elsewhere, by reason.
    pub fn temporary(&self) -> &[(Reason, u64)] {
        &self.temporary
    }

    /// Requests refused (503) without calling a backend, by reason.
    pub fn rejected(&self) -> &[(Reason, u64)] {
        &self.rejected
    }

    /// Presented tokens that were not trusted, by reason.
    pub fn invalid_tokens(&self) -> &[(InvalidToken, u64)] {
        &self.invalid_tokens
    }

    /// Every request decided, whatever its outcome.
    pub fn requests(&self) -> u64 {
        self.pinned
            + self.new
            + [&self.repinned, &self.temporary, &self.rejected]
                .iter()
                .flat_map(|c| c.iter())
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    /// Re-pins for one reason.
    pub fn repinned_for(&self, reason: Reason) -> u64 {
        count_for(&self.repinned, reason)
    }

    /// Temporary routes for one reason.
    pub fn temporary_for(&self, reason: Reason) -> u64 {
        count_for(&self.temporary, reason)
    }

    /// Rejections for one reason.
    pub fn rejected_for(&self, reason: Reason) -> u64 {
        count_for(&self.rejected, reason)
    }

    /// Invalid tokens for one reason.
    pub fn invalid_for(&self, reason: InvalidToken) -> u64 {
        count_for(&self.invalid_tokens, reason)
    }

    /// Total invalid tokens.
    pub fn invalid_total(&self) -> u64 {
        self.invalid_tokens.iter().map(|(_, n)| n).sum()
    }
}
