//! Weighted random.

use super::{admitted, draw, sample, Candidates, PlacementPolicy};

/// A random eligible backend, chosen with probability proportional to its
/// weight (times its slow-start ramp), by rejection sampling against the
/// largest eligible weight: one O(n) pass of atomic loads to find that
/// weight, then O(1) expected draws while weights are within a small factor
/// of each other, and no table to rebuild when a weight changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Weighted;

impl PlacementPolicy for Weighted {
    fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize> {
        // The bound must be the largest weight of all eligible backends, not
        // of those drawn so far: otherwise the first draw is always accepted
        // and every backend gets an equal share whatever its weight.
        let heaviest = (0..cands.len())
            .filter(|&i| cands.eligible(i))
            .max_by_key(|&i| cands.weight(i))?;
        let max_w = u64::from(cands.weight(heaviest).max(1));
        for t in 0..64u64 {
            let i = sample(cands, seed, t)?;
            let roll = draw(seed, 1000 + t);
            if (roll % max_w) < u64::from(cands.weight(i))
                && admitted(cands, i, roll.rotate_left(17))
            {
                return Some(i);
            }
        }
        Some(heaviest)
    }
}
