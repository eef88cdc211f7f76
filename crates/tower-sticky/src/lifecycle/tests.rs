//! The lifecycle alone: an engine, a table, request heads, no tower.

use std::time::Duration;

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request};

use super::EditOp;
use crate::token::{Key, KeyRing, Token};
use crate::{
    BackendId, BackendTable, Clock, Engine, FailoverPolicy, Outcome, Reason, StableId, StickyConfig,
};

const T0: u64 = 1_700_000_000_000;

fn config(clock: &Clock) -> StickyConfig {
    StickyConfig::new(KeyRing::new(Key::from_bytes([9; 32]))).clock(clock.clone())
}

fn table(names: &[&'static str]) -> BackendTable<&'static str> {
    let mut t = BackendTable::new();
    for n in names {
        t.insert(*n, (), 0).unwrap();
    }
    t
}

fn with_cookie(engine: &Engine, token: &Token) -> Parts {
    let sealed = engine.codec().unwrap().seal(token);
    let v = format!("sticky={}", sealed.as_str());
    let mut r = Request::new(());
    r.headers_mut()
        .insert(COOKIE, HeaderValue::from_str(&v).unwrap());
    r.into_parts().0
}

fn now_s(clock: &Clock) -> u32 {
    (clock.now_ms() / 1000) as u32
}

/// A pinned request whose backend refuses the connection after our cookie
/// was already stripped from the head.
fn pinned_then_unreachable(
    policy: FailoverPolicy,
) -> (Engine, BackendTable<&'static str>, super::Routed, Token) {
    let clock = Clock::manual(T0);
    let engine = Engine::new(config(&clock).failover(policy));
    let t = table(&["a", "b", "c", "d", "e"]);
    let token = Token::new("c".stable_id(), 4242, now_s(&clock));
    let mut parts = with_cookie(&engine, &token);
    let mut routed = engine.decide(&t, &parts, |_| true);
    assert_eq!(routed.outcome(), Outcome::Pinned);
    routed.prepare_request(&engine, &mut parts.headers);
    assert!(
        parts.headers.get(COOKIE).is_none(),
        "stripped before sending"
    );
    assert!(routed.begin(&engine, &t));
    routed.reroute(&engine, &t, |_| true);
    (engine, t, routed, token)
}

#[test]
fn strict_after_an_unreachable_pinned_backend_rejects_without_a_new_session() {
    let (engine, t, routed, _) = pinned_then_unreachable(FailoverPolicy::Strict);
    assert_eq!(routed.outcome(), Outcome::Rejected(Reason::Unhealthy));
    assert!(routed.is_rejected());
    assert_eq!(routed.issued_token(), None, "no new session, no cookie");
    let st = engine.stats(&t);
    assert_eq!(st.new_sessions(), 0);
    assert_eq!((st.requests(), st.rejected_for(Reason::Unhealthy)), (1, 1));
    let c = t.get_by_id("c".stable_id()).unwrap().status();
    assert_eq!((c.failures(), c.in_flight(), c.requests()), (1, 0, 0));
    assert!(c.is_unhealthy(engine.config().clock_ref().now_ms()));
}

/// How a second replica (its own engine and table, the same key, `policy`)
/// that finds "c" down decides a request carrying `token`.
fn on_another_replica(policy: FailoverPolicy, token: &Token) -> super::Routed {
    let clock = Clock::manual(T0);
    let other = Engine::new(config(&clock).failover(policy));
    let t2 = table(&["a", "b", "c", "d", "e"]);
    t2.get_by_id("c".stable_id())
        .unwrap()
        .status()
        .eject(T0, Duration::from_secs(10));
    other.decide(&t2, &with_cookie(&other, token), |_| true)
}

#[test]
fn redistribute_after_an_unreachable_backend_goes_to_the_deterministic_fallback() {
    let (engine, t, routed, token) = pinned_then_unreachable(FailoverPolicy::Redistribute);
    assert_eq!(routed.outcome(), Outcome::Repinned(Reason::Unhealthy));
    let issued = *routed.issued_token().unwrap();
    assert_eq!(issued.session, token.session, "the same session, re-pinned");
    assert_eq!(Some(issued.backend), routed.backend());
    // A second replica (its own engine and table, same key) that finds "c"
    // down picks the same backend for this token.
    let there = on_another_replica(FailoverPolicy::Redistribute, &token);
    assert_eq!(there.outcome(), Outcome::Repinned(Reason::Unhealthy));
    assert_eq!(there.backend(), routed.backend());
    // Once only: one request, one outcome, on the backend that served it.
    let st = engine.stats(&t);
    assert_eq!(st.requests(), 1);
    assert_eq!((st.pinned(), st.repinned_for(Reason::Unhealthy)), (0, 1));
    let requests: u64 = st.backends().iter().map(|b| b.requests()).sum();
    assert_eq!(requests, 1);
    let served = t.get_by_id(routed.backend().unwrap()).unwrap().status();
    assert_eq!(served.requests(), 1);
}

#[test]
fn temporary_after_an_unreachable_backend_keeps_the_token() {
    let (_, _, routed, token) = pinned_then_unreachable(FailoverPolicy::Temporary);
    assert_eq!(routed.outcome(), Outcome::Temporary(Reason::Unhealthy));
    assert_eq!(routed.issued_token(), None, "the cookie stays pinned home");
    assert_ne!(routed.backend(), Some(token.backend));
    // Served where Redistribute would re-pin: the deterministic fallback a
    // second replica (its own engine and table, same key and policy) that
    // finds "c" down picks for this token, so the session's requests land
    // together while "c" is away.
    let there = on_another_replica(FailoverPolicy::Temporary, &token);
    assert_eq!(there.outcome(), Outcome::Temporary(Reason::Unhealthy));
    assert_eq!(there.issued_token(), None);
    assert!(routed.backend().is_some());
    assert_eq!(there.backend(), routed.backend());
}

#[test]
fn every_unreachable_backend_is_skipped_and_counted_once() {
    let clock = Clock::manual(T0);
    // No ejection: only the request's own memory keeps it off the backends
    // it already tried.
    let engine = Engine::new(config(&clock).ejection(crate::Ejection::disabled()));
    let t = table(&["a", "b", "c"]);
    let (parts, ()) = Request::new(()).into_parts();
    let mut routed = engine.decide(&t, &parts, |_| true);
    assert_eq!(routed.outcome(), Outcome::New);
    let mut seen = vec![routed.backend().unwrap()];
    for _ in 0..2 {
        routed.begin(&engine, &t);
        let next = routed.reroute(&engine, &t, |_| true);
        assert!(next.is_some());
        assert_eq!(routed.outcome(), Outcome::New, "still a new session");
        let b = routed.backend().unwrap();
        assert!(!seen.contains(&b), "tried again: {b}");
        assert_eq!(routed.issued_token().unwrap().backend, b);
        seen.push(b);
    }
    assert_eq!(routed.unreachable_count(), 2);
    // The third backend refuses too: nothing is left.
    routed.begin(&engine, &t);
    assert_eq!(routed.reroute(&engine, &t, |_| true), None);
    assert_eq!(routed.outcome(), Outcome::Rejected(Reason::NoBackend));
    let st = engine.stats(&t);
    assert_eq!(st.requests(), 1, "{st:?}");
    assert_eq!(st.rejected_for(Reason::NoBackend), 1);
    for b in st.backends() {
        assert_eq!((b.requests(), b.new_sessions(), b.failures()), (0, 0, 1));
    }
}

#[test]
fn an_invalid_token_is_counted_once_across_reroutes() {
    let clock = Clock::manual(T0);
    let engine = Engine::new(config(&clock));
    let t = table(&["a", "b", "c"]);
    let mut r = Request::new(());
    r.headers_mut()
        .insert(COOKIE, HeaderValue::from_static("sticky=forged"));
    let parts = r.into_parts().0;
    let mut routed = engine.decide(&t, &parts, |_| true);
    routed.reroute(&engine, &t, |_| true);
    assert!(routed.invalid_token().is_some());
    let st = engine.stats(&t);
    assert_eq!((st.invalid_total(), st.new_sessions()), (1, 1));
}

#[test]
fn a_session_in_use_never_idle_expires_whatever_the_refresh_interval() {
    for (idle, step_ms) in [(10u64, 1000u64), (2, 500)] {
        let clock = Clock::manual(T0);
        // refresh_interval left at its 60 s default, longer than the idle timeout.
        let engine = Engine::new(config(&clock).idle_timeout(Duration::from_secs(idle)));
        assert_eq!(
            engine.config().effective_refresh_interval(),
            Duration::from_secs(idle / 2)
        );
        let t = table(&["a", "b", "c"]);
        let (parts, ()) = Request::new(()).into_parts();
        let first = engine.decide(&t, &parts, |_| true);
        let home = first.backend();
        let mut token = *first.issued_token().unwrap();
        for i in 0..(30_000 / step_ms) {
            clock.advance(Duration::from_millis(step_ms));
            let d = engine.decide(&t, &with_cookie(&engine, &token), |_| true);
            assert_eq!(
                (d.outcome(), d.invalid_token(), d.backend()),
                (Outcome::Pinned, None, home),
                "idle {idle}s, request {i}"
            );
            // The client keeps whatever the response set.
            if let Some(t) = d.issued_token() {
                token = *t;
            }
        }
    }
}

#[test]
fn edits_as_values_do_what_the_header_map_helpers_do() {
    let clock = Clock::manual(T0);
    let engine = Engine::new(config(&clock));
    let t = table(&["a", "b"]);
    let token = Token::new("a".stable_id(), 1, now_s(&clock));
    let mut parts = with_cookie(&engine, &token);
    parts
        .headers
        .append(COOKIE, HeaderValue::from_static("theme=dark"));
    let routed = engine.decide(&t, &parts, |_| true);
    let mut by_edits = parts.headers.clone();
    routed
        .request_edits(&engine, &by_edits)
        .apply(&mut by_edits);
    routed.prepare_request(&engine, &mut parts.headers);
    assert_eq!(by_edits, parts.headers);
    assert_eq!(by_edits[COOKIE], "theme=dark");

    // A new session: Set-Cookie appended beside the application's, private.
    let (fresh, ()) = Request::new(()).into_parts();
    let routed = engine.decide(&t, &fresh, |_| true);
    let mut res = HeaderMap::new();
    res.append(SET_COOKIE, HeaderValue::from_static("app=1"));
    res.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    let edits = routed.response_edits(&engine, &res);
    let ops: Vec<_> = edits.iter().map(|e| (e.op(), e.name().clone())).collect();
    assert_eq!(
        ops,
        [
            (EditOp::Append, SET_COOKIE),
            (EditOp::Insert, CACHE_CONTROL)
        ]
    );
    edits.apply(&mut res);
    assert_eq!(res.get_all(SET_COOKIE).iter().count(), 2);
    assert_eq!(res[CACHE_CONTROL], "private, max-age=60");
    let _ = BackendId::from_u64(0);
}

#[test]
fn a_routed_request_crosses_await_points_and_threads() {
    // Adapters keep it in their futures (axum, the gateway) or in a
    // per-request context (pingora's CTX): it must be Send and Sync.
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<super::Routed>();
    send_sync::<super::Decision>();
    send_sync::<super::HeaderEdits>();
    send_sync::<Engine>();
}

/// The Secure attribute follows the request's transport, decided where the
/// cookie is written: the application's own cookie is left as it is, ours
/// carries `Secure` once, and `secure_over_tls(false)` keeps it off.
#[test]
fn a_request_over_tls_gets_a_secure_cookie_unless_turned_off() {
    use crate::{AffinitySource, CookieConfig};
    let clock = Clock::manual(T0);
    let t = table(&["a", "b"]);
    let issue = |cookie: CookieConfig, over_tls: bool| {
        let engine = Engine::new(config(&clock).source(AffinitySource::cookie(cookie)));
        let (fresh, ()) = Request::new(()).into_parts();
        let mut routed = engine.decide(&t, &fresh, |_| true);
        if over_tls {
            routed.arrived_over_tls();
        }
        assert_eq!(routed.is_over_tls(), over_tls);
        let mut res = HeaderMap::new();
        res.append(SET_COOKIE, HeaderValue::from_static("app=1; Path=/"));
        routed.tag_response(&engine, &mut res);
        let all: Vec<String> = res
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            all[0], "app=1; Path=/",
            "the application's cookie is untouched"
        );
        all[1].clone()
    };
    let ours = issue(CookieConfig::new("sticky"), true);
    assert!(ours.starts_with("sticky="), "{ours}");
    assert_eq!(ours.matches("Secure").count(), 1, "{ours}");
    assert!(!issue(CookieConfig::new("sticky"), false).contains("Secure"));
    let off = CookieConfig::new("sticky").secure_over_tls(false);
    assert!(!issue(off.clone(), true).contains("Secure"));
    // Secure everywhere stays Secure, once, whatever the transport.
    let everywhere = CookieConfig::new("sticky").secure(true);
    assert_eq!(
        issue(everywhere.clone(), false).matches("Secure").count(),
        1
    );
    assert_eq!(issue(everywhere, true).matches("Secure").count(), 1);
}
