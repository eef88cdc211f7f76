//! Through a running pingora server on 127.0.0.1: the promises of issue 10.

mod common;

use std::sync::Arc;

use common::{get, TestBackend, TestServer};
use http::request::Parts;
use pingora_load_balancing::selection::RoundRobin;
use pingora_sticky::{named_backend, static_load_balancer, StickyBalancer};
use tower_sticky::token::KeyRing;
use tower_sticky::{BackendTable, Engine, FailoverPolicy, StickyConfig};

struct Rig {
    backends: Vec<TestBackend>,
    sticky: StickyBalancer<RoundRobin>,
    server: TestServer,
    keys: KeyRing,
}

fn rig(n: usize, policy: FailoverPolicy) -> Rig {
    rig_with(n, policy, StickyBalancer::new)
}

fn rig_with(
    n: usize,
    policy: FailoverPolicy,
    make: fn(
        Arc<pingora_load_balancing::LoadBalancer<RoundRobin>>,
        StickyConfig,
    ) -> StickyBalancer<RoundRobin>,
) -> Rig {
    let backends: Vec<TestBackend> = (1..=n)
        .map(|i| TestBackend::start(&format!("b{i}")))
        .collect();
    let lb = static_load_balancer::<RoundRobin>(
        backends
            .iter()
            .map(|b| named_backend(&b.name, &b.addr.to_string()).unwrap()),
    );
    let keys = KeyRing::generate();
    let sticky = make(
        Arc::new(lb),
        StickyConfig::new(keys.clone()).failover(policy),
    );
    let server = TestServer::start(sticky.clone());
    Rig {
        backends,
        sticky,
        server,
        keys,
    }
}

impl Rig {
    fn get(&self, cookie: Option<&str>) -> common::Reply {
        match cookie {
            Some(c) => get(self.server.addr, &[("Cookie", c)]),
            None => get(self.server.addr, &[]),
        }
    }

    /// A new session: its cookie and the backend it landed on.
    fn new_session(&self) -> (String, String) {
        let r = self.get(None);
        assert_eq!(r.status, 200, "{r:?}");
        (
            r.sticky_cookie().expect("a new session gets a cookie"),
            r.body,
        )
    }

    fn backend(&mut self, name: &str) -> &mut TestBackend {
        self.backends.iter_mut().find(|b| b.name == name).unwrap()
    }
}

#[test]
fn a_hundred_requests_stay_on_their_backend() {
    let rig = rig(3, FailoverPolicy::Redistribute);
    let (cookie, home) = rig.new_session();
    for i in 0..100 {
        let r = rig.get(Some(&cookie));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, home, "request {i} left its backend");
        assert_eq!(r.header("x-sticky-outcome"), Some("pinned"));
        assert_eq!(r.sticky_cookie(), None, "a valid pin is not re-issued");
    }
    let elsewhere: usize = rig
        .backends
        .iter()
        .filter(|b| b.name != home)
        .map(|b| b.hits())
        .sum();
    assert_eq!(elsewhere, 0);
}

#[test]
fn a_new_session_gets_a_new_private_cookie_and_the_backend_never_sees_ours() {
    let rig = rig(3, FailoverPolicy::Redistribute);
    let a = rig.get(None);
    let b = rig.get(None);
    assert_eq!(a.header("x-sticky-outcome"), Some("new"));
    let (ca, cb) = (a.sticky_cookie().unwrap(), b.sticky_cookie().unwrap());
    assert_ne!(ca, cb, "each new session has its own token");
    // Appended next to the application's own Set-Cookie, never replacing it.
    assert!(a.all("set-cookie").contains(&"app=1"), "{a:?}");
    assert_eq!(a.header("cache-control"), Some("private"));
    // The backend sees the application's cookies, never ours.
    let r = rig.get(Some(&format!("a=1; {ca}; b=2")));
    assert_eq!(r.header("x-seen-cookie"), Some("a=1; b=2"), "{r:?}");
    let r = rig.get(Some(&ca));
    assert_eq!(r.header("x-seen-cookie"), Some(""), "{r:?}");
}

#[test]
fn every_cookie_header_is_read() {
    let rig = rig(3, FailoverPolicy::Redistribute);
    let (cookie, home) = rig.new_session();
    // HTTP/2 and some clients split cookies over several headers.
    let r = get(
        rig.server.addr,
        &[("Cookie", "a=1"), ("Cookie", &cookie), ("Cookie", "b=2")],
    );
    assert_eq!(r.body, home);
    assert_eq!(r.header("x-sticky-outcome"), Some("pinned"));
    assert_eq!(r.header("x-seen-cookie"), Some("a=1 | b=2"), "{r:?}");
}

/// The backend the core's deterministic fallback picks for `cookie` when
/// `dead` cannot serve: what sticky-gateway (whose backends are keyed by the
/// same names) and every other replica with the same key pick.
fn oracle(keys: &KeyRing, names: &[&str], dead: &str, cookie: &str) -> String {
    let engine = Engine::new(StickyConfig::new(keys.clone()));
    let mut table: BackendTable<String> = BackendTable::new();
    for n in names {
        table.insert(n.to_string(), (), 0).unwrap();
    }
    let slot = table
        .index_of(tower_sticky::StableId::stable_id(dead))
        .unwrap();
    table
        .get(slot)
        .unwrap()
        .status()
        .eject(u64::MAX / 2, std::time::Duration::from_secs(1));
    let req = http::Request::get("/")
        .header("cookie", cookie)
        .body(())
        .unwrap();
    let (parts, ()): (Parts, ()) = req.into_parts();
    let routed = engine.decide(&table, &parts, |_| true);
    table.get(routed.target().unwrap()).unwrap().key().clone()
}

#[test]
fn a_stopped_backend_repins_to_the_fallback_every_replica_picks() {
    let mut rig = rig(3, FailoverPolicy::Redistribute);
    let (cookie, home) = rig.new_session();
    let want = oracle(&rig.keys, &["b1", "b2", "b3"], &home, &cookie);
    assert_ne!(want, home);
    rig.backend(&home).stop();
    let requests = |name: &str| rig.sticky.status(name).unwrap().requests();
    let (home_before, want_before) = (requests(&home), requests(&want));
    let r = rig.get(Some(&cookie));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, want, "repinned to the deterministic fallback");
    // One request, one outcome: the failed attempt is not counted on top.
    assert_eq!(requests(&home), home_before);
    assert_eq!(requests(&want), want_before + 1);
    assert_eq!(r.header("x-sticky-outcome"), Some("repinned(unhealthy)"));
    let repinned = r.sticky_cookie().expect("the token is re-issued");
    for _ in 0..10 {
        let r = rig.get(Some(&repinned));
        assert_eq!(r.body, want);
        assert_eq!(r.header("x-sticky-outcome"), Some("pinned"));
    }
    // The old cookie follows the same session to the same place.
    assert_eq!(rig.get(Some(&cookie)).body, want);
}

#[test]
fn a_stopped_backend_under_strict_answers_503_and_calls_no_one() {
    let mut rig = rig(3, FailoverPolicy::Strict);
    let (cookie, home) = rig.new_session();
    rig.backend(&home).stop();
    let before: usize = rig.backends.iter().map(|b| b.hits()).sum();
    let r = rig.get(Some(&cookie));
    assert_eq!(r.status, 503, "{r:?}");
    let r = rig.get(Some(&cookie));
    assert_eq!(r.status, 503, "{r:?}");
    let after: usize = rig.backends.iter().map(|b| b.hits()).sum();
    assert_eq!(after, before, "no other backend was called");
    // New sessions are still served, by the backends that are up.
    let r = rig.get(None);
    assert_eq!(r.status, 200);
    assert_ne!(r.body, home);
}

#[test]
fn drain_keeps_pinned_sessions_and_takes_no_new_ones() {
    let rig = rig(3, FailoverPolicy::Redistribute);
    let (cookie, home) = rig.new_session();
    assert!(rig.sticky.drain(&home));
    assert_eq!(
        rig.sticky.state(&home),
        Some(tower_sticky::BackendState::Draining)
    );
    for _ in 0..20 {
        let r = rig.get(Some(&cookie));
        assert_eq!(r.body, home);
        assert_eq!(r.header("x-sticky-outcome"), Some("pinned"));
    }
    for _ in 0..30 {
        let (_, placed) = rig.new_session();
        assert_ne!(placed, home, "a draining backend takes no new session");
    }
    let status = rig.sticky.status(&home).unwrap();
    assert!(
        status.pinned_hits() >= 20,
        "the operator sees what still reaches it"
    );
    assert!(rig.sticky.activate(&home));
}

#[test]
fn a_forged_or_edited_token_is_never_trusted() {
    let rig = rig(3, FailoverPolicy::Redistribute);
    let (cookie, _) = rig.new_session();
    let value = cookie.strip_prefix("sticky=").unwrap();
    // One character changed, anywhere: authentication fails.
    for at in [0, value.len() / 2, value.len() - 1] {
        let mut edited: Vec<u8> = value.bytes().collect();
        edited[at] = if edited[at] == b'A' { b'B' } else { b'A' };
        let edited = format!("sticky={}", String::from_utf8(edited).unwrap());
        let r = rig.get(Some(&edited));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-sticky-outcome"), Some("new"), "edited at {at}");
        assert!(r.sticky_cookie().is_some_and(|c| c != edited));
        assert_eq!(r.header("x-seen-cookie"), Some(""), "still stripped");
    }
    // Made up, and sealed with another key.
    let other = KeyRing::generate();
    let codec = tower_sticky::token::TokenCodec::new(other, "sticky");
    let foreign = codec.seal(&tower_sticky::token::Token::new(
        tower_sticky::StableId::stable_id("b1"),
        7,
        1,
    ));
    for forged in [
        "sticky=forged-token".to_string(),
        format!("sticky={}", foreign.as_str()),
    ] {
        let r = rig.get(Some(&forged));
        assert_eq!(r.header("x-sticky-outcome"), Some("new"), "{forged}");
        assert!(r.sticky_cookie().is_some());
    }
}

#[test]
fn pingora_disabling_a_backend_moves_its_sessions() {
    let rig = rig(3, FailoverPolicy::Redistribute);
    let (cookie, home) = rig.new_session();
    let lb = rig.sticky.load_balancer();
    let b = lb
        .backends()
        .get_backend()
        .iter()
        .find(|b| b.ext.get::<pingora_sticky::BackendName>().unwrap().as_str() == home)
        .cloned()
        .unwrap();
    lb.backends().set_enable(&b, false);
    let want = oracle(&rig.keys, &["b1", "b2", "b3"], &home, &cookie);
    let r = rig.get(Some(&cookie));
    assert_eq!(r.body, want);
    assert_eq!(r.header("x-sticky-outcome"), Some("repinned(unhealthy)"));
}

#[test]
fn the_inner_round_robin_places_new_sessions() {
    let rig = rig_with(
        3,
        FailoverPolicy::Redistribute,
        StickyBalancer::with_inner_selection,
    );
    let placed: Vec<String> = (0..6).map(|_| rig.new_session().1).collect();
    // RoundRobin visits every backend in turn.
    for name in ["b1", "b2", "b3"] {
        assert_eq!(
            placed.iter().filter(|p| *p == name).count(),
            2,
            "{placed:?}"
        );
    }
    // Draining still applies to the inner selection.
    rig.sticky.drain("b2");
    for _ in 0..6 {
        assert_ne!(rig.new_session().1, "b2");
    }
}

#[test]
fn clients_hanging_up_never_eject_a_backend() {
    let rig = rig(3, FailoverPolicy::Redistribute);
    let (cookie, home) = rig.new_session();
    // More than the default ejection streak (5), each a client that went
    // away while the backend was answering: the backend did nothing wrong.
    for _ in 0..8 {
        common::hang_up(rig.server.addr, &[("Cookie", &cookie)]);
    }
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(
        rig.sticky.state(&home),
        Some(tower_sticky::BackendState::Active)
    );
    assert_eq!(rig.sticky.status(&home).unwrap().ejections(), 0);
    let r = rig.get(Some(&cookie));
    assert_eq!(r.body, home);
    assert_eq!(r.header("x-sticky-outcome"), Some("pinned"));
}
