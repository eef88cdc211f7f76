//! Least-loaded of two random choices ("power of two choices").

use super::{sample, Candidates, PlacementPolicy};

/// Picks two random eligible backends and takes the one with fewer requests
/// in flight, scaled by its slow-start ramp (or, where the services measure
/// their own load, the one whose `tower::load::Load` is lower). Near-optimal balance at O(1)
/// cost, and no herd onto a single "least loaded" backend when many
/// decisions are made at once (Mitzenmacher, *The Power of Two Choices*).
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastLoaded;

impl PlacementPolicy for LeastLoaded {
    fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize> {
        let a = sample(cands, seed, 0)?;
        let mut b = sample(cands, seed, 1)?;
        if a == b && cands.len() > 1 {
            b = sample(cands, seed, 2).unwrap_or(b);
        }
        let b_lighter = match cands.compare_load(a, b) {
            Some(order) => order == std::cmp::Ordering::Greater,
            None => {
                let score = |i: usize| (cands.in_flight(i) as f64 + 1.0) / cands.ramp(i);
                score(b) < score(a)
            }
        };
        Some(if b_lighter { b } else { a })
    }
}
