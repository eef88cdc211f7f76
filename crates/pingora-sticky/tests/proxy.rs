//! Through a running pingora server on 127.0.0.1: the promises of issue 10.

mod common;

use std::sync::Arc;

use common::{get, TestBackend, TestServer, BOUND};
use http::request::Parts;
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::HttpHealthCheck;
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Consistent, RoundRobin};
use pingora_load_balancing::{Backend, LoadBalancer};
use pingora_sticky::{named_backend, static_load_balancer, BackendName, StickyBalancer};
use tower_sticky::token::KeyRing;
use tower_sticky::{BackendTable, Engine, FailoverPolicy, StickyConfig};

struct Rig<S: BackendSelection = RoundRobin> {
    backends: Vec<TestBackend>,
    sticky: StickyBalancer<S>,
    server: TestServer,
    keys: KeyRing,
}

fn rig(n: usize, policy: FailoverPolicy) -> Rig {
    rig_with(n, policy, StickyBalancer::new)
}

fn rig_with<S>(
    n: usize,
    policy: FailoverPolicy,
    make: fn(Arc<LoadBalancer<S>>, StickyConfig) -> StickyBalancer<S>,
) -> Rig<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    rig_built(n, policy, |_| {}, make)
}

/// `n` backends (b1, b2, ...) behind a pingora server. `setup` configures
/// the `LoadBalancer` before it is shared; one given a health-check
/// frequency is also run as pingora's background service, which runs its
/// health check at that frequency.
fn rig_built<S>(
    n: usize,
    policy: FailoverPolicy,
    setup: impl FnOnce(&mut LoadBalancer<S>),
    make: fn(Arc<LoadBalancer<S>>, StickyConfig) -> StickyBalancer<S>,
) -> Rig<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    let backends: Vec<TestBackend> = (1..=n)
        .map(|i| TestBackend::start(&format!("b{i}")))
        .collect();
    let mut lb = static_load_balancer::<S>(
        backends
            .iter()
            .map(|b| named_backend(&b.name, &b.addr.to_string()).unwrap()),
    );
    setup(&mut lb);
    let health_checks = lb.health_check_frequency.is_some();
    let keys = KeyRing::generate();
    let sticky = make(
        Arc::new(lb),
        StickyConfig::new(keys.clone()).failover(policy),
    );
    let server = if health_checks {
        TestServer::start_with_health_checks(sticky.clone())
    } else {
        TestServer::start(sticky.clone())
    };
    Rig {
        backends,
        sticky,
        server,
        keys,
    }
}

impl<S> Rig<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
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

    /// `n` requests with `cookie` all reach `backend`, each a pinned hit.
    fn assert_pinned(&self, cookie: &str, backend: &str, n: usize) {
        for i in 0..n {
            let r = self.get(Some(cookie));
            assert_eq!(r.body, backend, "request {i} left its backend");
            assert_eq!(r.header("x-sticky-outcome"), Some("pinned"));
        }
    }

    /// `n` new sessions, none placed on `backend`.
    fn assert_no_new_session_on(&self, backend: &str, n: usize, why: &str) {
        for _ in 0..n {
            let (_, placed) = self.new_session();
            assert_ne!(placed, backend, "{why}");
        }
    }

    fn backend(&mut self, name: &str) -> &mut TestBackend {
        self.backends.iter_mut().find(|b| b.name == name).unwrap()
    }

    /// pingora's `Backend` for the backend named `name`.
    fn pingora_backend(&self, name: &str) -> Backend {
        self.sticky
            .load_balancer()
            .backends()
            .get_backend()
            .iter()
            .find(|b| name_of(b) == name)
            .cloned()
            .unwrap()
    }
}

fn name_of(b: &Backend) -> &str {
    b.ext.get::<BackendName>().unwrap().as_str()
}

/// Waits (bounded) until `what` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + BOUND;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
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
    rig.assert_pinned(&repinned, &want, 10);
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
    rig.assert_pinned(&cookie, &home, 20);
    rig.assert_no_new_session_on(&home, 30, "a draining backend takes no new session");
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
        StickyBalancer::<RoundRobin>::with_inner_selection,
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

#[test]
fn pingora_health_checks_take_a_backend_out_and_its_sessions_fail_over() {
    let mut rig = rig_built(
        3,
        FailoverPolicy::Redistribute,
        |lb: &mut LoadBalancer<RoundRobin>| {
            // pingora's own HTTP health check: GET /health, 200 is healthy.
            let mut hc = HttpHealthCheck::new("test", false);
            hc.req = RequestHeader::build("GET", b"/health", None).unwrap();
            hc.req.append_header("Host", "test").unwrap();
            lb.set_health_check(Box::new(hc));
            lb.health_check_frequency = Some(std::time::Duration::from_millis(100));
        },
        StickyBalancer::new,
    );
    wait_until("pingora health-checks every backend", || {
        rig.backends.iter().all(|b| b.health_checks() >= 1)
    });
    let (cookie, home) = rig.new_session();
    let want = oracle(&rig.keys, &["b1", "b2", "b3"], &home, &cookie);
    assert_ne!(want, home);
    // Failing its health check only: it still accepts and serves requests,
    // so only pingora's verdict can move its sessions.
    rig.backend(&home).set_healthy(false);
    let down = rig.pingora_backend(&home);
    let lb = rig.sticky.load_balancer().clone();
    wait_until("pingora marks the backend unhealthy", || {
        !lb.backends().ready(&down)
    });
    let home_hits = rig.backend(&home).hits();
    let r = rig.get(Some(&cookie));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, want, "repinned to the deterministic fallback");
    assert_eq!(r.header("x-sticky-outcome"), Some("repinned(unhealthy)"));
    let repinned = r.sticky_cookie().expect("the token is re-issued");
    rig.assert_pinned(&repinned, &want, 10);
    rig.assert_no_new_session_on(&home, 30, "an unhealthy backend takes no new session");
    // Still up and answering pingora's probes, yet nothing reached it.
    let probes = rig.backend(&home).health_checks();
    wait_until("pingora probes it again", || {
        rig.backends
            .iter()
            .any(|b| b.name == home && b.health_checks() > probes)
    });
    assert_eq!(
        rig.backend(&home).hits(),
        home_hits,
        "no request reached it"
    );
}

#[test]
fn the_inner_consistent_hash_places_new_sessions_by_their_id() {
    let rig = rig_with(
        3,
        FailoverPolicy::Redistribute,
        StickyBalancer::<Consistent>::with_inner_selection,
    );
    let codec = tower_sticky::token::TokenCodec::new(rig.keys.clone(), "sticky");
    let lb = rig.sticky.load_balancer();
    let sessions: Vec<(String, String)> = (0..12).map(|_| rig.new_session()).collect();
    for (cookie, placed) in &sessions {
        // Ketama is asked with the session id as its key: the backend it
        // names for that id is where the session was placed.
        let token = codec
            .open(cookie.strip_prefix("sticky=").unwrap().as_bytes())
            .unwrap();
        let ketama = lb.select(&token.session.to_be_bytes(), 256).unwrap();
        assert_eq!(name_of(&ketama), placed, "session {:x}", token.session);
    }
    // And then they stay pinned there.
    for (cookie, placed) in &sessions {
        rig.assert_pinned(cookie, placed, 5);
    }
}
