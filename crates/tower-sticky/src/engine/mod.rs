//! The decision engine: from a request's head and the backend table to a
//! [`Routed`] request. Pure logic over `http` types and atomics: no tower, no
//! tokio, no I/O, so every adapter (the tower layer, the gateway, axum,
//! pingora) shares it, and it is benchmarked alone.
//!
//! The request's path:
//! 1. read the token from its source (every `Cookie` header is read);
//! 2. open it: authenticate, check absolute and idle expiry, look up the
//!    backend by stable id (O(1)); anything invalid counts as "no token";
//! 3. route to the pinned backend if it may take the request, else let the
//!    [`FailoverPolicy`](crate::FailoverPolicy) decide;
//! 4. place new sessions with the [`Placement`](crate::Placement) policy;
//! 5. tag the response only when the pin is new, changed or due a refresh.
//!
//! What happens after the decision (header edits, in-flight accounting,
//! "unreachable, decide again") is the [`Routed`] value's: see
//! [`lifecycle`](crate::lifecycle).

mod decide;
mod view;

pub use view::Readiness;
pub(crate) use view::{Excluding, View};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use http::request::Parts;

use crate::cookie::{take_cookie, Take};
use crate::lifecycle::{self, Decision, Routed};
use crate::source::Source;
use crate::table::BackendTable;
use crate::token::{InvalidToken, TokenCodec};
use crate::{Outcome, Reason, Stats, StickyConfig};

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
    /// Seconds between two idle refreshes of one token: the configured
    /// interval, but never more than half the idle timeout, so that a
    /// session in use is refreshed before it can idle-expire.
    refresh_s: u64,
    /// [`StickyConfig::session_window`], in ms.
    window_ms: u64,
    /// The session sketches' epoch for that window, in ms.
    epoch_ms: u64,
    counters: Counters,
}

/// The decision engine of one sticky route: configuration, token codec and
/// counters. Cheap to clone; clones share counters.
///
/// Every front end (the tower layer, the gateway, the axum and pingora
/// adapters) asks it for a [`Routed`] request with [`Engine::decide`] and then
/// follows that value's lifecycle, so that failover, counting and header
/// edits are decided in one place.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine for `config`.
    pub fn new(config: StickyConfig) -> Self {
        let codec = config
            .source
            .token_name()
            .map(|name| TokenCodec::new(config.keys.clone(), name).remembering());
        let refresh_s = config.effective_refresh_interval().as_secs();
        let window_ms = config.session_window().as_millis() as u64;
        Self {
            inner: Arc::new(Inner {
                config,
                codec,
                refresh_s,
                window_ms,
                epoch_ms: crate::table::sessions::epoch_ms(window_ms),
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

    /// Removes our token (cookie or header) from a request's headers,
    /// unless configured to keep it ([`StickyConfig::strip_token`]). What
    /// [`Routed::prepare_request`] does for a decided request; for a front
    /// that takes a request's decision from elsewhere (axum-sticky's peer
    /// mode, from the forwarding replica's marker) and still owes the
    /// backend a request without our token.
    pub fn remove_token(&self, headers: &mut http::HeaderMap) {
        if !self.inner.config.strip_token {
            return;
        }
        match &self.inner.config.source.0 {
            Source::Cookie(c) => crate::cookie::strip_cookie(headers, c.name()),
            Source::Header(h) => {
                headers.remove(h);
            }
            _ => {}
        }
    }

    /// The token codec, for sources that carry tokens.
    pub fn codec(&self) -> Option<&TokenCodec> {
        self.inner.codec.as_ref()
    }

    /// Decides where the request with head `parts` goes, counts the outcome,
    /// and returns the request's [`Routed`] lifecycle value. `ready` says
    /// whether a backend's service can take a request now (pass `|_| true`
    /// where there is no backpressure).
    ///
    /// The outcome is counted here, once: deciding again after an
    /// unreachable backend ([`Routed::reroute`]) replaces it rather than
    /// adding another.
    pub fn decide<K, T>(
        &self,
        table: &BackendTable<K, T>,
        parts: &Parts,
        ready: impl Readiness,
    ) -> Routed {
        self.decide_with(table, ready, |view| self.decide_parts(view, parts))
    }

    /// [`Engine::decide`], then [`Routed::prepare_request`] on `parts`: the
    /// request decided and its head ready for the backend (our token
    /// removed, unless configured to keep it), with the same result.
    ///
    /// A cookie token in the request's one `Cookie` header (the usual
    /// request) is found and removed in a single scan of it, where deciding
    /// then preparing looks the header up and scans it twice (some 450
    /// instructions per request).
    pub fn decide_prepared<K, T>(
        &self,
        table: &BackendTable<K, T>,
        parts: &mut Parts,
        ready: impl Readiness,
    ) -> Routed {
        let cfg = &self.inner.config;
        if let (Source::Cookie(c), true) = (&cfg.source.0, cfg.strip_token) {
            match take_cookie(&mut parts.headers, c.name()) {
                // The token is read from the header value just taken out
                // of the map, which holds it until the decision is made.
                Take::Taken(taken) => {
                    return self.decide_with(table, ready, |view| {
                        self.decide_token(view, Some(taken.value()))
                    })
                }
                Take::Absent => {
                    return self.decide_with(table, ready, |view| self.decide_token(view, None))
                }
                Take::Other => {}
            }
        }
        let routed = self.decide(table, parts, ready);
        routed.prepare_request(self, &mut parts.headers);
        routed
    }

    /// Decides with `f` over a view of `table`, counts the outcome and
    /// starts the request's lifecycle.
    fn decide_with<K, T, R: Readiness>(
        &self,
        table: &BackendTable<K, T>,
        ready: R,
        f: impl FnOnce(&View<'_, K, T, R>) -> (Decision, lifecycle::Basis),
    ) -> Routed {
        let view = self.view(table, ready);
        let (d, basis) = f(&view);
        self.count(table, &d, basis.session(), view.now_ms);
        Routed::new(
            Decision {
                reject_error: self.inner.config.reject_with_error,
                ..d
            },
            basis,
        )
    }

    pub(crate) fn view<'a, K, T, R>(
        &self,
        table: &'a BackendTable<K, T>,
        ready: R,
    ) -> View<'a, K, T, R> {
        let cfg = &self.inner.config;
        View {
            table,
            now_ms: cfg.clock.now_ms(),
            ready,
            slow_start_ms: cfg.slow_start.map_or(0, |d| d.as_millis() as u64),
            grace_ms: cfg.removal_grace.map_or(0, |d| d.as_millis() as u64),
            window_ms: self.inner.window_ms,
        }
    }

    /// Counts a decision: its outcome, why a token was not trusted, the
    /// chosen backend's request counters and, for a request that belongs to
    /// a session, that session in the backend's session estimate (a session
    /// placed here counts at once, for placement).
    fn count<K, T>(
        &self,
        table: &BackendTable<K, T>,
        d: &Decision,
        session: Option<u64>,
        now_ms: u64,
    ) {
        let c = &self.inner.counters;
        c.outcomes[outcome_slot(d.outcome)].fetch_add(1, Relaxed);
        if let Some(r) = d.invalid {
            c.invalid[r.index()].fetch_add(1, Relaxed);
        }
        if let Some(b) = d.target.and_then(|i| table.get(i)) {
            let s = b.status();
            s.requests.fetch_add(1, Relaxed);
            if let Some(session) = session {
                s.sessions.record_in(session, now_ms, self.inner.epoch_ms);
            }
            match d.outcome {
                Outcome::Pinned => {
                    s.pinned_hits.fetch_add(1, Relaxed);
                }
                Outcome::New => {
                    s.new_sessions.fetch_add(1, Relaxed);
                    if session.is_some() {
                        s.sessions.placed();
                    }
                }
                Outcome::Repinned(_) if session.is_some() => s.sessions.placed(),
                _ => {}
            }
        }
    }

    /// Replaces the counted outcome of one request: `old` is taken back
    /// (its backend's counters too, wherever the backend now is) and `new`
    /// counted. Invalid-token counts stay: the token was presented once.
    pub(crate) fn recount<K, T>(
        &self,
        table: &BackendTable<K, T>,
        old: &Decision,
        new: &Decision,
        session: Option<u64>,
    ) {
        let c = &self.inner.counters;
        c.outcomes[outcome_slot(old.outcome)].fetch_sub(1, Relaxed);
        if let Some(b) = old.backend.and_then(|id| table.get_by_id(id)) {
            let s = b.status();
            s.requests.fetch_sub(1, Relaxed);
            match old.outcome {
                Outcome::Pinned => {
                    s.pinned_hits.fetch_sub(1, Relaxed);
                }
                Outcome::New => {
                    s.new_sessions.fetch_sub(1, Relaxed);
                    if session.is_some() {
                        s.sessions.unplaced();
                    }
                }
                Outcome::Repinned(_) if session.is_some() => s.sessions.unplaced(),
                _ => {}
            }
        }
        self.count(
            table,
            &Decision {
                invalid: None,
                ..*new
            },
            session,
            self.inner.config.clock.now_ms(),
        );
    }

    /// How long a session counts as active after its last request
    /// ([`StickyConfig::session_window`]): the window of every backend's
    /// [`active_sessions`](crate::BackendStats::active_sessions).
    pub fn session_window(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.inner.window_ms)
    }

    /// A snapshot of every counter and backend state.
    pub fn stats<K: Clone, T>(&self, table: &BackendTable<K, T>) -> Stats<K> {
        let now = self.inner.config.clock.now_ms();
        let c = &self.inner.counters;
        let load = |s: usize| c.outcomes[s].load(Relaxed);
        let n = Reason::ALL.len();
        let grace_ms = self
            .inner
            .config
            .removal_grace
            .map_or(0, |d| d.as_millis() as u64);
        Stats {
            backends: table
                .iter()
                .map(|b| crate::stats::BackendStats::of(b, now, grace_ms, self.inner.window_ms))
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
