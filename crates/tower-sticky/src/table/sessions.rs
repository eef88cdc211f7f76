//! How many sessions a backend holds: a windowed HyperLogLog per backend.
//!
//! A draining backend is safe to stop once no session has reached it within
//! the idle timeout, and placement balances the sessions backends hold
//! rather than the requests in flight at one instant. Both need "distinct
//! sessions seen lately" per backend, with fixed memory and nothing per
//! session: a HyperLogLog (Flajolet et al., 2007) estimates a distinct count
//! from `2^P` small registers, each keeping the largest rank (leading zeros
//! plus one) of the hashes that fell into it.
//!
//! To age sessions out, the sketch is a ring of [`SLOTS`] HyperLogLogs, one
//! per epoch of `window / (SLOTS - 1)`; a session is recorded in the current
//! epoch's sketch, and the estimate is the union (register-wise maximum) of
//! the sketches of the last [`SLOTS`] epochs. A session seen at `t` is
//! therefore counted until at least `t + window` and at most
//! `t + window * SLOTS / (SLOTS - 1)`: never forgotten early, so a backend is
//! never called drained while a session may still come back.
//!
//! Registers are 4 bits, eight to an `AtomicU32`: 4 x 4,096 registers are
//! 8 KiB per backend whatever the traffic. Recording is lock-free and
//! allocation-free: a hash mix, two loads, and a compare-and-swap only when
//! a register grows (rare once the sketch has filled). The first request of
//! an epoch clears that epoch's slot (512 stores, once per epoch); a session
//! recorded by another thread during that clear may be lost from the
//! estimate until its next request, which the estimate's purpose tolerates.
//!
//! Placement must see a session the moment it is placed, not when the
//! estimate is next computed (3,000 sessions arriving one at a time would
//! otherwise all see the same stale figures): [`SessionSketch::active`] is
//! the last computed estimate plus the sessions placed since.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// SplitMix64's finaliser (Stafford's "Mix13" constants): a bijection with
/// full avalanche. Not the table's `mix64` (MurmurHash3's), which placement
/// and ids already apply to the same values: a second, different mix keeps
/// the sketch's bits independent of theirs.
#[inline]
fn spread(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Register index bits: 4,096 registers, a standard error of about
/// 1.04 / 64 = 1.6 %.
const P: u32 = 12;
const M: usize = 1 << P;
/// Sketches in the ring: the window is `SLOTS - 1` epochs.
pub(crate) const SLOTS: usize = 4;
/// Largest rank a 4-bit register holds. Ranks above 15 occur once in
/// 2^15 hashes per register: the estimate saturates only past about
/// 10^8 sessions per backend.
const MAX_RANK: u32 = 15;
const WORDS: usize = M / 8;
/// How often, at most, [`SessionSketch::active`] recomputes the estimate.
const REFRESH_MS: u64 = 1_000;

/// Distinct sessions seen by one backend within a sliding window: see the
/// [module documentation](self).
pub(crate) struct SessionSketch {
    /// Epoch number (plus one; 0 = never used) each slot holds.
    epochs: [AtomicU64; SLOTS],
    /// `SLOTS` sketches of `WORDS` words, eight 4-bit registers a word.
    words: Box<[AtomicU32]>,
    /// The estimate as last computed, and when (ms).
    cached: AtomicU64,
    cached_at_ms: AtomicU64,
    /// Sessions placed here since the estimate was last computed.
    placed: AtomicU64,
}

impl std::fmt::Debug for SessionSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSketch")
            .field("cached", &self.cached.load(Relaxed))
            .field("placed", &self.placed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for SessionSketch {
    fn default() -> Self {
        Self::new()
    }
}

/// The epoch length for a window: `window / (SLOTS - 1)`, at least 1 ms.
#[inline]
pub(crate) fn epoch_ms(window_ms: u64) -> u64 {
    (window_ms / (SLOTS as u64 - 1)).max(1)
}

impl SessionSketch {
    pub(crate) fn new() -> Self {
        Self {
            epochs: Default::default(),
            words: (0..SLOTS * WORDS).map(|_| AtomicU32::new(0)).collect(),
            cached: AtomicU64::new(0),
            cached_at_ms: AtomicU64::new(0),
            placed: AtomicU64::new(0),
        }
    }

    /// Records that `session` reached this backend at `now_ms`, in a
    /// window of `window_ms`. The hit path: no lock, no allocation.
    #[cfg(test)]
    pub(crate) fn record(&self, session: u64, now_ms: u64, window_ms: u64) {
        self.record_in(session, now_ms, epoch_ms(window_ms));
    }

    /// [`record`](Self::record) with the epoch length already computed.
    ///
    /// `epoch_ms` is [`epoch_ms`]`(window)`, which the engine computes once:
    /// one division fewer per request.
    #[inline]
    pub(crate) fn record_in(&self, session: u64, now_ms: u64, epoch_ms: u64) {
        let epoch = now_ms / epoch_ms + 1;
        let slot = (epoch % SLOTS as u64) as usize;
        let held = self.epochs[slot].load(Relaxed);
        if held < epoch {
            self.turn(slot, held, epoch);
        }
        // Session ids are random already and hashed keys are hashes, but
        // the sketch's accuracy rests on uniform bits, so it does not trust
        // its input to provide them.
        let h = spread(session);
        let reg = (h >> (64 - P)) as usize;
        let rank = ((h << P).leading_zeros() + 1).min(MAX_RANK);
        let word = &self.words[slot * WORDS + reg / 8];
        let shift = (reg % 8) * 4;
        let mut cur = word.load(Relaxed);
        while (cur >> shift) & 0xf < rank {
            let new = (cur & !(0xf << shift)) | (rank << shift);
            match word.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }

    /// Starts a new epoch in `slot`: whoever wins the swap clears it.
    #[cold]
    fn turn(&self, slot: usize, held: u64, epoch: u64) {
        if self.epochs[slot]
            .compare_exchange(held, epoch, Relaxed, Relaxed)
            .is_ok()
        {
            for w in &self.words[slot * WORDS..(slot + 1) * WORDS] {
                w.store(0, Relaxed);
            }
        }
    }

    /// Counts a session placed here, for [`SessionSketch::active`] until the
    /// estimate is next computed.
    #[inline]
    pub(crate) fn placed(&self) {
        self.placed.fetch_add(1, Relaxed);
    }

    /// Takes back a placement that did not happen (the backend was
    /// unreachable and the request went elsewhere).
    pub(crate) fn unplaced(&self) {
        let _ = self
            .placed
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }

    /// The estimated number of distinct sessions recorded within the
    /// window ending at `now_ms` (0 exactly when none was).
    pub(crate) fn estimate(&self, now_ms: u64, window_ms: u64) -> u64 {
        self.summary(now_ms, window_ms).estimate()
    }

    /// The union of the live epochs' sketches: the window's registers, as a
    /// value that can be copied, serialised and merged with other replicas'.
    pub(crate) fn summary(&self, now_ms: u64, window_ms: u64) -> SessionSummary {
        let epoch = now_ms / epoch_ms(window_ms) + 1;
        let live: [bool; SLOTS] = std::array::from_fn(|s| {
            let e = self.epochs[s].load(Relaxed);
            e != 0 && e <= epoch && epoch - e < SLOTS as u64
        });
        let mut out = SessionSummary::empty();
        for w in 0..WORDS {
            for (s, _) in live.iter().enumerate().filter(|(_, l)| **l) {
                let word = self.words[s * WORDS + w].load(Relaxed);
                for k in 0..8 {
                    let r = &mut out.registers[w * 8 + k];
                    *r = (*r).max(((word >> (k * 4)) & 0xf) as u8);
                }
            }
        }
        out
    }

    /// The sessions this backend holds, as placement compares them: the
    /// estimate (recomputed at most once a second, by whichever caller
    /// finds it due) plus the sessions placed here since.
    pub(crate) fn active(&self, now_ms: u64, window_ms: u64) -> u64 {
        let at = self.cached_at_ms.load(Relaxed);
        if now_ms.saturating_sub(at) >= REFRESH_MS.min(epoch_ms(window_ms))
            && self
                .cached_at_ms
                .compare_exchange(at, now_ms.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            // Reset first: a session placed from here on is counted in
            // `placed` even if the estimate below also saw it (a brief
            // overcount); one placed before was recorded in the sketch
            // before it was counted in `placed`.
            self.placed.store(0, Relaxed);
            self.cached.store(self.estimate(now_ms, window_ms), Relaxed);
        }
        self.cached.load(Relaxed) + self.placed.load(Relaxed)
    }
}

/// A backend's session sketch over its window, as a plain value: what one
/// replica publishes so that a fleet of replicas can merge what each saw.
///
/// The union of two summaries (register-wise maximum) estimates the
/// distinct sessions seen by either, with the same error as one sketch:
/// sessions that reached the backend through two replicas count once.
/// Serialised as [`SessionSummary::BYTES`] bytes (two 4-bit registers a
/// byte), whatever the traffic.
///
/// ```
/// use tower_sticky::table::{BackendTable, SessionSummary};
/// let mut table = BackendTable::<&str>::new();
/// table.insert("a", (), 0).unwrap();
/// let window = std::time::Duration::from_secs(60);
/// let mine = table.get(0).unwrap().status().session_summary(1_000, window);
/// let theirs = SessionSummary::from_bytes(&mine.to_bytes()).unwrap();
/// let mut fleet = SessionSummary::empty();
/// fleet.merge(&mine);
/// fleet.merge(&theirs);
/// assert_eq!(fleet.estimate(), 0);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSummary {
    registers: Box<[u8]>,
}

impl std::fmt::Debug for SessionSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSummary")
            .field("estimate", &self.estimate())
            .finish()
    }
}

impl Default for SessionSummary {
    fn default() -> Self {
        Self::empty()
    }
}

impl SessionSummary {
    /// The length of [`SessionSummary::to_bytes`].
    pub const BYTES: usize = M / 2;

    /// No session seen.
    pub fn empty() -> Self {
        Self {
            registers: vec![0u8; M].into_boxed_slice(),
        }
    }

    /// Adds what `other` saw: afterwards this summary counts every session
    /// either counted, once.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// The estimated number of distinct sessions (0 exactly when none).
    pub fn estimate(&self) -> u64 {
        let mut sum = 0.0f64;
        let mut zeros = 0usize;
        for &r in self.registers.iter() {
            zeros += usize::from(r == 0);
            // 2^-r, exactly.
            sum += f64::from_bits((1023 - u64::from(r)) << 52);
        }
        if zeros == M {
            return 0;
        }
        let m = M as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        // Linear counting (from the share of empty registers) while it is
        // the more accurate: the raw HyperLogLog estimate is biased upwards
        // below about 5m, by some 2 % near the classic 2.5m switch point,
        // while linear counting's error only passes HyperLogLog's 1.6 %
        // around 3m (HyperLogLog++, Heule et al. 2013, section 5.3).
        let linear = (zeros > 0).then(|| m * (m / zeros as f64).ln());
        let est = match linear {
            Some(lc) if lc <= 3.0 * m => lc,
            _ => alpha * m * m / sum,
        };
        est.round().max(1.0) as u64
    }

    /// The registers, two to a byte (low nibble first).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.registers
            .chunks_exact(2)
            .map(|p| (p[0] & 0xf) | (p[1] << 4))
            .collect()
    }

    /// Reads [`SessionSummary::to_bytes`]; `None` unless exactly
    /// [`SessionSummary::BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::BYTES {
            return None;
        }
        let registers = bytes.iter().flat_map(|b| [b & 0xf, b >> 4]).collect();
        Some(Self { registers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::SplitMix;

    const WINDOW: u64 = 30 * 60 * 1000;

    #[test]
    fn estimate_within_five_percent_of_ten_thousand_sessions() {
        // Several independent populations, each checked: one lucky seed
        // proves nothing about a 1.6 % standard error.
        for seed in 1..=8u64 {
            let s = SessionSketch::new();
            let mut rng = SplitMix(seed);
            let ids: Vec<u64> = (0..10_000).map(|_| rng.next_u64()).collect();
            let mut now = 1_000_000;
            // Each session seen three times, spread over half the window.
            for round in 0..3 {
                for id in &ids {
                    s.record(*id, now, WINDOW);
                }
                now += WINDOW / 6;
                let _ = round;
            }
            let est = s.estimate(now, WINDOW) as f64;
            let err = (est - 10_000.0).abs() / 10_000.0;
            assert!(err <= 0.05, "seed {seed}: estimate {est} for 10000");
        }
    }

    #[test]
    #[ignore = "exploration: prints the error profile"]
    fn error_profile() {
        for n in [
            1_000u64, 5_000, 8_000, 10_000, 12_000, 15_000, 20_000, 30_000, 50_000,
        ] {
            let mut worst: f64 = 0.0;
            let mut mean = 0.0;
            for seed in 1..=40u64 {
                let s = SessionSketch::new();
                let mut rng = SplitMix(seed * 7919);
                for _ in 0..n {
                    s.record(rng.next_u64(), 1_000_000, WINDOW);
                }
                let e = (s.estimate(1_000_000, WINDOW) as f64 - n as f64) / n as f64;
                mean += e / 40.0;
                worst = worst.max(e.abs());
            }
            println!("{n}: mean {mean:+.4} worst {worst:.4}");
        }
    }

    #[test]
    fn small_counts_are_close_and_nothing_is_zero() {
        let s = SessionSketch::new();
        assert_eq!(s.estimate(1_000, WINDOW), 0);
        s.record(42, 1_000, WINDOW);
        assert_eq!(s.estimate(1_000, WINDOW), 1);
        for i in 0..100 {
            s.record(i, 1_000, WINDOW);
        }
        let e = s.estimate(1_000, WINDOW);
        assert!((98..=102).contains(&e), "{e}");
    }

    #[test]
    fn sessions_age_out_after_the_window_and_not_before() {
        let s = SessionSketch::new();
        let t0 = 7 * WINDOW + 123;
        for i in 0..500 {
            s.record(i, t0, WINDOW);
        }
        // Still counted a whole window later, whatever the epoch phase.
        assert!(s.estimate(t0 + WINDOW, WINDOW) > 0);
        // Gone once the window and one epoch have passed.
        assert_eq!(s.estimate(t0 + WINDOW + epoch_ms(WINDOW), WINDOW), 0);
        // A slot reused for a later epoch starts empty.
        s.record(1, t0 + 2 * WINDOW, WINDOW);
        assert_eq!(s.estimate(t0 + 2 * WINDOW, WINDOW), 1);
    }

    #[test]
    fn active_counts_placements_at_once_and_folds_them_into_the_estimate() {
        let s = SessionSketch::new();
        let now = 5_000_000;
        assert_eq!(s.active(now, WINDOW), 0);
        for i in 0..10 {
            s.record(i, now, WINDOW);
            s.placed();
        }
        assert_eq!(s.active(now, WINDOW), 10, "placed, not yet estimated");
        assert_eq!(s.active(now + REFRESH_MS, WINDOW), 10, "estimated");
        s.unplaced();
        assert_eq!(
            s.active(now + REFRESH_MS, WINDOW),
            10,
            "nothing to take back"
        );
    }

    #[test]
    fn summaries_round_trip_and_merge_to_the_union() {
        let now = 9_000_000;
        let (a, b) = (SessionSketch::new(), SessionSketch::new());
        let mut rng = SplitMix(99);
        let ids: Vec<u64> = (0..6_000).map(|_| rng.next_u64()).collect();
        // a sees the first 4,000, b the last 4,000: 2,000 through both.
        for id in &ids[..4_000] {
            a.record(*id, now, WINDOW);
        }
        for id in &ids[2_000..] {
            b.record(*id, now, WINDOW);
        }
        let sa = a.summary(now, WINDOW);
        assert_eq!(sa.estimate(), a.estimate(now, WINDOW));
        let bytes = sa.to_bytes();
        assert_eq!(bytes.len(), SessionSummary::BYTES);
        assert_eq!(SessionSummary::from_bytes(&bytes).as_ref(), Some(&sa));
        assert_eq!(SessionSummary::from_bytes(&bytes[1..]), None);
        let mut fleet = SessionSummary::empty();
        fleet.merge(&SessionSummary::from_bytes(&bytes).unwrap());
        fleet.merge(&b.summary(now, WINDOW));
        let est = fleet.estimate() as f64;
        assert!(
            (est - 6_000.0).abs() / 6_000.0 <= 0.05,
            "union {est} of 6000"
        );
        assert_eq!(SessionSummary::empty().estimate(), 0);
    }
}
