//! Failover rules: what happens when a session's pinned backend cannot take
//! its request.
//!
//! The policy is chosen per layer (per route in the gateway). Whatever the
//! policy, the *choice* of where a displaced session goes is a deterministic
//! function of the session id over the backends that can take it
//! (rendezvous hashing), so several replicas sharing a key move the same
//! session to the same place without talking to each other.

use crate::outcome::{Outcome, Reason};
use crate::placement::{rendezvous_top, Candidates};

/// What to do when the pinned backend is removed or unhealthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailoverPolicy {
    /// Re-pin the session to a deterministic fallback and re-issue the token
    /// (HAProxy `option redispatch`, YARP `Redistribute`). The default.
    #[default]
    Redistribute,
    /// Serve from the deterministic fallback but keep the token, so the
    /// session returns to its backend once that backend is healthy again
    /// (Cloudflare `zero_downtime_failover = temporary`).
    Temporary,
    /// Answer 503 without calling any backend (Envoy strict mode, YARP
    /// `Return503Error`): for applications that must never silently lose state.
    Strict,
}

/// Where a displaced session goes and how the outcome reads.
///
/// `NotReady` is transient backpressure, never a reason to move a session for
/// good, so it is served temporarily even under `Redistribute`.
pub(crate) fn displace(
    policy: FailoverPolicy,
    reason: Reason,
    session: u64,
    cands: &impl Candidates,
) -> (Option<usize>, Outcome) {
    if policy == FailoverPolicy::Strict {
        return (None, Outcome::Rejected(reason));
    }
    match fallback(session, cands) {
        None => (None, Outcome::Rejected(Reason::NoBackend)),
        Some(i) if policy == FailoverPolicy::Temporary || reason == Reason::NotReady => {
            (Some(i), Outcome::Temporary(reason))
        }
        Some(i) => (Some(i), Outcome::Repinned(reason)),
    }
}

/// The deterministic fallback for `session`: its rendezvous winner among the
/// backends open to new sessions, else among any backend that can serve.
pub(crate) fn fallback(session: u64, cands: &impl Candidates) -> Option<usize> {
    rendezvous_top(session, cands, |i| cands.eligible(i))
        .or_else(|| rendezvous_top(session, cands, |i| cands.can_serve(i)))
}
