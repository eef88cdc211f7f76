//! Placement policies alone, over a fake backend set.

use super::testing::{Fake, SplitMix, Zipf};
use super::*;

fn policies() -> [(&'static str, Placement); 4] {
    [
        ("least_loaded", Placement::least_loaded()),
        ("round_robin", Placement::round_robin()),
        ("weighted", Placement::weighted()),
        ("rendezvous", Placement::rendezvous(1.25)),
    ]
}

/// Picks per backend over `n` placements with seeds from a fixed generator,
/// holding nothing in flight.
fn shares(p: &Placement, c: &Fake, n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix(seed);
    let mut counts = vec![0; c.len()];
    for _ in 0..n {
        counts[p.place(c, rng.next_u64()).unwrap()] += 1;
    }
    counts
}

#[test]
fn bounded_load_rendezvous_caps_every_backend_on_zipf_keys() {
    const BACKENDS: usize = 10;
    const REQUESTS: usize = 5_000;
    const FACTOR: f64 = 1.25;
    let zipf = Zipf::new(1_000, 1.1);
    // The hottest key alone is more than a fair share of one backend.
    assert!(zipf.p(0) * REQUESTS as f64 > 1.5 * (REQUESTS / BACKENDS) as f64);
    let key = |rank: usize| mix64(rank as u64 ^ 0x5eed);
    let policy = Rendezvous::new(FACTOR);
    let mut bounded = Fake::new(BACKENDS);
    let mut unbounded = Fake::new(BACKENDS);
    let mut rng = SplitMix(42);
    let mut first_choice = 0;
    for _ in 0..REQUESTS {
        let k = key(zipf.sample(&mut rng));
        // Every request is held in flight until the end.
        let i = policy.place(&bounded, k).unwrap();
        bounded.hold(i);
        let home = rendezvous_top(k, &unbounded, |_| true).unwrap();
        unbounded.hold(home);
        first_choice += usize::from(i == home);
    }
    let mean = REQUESTS as f64 / BACKENDS as f64;
    let cap = (FACTOR * mean).ceil() as usize;
    let max = *bounded.in_flight.iter().max().unwrap();
    assert!(
        max <= cap,
        "bounded max {max} > cap {cap}: {:?}",
        bounded.in_flight
    );
    // Without the bound the skew breaks it: the test would catch a missing cap.
    let raw_max = *unbounded.in_flight.iter().max().unwrap();
    assert!(raw_max > cap, "Zipf keys not skewed enough: {raw_max}");
    // Still hashing: most requests reach their key's first choice.
    assert!(
        first_choice * 2 > REQUESTS,
        "only {first_choice} on their first choice"
    );
    // The hot key's overflow spreads in its preference order, not onto one backend.
    assert!(bounded.in_flight.iter().all(|&n| n > 0));
}

#[test]
fn bounded_load_keeps_a_key_home_while_it_is_under_the_cap() {
    let c = Fake::new(5);
    let policy = Rendezvous::new(1.25);
    for k in 0..1_000u64 {
        let key = mix64(k);
        assert_eq!(policy.place(&c, key), rendezvous_top(key, &c, |_| true));
    }
}

#[test]
fn adding_one_backend_moves_about_one_in_n_plus_one_keys() {
    const KEYS: u64 = 100_000;
    let n = 10;
    let policy = Rendezvous::new(1.25);
    let before = Fake::new(n);
    let mut after = before.clone();
    after.push();
    let newcomer = after.id(n);
    let mut moved = 0u64;
    for k in 0..KEYS {
        let key = mix64(k);
        let a = before.id(policy.place(&before, key).unwrap());
        let b = after.id(policy.place(&after, key).unwrap());
        if a != b {
            assert_eq!(b, newcomer, "key {k} moved between old backends");
            moved += 1;
        }
    }
    let frac = moved as f64 / KEYS as f64;
    let expected = 1.0 / (n + 1) as f64;
    assert!(
        (frac - expected).abs() < 0.005,
        "moved {frac:.4}, expected about {expected:.4}"
    );
    // And removing it again moves exactly those keys back.
    for k in 0..1_000 {
        let key = mix64(k);
        let b = after.id(policy.place(&after, key).unwrap());
        let a = before.id(policy.place(&before, key).unwrap());
        assert!(a == b || b == newcomer);
    }
}

#[test]
fn least_loaded_picks_the_less_loaded_of_its_two_choices() {
    let mut c = Fake::new(10);
    for i in 0..10 {
        c.in_flight[i] = 10 * i;
    }
    let mut counts = [0usize; 10];
    let mut rng = SplitMix(7);
    for _ in 0..20_000 {
        let seed = rng.next_u64();
        let a = sample(&c, seed, 0).unwrap();
        let b = sample(&c, seed, 1).unwrap();
        let pick = LeastLoaded.place(&c, seed).unwrap();
        assert!(c.in_flight[pick] <= c.in_flight[a].min(c.in_flight[b]));
        counts[pick] += 1;
    }
    // The idlest wins whenever it is one of the two (about 19%); the busiest
    // only when it is both (about 1%).
    assert!(counts[0] > 20_000 * 15 / 100, "{counts:?}");
    assert!(counts[9] < 20_000 * 3 / 100, "{counts:?}");
    assert!(counts.windows(2).all(|w| w[0] + 200 > w[1]), "{counts:?}");
}

#[test]
fn least_loaded_spreads_evenly() {
    // Held in flight: the power of two choices keeps the gap tiny.
    let mut c = Fake::new(10);
    let mut rng = SplitMix(11);
    for _ in 0..10_000 {
        let i = LeastLoaded.place(&c, rng.next_u64()).unwrap();
        c.hold(i);
    }
    let (min, max) = (
        *c.in_flight.iter().min().unwrap(),
        *c.in_flight.iter().max().unwrap(),
    );
    assert!(max - min <= 4, "{:?}", c.in_flight);
    // Idle (every request done at once): uniform.
    let counts = shares(&Placement::least_loaded(), &Fake::new(10), 20_000, 12);
    assert!(
        counts.iter().all(|&n| (1_700..=2_300).contains(&n)),
        "{counts:?}"
    );
}

#[test]
fn weighted_follows_weights() {
    let mut c = Fake::new(2);
    c.weight = vec![1, 3];
    let counts = shares(&Placement::weighted(), &c, 40_000, 3);
    let heavy = counts[1] as f64 / 40_000.0;
    assert!((heavy - 0.75).abs() < 0.02, "weights 1:3 gave {counts:?}");

    let mut c = Fake::new(4);
    c.weight = vec![1, 2, 3, 4];
    let counts = shares(&Placement::weighted(), &c, 50_000, 4);
    for (i, &n) in counts.iter().enumerate() {
        let want = (i + 1) as f64 / 10.0;
        let got = n as f64 / 50_000.0;
        assert!((got - want).abs() < 0.02, "weights 1:2:3:4 gave {counts:?}");
    }
}

#[test]
fn round_robin_cycles() {
    let c = Fake::new(4);
    let rr = RoundRobin::default();
    let picks: Vec<usize> = (0..12).map(|s| rr.place(&c, s).unwrap()).collect();
    assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
    // Ineligible backends are skipped, the others still all take turns.
    let mut c = Fake::new(4);
    c.eligible[2] = false;
    let rr = RoundRobin::default();
    let mut counts = [0; 4];
    for s in 0..400 {
        counts[rr.place(&c, s).unwrap()] += 1;
    }
    assert_eq!(counts[2], 0);
    assert!(counts.iter().enumerate().all(|(i, &n)| i == 2 || n >= 100));
}

#[test]
fn no_policy_picks_an_ineligible_backend() {
    for (name, p) in policies() {
        let mut c = Fake::new(5);
        c.eligible[1] = false;
        c.eligible[3] = false;
        let counts = shares(&p, &c, 2_000, 5);
        assert_eq!((counts[1], counts[3]), (0, 0), "{name}: {counts:?}");
        let none = Fake {
            eligible: vec![false; 5],
            ..Fake::new(5)
        };
        assert_eq!(p.place(&none, 1), None, "{name}");
        assert_eq!(p.place(&Fake::new(0), 1), None, "{name}");
    }
}

#[test]
fn slow_start_ramp_limits_a_young_backends_share() {
    const N: usize = 20_000;
    for (name, p) in policies() {
        let mut c = Fake::new(4);
        let fair = shares(&p, &c, N, 8)[3];
        assert!(
            fair > N / 4 * 8 / 10,
            "{name}: a ramped backend got {fair} of {N}"
        );
        c.ramp[3] = 0.1;
        let young = shares(&p, &c, N, 8)[3];
        assert!(
            young < N / 4 * 3 / 10,
            "{name}: a backend at 10% ramp got {young} of {N} (fair share {fair})"
        );
        c.ramp[3] = 0.5;
        let half = shares(&p, &c, N, 8)[3];
        assert!(
            half > young && half < fair,
            "{name}: {young} < {half} < {fair}"
        );
    }
}
