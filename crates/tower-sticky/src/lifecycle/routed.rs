//! [`Routed`]: one request's lifecycle after the engine decided it.

use std::time::Duration;

use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use super::{Decision, HeaderEdit, HeaderEdits};
use crate::cookie::{private_cache_control, strip_cookie_edits};
use crate::engine::{Engine, Excluding, Readiness};
use crate::source::Source;
use crate::table::{BackendTable, InFlight};
use crate::token::{InvalidToken, Token};
use crate::{BackendId, Outcome};

/// How many unreachable backends one request remembers, to never try them
/// again. Beyond that, their ejection keeps them out.
pub(crate) const MAX_TRIED: usize = 4;

/// What a decision was made from, kept so that deciding again (after an
/// unreachable backend) needs no headers: by then the adapter has removed
/// our token from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Basis {
    /// A valid token (authentic, unexpired).
    Token(Token),
    /// No usable token: a new session with this id, issued a token.
    Fresh(u64),
    /// Hashed affinity by this key.
    Hashed(u64),
    /// No key at all: placed like a new session with this id, nothing issued.
    Unkeyed(u64),
}

impl Basis {
    /// The session a request belongs to, for the per-backend session
    /// estimate: a token's session, a new session's id, a hashed key. An
    /// unkeyed request is a "session" of one request that never comes
    /// back, so it is not counted as one.
    #[inline]
    pub(crate) fn session(&self) -> Option<u64> {
        match *self {
            Basis::Token(t) => Some(t.session),
            Basis::Fresh(s) | Basis::Hashed(s) => Some(s),
            Basis::Unkeyed(_) => None,
        }
    }
}

/// The cool-down of a backend that refused a connection: the route's
/// ejection cool-down, but at least this, so that the request's own retry
/// does not find it back at once.
const MIN_UNREACHABLE_COOL_DOWN: Duration = Duration::from_secs(1);

/// One request after [`Engine::decide`]: the decision, what it was made
/// from, and the request's in-flight accounting. Every front end drives the
/// same steps on it:
///
/// 1. [`Routed::is_rejected`]: answer 503 without calling a backend;
/// 2. [`Routed::begin`]: count the request in flight on its backend;
/// 3. [`Routed::prepare_request`] (or [`Routed::request_edits`]): remove our
///    token before the backend sees the request;
/// 4. if the backend could not be reached and nothing was sent,
///    [`Routed::reroute`]: decide again from the kept token under the
///    route's failover policy (`Strict` rejects, the others go to the
///    deterministic fallback every replica picks), replacing the counted
///    outcome so that each request counts once;
/// 5. [`Routed::record`] or [`Routed::finish`] the result (passive health);
/// 6. [`Routed::tag_response`] (or [`Routed::response_edits`]): `Set-Cookie`
///    when the pin is new, changed or due an idle refresh.
///
/// It allocates nothing on the hit path (a valid token, its backend up).
/// See the [module docs](crate::lifecycle) for an adapter's whole loop.
#[derive(Debug)]
#[must_use = "a routed request is counted; follow its lifecycle"]
pub struct Routed {
    decision: Decision,
    basis: Basis,
    in_flight: Option<InFlight>,
    tried: [Option<BackendId>; MAX_TRIED],
    unreachable: u32,
    /// The current attempt was reported unreachable and not yet re-decided.
    reported: bool,
    /// The request arrived over TLS ([`Routed::arrived_over_tls`]).
    over_tls: bool,
}

impl Routed {
    pub(crate) fn new(decision: Decision, basis: Basis) -> Self {
        Self {
            decision,
            basis,
            in_flight: None,
            tried: [None; MAX_TRIED],
            unreachable: 0,
            reported: false,
            over_tls: false,
        }
    }

    /// Tells the engine the request arrived over TLS, so that the cookie it
    /// issues is `Secure` (unless the cookie's
    /// [`secure_over_tls`](crate::CookieConfig::secure_over_tls) is off).
    /// Only the front knows how the request came in; without this call the
    /// cookie is as configured ([`CookieConfig::secure`](crate::CookieConfig::secure)).
    pub fn arrived_over_tls(&mut self) {
        self.over_tls = true;
    }

    /// Whether the front reported the request as arrived over TLS.
    pub fn is_over_tls(&self) -> bool {
        self.over_tls
    }

    /// The decision as it stands (after any reroute).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// What happened; see [`Decision::outcome`].
    pub fn outcome(&self) -> Outcome {
        self.decision.outcome
    }

    /// The table slot to send the request to; see [`Decision::target`].
    pub fn target(&self) -> Option<usize> {
        self.decision.target
    }

    /// The stable id of the chosen backend.
    pub fn backend(&self) -> Option<BackendId> {
        self.decision.backend
    }

    /// Whether the engine refused the request: answer 503 without calling
    /// any backend.
    pub fn is_rejected(&self) -> bool {
        self.decision.target.is_none()
    }

    /// The token the response will carry, when one is issued or refreshed.
    pub fn issued_token(&self) -> Option<&Token> {
        self.decision.issue.as_ref()
    }

    /// Why a presented token was not trusted, if one was presented and wasn't.
    pub fn invalid_token(&self) -> Option<InvalidToken> {
        self.decision.invalid
    }

    /// How many backends this request found unreachable so far (for an
    /// adapter's retry limit).
    pub fn unreachable_count(&self) -> u32 {
        self.unreachable
    }

    /// Counts the request in flight on its backend until [`Routed::finish`],
    /// [`Routed::reroute`] or drop. False when there is nothing to count (a
    /// rejection, or a backend no longer in `table`).
    pub fn begin<K, T>(&mut self, engine: &Engine, table: &BackendTable<K, T>) -> bool {
        let Some(id) = self.decision.backend else {
            return false;
        };
        // The slot is right for the table the decision was made on; an
        // adapter that loaded the table again finds the backend by id.
        let backend = self
            .decision
            .target
            .and_then(|i| table.get(i))
            .filter(|b| b.id() == id)
            .or_else(|| table.get_by_id(id));
        let Some(b) = backend else {
            return false;
        };
        let cfg = engine.config();
        self.in_flight = Some(InFlight::new(
            b.status().clone(),
            cfg.ejection,
            cfg.clock.clone(),
        ));
        true
    }

    /// The in-flight guard, while the request is counted.
    pub fn in_flight(&self) -> Option<&InFlight> {
        self.in_flight.as_ref()
    }

    /// Takes the in-flight guard out, e.g. to keep the request counted while
    /// its response body streams after the head has been returned.
    pub fn take_in_flight(&mut self) -> Option<InFlight> {
        self.in_flight.take()
    }

    /// Reports the result (`ok == false` for a 5xx or a failed exchange)
    /// for passive health checking, keeping the request counted in flight.
    pub fn record(&mut self, ok: bool) {
        if let Some(g) = self.in_flight.as_mut() {
            g.record(ok);
        }
    }

    /// Reports the result and stops counting the request in flight.
    pub fn finish(&mut self, ok: bool) {
        if let Some(g) = self.in_flight.take() {
            g.finish(ok);
        }
    }

    /// The request edits for the backend: our token removed (unless
    /// configured to keep it). The value form of [`Routed::prepare_request`].
    pub fn request_edits(&self, engine: &Engine, headers: &HeaderMap) -> HeaderEdits {
        if !self.decision.strip {
            return HeaderEdits::new();
        }
        match &engine.config().source.0 {
            Source::Cookie(c) => strip_cookie_edits(headers, c.name()),
            Source::Header(h) if headers.contains_key(h) => {
                let mut e = HeaderEdits::new();
                e.push(HeaderEdit::remove(h.clone()));
                e
            }
            _ => HeaderEdits::new(),
        }
    }

    /// Rewrites the request for the backend: removes our token unless
    /// configured to keep it. Once per request: after a reroute the head is
    /// already prepared.
    pub fn prepare_request(&self, engine: &Engine, headers: &mut HeaderMap) {
        if self.decision.strip {
            engine.remove_token(headers);
        }
    }

    /// The response edits: `Set-Cookie` appended (or our response header
    /// set) with a freshly sealed token when one is issued or refreshed
    /// (`Secure` when the request [arrived over TLS](Routed::arrived_over_tls)),
    /// and `Cache-Control: private` so that no shared cache hands it to
    /// another user. Empty on the hit path. The value form of
    /// [`Routed::tag_response`]; `headers` are the response's, read for
    /// their `Cache-Control`.
    pub fn response_edits(&self, engine: &Engine, headers: &HeaderMap) -> HeaderEdits {
        let mut edits = HeaderEdits::new();
        let (Some(token), Some(codec)) = (&self.decision.issue, engine.codec()) else {
            return edits;
        };
        let sealed = codec.seal(token);
        match &engine.config().source.0 {
            Source::Cookie(c) => edits.push(HeaderEdit::append(
                SET_COOKIE,
                if self.over_tls {
                    c.set_cookie_over_tls(sealed.as_str())
                } else {
                    c.set_cookie(sealed.as_str())
                },
            )),
            Source::Header(h) => edits.push(HeaderEdit::insert(
                h.clone(),
                HeaderValue::from_str(sealed.as_str()).expect("tokens are ASCII"),
            )),
            _ => return edits,
        }
        if let Some(v) = private_cache_control(headers) {
            edits.push(HeaderEdit::insert(CACHE_CONTROL, v));
        }
        edits
    }

    /// Tags the response: see [`Routed::response_edits`].
    pub fn tag_response(&self, engine: &Engine, headers: &mut HeaderMap) {
        if self.decision.issue.is_none() {
            return;
        }
        self.response_edits(engine, headers).apply(headers);
    }

    /// Reports that the backend could not be reached and nothing was sent
    /// (connection refused or timed out): the request counts as failed on
    /// it, and the backend is ejected at once for the ejection cool-down (at
    /// least a second), since a refused connection leaves no doubt. The
    /// outcome stands; [`Routed::reroute`] decides again.
    pub fn unreachable<K, T>(&mut self, engine: &Engine, table: &BackendTable<K, T>) {
        if self.reported {
            return;
        }
        self.reported = true;
        self.unreachable += 1;
        let Some(id) = self.decision.backend else {
            return;
        };
        if let Some(slot) = self.tried.iter_mut().find(|t| t.is_none()) {
            *slot = Some(id);
        }
        let cfg = engine.config();
        let now = cfg.clock.now_ms();
        let status = match self.in_flight.take() {
            Some(g) => {
                let s = g.status().clone();
                g.finish(false);
                Some(s)
            }
            None => table.get_by_id(id).map(|b| {
                b.status().record(false, now, &cfg.ejection);
                b.status().clone()
            }),
        };
        if let Some(s) = status {
            s.eject(now, cfg.ejection.cool_down().max(MIN_UNREACHABLE_COOL_DOWN));
        }
    }

    /// The backend could not be reached and nothing was sent: reports it
    /// ([`Routed::unreachable`], unless done already) and decides again from
    /// what the first decision was made from (the token, not the request's
    /// headers, which no longer carry it), never picking a backend this
    /// request already found unreachable.
    ///
    /// A pinned session follows the route's failover policy: `Strict`
    /// rejects it (503, no backend called), `Redistribute` re-pins it to the
    /// deterministic fallback (the backend every replica picks for this
    /// session) and re-issues its token, `Temporary` serves it there and
    /// keeps the token. The counted outcome is replaced, not added to.
    /// Returns the new target slot in `table`, `None` when rejected.
    pub fn reroute<K, T>(
        &mut self,
        engine: &Engine,
        table: &BackendTable<K, T>,
        ready: impl Readiness,
    ) -> Option<usize> {
        self.unreachable(engine, table);
        let mut slots = [None; MAX_TRIED];
        for (s, id) in slots.iter_mut().zip(self.tried) {
            *s = id.and_then(|id| table.index_of(id));
        }
        let view = engine.view(table, Excluding { ready, slots });
        let d = Decision {
            strip: self.decision.strip,
            invalid: self.decision.invalid,
            reject_error: self.decision.reject_error,
            ..engine.decide_from(&view, self.basis)
        };
        engine.recount(table, &self.decision, &d, self.basis.session());
        tracing::debug!(from = %self.decision.outcome, to = %d.outcome, "decided again after an unreachable backend");
        self.decision = d;
        self.reported = false;
        d.target
    }
}
