//! Round robin.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{admitted, draw, Candidates, PlacementPolicy};

/// Each new session goes to the next eligible backend in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl PlacementPolicy for RoundRobin {
    fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize> {
        let n = cands.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut first_eligible = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !cands.eligible(i) {
                continue;
            }
            first_eligible.get_or_insert(i);
            if admitted(cands, i, draw(seed, k as u64)) {
                return Some(i);
            }
        }
        first_eligible
    }
}
