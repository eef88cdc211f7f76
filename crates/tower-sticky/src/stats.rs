//! A cheap snapshot of what the layer has done: per-backend state and load,
//! outcome counts by reason, invalid tokens by reason.

use crate::outcome::Reason;
use crate::table::{Backend, BackendState};
use crate::token::InvalidToken;
use crate::BackendId;

/// One backend in a [`Stats`] snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendStats<K> {
    /// The discovery key.
    pub key: K,
    /// The stable id.
    pub id: BackendId,
    /// The state now.
    pub state: BackendState,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests routed here.
    pub requests: u64,
    /// New sessions placed here.
    pub new_sessions: u64,
    /// Requests that arrived pinned here and were served here.
    pub pinned_hits: u64,
    /// Failed requests (service errors, 5xx).
    pub failures: u64,
    /// Times ejected by passive health checking.
    pub ejections: u64,
    /// Placement weight.
    pub weight: u32,
}

impl<K: Clone> BackendStats<K> {
    pub(crate) fn of<T>(b: &Backend<K, T>, now_ms: u64) -> Self {
        let s = b.status();
        Self {
            key: b.key().clone(),
            id: b.id(),
            state: s.state(now_ms),
            in_flight: s.in_flight(),
            requests: s.requests(),
            new_sessions: s.new_sessions(),
            pinned_hits: s.pinned_hits(),
            failures: s.failures(),
            ejections: s.ejections(),
            weight: s.weight(),
        }
    }
}

/// Counters since the layer started, and the backends as they are now.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats<K> {
    /// Every backend in the table.
    pub backends: Vec<BackendStats<K>>,
    /// Requests that went to their pinned backend.
    pub pinned: u64,
    /// New sessions placed (including after an invalid token).
    pub new: u64,
    /// Sessions re-pinned, by reason.
    pub repinned: [(Reason, u64); 5],
    /// Requests served temporarily elsewhere, by reason.
    pub temporary: [(Reason, u64); 5],
    /// Requests answered 503 by the layer, by reason.
    pub rejected: [(Reason, u64); 5],
    /// Presented tokens that were not trusted, by reason.
    pub invalid_tokens: [(InvalidToken, u64); 8],
}

impl<K> Stats<K> {
    /// Re-pins for one reason.
    pub fn repinned_for(&self, reason: Reason) -> u64 {
        self.repinned
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Temporary routes for one reason.
    pub fn temporary_for(&self, reason: Reason) -> u64 {
        self.temporary
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Rejections for one reason.
    pub fn rejected_for(&self, reason: Reason) -> u64 {
        self.rejected
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Invalid tokens for one reason.
    pub fn invalid_for(&self, reason: InvalidToken) -> u64 {
        self.invalid_tokens
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Total invalid tokens.
    pub fn invalid_total(&self) -> u64 {
        self.invalid_tokens.iter().map(|(_, n)| n).sum()
    }
}
