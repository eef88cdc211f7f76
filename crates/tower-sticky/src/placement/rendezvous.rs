//! Rendezvous (highest random weight) hashing with bounded loads.

use super::{admitted, Candidates, PlacementPolicy};
use crate::backend_id::mix64;

/// Rendezvous hashing of the seed over the eligible backends, skipping any
/// backend whose in-flight load has reached `balance_factor` × the mean
/// (Mirrokni, Thorup, Zadimoghaddam, *Consistent Hashing with Bounded Loads*).
///
/// Adding one backend to `n` moves only the keys the newcomer wins, about
/// `1/(n+1)` of them; removing one moves only its own keys. The cap keeps a
/// hot key (many users behind one NAT address) from piling onto one backend.
#[derive(Clone, Copy, Debug)]
pub struct Rendezvous {
    balance_factor: f64,
}

impl Rendezvous {
    /// A policy with the given balance factor (clamped to at least 1.0).
    pub fn new(balance_factor: f64) -> Self {
        Self {
            balance_factor: if balance_factor.is_finite() {
                balance_factor.max(1.0)
            } else {
                1.0
            },
        }
    }

    /// The configured balance factor.
    pub fn balance_factor(&self) -> f64 {
        self.balance_factor
    }
}

impl PlacementPolicy for Rendezvous {
    fn place(&self, cands: &dyn Candidates, seed: u64) -> Option<usize> {
        // Slow start: a young backend is admitted for a `ramp` share of seeds.
        // The roll is a function of (seed, backend id), so the choice stays a
        // function of the seed; if nothing is admitted, any eligible backend.
        let salt = mix64(seed ^ 0x736c_6f77_5f73_7461);
        let admit = |i: usize| admitted(cands, i, mix64(salt ^ cands.id(i).as_u64()));
        let eligible = |i: usize| cands.eligible(i);
        rendezvous_bounded(seed, cands, self.balance_factor, |i| {
            eligible(i) && admit(i)
        })
        .or_else(|| rendezvous_bounded(seed, cands, self.balance_factor, eligible))
        .map(|(i, _)| i)
    }
}

#[inline]
fn score(key: u64, cands: &(impl Candidates + ?Sized), i: usize) -> u64 {
    mix64(key ^ cands.id(i).as_u64())
}

/// The rendezvous winner for `key` among the backends that pass `keep`.
pub(crate) fn rendezvous_top(
    key: u64,
    cands: &(impl Candidates + ?Sized),
    keep: impl Fn(usize) -> bool,
) -> Option<usize> {
    (0..cands.len())
        .filter(|&i| keep(i))
        .max_by_key(|&i| score(key, cands, i))
}

/// Rendezvous with bounded loads over the backends that pass `keep`.
/// Returns the backend and whether it is the key's first choice.
pub(crate) fn rendezvous_bounded(
    key: u64,
    cands: &(impl Candidates + ?Sized),
    factor: f64,
    keep: impl Fn(usize) -> bool,
) -> Option<(usize, bool)> {
    let mut n = 0usize;
    let mut top: Option<(u64, usize)> = None;
    for i in (0..cands.len()).filter(|&i| keep(i)) {
        n += 1;
        let s = score(key, cands, i);
        if top.is_none_or(|(best, _)| s > best) {
            top = Some((s, i));
        }
    }
    let (_, first) = top?;
    let cap = (factor * (cands.total_in_flight() + 1) as f64 / n as f64).ceil() as usize;
    if cands.in_flight(first) < cap {
        return Some((first, true));
    }
    // Rare path: walk the key's preference order until a backend is under the cap.
    let mut order: Vec<(u64, usize)> = (0..cands.len())
        .filter(|&i| keep(i))
        .map(|i| (score(key, cands, i), i))
        .collect();
    order.sort_unstable_by_key(|&(s, _)| std::cmp::Reverse(s));
    let pick = order
        .iter()
        .map(|&(_, i)| i)
        .find(|&i| cands.in_flight(i) < cap)
        .unwrap_or(first);
    Some((pick, pick == first))
}
