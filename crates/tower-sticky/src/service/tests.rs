//! The tower service end to end, with `tower-test` mock backends fed through a
//! channel `Discover`, polled synchronously on a mock task, and a manual clock.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::task::Poll;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower::discover::Change;
use tower_test::mock;

use super::Sticky;
use crate::token::{InvalidToken, Key, KeyRing, Token, TokenCodec, TOKEN_LEN, VERSION};
use crate::{
    AffinityKey, AffinitySource, BackendState, Clock, CookieConfig, CookieLifetime, Ejection,
    FailoverPolicy, Outcome, PeerAddr, Reason, SameSite, StableId, Stats, StickyConfig,
};

type Mock = mock::Mock<Request<String>, Response<String>>;
type Handle = mock::Handle<Request<String>, Response<String>>;
type Change_ = Result<Change<&'static str, Mock>, Infallible>;
type Svc = Sticky<UnboundedReceiverStream<Change_>, String>;

/// Start of the manual clock: 2023-11-14, milliseconds.
const T0: u64 = 1_700_000_000_000;

fn ring() -> KeyRing {
    KeyRing::new(Key::from_bytes([7; 32]))
}

/// What one request turned into.
#[derive(Debug)]
struct Served {
    /// The backend that got the request, if any.
    backend: Option<&'static str>,
    status: StatusCode,
    /// From the response extensions.
    outcome: Outcome,
    /// Our token, when the response issued one (Set-Cookie or response header).
    token: Option<String>,
    /// The response headers.
    headers: HeaderMap,
    /// The request headers the backend saw.
    seen: HeaderMap,
    /// The outcome in the request extensions the backend saw.
    seen_outcome: Option<Outcome>,
}

impl Served {
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn seen_cookies(&self) -> Vec<String> {
        self.seen
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn token(&self) -> &str {
        self.token.as_deref().expect("a token was issued")
    }
}

/// A `Sticky` over named mock backends, polled on a mock task.
struct Harness {
    svc: mock::Spawn<Svc>,
    tx: mpsc::UnboundedSender<Change_>,
    handles: Vec<(&'static str, Handle)>,
    /// Status each backend answers with (200 unless scripted).
    status: HashMap<&'static str, StatusCode>,
    /// Whether backends add their own `Set-Cookie: app=1`.
    app_cookie: bool,
    clock: Clock,
    /// Where our token travels: a cookie name, or a header name.
    token_name: String,
    header_source: bool,
}

impl Harness {
    fn new(names: &[&'static str]) -> Self {
        Self::with(names, |c| c)
    }

    /// A harness whose config is `f(base)`, base having a fixed key ring and
    /// the manual clock.
    fn with(names: &[&'static str], f: impl FnOnce(StickyConfig) -> StickyConfig) -> Self {
        Self::with_ring(names, ring(), f)
    }

    fn with_ring(
        names: &[&'static str],
        ring: KeyRing,
        f: impl FnOnce(StickyConfig) -> StickyConfig,
    ) -> Self {
        let clock = Clock::manual(T0);
        let config = f(StickyConfig::new(ring).clock(clock.clone()));
        let source = &config.source;
        let token_name = source.token_name().unwrap_or("sticky").to_owned();
        let header_source = matches!(source.0, crate::source::Source::Header(_));
        let (tx, rx) = mpsc::unbounded_channel();
        let svc = Sticky::new(UnboundedReceiverStream::new(rx), config);
        let mut h = Self {
            svc: mock::Spawn::new(svc),
            tx,
            handles: Vec::new(),
            status: HashMap::new(),
            app_cookie: false,
            clock,
            token_name,
            header_source,
        };
        for n in names {
            h.add(n);
        }
        h.ready();
        h
    }

    /// Discovery inserts a backend (replacing any under the same name).
    fn add(&mut self, name: &'static str) {
        let (svc, handle) = mock::pair();
        self.handles.retain(|(n, _)| *n != name);
        self.handles.push((name, handle));
        self.tx.send(Ok(Change::Insert(name, svc))).unwrap();
    }

    /// Discovery removes a backend.
    fn remove(&mut self, name: &'static str) {
        self.tx.send(Ok(Change::Remove(name))).unwrap();
    }

    fn handle(&mut self, name: &str) -> &mut Handle {
        &mut self.handles.iter_mut().find(|(n, _)| *n == name).unwrap().1
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Drives discovery and readiness; the service must be ready.
    fn ready(&mut self) {
        match self.svc.poll_ready() {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => panic!("poll_ready failed: {e}"),
            Poll::Pending => panic!("sticky service not ready"),
        }
    }

    fn stats(&self) -> Stats<&'static str> {
        self.svc.get_ref().stats()
    }

    fn state(&self, name: &'static str) -> Option<BackendState> {
        self.stats()
            .backends()
            .iter()
            .find(|b| *b.key() == name)
            .map(|b| b.state())
    }

    /// A request carrying `token` in our cookie (or header).
    fn request(&self, token: Option<&str>) -> Request<String> {
        let mut req = Request::new(String::new());
        if let Some(t) = token {
            if self.header_source {
                let name = HeaderName::from_bytes(self.token_name.as_bytes()).unwrap();
                req.headers_mut()
                    .insert(name, HeaderValue::from_str(t).unwrap());
            } else {
                let c = format!("{}={t}", self.token_name);
                req.headers_mut()
                    .append(COOKIE, HeaderValue::from_str(&c).unwrap());
            }
        }
        req
    }

    fn get(&mut self, token: Option<&str>) -> Served {
        let req = self.request(token);
        self.send(req)
    }

    /// A request with our token given as raw header bytes.
    fn get_raw(&mut self, raw: &[u8]) -> Served {
        let mut v = format!("{}=", self.token_name).into_bytes();
        v.extend_from_slice(raw);
        let mut req = Request::new(String::new());
        req.headers_mut()
            .append(COOKIE, HeaderValue::from_bytes(&v).unwrap());
        self.send(req)
    }

    /// `poll_ready`, `call`, answer from whichever backend got the request,
    /// then poll the response future once.
    fn send(&mut self, req: Request<String>) -> Served {
        self.ready();
        let mut fut = tokio_test::task::spawn(self.svc.call(req));
        let mut got = None;
        for (name, handle) in &mut self.handles {
            if let Poll::Ready(Some((req, respond))) = handle.poll_request() {
                assert!(got.is_none(), "two backends got one request");
                let status = self.status.get(name).copied().unwrap_or(StatusCode::OK);
                let mut res = Response::builder().status(status);
                if self.app_cookie {
                    res = res.header(SET_COOKIE, "app=1; Path=/");
                }
                respond.send_response(res.body(name.to_string()).unwrap());
                got = Some((*name, req));
            }
        }
        let res = match fut.poll() {
            Poll::Ready(Ok(res)) => res,
            Poll::Ready(Err(e)) => panic!("request failed: {e}"),
            Poll::Pending => panic!("response future pending after the backend answered"),
        };
        let outcome = *res
            .extensions()
            .get::<Outcome>()
            .expect("outcome in response extensions");
        let token = if self.header_source {
            res.headers()
                .get(self.token_name.as_str())
                .map(|v| v.to_str().unwrap().to_owned())
        } else {
            let prefix = format!("{}=", self.token_name);
            res.headers()
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()?.strip_prefix(prefix.as_str()))
                .map(|rest| rest.split(';').next().unwrap().to_owned())
                .next()
        };
        let (backend, seen, seen_outcome) = match got {
            Some((name, req)) => {
                assert_eq!(
                    res.body().get_ref(),
                    name,
                    "response body names the backend"
                );
                let seen_outcome = req.extensions().get::<Outcome>().copied();
                assert_eq!(seen_outcome, Some(outcome), "backend saw the same outcome");
                (Some(name), req.headers().clone(), seen_outcome)
            }
            None => (None, HeaderMap::new(), None),
        };
        Served {
            backend,
            status: res.status(),
            outcome,
            token,
            headers: res.headers().clone(),
            seen,
            seen_outcome,
        }
    }

    /// `n` new sessions: (backend, token) each.
    fn sessions(&mut self, n: usize) -> Vec<(&'static str, String)> {
        (0..n)
            .map(|_| {
                let s = self.get(None);
                assert_eq!(s.outcome, Outcome::New);
                (s.backend.unwrap(), s.token().to_owned())
            })
            .collect()
    }

    /// New sessions until one lands on `name`; its token.
    fn session_on(&mut self, name: &str) -> String {
        for _ in 0..1000 {
            let s = self.get(None);
            if s.backend == Some(name) {
                return s.token().to_owned();
            }
        }
        panic!("no new session landed on {name}");
    }

    /// Opens one of our tokens with this layer's codec.
    fn open(&self, token: &str) -> Token {
        self.svc
            .get_ref()
            .engine()
            .codec()
            .unwrap()
            .open(token.as_bytes())
            .unwrap()
    }
}

fn count_by_backend(sessions: &[(&'static str, String)]) -> HashMap<&'static str, usize> {
    let mut m = HashMap::new();
    for (b, _) in sessions {
        *m.entry(*b).or_default() += 1;
    }
    m
}

// ---------------------------------------------------------------- pinning

#[test]
fn pinned_backend_gets_every_request_and_never_sees_our_cookie() {
    let mut h = Harness::new(&["a", "b", "c"]);
    let first = h.get(None);
    assert_eq!(first.outcome, Outcome::New);
    let home = first.backend.unwrap();
    let tok = first.token().to_owned();
    assert_eq!(h.open(&tok).backend, home.stable_id());
    for i in 0..50 {
        let mut req = Request::new(String::new());
        if i % 2 == 0 {
            // One Cookie header (HTTP/1.1).
            let v = format!("app=1; sticky={tok}; theme=dark");
            req.headers_mut()
                .append(COOKIE, HeaderValue::from_str(&v).unwrap());
        } else {
            // One header per cookie (HTTP/2).
            for v in [
                "app=1".to_owned(),
                format!("sticky={tok}"),
                "theme=dark".into(),
            ] {
                req.headers_mut()
                    .append(COOKIE, HeaderValue::from_str(&v).unwrap());
            }
        }
        let s = h.send(req);
        assert_eq!(s.backend, Some(home));
        assert_eq!(s.outcome, Outcome::Pinned);
        assert_eq!(s.token, None);
        assert!(
            s.headers.get(SET_COOKIE).is_none(),
            "no Set-Cookie re-issued"
        );
        assert!(s.headers.get(CACHE_CONTROL).is_none());
        let seen = s.seen_cookies().join("; ");
        assert!(
            !seen.contains("sticky="),
            "our cookie reached the backend: {seen}"
        );
        assert!(
            seen.contains("app=1") && seen.contains("theme=dark"),
            "{seen}"
        );
    }
    let st = h.stats();
    assert_eq!((st.new_sessions(), st.pinned()), (1, 50));
    let b = st.backends().iter().find(|b| *b.key() == home).unwrap();
    assert_eq!(
        (b.pinned_hits(), b.new_sessions(), b.requests()),
        (50, 1, 51)
    );
    assert_eq!(b.in_flight(), 0);
}

#[test]
fn strip_token_false_keeps_our_cookie() {
    let mut h = Harness::with(&["a", "b"], |c| c.strip_token(false));
    let tok = h.get(None).token().to_owned();
    let mut req = h.request(Some(&tok));
    req.headers_mut()
        .append(COOKIE, HeaderValue::from_static("app=1"));
    let s = h.send(req);
    assert_eq!(s.outcome, Outcome::Pinned);
    assert_eq!(s.seen_cookies(), [format!("sticky={tok}"), "app=1".into()]);
}

// ---------------------------------------------------------------- new sessions and the cookie

#[test]
fn new_session_cookie_has_the_configured_attributes() {
    let cookie = CookieConfig::new("sid")
        .path("/app")
        .domain("example.com")
        .same_site(SameSite::None)
        .lifetime(CookieLifetime::Permanent(Duration::from_secs(3600)));
    let mut h = Harness::with(&["a", "b"], |c| c.source(AffinitySource::cookie(cookie)));
    let s = h.get(None);
    assert_eq!(s.outcome, Outcome::New);
    let set = s.set_cookies();
    assert_eq!(set.len(), 1);
    let c = cookie::Cookie::parse(set[0].as_str()).unwrap();
    assert_eq!(c.name(), "sid");
    assert_eq!(c.value().len(), TOKEN_LEN);
    assert_eq!(c.path(), Some("/app"));
    assert_eq!(c.domain(), Some("example.com"));
    assert_eq!(c.secure(), Some(true), "SameSite=None forces Secure");
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(c.same_site(), Some(cookie::SameSite::None));
    assert_eq!(c.max_age(), Some(cookie::time::Duration::seconds(3600)));
    assert_eq!(s.headers.get(CACHE_CONTROL).unwrap(), "private");
    // The token names the backend that served, by stable id.
    let t = h.open(c.value());
    assert_eq!(t.backend, s.backend.unwrap().stable_id());
    assert_eq!(t.issued, (T0 / 1000) as u32);

    let cookie = CookieConfig::new("s2")
        .secure(true)
        .http_only(false)
        .same_site(SameSite::Strict);
    let mut h = Harness::with(&["a"], |c| c.source(AffinitySource::cookie(cookie)));
    let set = h.get(None).set_cookies();
    let c = cookie::Cookie::parse(set[0].as_str()).unwrap();
    assert_eq!(c.name(), "s2");
    assert_eq!(c.secure(), Some(true));
    assert_eq!(c.http_only(), None);
    assert_eq!(c.same_site(), Some(cookie::SameSite::Strict));
    assert_eq!(c.max_age(), None, "session lifetime: no Max-Age");

    // Defaults: sticky, Path=/, HttpOnly, SameSite=Lax, not Secure.
    let mut h = Harness::new(&["a"]);
    let set = h.get(None).set_cookies();
    let c = cookie::Cookie::parse(set[0].as_str()).unwrap();
    assert_eq!(c.name(), "sticky");
    assert_eq!(c.path(), Some("/"));
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(c.secure(), None);
    assert_eq!(c.same_site(), Some(cookie::SameSite::Lax));
}

#[test]
fn app_set_cookie_survives_next_to_ours() {
    let mut h = Harness::new(&["a", "b"]);
    h.app_cookie = true;
    let s = h.get(None);
    let set = s.set_cookies();
    assert_eq!(set.len(), 2, "{set:?}");
    assert!(set.iter().any(|c| c == "app=1; Path=/"));
    assert!(set.iter().any(|c| c.starts_with("sticky=")));
    assert_eq!(s.headers.get(CACHE_CONTROL).unwrap(), "private");
    // Pinned: the app's cookie alone, untouched.
    let p = h.get(Some(s.token()));
    assert_eq!(p.outcome, Outcome::Pinned);
    assert_eq!(p.set_cookies(), ["app=1; Path=/"]);
}

// ---------------------------------------------------------------- invalid tokens

/// Sends `raw` as our cookie and checks it is treated as no token, counted
/// under `reason`, and stripped.
fn falls_back(h: &mut Harness, raw: &[u8], reason: InvalidToken) {
    let before = h.stats().invalid_for(reason);
    let s = h.get_raw(raw);
    assert_eq!(s.outcome, Outcome::New, "{reason}");
    assert!(s.token.is_some(), "a fresh token is issued after {reason}");
    assert!(
        s.seen_cookies().is_empty(),
        "the bad cookie is stripped too"
    );
    assert_eq!(
        h.stats().invalid_for(reason),
        before + 1,
        "{reason} counted"
    );
}

#[test]
fn invalid_tokens_fall_back_to_a_new_session_and_are_counted() {
    let mut h = Harness::with(&["a", "b", "c"], |c| {
        c.absolute_timeout(Duration::from_secs(3600))
            .idle_timeout(Duration::from_secs(600))
            .refresh_interval(Duration::from_secs(60))
    });
    let good = h.get(None).token().to_owned();
    let kid = ring().sealing().id();

    // Forged: a well-formed token under our key id that no key sealed.
    let mut raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
    raw.fill(0x5a);
    raw[0] = VERSION;
    raw[1] = kid;
    falls_back(
        &mut h,
        URL_SAFE_NO_PAD.encode(raw).as_bytes(),
        InvalidToken::Forged,
    );

    // Edited: one character of the ciphertext changed.
    let mut edited = good.clone().into_bytes();
    let at = TOKEN_LEN - 10;
    edited[at] = if edited[at] == b'A' { b'B' } else { b'A' };
    falls_back(&mut h, &edited, InvalidToken::Forged);

    // Sealed by our key for another cookie name: the name is bound in.
    let other_name = TokenCodec::new(ring(), "other").seal(&h.open(&good));
    falls_back(&mut h, other_name.as_str().as_bytes(), InvalidToken::Forged);

    // Wrong key.
    let stranger = Key::from_bytes([9; 32]);
    assert_ne!(stranger.id(), kid);
    let wrong = TokenCodec::new(KeyRing::new(stranger), "sticky").seal(&h.open(&good));
    falls_back(&mut h, wrong.as_str().as_bytes(), InvalidToken::UnknownKey);

    // Truncated, oversized, not base64, not UTF-8, unknown version.
    falls_back(&mut h, &good.as_bytes()[..40], InvalidToken::Truncated);
    falls_back(&mut h, b"", InvalidToken::Truncated);
    falls_back(
        &mut h,
        format!("{good}AAAA").as_bytes(),
        InvalidToken::Oversized,
    );
    falls_back(&mut h, &[b'%'; TOKEN_LEN], InvalidToken::Malformed);
    falls_back(&mut h, &[0xff; TOKEN_LEN], InvalidToken::Malformed);
    let mut raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
    raw[0] = VERSION + 1;
    falls_back(
        &mut h,
        URL_SAFE_NO_PAD.encode(&raw).as_bytes(),
        InvalidToken::UnknownVersion,
    );

    // The good token still works; nothing above was trusted.
    assert_eq!(h.get(Some(&good)).outcome, Outcome::Pinned);
    assert_eq!(h.stats().invalid_total(), 10);
}

#[test]
fn expired_tokens_fall_back_and_are_counted() {
    // Absolute: even a token refreshed a moment ago is over after the absolute timeout.
    let mut h = Harness::with(&["a", "b", "c"], |c| {
        c.absolute_timeout(Duration::from_secs(3600))
            .idle_timeout(Duration::from_secs(600))
            .refresh_interval(Duration::from_secs(60))
    });
    let mut tok = h.get(None).token().to_owned();
    for _ in 0..7 {
        h.advance(Duration::from_secs(500));
        let s = h.get(Some(&tok));
        assert_eq!(s.outcome, Outcome::Pinned);
        tok = s.token().to_owned();
    }
    // 3500 s in; exactly at the timeout still valid, one second later not.
    h.advance(Duration::from_secs(100));
    assert_eq!(h.get(Some(&tok)).outcome, Outcome::Pinned);
    h.advance(Duration::from_secs(1));
    falls_back(&mut h, tok.as_bytes(), InvalidToken::Expired);

    // Idle: unused for longer than the idle timeout.
    let mut h = Harness::with(&["a", "b"], |c| c.idle_timeout(Duration::from_secs(600)));
    let tok = h.get(None).token().to_owned();
    h.advance(Duration::from_secs(600));
    let s = h.get(Some(&tok));
    assert_eq!(s.outcome, Outcome::Pinned);
    let refreshed = s.token().to_owned();
    assert_eq!(h.open(&refreshed).refreshed, (T0 / 1000) as u32 + 600);
    h.advance(Duration::from_secs(1));
    falls_back(&mut h, tok.as_bytes(), InvalidToken::IdleExpired);
    // The token refreshed a second ago is still good.
    assert_eq!(h.get(Some(&refreshed)).outcome, Outcome::Pinned);
}

#[test]
fn idle_refresh_reissues_at_most_once_per_interval() {
    let mut h = Harness::with(&["a", "b", "c"], |c| {
        c.idle_timeout(Duration::from_secs(600))
            .refresh_interval(Duration::from_secs(60))
    });
    let s0 = h.get(None);
    let home = s0.backend.unwrap();
    let tok0 = s0.token().to_owned();
    let t0 = h.open(&tok0);
    h.advance(Duration::from_secs(30));
    let s = h.get(Some(&tok0));
    assert_eq!((s.outcome, s.token.as_deref()), (Outcome::Pinned, None));
    h.advance(Duration::from_secs(31)); // 61 s
    let s = h.get(Some(&tok0));
    assert_eq!(s.outcome, Outcome::Pinned);
    assert_eq!(s.headers.get(CACHE_CONTROL).unwrap(), "private");
    let tok1 = s.token().to_owned();
    let t1 = h.open(&tok1);
    assert_eq!(t1.backend, t0.backend);
    assert_eq!(t1.session, t0.session);
    assert_eq!(t1.issued, t0.issued, "refresh keeps the absolute start");
    assert_eq!(t1.refreshed, t0.refreshed + 61);
    // Using the refreshed token within the interval re-issues nothing.
    for _ in 0..59 {
        h.advance(Duration::from_secs(1));
        let s = h.get(Some(&tok1));
        assert_eq!((s.outcome, s.token.as_deref()), (Outcome::Pinned, None));
    }
    h.advance(Duration::from_secs(1)); // 121 s: 60 s after the refresh
    assert!(h.get(Some(&tok1)).token.is_some());
    // A session used every 50 s outlives the idle timeout many times over.
    let mut tok = tok1;
    for _ in 0..40 {
        h.advance(Duration::from_secs(50));
        let s = h.get(Some(&tok));
        assert_eq!(s.outcome, Outcome::Pinned);
        assert_eq!(s.backend, Some(home));
        if let Some(t) = s.token {
            tok = t;
        }
    }
    assert_eq!(h.stats().new_sessions(), 1);
}

// ---------------------------------------------------------------- key rotation

#[test]
fn key_rotation_old_key_opens_new_key_seals() {
    let old = Key::from_bytes([1; 32]);
    let new = Key::from_bytes([2; 32]);
    assert_ne!(old.id(), new.id());
    let names = ["a", "b", "c", "d"];
    let mut before = Harness::with_ring(&names, KeyRing::new(old.clone()), |c| c);
    let old_sessions = before.sessions(20);

    let rotated = KeyRing::new(new.clone()).with_opening_key(old.clone());
    let mut after = Harness::with_ring(&names, rotated, |c| {
        c.idle_timeout(Duration::from_secs(3600))
            .refresh_interval(Duration::from_secs(60))
    });
    let key_id = |tok: &str| URL_SAFE_NO_PAD.decode(tok).unwrap()[1];
    for (home, tok) in &old_sessions {
        assert_eq!(key_id(tok), old.id());
        let s = after.get(Some(tok));
        assert_eq!(s.outcome, Outcome::Pinned, "old key still opens");
        assert_eq!(s.backend, Some(*home));
    }
    // Every token the rotated layer issues carries the new key: new sessions...
    for (_, tok) in after.sessions(20) {
        assert_eq!(key_id(&tok), new.id());
    }
    // ...and refreshes of old-key sessions.
    after.advance(Duration::from_secs(61));
    for (home, tok) in &old_sessions {
        let s = after.get(Some(tok));
        assert_eq!(s.backend, Some(*home));
        assert_eq!(key_id(s.token()), new.id());
    }
    // A layer that dropped the old key no longer trusts old tokens.
    let mut only_new = Harness::with_ring(&names, KeyRing::new(new), |c| c);
    let s = only_new.get(Some(&old_sessions[0].1));
    assert_eq!(s.outcome, Outcome::New);
    assert_eq!(only_new.stats().invalid_for(InvalidToken::UnknownKey), 1);
}

// ---------------------------------------------------------------- removal and failover

#[test]
fn removed_backend_sessions_move_deterministically_across_replicas() {
    let names = ["a", "b", "c", "d", "e"];
    let mut r1 = Harness::new(&names);
    let mut r2 = Harness::new(&names);
    let sessions = r1.sessions(200);
    let victim = "c";
    let on_victim = sessions.iter().filter(|(b, _)| *b == victim).count();
    assert!(on_victim > 10, "too few sessions on {victim}: {on_victim}");
    r1.remove(victim);
    r2.remove(victim);
    let mut moved_to = HashSet::new();
    for (home, tok) in &sessions {
        let a = r1.get(Some(tok));
        let b = r2.get(Some(tok));
        assert_eq!(a.backend, b.backend, "replicas disagree");
        if *home == victim {
            assert_eq!(a.outcome, Outcome::Repinned(Reason::Removed));
            assert_eq!(b.outcome, Outcome::Repinned(Reason::Removed));
            let new_home = a.backend.unwrap();
            assert_ne!(new_home, victim);
            moved_to.insert(new_home);
            // A new cookie naming the new backend, same session.
            for s in [&a, &b] {
                let t = r1.open(s.token());
                assert_eq!(t.backend, new_home.stable_id());
                assert_eq!(t.session, r1.open(tok).session);
            }
            // ...which is then pinned there.
            let again = r2.get(Some(a.token()));
            assert_eq!(
                (again.outcome, again.backend),
                (Outcome::Pinned, Some(new_home))
            );
        } else {
            // Untouched sessions stay, on the replica that never saw them too.
            assert_eq!((a.outcome, a.backend), (Outcome::Pinned, Some(*home)));
            assert_eq!((b.outcome, b.backend), (Outcome::Pinned, Some(*home)));
            assert!(a.token.is_none() && b.token.is_none());
        }
    }
    assert!(
        moved_to.len() > 1,
        "displaced sessions spread: {moved_to:?}"
    );
    assert_eq!(r1.stats().repinned_for(Reason::Removed), on_victim as u64);
    assert_eq!(r2.stats().repinned_for(Reason::Removed), on_victim as u64);
}

#[test]
fn temporary_keeps_the_cookie_and_returns_home() {
    let mut h = Harness::with(&["a", "b", "c"], |c| c.failover(FailoverPolicy::Temporary));
    let tok = h.session_on("b");
    h.remove("b");
    let mut elsewhere = None;
    for _ in 0..10 {
        let s = h.get(Some(&tok));
        assert_eq!(s.outcome, Outcome::Temporary(Reason::Removed));
        assert_eq!(s.token, None);
        assert!(s.headers.get(SET_COOKIE).is_none(), "the cookie is kept");
        assert_ne!(s.backend, Some("b"));
        // Always the same deterministic fallback.
        assert!(elsewhere.is_none() || elsewhere == s.backend);
        elsewhere = s.backend;
    }
    assert_eq!(h.stats().temporary_for(Reason::Removed), 10);
    h.add("b");
    let s = h.get(Some(&tok));
    assert_eq!((s.outcome, s.backend), (Outcome::Pinned, Some("b")));
}

#[test]
fn temporary_during_ejection_returns_after_cool_down() {
    let mut h = Harness::with(&["a", "b", "c"], |c| {
        c.failover(FailoverPolicy::Temporary)
            .ejection(Ejection::after(2, Duration::from_secs(10)))
    });
    let tok = h.session_on("a");
    h.status.insert("a", StatusCode::BAD_GATEWAY);
    for _ in 0..2 {
        assert_eq!(h.get(Some(&tok)).backend, Some("a"));
    }
    h.status.remove("a");
    let s = h.get(Some(&tok));
    assert_eq!(s.outcome, Outcome::Temporary(Reason::Unhealthy));
    assert!(s.token.is_none());
    h.advance(Duration::from_secs(10));
    let s = h.get(Some(&tok));
    assert_eq!((s.outcome, s.backend), (Outcome::Pinned, Some("a")));
}

#[test]
fn strict_answers_503_without_calling_a_backend() {
    let mut h = Harness::with(&["a", "b", "c"], |c| c.failover(FailoverPolicy::Strict));
    let tok = h.session_on("b");
    h.remove("b");
    let s = h.get(Some(&tok));
    assert_eq!(s.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.backend, None, "no backend was called");
    assert_eq!(s.outcome, Outcome::Rejected(Reason::Removed));
    assert!(s.headers.get(SET_COOKIE).is_none());
    assert_eq!(h.stats().rejected_for(Reason::Removed), 1);
    // Other sessions and new ones are served as usual.
    assert_eq!(h.get(None).outcome, Outcome::New);
}

// ---------------------------------------------------------------- draining

#[test]
fn draining_keeps_pinned_sessions_and_takes_no_new_ones() {
    let mut h = Harness::new(&["a", "b", "c"]);
    let sessions = h.sessions(30);
    let on_b: Vec<_> = sessions.iter().filter(|(b, _)| *b == "b").collect();
    assert!(!on_b.is_empty());
    assert!(h.svc.get_ref().drain(&"b"));
    assert_eq!(h.state("b"), Some(BackendState::Draining));
    for (_, tok) in &on_b {
        let s = h.get(Some(tok));
        assert_eq!((s.outcome, s.backend), (Outcome::Pinned, Some("b")));
    }
    let fresh = h.sessions(300);
    assert_eq!(
        count_by_backend(&fresh).get("b"),
        None,
        "a draining backend took a new session"
    );
    // The operator sees what still reaches it.
    let b = h
        .stats()
        .backends()
        .iter()
        .find(|b| *b.key() == "b")
        .unwrap()
        .clone();
    assert_eq!(b.pinned_hits(), on_b.len() as u64);
    assert!(h.svc.get_ref().activate(&"b"));
    assert_eq!(h.state("b"), Some(BackendState::Active));
    let fresh = h.sessions(300);
    assert!(count_by_backend(&fresh).get("b").copied().unwrap_or(0) > 50);
}

// ---------------------------------------------------------------- passive health

#[test]
fn ejection_after_consecutive_5xx_and_readmission_after_cool_down() {
    let mut h = Harness::with(&["a", "b", "c"], |c| {
        c.ejection(Ejection::after(3, Duration::from_secs(10)))
    });
    let tok = h.session_on("a");
    // Failures that are not consecutive do not eject.
    h.status.insert("a", StatusCode::INTERNAL_SERVER_ERROR);
    h.get(Some(&tok));
    h.get(Some(&tok));
    h.status.remove("a");
    h.get(Some(&tok));
    h.status.insert("a", StatusCode::SERVICE_UNAVAILABLE);
    h.get(Some(&tok));
    h.get(Some(&tok));
    assert_eq!(h.state("a"), Some(BackendState::Active));
    // The third in a row does.
    let s = h.get(Some(&tok));
    assert_eq!(
        (s.backend, s.status),
        (Some("a"), StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(h.state("a"), Some(BackendState::Ejected));
    let a = h
        .stats()
        .backends()
        .iter()
        .find(|b| *b.key() == "a")
        .unwrap()
        .clone();
    assert_eq!((a.ejections(), a.failures()), (1, 5));
    // Its session fails over; no new session goes there.
    let s = h.get(Some(&tok));
    assert_eq!(s.outcome, Outcome::Repinned(Reason::Unhealthy));
    assert_ne!(s.backend, Some("a"));
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(count_by_backend(&h.sessions(200)).get("a"), None);
    // Cool-down over: re-admitted, the old cookie is honoured again.
    h.status.remove("a");
    h.advance(Duration::from_secs(9));
    assert_eq!(h.state("a"), Some(BackendState::Ejected));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.state("a"), Some(BackendState::Active));
    let s = h.get(Some(&tok));
    assert_eq!((s.outcome, s.backend), (Outcome::Pinned, Some("a")));
    assert!(
        count_by_backend(&h.sessions(300))
            .get("a")
            .copied()
            .unwrap_or(0)
            > 50
    );
}

// ---------------------------------------------------------------- slow start

#[test]
fn slow_start_ramps_a_new_backends_share() {
    let window = Duration::from_secs(100);
    let mut h = Harness::with(&["a", "b", "c", "d"], |c| c.slow_start(window));
    h.advance(window);
    h.add("e");
    h.advance(window / 10);
    let early = count_by_backend(&h.sessions(1000));
    let young = early.get("e").copied().unwrap_or(0);
    assert!(
        young < 1000 / 5 / 4,
        "young backend got {young} of 1000 at 10% of the window"
    );
    h.advance(window);
    // After the window it is fully ramped and, holding the fewest sessions,
    // takes new ones first until it has caught up (placement balances the
    // sessions held, not requests in flight): at least its fair share of
    // 200, and most of the first 100.
    let first = count_by_backend(&h.sessions(100));
    let caught_up = first.get("e").copied().unwrap_or(0);
    assert!(
        caught_up > 90,
        "e got {caught_up} of the first 100 after the window"
    );
    let late = count_by_backend(&h.sessions(900));
    let grown = caught_up + late.get("e").copied().unwrap_or(0);
    assert!(grown >= 130, "after the window e got {grown} of 1000");
    // And then its share: every backend ends holding about as many.
    let total: usize = ["a", "b", "c", "d"]
        .iter()
        .map(|b| {
            early.get(b).copied().unwrap_or(0)
                + first.get(b).copied().unwrap_or(0)
                + late.get(b).copied().unwrap_or(0)
        })
        .max()
        .unwrap();
    let e_total = young + grown;
    assert!(
        e_total * 100 >= total * 95,
        "e holds {e_total}, the fullest {total}"
    );
}

// ---------------------------------------------------------------- removal grace

#[test]
fn removal_grace_keeps_pinned_sessions_then_repins() {
    let mut h = Harness::with(&["a", "b", "c"], |c| {
        c.removal_grace(Duration::from_secs(30))
    });
    let sessions = h.sessions(30);
    let on_b: Vec<_> = sessions
        .iter()
        .filter(|(b, _)| *b == "b")
        .cloned()
        .collect();
    assert!(!on_b.is_empty());
    h.remove("b");
    h.ready(); // the layer learns of the removal now
    h.advance(Duration::from_secs(10));
    for (_, tok) in &on_b {
        let s = h.get(Some(tok));
        assert_eq!((s.outcome, s.backend), (Outcome::Pinned, Some("b")));
    }
    assert_eq!(h.state("b"), Some(BackendState::Removed));
    assert_eq!(count_by_backend(&h.sessions(300)).get("b"), None);
    h.advance(Duration::from_secs(20)); // grace over
    for (_, tok) in &on_b {
        let s = h.get(Some(tok));
        assert_eq!(s.outcome, Outcome::Repinned(Reason::Removed));
        assert_ne!(s.backend, Some("b"));
        assert!(s.token.is_some());
    }
    assert_eq!(h.state("b"), None, "dropped from the table after the grace");
}

#[test]
fn rediscovered_within_grace_is_back_in_service() {
    let mut h = Harness::with(&["a", "b"], |c| c.removal_grace(Duration::from_secs(30)));
    let tok = h.session_on("b");
    h.remove("b");
    h.advance(Duration::from_secs(5));
    assert_eq!(h.get(Some(&tok)).backend, Some("b"));
    h.add("b");
    h.advance(Duration::from_secs(60));
    let s = h.get(Some(&tok));
    assert_eq!((s.outcome, s.backend), (Outcome::Pinned, Some("b")));
    assert_eq!(h.state("b"), Some(BackendState::Active));
    assert!(count_by_backend(&h.sessions(100)).contains_key("b"));
}

// ---------------------------------------------------------------- readiness

#[test]
fn pinned_but_not_ready_is_served_temporarily_without_changing_the_cookie() {
    let mut h = Harness::new(&["a", "b", "c"]);
    let tok = h.session_on("a");
    h.handle("a").allow(0);
    for _ in 0..5 {
        let s = h.get(Some(&tok));
        assert_eq!(s.outcome, Outcome::Temporary(Reason::NotReady));
        assert_ne!(s.backend, Some("a"));
        assert!(s.token.is_none() && s.headers.get(SET_COOKIE).is_none());
    }
    h.handle("a").allow(u64::MAX);
    let s = h.get(Some(&tok));
    assert_eq!((s.outcome, s.backend), (Outcome::Pinned, Some("a")));
    assert_eq!(h.stats().temporary_for(Reason::NotReady), 5);
}

#[test]
fn pinned_but_not_ready_is_rejected_under_strict() {
    let mut h = Harness::with(&["a", "b", "c"], |c| c.failover(FailoverPolicy::Strict));
    let tok = h.session_on("a");
    h.handle("a").allow(0);
    let s = h.get(Some(&tok));
    assert_eq!(s.outcome, Outcome::Rejected(Reason::NotReady));
    assert_eq!(s.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.backend, None);
    h.handle("a").allow(u64::MAX);
    assert_eq!(h.get(Some(&tok)).outcome, Outcome::Pinned);
}

#[test]
fn backend_failing_readiness_is_removed_and_its_sessions_fail_over() {
    let mut h = Harness::new(&["a", "b", "c"]);
    let tok = h.session_on("b");
    h.handle("b").send_error("connection refused");
    let s = h.get(Some(&tok));
    assert_eq!(s.outcome, Outcome::Repinned(Reason::Removed));
    assert_ne!(s.backend, Some("b"));
    assert!(s.token.is_some());
    assert_eq!(h.state("b"), None, "the failed backend left the table");
    assert_eq!(count_by_backend(&h.sessions(100)).get("b"), None);
}

// ---------------------------------------------------------------- other sources

#[test]
fn header_source_reads_and_answers_in_the_same_header() {
    let name = HeaderName::from_static("x-session-affinity");
    let mut h = Harness::with(&["a", "b", "c"], |c| {
        c.source(AffinitySource::header(name.clone()))
    });
    let s = h.get(None);
    assert_eq!(s.outcome, Outcome::New);
    assert!(
        s.headers.get(SET_COOKIE).is_none(),
        "no cookie for the header source"
    );
    assert_eq!(s.headers.get(CACHE_CONTROL).unwrap(), "private");
    let tok = s.token().to_owned();
    assert_eq!(tok.len(), TOKEN_LEN);
    // A token bound to the header name.
    assert_eq!(h.open(&tok).backend, s.backend.unwrap().stable_id());
    for _ in 0..10 {
        let p = h.get(Some(&tok));
        assert_eq!((p.outcome, p.backend), (Outcome::Pinned, s.backend));
        assert!(p.token.is_none());
        assert!(
            p.seen.get(&name).is_none(),
            "header stripped before the backend"
        );
    }
    // A cookie of that name is not our token.
    let mut req = Request::new(String::new());
    req.headers_mut().insert(
        COOKIE,
        HeaderValue::from_str(&format!("x-session-affinity={tok}")).unwrap(),
    );
    assert_eq!(h.send(req).outcome, Outcome::New);
}

fn from_peer(peer: &str, xff: Option<&str>) -> Request<String> {
    let mut req = Request::new(String::new());
    req.extensions_mut()
        .insert(PeerAddr(peer.parse::<SocketAddr>().unwrap()));
    if let Some(x) = xff {
        req.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(x).unwrap());
    }
    req
}

#[test]
fn client_address_source_routes_by_client_and_trusts_only_proxies() {
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    let names = ["a", "b", "c", "d", "e"];
    let mut h = Harness::with(&names, |c| c.source(AffinitySource::client_addr([proxy])));
    // Same client, same backend, no cookie.
    let first = h.send(from_peer("203.0.113.9:5000", None));
    for port in [5001, 6000, 7000] {
        let s = h.send(from_peer(&format!("203.0.113.9:{port}"), None));
        assert_eq!((s.outcome, s.backend), (Outcome::Pinned, first.backend));
        assert!(s.headers.get(SET_COOKIE).is_none());
    }
    // Through the trusted proxy, X-Forwarded-For names the client.
    let untrusted_home = h.send(from_peer("192.0.2.50:1", None)).backend;
    let mut homes = HashSet::new();
    for i in 1..=40 {
        let client = format!("198.51.100.{i}");
        let direct = h.send(from_peer(&format!("{client}:443"), None)).backend;
        homes.insert(direct);
        let via = h.send(from_peer(
            "10.0.0.1:9999",
            Some(&format!("{client}, 10.0.0.1")),
        ));
        assert_eq!(
            via.backend, direct,
            "trusted proxy's X-Forwarded-For ignored"
        );
        // From an untrusted peer the header is ignored: the peer's own home.
        let spoof = h.send(from_peer("192.0.2.50:1", Some(&client)));
        assert_eq!(
            spoof.backend, untrusted_home,
            "untrusted X-Forwarded-For honoured"
        );
    }
    assert!(homes.len() >= 3, "clients spread over backends: {homes:?}");
    // No peer address: placed like a new session, no token issued.
    let s = h.send(Request::new(String::new()));
    assert_eq!(s.outcome, Outcome::New);
    assert!(s.headers.get(SET_COOKIE).is_none());
}

#[test]
fn extractor_source_hashes_the_key() {
    let names = ["a", "b", "c", "d"];
    let mut h = Harness::with(&names, |c| {
        c.source(AffinitySource::extractor(|p| {
            p.headers
                .get("x-tenant")
                .map(|v| AffinityKey::of(v.as_bytes()))
        }))
    });
    let tenant = |t: &str| {
        let mut r = Request::new(String::new());
        r.headers_mut()
            .insert("x-tenant", HeaderValue::from_str(t).unwrap());
        r
    };
    let mut homes = HashMap::new();
    for round in 0..3 {
        for i in 0..30 {
            let t = format!("tenant-{i}");
            let s = h.send(tenant(&t));
            assert_eq!(s.outcome, Outcome::Pinned);
            assert!(s.headers.get(SET_COOKIE).is_none());
            let home = *homes.entry(t).or_insert(s.backend);
            if round > 0 {
                assert_eq!(s.backend, home);
            }
        }
    }
    let distinct: HashSet<_> = homes.values().collect();
    assert!(distinct.len() >= 3);
    let s = h.send(Request::new(String::new()));
    assert_eq!(s.outcome, Outcome::New);
    assert!(s.token.is_none());
}

// ---------------------------------------------------------------- scale-up and outcomes

#[test]
fn adding_a_backend_moves_no_cookie_pinned_session() {
    let mut h = Harness::new(&["a", "b", "c", "d"]);
    let sessions = h.sessions(200);
    h.add("e");
    for (home, tok) in &sessions {
        let s = h.get(Some(tok));
        assert_eq!((s.outcome, s.backend), (Outcome::Pinned, Some(*home)));
        assert!(s.token.is_none());
    }
    // The newcomer takes new sessions.
    assert!(
        count_by_backend(&h.sessions(300))
            .get("e")
            .copied()
            .unwrap_or(0)
            > 20
    );
}

#[test]
fn outcome_is_in_request_and_response_extensions() {
    let mut h = Harness::new(&["a", "b"]);
    let s = h.get(None);
    assert_eq!(
        (s.outcome, s.seen_outcome),
        (Outcome::New, Some(Outcome::New))
    );
    let tok = s.token().to_owned();
    let home = s.backend.unwrap();
    let p = h.get(Some(&tok));
    assert_eq!(p.seen_outcome, Some(Outcome::Pinned));
    h.remove(home);
    let r = h.get(Some(&tok));
    assert_eq!(r.seen_outcome, Some(Outcome::Repinned(Reason::Removed)));
    assert_eq!(r.outcome, Outcome::Repinned(Reason::Removed));
    assert_eq!(r.outcome.to_string(), "repinned(backend_removed)");
}
