//! Weighted random.

use super::{admitted, draw, sample, Candidates, PlacementPolicy};

/// A random eligible backend, chosen with probability proportional to its
/// weight (times its slow-start ramp), by rejection sampling against an
/// upper bound of the weights that the table keeps: O(1) expected draws
/// while weights are within a small factor of each other, and no table to
/// rebuild when a weight changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Weighted;

impl PlacementPolicy for Weighted {
    fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize> {
        // The bound must cover every backend's weight, not only those drawn
        // so far: otherwise the first draw is always accepted and every
        // backend gets an equal share whatever its weight. Any upper bound
        // gives the exact distribution; a loose one only costs more draws.
        let max_w = u64::from(cands.max_weight().max(1));
        for t in 0..64u64 {
            let i = sample(cands, seed, t)?;
            let roll = draw(seed, 1000 + t);
            if (roll % max_w) < u64::from(cands.weight(i))
                && admitted(cands, i, roll.rotate_left(17))
            {
                return Some(i);
            }
        }
        sample(cands, seed, 64)
    }
}
