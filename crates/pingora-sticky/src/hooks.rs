//! One helper per `ProxyHttp` hook. Each is a method of [`StickyBalancer`]
//! named after the hook it serves; call it from that hook.

use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_proxy::Session;
use tower_sticky::Outcome;

use crate::engine::HeaderEdit;
use crate::membership::PingoraReady;
use crate::{StickyBalancer, StickyCtx};

impl<S> StickyBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    /// For `ProxyHttp::new_ctx`: a fresh per-request value.
    pub fn new_ctx(&self) -> StickyCtx {
        StickyCtx::default()
    }

    /// For `ProxyHttp::upstream_peer`: reads the token from the request
    /// (every `Cookie` header), decides, and returns the backend's peer.
    /// A request the engine refuses (`Strict` failover, no backend) is an
    /// `HTTPStatus(503)` error, which pingora answers as a 503.
    ///
    /// Called again by pingora after [`fail_to_connect`](Self::fail_to_connect)
    /// marked the error retryable: the session then goes where the failover
    /// policy says (the deterministic fallback, or 503 under `Strict`).
    pub fn upstream_peer(&self, session: &Session, ctx: &mut StickyCtx) -> Result<Box<HttpPeer>> {
        self.route(session.req_header(), ctx)
    }

    /// [`upstream_peer`](Self::upstream_peer) for a request head.
    pub fn route(&self, req: &RequestHeader, ctx: &mut StickyCtx) -> Result<Box<HttpPeer>> {
        let snap = self.snapshot();
        let ready = PingoraReady {
            table: &snap.table,
            backends: self.lb.backends(),
        };
        let decision = self.engine.decide(&snap.table, req, ready);
        // A previous attempt's guard (its failure already recorded) ends here.
        ctx.in_flight = None;
        ctx.attempts += 1;
        ctx.decision = Some(decision);
        let Some(backend) = decision.target().and_then(|i| snap.table.get(i)) else {
            ctx.backend = None;
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                format!("sticky: {}", decision.outcome()),
            ));
        };
        ctx.backend = Some(backend.key().name.clone());
        ctx.in_flight = self.engine.begin(&snap.table, &decision);
        Ok(Box::new((self.peer)(backend.value())))
    }

    /// For `ProxyHttp::upstream_request_filter`: removes our cookie from the
    /// request the backend sees, through `RequestHeader`'s own methods.
    pub fn upstream_request_filter(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &StickyCtx,
    ) -> Result<()> {
        let Some(decision) = &ctx.decision else {
            return Ok(());
        };
        let edits = self
            .engine
            .request_edits(decision, &upstream_request.headers);
        for HeaderEdit { name, values } in edits {
            upstream_request.remove_header(&name);
            for v in values {
                upstream_request.append_header(name.clone(), v)?;
            }
        }
        Ok(())
    }

    /// For `ProxyHttp::fail_to_connect`: nothing was sent, so the failure is
    /// recorded (the backend is taken out for the unreachable cool-down) and
    /// the error marked retryable; pingora then calls `upstream_peer` again,
    /// where the failover policy decides: the deterministic fallback (and a
    /// re-pinned session under `Redistribute`), or 503 under `Strict`.
    pub fn fail_to_connect(&self, ctx: &mut StickyCtx, mut e: Box<Error>) -> Box<Error> {
        if let Some(mut guard) = ctx.in_flight.take() {
            guard
                .status()
                .eject(self.now_ms(), self.unreachable_cool_down);
            guard.record(false);
        }
        // Each attempt takes one backend out: more attempts than backends
        // means there is nowhere left to go.
        let backends = self.snapshot().table.len() as u32;
        e.set_retry(ctx.attempts <= backends);
        e
    }

    /// For `ProxyHttp::response_filter` (not `upstream_response_filter`,
    /// which runs before pingora's cache): appends `Set-Cookie` and marks the
    /// response `Cache-Control: private` when a token is issued or refreshed,
    /// through `ResponseHeader`'s own methods. Also records a 5xx for passive
    /// health checking.
    pub fn response_filter(
        &self,
        upstream_response: &mut ResponseHeader,
        ctx: &mut StickyCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        ctx.status = Some(status);
        if let Some(guard) = ctx.in_flight.as_mut() {
            guard.record(status < 500);
        }
        let Some(decision) = &ctx.decision else {
            return Ok(());
        };
        let edits = self
            .engine
            .response_edits(decision, &upstream_response.headers);
        for HeaderEdit { name, values } in edits {
            upstream_response.remove_header(&name);
            for v in values {
                upstream_response.append_header(name.clone(), v)?;
            }
        }
        Ok(())
    }

    /// For `ProxyHttp::logging`: ends the request's in-flight count with its
    /// result, records the outcome on a `tracing` event (target
    /// `pingora_sticky`), and returns it for your own access log.
    pub fn logging(&self, e: Option<&Error>, ctx: &mut StickyCtx) -> Option<Outcome> {
        let ok = e.is_none() && ctx.status.is_none_or(|s| s < 500);
        if let Some(guard) = ctx.in_flight.take() {
            guard.finish(ok);
        }
        let outcome = ctx.outcome()?;
        tracing::debug!(
            target: "pingora_sticky",
            outcome = %outcome,
            backend = ctx.backend().unwrap_or("-"),
            attempts = ctx.attempts,
            invalid_token = ?ctx.decision.and_then(|d| d.invalid_token()),
            "sticky"
        );
        Some(outcome)
    }
}
