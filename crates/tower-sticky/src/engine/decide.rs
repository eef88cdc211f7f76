//! The decision itself: from a token (or a hashed key, or nothing) and a
//! [`View`] of the table to a [`Decision`]. Pure: no counting, no I/O.

use http::request::Parts;
use http::HeaderValue;

use super::view::{Readiness, View};
use super::Engine;
use crate::cookie::find_cookie;
use crate::failover::{displace, fallback};
use crate::lifecycle::{Basis, Decision};
use crate::placement::{rendezvous_bounded, rendezvous_top, Candidates};
use crate::source::{client_ip, Source};
use crate::token::{InvalidToken, Token};
use crate::{AffinityKey, FailoverPolicy, Outcome, Reason};

impl Engine {
    /// Decides from the request head, returning what the decision was made
    /// from so that deciding again needs no headers.
    pub(crate) fn decide_parts<K, T, R: Readiness>(
        &self,
        view: &View<'_, K, T, R>,
        parts: &Parts,
    ) -> (Decision, Basis) {
        match &self.inner.config.source.0 {
            Source::Cookie(c) => self.decide_token(view, find_cookie(&parts.headers, c.name())),
            Source::Header(h) => {
                self.decide_token(view, parts.headers.get(h).map(HeaderValue::as_bytes))
            }
            Source::ClientAddr(trusted) => {
                let key = client_ip(parts, trusted).map(|ip| match ip {
                    std::net::IpAddr::V4(v) => AffinityKey::of(v.octets()),
                    std::net::IpAddr::V6(v) => AffinityKey::of(v.octets()),
                });
                self.decide_key(view, key)
            }
            Source::Extractor(f) => self.decide_key(view, f(parts)),
        }
    }

    /// Decides again from what an earlier decision was made from.
    pub(crate) fn decide_from<K, T, R: Readiness>(
        &self,
        view: &View<'_, K, T, R>,
        basis: Basis,
    ) -> Decision {
        let now_s = (view.now_ms / 1000) as u32;
        match basis {
            Basis::Token(t) => self.route_token(view, t, now_s),
            Basis::Fresh(session) => self.place_new(view, session, now_s, true),
            Basis::Unkeyed(session) => self.place_new(view, session, now_s, false),
            Basis::Hashed(key) => self.route_hashed(view, key),
        }
    }

    /// Decides from a token's raw text (`None`: no token presented).
    pub(super) fn decide_token<K, T, R: Readiness>(
        &self,
        view: &View<'_, K, T, R>,
        raw: Option<&[u8]>,
    ) -> (Decision, Basis) {
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
        let (mut d, basis) = match opened {
            Some(Ok(t)) => (self.route_token(view, t, now_s), Basis::Token(t)),
            other => {
                let session: u64 = rand::random();
                let mut d = self.place_new(view, session, now_s, true);
                d.invalid = other.and_then(Result::err);
                (d, Basis::Fresh(session))
            }
        };
        d.strip = strip;
        (d, basis)
    }

    /// Routes a valid token: its backend if it can serve, else failover.
    fn route_token<K, T, R: Readiness>(
        &self,
        view: &View<'_, K, T, R>,
        token: Token,
        now_s: u32,
    ) -> Decision {
        let cfg = &self.inner.config;
        let slot = view.table.index_of(token.backend);
        let reason = match slot {
            None => Reason::Removed,
            Some(i) if view.can_serve(i) => {
                let refresh = cfg.idle_timeout.is_some()
                    && u64::from(now_s.saturating_sub(token.refreshed)) >= self.inner.refresh_s;
                return Decision {
                    target: Some(i),
                    backend: Some(token.backend),
                    outcome: Outcome::Pinned,
                    issue: refresh.then_some(Token {
                        refreshed: now_s,
                        ..token
                    }),
                    ..Decision::EMPTY
                };
            }
            Some(i) => unavailable_reason(view, i),
        };
        let (target, outcome) = displace(cfg.failover, reason, token.session, view);
        let backend = view.id_at(target);
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
            ..Decision::EMPTY
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

    /// Places a session: the placement policy, else the deterministic
    /// fallback. `issue` says whether the session gets a token.
    fn place_new<K, T, R: Readiness>(
        &self,
        view: &View<'_, K, T, R>,
        session: u64,
        now_s: u32,
        issue: bool,
    ) -> Decision {
        let target = self
            .inner
            .config
            .placement
            .place(view, session)
            .or_else(|| fallback(session, view));
        let backend = view.id_at(target);
        Decision {
            target,
            backend,
            outcome: if target.is_some() {
                Outcome::New
            } else {
                Outcome::Rejected(Reason::NoBackend)
            },
            issue: backend
                .filter(|_| issue)
                .map(|b| Token::new(b, session, now_s)),
            ..Decision::EMPTY
        }
    }

    fn decide_key<K, T, R: Readiness>(
        &self,
        view: &View<'_, K, T, R>,
        key: Option<AffinityKey>,
    ) -> (Decision, Basis) {
        match key {
            Some(key) => {
                let key = key.hash();
                (self.route_hashed(view, key), Basis::Hashed(key))
            }
            None => {
                let session: u64 = rand::random();
                let now_s = (view.now_ms / 1000) as u32;
                (
                    self.place_new(view, session, now_s, false),
                    Basis::Unkeyed(session),
                )
            }
        }
    }

    fn route_hashed<K, T, R: Readiness>(&self, view: &View<'_, K, T, R>, key: u64) -> Decision {
        let cfg = &self.inner.config;
        let home = rendezvous_top(key, view, |_| true);
        let bounded = rendezvous_bounded(key, view, cfg.hash_balance_factor, |i| view.can_serve(i));
        let (target, outcome) = match (home, bounded) {
            (_, None) => (None, Outcome::Rejected(Reason::NoBackend)),
            (Some(h), Some((i, _))) if h == i => (Some(i), Outcome::Pinned),
            (Some(h), Some((i, _))) => {
                let reason = if view.can_serve(h) {
                    Reason::Overloaded
                } else {
                    unavailable_reason(view, h)
                };
                match cfg.failover {
                    FailoverPolicy::Strict if reason != Reason::Overloaded => {
                        (None, Outcome::Rejected(reason))
                    }
                    FailoverPolicy::Temporary => (Some(i), Outcome::Temporary(reason)),
                    _ => (Some(i), Outcome::Repinned(reason)),
                }
            }
            (None, Some((i, _))) => (Some(i), Outcome::Pinned),
        };
        Decision {
            target,
            backend: view.id_at(target),
            outcome,
            ..Decision::EMPTY
        }
    }
}

/// Why a backend that exists cannot serve.
fn unavailable_reason<K, T, R: Readiness>(view: &View<'_, K, T, R>, i: usize) -> Reason {
    match view.table.get(i) {
        Some(b) if b.status().is_unhealthy(view.now_ms) => Reason::Unhealthy,
        Some(b) if b.status().removed_ms().is_some() => Reason::Removed,
        Some(_) => Reason::NotReady,
        None => Reason::Removed,
    }
}
