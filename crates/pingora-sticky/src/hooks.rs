//! One helper per `ProxyHttp` hook. Each is a method of [`StickyBalancer`]
//! named after the hook it serves; call it from that hook. The request's
//! lifecycle (decide, count in flight, header edits, re-decide after an
//! unreachable backend, one outcome) is the core's
//! [`Routed`](tower_sticky::Routed); these helpers
//! only adapt it to pingora's hooks and header types.

use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_proxy::Session;
use tower_sticky::lifecycle::{EditOp, HeaderEdits};
use tower_sticky::Outcome;

use crate::membership::PingoraReady;
use crate::{StickyBalancer, StickyCtx};

/// At most this many backends are tried for one request (each one found
/// unreachable is taken out before the next try).
const MAX_ATTEMPTS: u32 = 4;

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
    /// (every `Cookie` header), decides, counts the request in flight and
    /// returns the backend's peer. A request the engine refuses (`Strict`
    /// failover, no backend) is an `HTTPStatus(503)` error, which pingora
    /// answers as a 503 without calling any backend.
    ///
    /// pingora calls it again to retry: after
    /// [`fail_to_connect`](Self::fail_to_connect) the session goes where the
    /// failover policy says, decided from the kept token (the deterministic
    /// fallback, or 503 under `Strict`); after a reused connection failed
    /// before anything was sent, to the same backend again.
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
        let routed = match ctx.routed.as_mut() {
            None => ctx
                .routed
                .insert(self.engine.decide(&snap.table, req, ready)),
            Some(routed) => {
                if std::mem::take(&mut ctx.reroute) {
                    routed.reroute(&self.engine, &snap.table, ready);
                }
                routed
            }
        };
        let backend = routed.backend().and_then(|id| snap.table.get_by_id(id));
        let Some(backend) = backend else {
            ctx.backend = None;
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                format!("sticky: {}", routed.outcome()),
            ));
        };
        ctx.backend = Some(backend.key().name.clone());
        if routed.in_flight().is_none() {
            routed.begin(&self.engine, &snap.table);
        }
        Ok(Box::new((self.peer)(backend.value())))
    }

    /// For `ProxyHttp::upstream_request_filter`: removes our cookie from the
    /// request the backend sees, through `RequestHeader`'s own methods (so
    /// pingora's header-case map stays in step).
    pub fn upstream_request_filter(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &StickyCtx,
    ) -> Result<()> {
        let Some(routed) = &ctx.routed else {
            return Ok(());
        };
        let edits = routed.request_edits(&self.engine, &upstream_request.headers);
        apply(edits, |op, name, value| match (op, value) {
            (EditOp::Remove, _) => {
                upstream_request.remove_header(&name);
                Ok(())
            }
            (EditOp::Insert, Some(v)) => upstream_request.insert_header(name, v).map(|_| ()),
            (_, Some(v)) => upstream_request.append_header(name, v).map(|_| ()),
            (_, None) => Ok(()),
        })
    }

    /// For `ProxyHttp::fail_to_connect`: nothing was sent, so the backend is
    /// reported unreachable (ejected for the ejection cool-down, a failure
    /// for passive health) and the error marked retryable; pingora then
    /// calls `upstream_peer` again, where the core decides again from the
    /// kept token under the failover policy: the deterministic fallback
    /// (re-pinned under `Redistribute`), or 503 under `Strict`.
    pub fn fail_to_connect(&self, ctx: &mut StickyCtx, mut e: Box<Error>) -> Box<Error> {
        let Some(routed) = ctx.routed.as_mut() else {
            return e;
        };
        let snap = self.snapshot();
        routed.unreachable(&self.engine, &snap.table);
        ctx.reroute = true;
        e.set_retry(routed.unreachable_count() < MAX_ATTEMPTS);
        e
    }

    /// For `ProxyHttp::response_filter` (not `upstream_response_filter`,
    /// which runs before pingora's cache): appends `Set-Cookie` and makes the
    /// response `Cache-Control: private` when a token is issued or refreshed,
    /// through `ResponseHeader`'s own methods; records a 5xx for passive
    /// health checking.
    pub fn response_filter(
        &self,
        upstream_response: &mut ResponseHeader,
        ctx: &mut StickyCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        ctx.status = Some(status);
        let Some(routed) = ctx.routed.as_mut() else {
            return Ok(());
        };
        routed.record(status < 500);
        let edits = routed.response_edits(&self.engine, &upstream_response.headers);
        apply(edits, |op, name, value| match (op, value) {
            (EditOp::Remove, _) => {
                upstream_response.remove_header(&name);
                Ok(())
            }
            (EditOp::Insert, Some(v)) => upstream_response.insert_header(name, v).map(|_| ()),
            (_, Some(v)) => upstream_response.append_header(name, v).map(|_| ()),
            (_, None) => Ok(()),
        })
    }

    /// For `ProxyHttp::logging`: ends the request's in-flight count with its
    /// result, records the outcome on a `tracing` event (target
    /// `pingora_sticky`, level debug), and returns it for your own access log.
    ///
    /// Only the backend's failures count against it (passive health): a
    /// client that went away mid-request, or any other downstream or
    /// internal error, ends the count without a verdict. Were they counted,
    /// a load generator closing its connections could eject every backend.
    pub fn logging(&self, e: Option<&Error>, ctx: &mut StickyCtx) -> Option<Outcome> {
        let routed = ctx.routed.as_mut()?;
        match e {
            None => routed.finish(ctx.status.is_none_or(|s| s < 500)),
            Some(e) if *e.esource() == ErrorSource::Upstream => routed.finish(false),
            Some(_) => drop(routed.take_in_flight()),
        }
        let outcome = routed.outcome();
        tracing::debug!(
            target: "pingora_sticky",
            outcome = %outcome,
            backend = ctx.backend.as_deref().unwrap_or("-"),
            unreachable = routed.unreachable_count(),
            invalid_token = ?routed.invalid_token(),
            "sticky"
        );
        Some(outcome)
    }
}

/// Walks the core's header edits through a header type's own methods.
fn apply(
    edits: HeaderEdits,
    mut f: impl FnMut(EditOp, http::HeaderName, Option<http::HeaderValue>) -> Result<()>,
) -> Result<()> {
    for edit in edits {
        let (op, name, value) = edit.into_parts();
        f(op, name, value)?;
    }
    Ok(())
}
