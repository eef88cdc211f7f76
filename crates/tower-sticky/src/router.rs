//! The decision engine: from a request's head and the backend table to a
//! [`Decision`]. Pure logic over `http` types and atomics: no tower, no
//! tokio, no I/O, so every adapter (the tower layer, the gateway, a pingora
//! proxy) shares it, and it is benchmarked alone.
//!
//! The request's path:
//! 1. read the token from its source (every `Cookie` header is read);
//! 2. open it: authenticate, check absolute and idle expiry, look up the
//!    backend by stable id (O(1)); anything invalid counts as "no token";
//! 3. route to the pinned backend if it may take the request, else let the
//!    [`FailoverPolicy`](crate::FailoverPolicy) decide;
//! 4. place new sessions with the [`Placement`](crate::Placement) policy;
//! 5. tag the response only when the pin is new, changed or due a refresh.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderValue};

use crate::cookie::{append_set_cookie, find_cookie, mark_private, strip_cookie};
use crate::failover::{displace, fallback};
use crate::placement::{rendezvous_bounded, rendezvous_top, Candidates};
use crate::source::{client_ip, Source};
use crate::table::{BackendTable, InFlight};
use crate::token::{InvalidToken, Token, TokenCodec};
use crate::{BackendId, Outcome, Reason, Stats, StickyConfig};

/// What the engine decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    target: Option<usize>,
    backend: Option<BackendId>,
    outcome: Outcome,
    issue: Option<Token>,
    invalid: Option<InvalidToken>,
    strip: bool,
    reject_error: bool,
}

impl Decision {
    /// The table slot to send the request to; `None` when rejected.
    pub fn target(&self) -> Option<usize> {
        self.target
    }

    /// The stable id of the chosen backend.
    pub fn backend(&self) -> Option<BackendId> {
        self.backend
    }

    /// What happened.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Why a presented token was not trusted, if one was presented and wasn't.
    pub fn invalid_token(&self) -> Option<InvalidToken> {
        self.invalid
    }

    pub(crate) fn reject_as_error(&self) -> bool {
        self.reject_error
    }

    /// The token the response will carry, when one is issued or refreshed.
    pub fn issued_token(&self) -> Option<&Token> {
        self.issue.as_ref()
    }
}

const OUTCOME_SLOTS: usize = 2 + 3 * Reason::ALL.len();

fn outcome_slot(o: Outcome) -> usize {
    let n = Reason::ALL.len();
    match o {
        Outcome::Pinned => 0,
        Outcome::New => 1,
        Outcome::Repinned(r) => 2 + r.index(),
        Outcome::Temporary(r) => 2 + n + r.index(),
        Outcome::Rejected(r) => 2 + 2 * n + r.index(),
    }
}

#[derive(Debug, Default)]
struct Counters {
    outcomes: [AtomicU64; OUTCOME_SLOTS],
    invalid: [AtomicU64; InvalidToken::ALL.len()],
}

#[derive(Debug)]
struct Inner {
    config: StickyConfig,
    codec: Option<TokenCodec>,
    counters: Counters,
}

/// The decision engine. Cheap to clone; clones share counters.
#[derive(Clone, Debug)]
pub struct Router {
    inner: Arc<Inner>,
}

/// What a caller knows about its backends beyond the table: whether each
/// one's service can take a request now and, where services measure their own
/// load (`tower::load::Load`), how two compare.
///
/// Any `Fn(usize) -> bool` is a `Readiness` that reports no load of its own,
/// so placement uses the in-flight counts the layer keeps.
pub trait Readiness {
    /// Whether the backend in `slot` can take a request now.
    fn is_ready(&self, slot: usize) -> bool;

    /// How the service-reported loads of two backends compare, if the
    /// services report one.
    fn compare_load(&self, a: usize, b: usize) -> Option<std::cmp::Ordering> {
        let _ = (a, b);
        None
    }
}

impl<F: Fn(usize) -> bool> Readiness for F {
    #[inline]
    fn is_ready(&self, slot: usize) -> bool {
        self(slot)
    }
}

/// The table as placement and failover see it at one instant.
struct View<'a, K, T, R> {
    table: &'a BackendTable<K, T>,
    now_ms: u64,
    ready: R,
    slow_start_ms: u64,
    grace_ms: u64,
}

impl<K, T, R: Readiness> Candidates for View<'_, K, T, R> {
    fn len(&self) -> usize {
        self.table.len()
    }
    fn id(&self, i: usize) -> BackendId {
        self.table
            .get(i)
            .map(|b| b.id())
            .unwrap_or(BackendId::from_u64(0))
    }
    #[inline]
    fn eligible(&self, i: usize) -> bool {
        self.table
            .get(i)
            .is_some_and(|b| b.status().takes_new(self.now_ms))
            && self.ready.is_ready(i)
    }
    #[inline]
    fn can_serve(&self, i: usize) -> bool {
        self.table.get(i).is_some_and(|b| {
            let s = b.status();
            !s.is_unhealthy(self.now_ms)
                && s.removed_ms()
                    .is_none_or(|t| self.now_ms < t + self.grace_ms)
        }) && self.ready.is_ready(i)
    }
    fn in_flight(&self, i: usize) -> usize {
        self.table.get(i).map_or(0, |b| b.status().in_flight())
    }
    fn total_in_flight(&self) -> usize {
        self.table.total_in_flight()
    }
    fn weight(&self, i: usize) -> u32 {
        self.table.get(i).map_or(1, |b| b.status().weight())
    }
    fn max_weight(&self) -> u32 {
        self.table.max_weight()
    }
    fn compare_load(&self, a: usize, b: usize) -> Option<std::cmp::Ordering> {
        self.ready.compare_load(a, b)
    }
    fn ramp(&self, i: usize) -> f64 {
        if self.slow_start_ms == 0 {
            return 1.0;
        }
        let age = self.table.get(i).map_or(u64::MAX, |b| {
            self.now_ms.saturating_sub(b.status().added_ms())
        });
        if age >= self.slow_start_ms {
            1.0
        } else {
            (age as f64 / self.slow_start_ms as f64).max(0.1)
        }
    }
}

impl Router {
    /// An engine for `config`.
    pub fn new(config: StickyConfig) -> Self {
        let codec = config
            .source
            .token_name()
            .map(|name| TokenCodec::new(config.keys.clone(), name));
        Self {
            inner: Arc::new(Inner {
                config,
                codec,
                counters: Counters::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StickyConfig {
        &self.inner.config
    }

    /// Whether decisions read the client's [`PeerAddr`](crate::PeerAddr) from
    /// the request extensions (client-address affinity). Servers can skip
    /// inserting it, and the allocation that goes with it, when not.
    pub fn needs_peer_addr(&self) -> bool {
        matches!(self.inner.config.source.0, Source::ClientAddr(_))
    }

    /// The token codec, for sources that carry tokens.
    pub fn codec(&self) -> Option<&TokenCodec> {
        self.inner.codec.as_ref()
    }

    /// Decides where the request with head `parts` goes. `ready` says
    /// whether a backend's service can take a request now (pass `|_| true`
    /// where there is no backpressure).
    pub fn decide<K, T>(
        &self,
        table: &BackendTable<K, T>,
        parts: &Parts,
        ready: impl Readiness,
    ) -> Decision {
        let cfg = &self.inner.config;
        let now_ms = cfg.clock.now_ms();
        let view = View {
            table,
            now_ms,
            ready,
            slow_start_ms: cfg.slow_start.map_or(0, |d| d.as_millis() as u64),
            grace_ms: cfg.removal_grace.map_or(0, |d| d.as_millis() as u64),
        };
        let d = match &cfg.source.0 {
            Source::Cookie(c) => self.decide_token(&view, find_cookie(&parts.headers, c.name())),
            Source::Header(h) => {
                self.decide_token(&view, parts.headers.get(h).map(HeaderValue::as_bytes))
            }
            Source::ClientAddr(trusted) => {
                let key = client_ip(parts, trusted).map(|ip| match ip {
                    std::net::IpAddr::V4(v) => crate::AffinityKey::of(v.octets()),
                    std::net::IpAddr::V6(v) => crate::AffinityKey::of(v.octets()),
                });
                self.decide_hashed(&view, key)
            }
            Source::Extractor(f) => self.decide_hashed(&view, f(parts)),
        };
        self.count(table, &d);
        Decision {
            reject_error: cfg.reject_with_error,
            ..d
        }
    }

    fn decide_token<K, T, R: Readiness>(
        &self,
        view: &View<'_, K, T, R>,
        raw: Option<&[u8]>,
    ) -> Decision {
        let cfg = &self.inner.config;
        let now_s = (view.now_ms / 1000) as u32;
        let strip = raw.is_some() && cfg.strip_token;
        let opened = raw.map(|raw| {
            let codec = self
                .inner
                .codec
                .as_ref()
                .expect("token sources have a codec");
            codec.open(raw).and_then(|t| self.check_expiry(t, now_s))
        });
        let token = match opened {
            Some(Ok(t)) => t,
            other => {
                let invalid = other.and_then(Result::err);
                let mut d = self.place_new(view, now_s);
                d.invalid = invalid;
                d.strip = strip;
                return d;
            }
        };
        let slot = view.table.index_of(token.backend);
        let reason = match slot {
            None => Reason::Removed,
            Some(i) if view.can_serve(i) => {
                let refresh = cfg.idle_timeout.is_some()
                    && u64::from(now_s.saturating_sub(token.refreshed))
                        >= cfg.refresh_interval.as_secs();
                return Decision {
                    target: Some(i),
                    backend: Some(token.backend),
                    outcome: Outcome::Pinned,
                    issue: refresh.then_some(Token {
                        refreshed: now_s,
                        ..token
                    }),
                    invalid: None,
                    strip,
                    reject_error: false,
                };
            }
            Some(i) => self.unavailable_reason(view, i),
        };
        let (target, outcome) = displace(cfg.failover, reason, token.session, view);
        let backend = target.and_then(|i| view.table.get(i)).map(|b| b.id());
        let issue = match (outcome, backend) {
            (Outcome::Repinned(_), Some(b)) => Some(Token {
                backend: b,
                refreshed: now_s,
                ..token
            }),
            _ => None,
        };
        Decision {
            target,
            backend,
            outcome,
            issue,
            invalid: None,
            strip,
            reject_error: false,
        }
    }

    /// Why a backend that exists cannot serve.
    fn unavailable_reason<K, T, R: Readiness>(&self, view: &View<'_, K, T, R>, i: usize) -> Reason {
        match view.table.get(i) {
            Some(b) if b.status().is_unhealthy(view.now_ms) => Reason::Unhealthy,
            Some(b) if b.status().removed_ms().is_some() => Reason::Removed,
            Some(_) => Reason::NotReady,
            None => Reason::Removed,
        }
    }

    fn check_expiry(&self, t: Token, now_s: u32) -> Result<Token, InvalidToken> {
        let cfg = &self.inner.config;
        if cfg
            .absolute_timeout
            .is_some_and(|d| u64::from(now_s.saturating_sub(t.issued)) > d.as_secs())
        {
            return Err(InvalidToken::Expired);
        }
        if cfg
            .idle_timeout
            .is_some_and(|d| u64::from(now_s.saturating_sub(t.refreshed)) > d.as_secs())
        {
            return Err(InvalidToken::IdleExpired);
        }
        Ok(t)
    }

    fn place_new<K, T, R: Readiness>(&self, view: &View<'_, K, T, R>, now_s: u32) -> Decision {
        let session: u64 = rand::random();
        let target = self
            .inner
            .config
            .placement
            .place(view, session)
            .or_else(|| fallback(session, view));
        let backend = target.and_then(|i| view.table.get(i)).map(|b| b.id());
        Decision {
            target,
            backend,
            outcome: if target.is_some() {
                Outcome::New
            } else {
                Outcome::Rejected(Reason::NoBackend)
            },
            issue: backend.map(|b| Token::new(b, session, now_s)),
            invalid: None,
            strip: false,
            reject_error: false,
        }
    }

    fn decide_hashed<K, T, R: Readiness>(
        &self,
        view: &View<'_, K, T, R>,
        key: Option<crate::AffinityKey>,
    ) -> Decision {
        let cfg = &self.inner.config;
        let Some(key) = key else {
            let mut d = self.place_new(view, (view.now_ms / 1000) as u32);
            d.issue = None;
            return d;
        };
        let key = key.hash();
        let home = rendezvous_top(key, view, |_| true);
        let bounded = rendezvous_bounded(key, view, cfg.hash_balance_factor, |i| view.can_serve(i));
        let (target, outcome) = match (home, bounded) {
            (_, None) => (None, Outcome::Rejected(Reason::NoBackend)),
            (Some(h), Some((i, _))) if h == i => (Some(i), Outcome::Pinned),
            (Some(h), Some((i, _))) => {
                let reason = if view.can_serve(h) {
                    Reason::Overloaded
                } else {
                    self.unavailable_reason(view, h)
                };
                match cfg.failover {
                    crate::FailoverPolicy::Strict if reason != Reason::Overloaded => {
                        (None, Outcome::Rejected(reason))
                    }
                    crate::FailoverPolicy::Temporary => (Some(i), Outcome::Temporary(reason)),
                    _ => (Some(i), Outcome::Repinned(reason)),
                }
            }
            (None, Some((i, _))) => (Some(i), Outcome::Pinned),
        };
        Decision {
            target,
            backend: target.and_then(|i| view.table.get(i)).map(|b| b.id()),
            outcome,
            issue: None,
            invalid: None,
            strip: false,
            reject_error: false,
        }
    }

    fn count<K, T>(&self, table: &BackendTable<K, T>, d: &Decision) {
        let c = &self.inner.counters;
        c.outcomes[outcome_slot(d.outcome)].fetch_add(1, Relaxed);
        if let Some(r) = d.invalid {
            c.invalid[r.index()].fetch_add(1, Relaxed);
        }
        if let Some(b) = d.target.and_then(|i| table.get(i)) {
            let s = b.status();
            s.requests.fetch_add(1, Relaxed);
            match d.outcome {
                Outcome::Pinned => {
                    s.pinned_hits.fetch_add(1, Relaxed);
                }
                Outcome::New => {
                    s.new_sessions.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
    }

    /// Counts a request in flight on the decided backend until the guard drops.
    pub fn begin<K, T>(&self, table: &BackendTable<K, T>, decision: &Decision) -> Option<InFlight> {
        let b = table.get(decision.target?)?;
        Some(InFlight::new(
            b.status().clone(),
            self.inner.config.ejection,
            self.inner.config.clock.clone(),
        ))
    }

    /// Rewrites the request for the backend: removes our token unless
    /// configured to keep it.
    pub fn prepare_request(&self, decision: &Decision, headers: &mut HeaderMap) {
        if !decision.strip {
            return;
        }
        match &self.inner.config.source.0 {
            Source::Cookie(c) => strip_cookie(headers, c.name()),
            Source::Header(h) => {
                headers.remove(h);
            }
            _ => {}
        }
    }

    /// Tags the response: `Set-Cookie` (appended) or the response header with
    /// a freshly sealed token, when the decision issued or refreshed one; and
    /// then marks the response private to this user.
    pub fn tag_response(&self, decision: &Decision, headers: &mut HeaderMap) {
        let (Some(token), Some(codec)) = (&decision.issue, &self.inner.codec) else {
            return;
        };
        let sealed = codec.seal(token);
        match &self.inner.config.source.0 {
            Source::Cookie(c) => append_set_cookie(headers, c.set_cookie(sealed.as_str())),
            Source::Header(h) => {
                headers.insert(
                    h.clone(),
                    HeaderValue::from_str(sealed.as_str()).expect("tokens are ASCII"),
                );
                mark_private(headers);
            }
            _ => {}
        }
    }

    /// A snapshot of every counter and backend state.
    pub fn stats<K: Clone, T>(&self, table: &BackendTable<K, T>) -> Stats<K> {
        let now = self.inner.config.clock.now_ms();
        let c = &self.inner.counters;
        let load = |s: usize| c.outcomes[s].load(Relaxed);
        let n = Reason::ALL.len();
        Stats {
            backends: table
                .iter()
                .map(|b| crate::stats::BackendStats::of(b, now))
                .collect(),
            pinned: load(0),
            new: load(1),
            repinned: Reason::ALL.map(|r| (r, load(2 + r.index()))),
            temporary: Reason::ALL.map(|r| (r, load(2 + n + r.index()))),
            rejected: Reason::ALL.map(|r| (r, load(2 + 2 * n + r.index()))),
            invalid_tokens: InvalidToken::ALL.map(|r| (r, c.invalid[r.index()].load(Relaxed))),
        }
    }
}

#[cfg(test)]
mod tests;
