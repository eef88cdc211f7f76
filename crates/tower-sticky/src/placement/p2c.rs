//! Least loaded: fewest sessions held, then fewest requests in flight.

use std::cmp::Ordering;

use super::{draw, sample, Candidates, PlacementPolicy};

/// Up to this many backends, every eligible one is compared; above, the
/// best of [`CHOICES`] random ones.
const SCAN: usize = 32;
/// Random choices compared in a large set.
const CHOICES: u64 = 4;

/// Picks the eligible backend holding the fewest sessions per unit of
/// weight ([`Candidates::sessions`]), with fewer requests in flight per
/// unit of weight breaking ties (or, where the services measure their own
/// load, the lower `tower::load::Load`), and a random order breaking the
/// rest.
///
/// Why sessions first: for sticky traffic the load that lasts is the
/// sessions a backend holds, while requests in flight are all zero at low
/// concurrency, where comparing them places sessions at random (60 sessions
/// over three backends landed 23 / 22 / 15). The engine counts a session on
/// its backend the moment it is placed, so sessions arriving one at a time
/// stay even, and a backend added to a loaded set takes the new sessions
/// until it has caught up (rather than a third of them).
///
/// Where the services measure their own load (`tower::load::Load`, e.g.
/// peak EWMA latency), that measure is what the user asked to balance: it
/// decides first, and sessions break its ties.
///
/// Slow start limits a young backend's rate: holding the fewest sessions,
/// it would otherwise take every new session at once. While ramping it is
/// compared only when it passes a draw with probability `ramp²`, so it
/// takes at most that fraction of new sessions: 1 % at the start of the
/// window (10 % ramp), 25 % halfway, then every one until it has caught up.
/// The square keeps its early rate below its fair share, as with
/// in-flight placement, where a linear ramp would hand it a tenth of all new
/// sessions from its first second.
///
/// Up to 32 backends every eligible one is compared (herding onto the
/// least loaded is not a risk, since each placement counts at once); above
/// that, the best of four random choices (Mitzenmacher, *The Power of Two
/// Choices*), keeping placement O(1) in large sets.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastLoaded;

/// Whether `b` is less loaded than `a`.
fn lighter(cands: &dyn Candidates, a: usize, b: usize) -> bool {
    let (wa, wb) = (
        u128::from(cands.weight(a).max(1)),
        u128::from(cands.weight(b).max(1)),
    );
    // sessions(b) / wb < sessions(a) / wa, without division.
    let by_load = cands.compare_load(a, b);
    if let Some(order) = by_load.filter(|o| o.is_ne()) {
        return order == Ordering::Greater;
    }
    let by_sessions =
        (u128::from(cands.sessions(b)) * wa).cmp(&(u128::from(cands.sessions(a)) * wb));
    if by_sessions.is_ne() || by_load.is_some() {
        return by_sessions == Ordering::Less;
    }
    (cands.in_flight(b) as u128 * wa) < (cands.in_flight(a) as u128 * wb)
}

/// Slow start: whether a ramping backend is compared for this session
/// (probability `ramp²`; see [`LeastLoaded`]).
#[inline]
fn ramped(cands: &dyn Candidates, i: usize, roll: u64) -> bool {
    let r = cands.ramp(i);
    r >= 1.0 || ((roll >> 11) as f64 / (1u64 << 53) as f64) < r * r
}

impl PlacementPolicy for LeastLoaded {
    fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize> {
        let n = cands.len();
        if n == 0 {
            return None;
        }
        let mut best: Option<usize> = None;
        if n <= SCAN {
            let start = (draw(seed, 0) % n as u64) as usize;
            let mut any = None;
            for i in (0..n).map(|k| (start + k) % n) {
                if !cands.eligible(i) {
                    continue;
                }
                any = any.or(Some(i));
                if !ramped(cands, i, draw(seed, 1 + i as u64)) {
                    continue;
                }
                if best.is_none_or(|a| lighter(cands, a, i)) {
                    best = Some(i);
                }
            }
            // Every eligible backend ramping and none drawn: take one
            // anyway rather than refuse the session.
            return best.or(any);
        }
        for t in 0..CHOICES {
            let Some(i) = sample(cands, seed, t) else {
                break;
            };
            if best.is_none_or(|a| lighter(cands, a, i)) {
                best = Some(i);
            }
        }
        best
    }
}
