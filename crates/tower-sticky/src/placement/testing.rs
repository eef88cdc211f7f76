//! A fake backend set for pure placement tests: plain vectors behind
//! [`Candidates`], with load held and released by hand.

use super::Candidates;
use crate::{BackendId, StableId};

/// `n` backends named `b0`, `b1`, ...: all eligible, idle, weight 1, fully ramped.
#[derive(Clone, Debug)]
pub(crate) struct Fake {
    pub(crate) ids: Vec<BackendId>,
    pub(crate) eligible: Vec<bool>,
    pub(crate) serve: Vec<bool>,
    pub(crate) in_flight: Vec<usize>,
    pub(crate) weight: Vec<u32>,
    pub(crate) ramp: Vec<f64>,
}

impl Fake {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            ids: (0..n).map(|i| format!("b{i}").stable_id()).collect(),
            eligible: vec![true; n],
            serve: vec![true; n],
            in_flight: vec![0; n],
            weight: vec![1; n],
            ramp: vec![1.0; n],
        }
    }

    /// Adds one more backend, `b{len}`.
    pub(crate) fn push(&mut self) {
        let n = self.ids.len();
        self.ids.push(format!("b{n}").stable_id());
        self.eligible.push(true);
        self.serve.push(true);
        self.in_flight.push(0);
        self.weight.push(1);
        self.ramp.push(1.0);
    }

    /// Counts one more request in flight on `i`.
    pub(crate) fn hold(&mut self, i: usize) {
        self.in_flight[i] += 1;
    }
}

impl Candidates for Fake {
    fn len(&self) -> usize {
        self.ids.len()
    }
    fn id(&self, i: usize) -> BackendId {
        self.ids[i]
    }
    fn eligible(&self, i: usize) -> bool {
        self.eligible[i]
    }
    fn can_serve(&self, i: usize) -> bool {
        self.serve[i]
    }
    fn in_flight(&self, i: usize) -> usize {
        self.in_flight[i]
    }
    fn total_in_flight(&self) -> usize {
        self.in_flight.iter().sum()
    }
    fn weight(&self, i: usize) -> u32 {
        self.weight[i]
    }
    fn ramp(&self, i: usize) -> f64 {
        self.ramp[i]
    }
}

/// SplitMix64: a tiny deterministic generator, so tests need no RNG crate
/// and give the same numbers on every run.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::backend_id::mix64(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over ranks `0..n` (rank 0 the hottest), by inverse CDF.
#[derive(Clone, Debug)]
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    pub(crate) fn sample(&self, rng: &mut SplitMix) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    /// Probability of rank `k`.
    pub(crate) fn p(&self, k: usize) -> f64 {
        self.cdf[k] - if k == 0 { 0.0 } else { self.cdf[k - 1] }
    }
}
