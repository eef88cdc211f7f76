//! Placement: which backend a new session (or an unpinned request) goes to.
//!
//! One file per algorithm, each a small value behind the [`PlacementPolicy`]
//! trait, so each can be tested and benchmarked alone (the shape of
//! pingora-load-balancing's `selection`). Policies see the backend set only
//! through [`Candidates`]: eligibility, in-flight load, weight and the
//! slow-start ramp.
//!
//! | policy | picks | cost |
//! |---|---|---|
//! | [`Placement::least_loaded`] (default) | the backend holding the fewest sessions per weight (in flight breaks ties) | O(n) up to 32 backends, then O(1) |
//! | [`Placement::round_robin`] | the next backend in turn | O(1) amortised |
//! | [`Placement::weighted`] | a random backend, proportional to its weight | O(1) expected |
//! | [`Placement::rendezvous`] | the session's rendezvous winner under a bounded-load cap | O(n) |
//!
//! Slow start applies to all of them: a backend inserted less than the
//! configured window ago is admitted with a probability that ramps from 10 %
//! to 100 % over the window (its square for least-loaded placement, where a
//! newcomer holding no sessions would otherwise win every admitted draw), so
//! a fresh replica is not flooded with every new session at once.

mod p2c;
mod rendezvous;
mod round_robin;
mod weighted;

pub use p2c::LeastLoaded;
pub use rendezvous::Rendezvous;
pub use round_robin::RoundRobin;
pub use weighted::Weighted;

pub(crate) use rendezvous::{rendezvous_bounded, rendezvous_top};

use std::fmt;
use std::sync::Arc;

use crate::backend_id::mix64;
use crate::BackendId;

/// The backend set as a placement policy sees it. Indices run over `0..len()`.
pub trait Candidates {
    /// Number of backends (eligible or not).
    fn len(&self) -> usize;
    /// Whether there are no backends at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The stable id of backend `i`.
    fn id(&self, i: usize) -> BackendId;
    /// Whether backend `i` may take new sessions: active (not draining, not
    /// removed), not ejected, ready.
    fn eligible(&self, i: usize) -> bool;
    /// Whether backend `i` may serve a request at all (draining or removed
    /// within its grace period included), healthy and ready.
    fn can_serve(&self, i: usize) -> bool;
    /// Requests in flight on backend `i`.
    fn in_flight(&self, i: usize) -> usize;
    /// Sessions backend `i` holds: the engine's estimate of distinct
    /// sessions seen within the session window, plus those placed since it
    /// was last computed. What lasts for sticky traffic, so least-loaded
    /// placement compares it first. 0 where a caller does not know (the
    /// default), which leaves in-flight load to decide.
    fn sessions(&self, i: usize) -> u64 {
        let _ = i;
        0
    }
    /// Requests in flight on all backends.
    fn total_in_flight(&self) -> usize;
    /// Configured weight of backend `i` (default 1).
    fn weight(&self, i: usize) -> u32;
    /// An upper bound of every backend's weight. The default scans; tables
    /// keep it up to date so that weighted placement stays O(1).
    fn max_weight(&self) -> u32 {
        (0..self.len())
            .map(|i| self.weight(i))
            .max()
            .unwrap_or(1)
            .max(1)
    }
    /// Slow-start share of backend `i`, in `(0, 1]`.
    fn ramp(&self, i: usize) -> f64;
    /// How the services' own load measures (`tower::load::Load`) of two
    /// backends compare, where the services have one; `None` means "use
    /// the in-flight counts".
    fn compare_load(&self, a: usize, b: usize) -> Option<std::cmp::Ordering> {
        let _ = (a, b);
        None
    }
}

/// A placement algorithm. `seed` is random per new session (the session id)
/// or, for hashed affinity, the hash of the request's key.
pub trait PlacementPolicy: Send + Sync + 'static {
    /// The chosen backend index, or `None` when no backend is eligible.
    fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize>;
}

/// The placement policy of a layer. Cheap to clone.
#[derive(Clone)]
pub struct Placement(Arc<dyn PlacementPolicy>);

impl Placement {
    /// The backend holding the fewest sessions per unit of weight, requests
    /// in flight breaking ties (the default): see [`LeastLoaded`].
    pub fn least_loaded() -> Self {
        Self(Arc::new(LeastLoaded))
    }

    /// Round robin over the eligible backends.
    pub fn round_robin() -> Self {
        Self(Arc::new(RoundRobin::default()))
    }

    /// Random, proportional to each backend's weight.
    pub fn weighted() -> Self {
        Self(Arc::new(Weighted))
    }

    /// Rendezvous hashing of the seed with bounded loads: no backend takes
    /// more than `balance_factor` times the mean in-flight load (HAProxy
    /// `hash-balance-factor`; 1.25 is a good start).
    pub fn rendezvous(balance_factor: f64) -> Self {
        Self(Arc::new(Rendezvous::new(balance_factor)))
    }

    /// A policy of your own.
    pub fn custom(policy: impl PlacementPolicy) -> Self {
        Self(Arc::new(policy))
    }

    /// Runs the policy.
    #[inline]
    pub fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize> {
        self.0.place(cands, seed)
    }
}

impl Default for Placement {
    fn default() -> Self {
        Self::least_loaded()
    }
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Placement")
    }
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The `n`-th pseudo-random number drawn from `seed`.
#[inline]
pub(crate) fn draw(seed: u64, n: u64) -> u64 {
    mix64(seed.wrapping_add(GOLDEN.wrapping_mul(n + 1)))
}

/// Slow-start admission: backend `i` passes with probability `ramp(i)`.
#[inline]
fn admitted(cands: &dyn Candidates, i: usize, roll: u64) -> bool {
    let r = cands.ramp(i);
    r >= 1.0 || ((roll >> 11) as f64 / (1u64 << 53) as f64) < r
}

/// A random eligible, slow-start-admitted backend: a few random probes (O(1)
/// while most backends are eligible), then one scan from a random start.
pub(crate) fn sample(cands: &dyn Candidates, seed: u64, salt: u64) -> Option<usize> {
    let n = cands.len();
    if n == 0 {
        return None;
    }
    for t in 0..16 {
        let x = draw(seed, salt * 32 + t);
        let i = (x % n as u64) as usize;
        if cands.eligible(i) && admitted(cands, i, mix64(x)) {
            return Some(i);
        }
    }
    let start = (draw(seed, salt * 32 + 31) % n as u64) as usize;
    (0..n).map(|k| (start + k) % n).find(|&i| cands.eligible(i))
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
