//! Weighted random.

use super::{admitted, draw, sample, Candidates, PlacementPolicy};

/// A random eligible backend, chosen with probability proportional to its
/// weight (times its slow-start ramp), by rejection sampling against the
/// largest weight seen: O(1) expected while weights are within a small
/// factor of each other, and no table to rebuild when a weight changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Weighted;

impl PlacementPolicy for Weighted {
    fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize> {
        let mut max_w = 1u32;
        let mut fallback = None;
        for t in 0..64u64 {
            let i = sample(cands, seed, t)?;
            let w = cands.weight(i);
            max_w = max_w.max(w);
            if fallback.map_or(true, |f: usize| cands.weight(f) < w) {
                fallback = Some(i);
            }
            let roll = draw(seed, 1000 + t);
            if (roll % u64::from(max_w)) < u64::from(w) && admitted(cands, i, roll.rotate_left(17))
            {
                return Some(i);
            }
        }
        fallback
    }
}
