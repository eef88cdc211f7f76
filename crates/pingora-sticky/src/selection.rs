//! New sessions placed by a pingora [`BackendSelection`] (`RoundRobin`,
//! `Consistent`, ...) instead of the core's placement.
//!
//! The inner selection is asked with the new session's id as its key, so a
//! hashing selection (`Consistent`) spreads sessions by id; every candidate
//! it yields must also be open to new sessions in the core's table (not
//! draining, not ejected, ready in pingora).

use std::sync::Arc;

use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::LoadBalancer;
use tower_sticky::placement::{Candidates, PlacementPolicy};

use crate::backend::BackendKey;
use crate::membership::Membership;

/// How many candidates the inner selection may yield before giving up (then
/// the core's deterministic fallback places the session).
const MAX_ITERATIONS: usize = 256;

/// A placement policy that asks pingora's selection.
pub(crate) struct InnerSelection<S: BackendSelection> {
    pub(crate) lb: Arc<LoadBalancer<S>>,
    /// The latest table, to map a pingora `Backend` to a slot of the
    /// candidates (checked against the candidates' own ids).
    pub(crate) membership: Arc<Membership>,
}

impl<S> PlacementPolicy for InnerSelection<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize> {
        let snap = self.membership.peek();
        let slot_of = |b: &pingora_load_balancing::Backend| -> Option<usize> {
            let id = BackendKey::of(b).id;
            let hinted = snap
                .table
                .index_of(id)
                .filter(|&i| i < cands.len() && cands.id(i) == id);
            hinted.or_else(|| (0..cands.len()).find(|&i| cands.id(i) == id))
        };
        let chosen = self
            .lb
            .select_with(&seed.to_be_bytes(), MAX_ITERATIONS, |b, ready| {
                ready && slot_of(b).is_some_and(|i| cands.eligible(i))
            })?;
        slot_of(&chosen)
    }
}
