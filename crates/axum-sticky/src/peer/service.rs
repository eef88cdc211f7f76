//! [`Peer`]: the service the layer wraps an app in.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use tower::ServiceExt;
use tower_service::Service;
use tower_sticky::{Decision, Engine, Routed};

use super::future::{Local, PeerFuture};
use super::hop::HOP_HEADER;
use super::Shared;
use crate::answer::plain;
use crate::forwarded::Hop;
use crate::relay::{self, Origin};
use crate::{Affinity, ResponseFuture};

/// An app in peer mode: made by [`PeerLayer`](crate::PeerLayer). `Clone`
/// and `Infallible`, as axum wants; ready when the app is (an axum
/// `Router` always is).
pub struct Peer<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Peer<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Peer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.shared.me)
            .finish_non_exhaustive()
    }
}

impl<S> Peer<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped app.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped app, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped app, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }
}

impl<S, B> Service<Request<Body>> for Peer<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = PeerFuture<S::Future>;

    /// Ready when the app is: a request served here goes to this ready
    /// app, a clone taking its place (as tower's services do), and its
    /// future is held unboxed.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        if parts.headers.contains_key(&HOP_HEADER) {
            return self.hop_received(parts, body);
        }
        let shared = &self.shared;
        let engine = &shared.engine;
        // Decided, and our token removed, in one scan of the cookies: the
        // local app never sees it, nor does the owner of a forwarded
        // request (it takes this replica's decision from the marker).
        let decided = relay::decide_prepared(engine, &shared.table.load(), &mut parts, |link| {
            (link.client.clone(), link.name.clone())
        });
        let (routed, (client, name)) = match decided {
            Ok(d) => d,
            Err(answer) => return PeerFuture::other(ResponseFuture::ready(answer)),
        };
        match client {
            None => {
                let affinity = Affinity::new(*routed.decision(), Some(shared.me.clone()));
                parts.extensions.insert(affinity);
                let local = Local {
                    shared: shared.clone(),
                    routed,
                };
                let future = self.take_inner().call(Request::from_parts(parts, body));
                PeerFuture::app(future, Some(local))
            }
            Some(client) => {
                let x = Forward {
                    shared: shared.clone(),
                    routed,
                    client,
                    name,
                };
                PeerFuture::other(ResponseFuture::exchange(forward(
                    self.inner.clone(),
                    x,
                    parts,
                    body,
                )))
            }
        }
    }
}

impl<S: Clone> Peer<S> {
    /// The ready service, leaving a clone in its place (tower's pattern:
    /// the clone is not necessarily ready).
    fn take_inner(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

impl<S, B> Peer<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    /// A request another replica forwarded: served here whatever its token
    /// says (at most one hop), if its marker is good.
    fn hop_received(&mut self, mut parts: Parts, body: Body) -> PeerFuture<S::Future> {
        let shared = &self.shared;
        let mut markers = parts.headers.get_all(&HOP_HEADER).iter();
        let checked = match (markers.next(), markers.next()) {
            (Some(v), None) => shared.hop.check(v.as_bytes(), shared.me_id, &parts),
            _ => Err(super::hop::HopRefused::Invalid),
        };
        let outcome = match checked {
            Ok(outcome) => outcome,
            Err(why) => {
                tracing::warn!(replica = %shared.me, ?why, "hop marker refused");
                let refused = plain(StatusCode::FORBIDDEN, "hop marker refused\n");
                return PeerFuture::other(ResponseFuture::ready(refused));
            }
        };
        parts.headers.remove(&HOP_HEADER);
        // A peer removed our token before sending; one that arrives anyway
        // (a peer configured otherwise) is removed here, so that handlers
        // never see it. Without one, a lookup.
        shared.engine.remove_token(&mut parts.headers);
        // The forwarding replica decided (and counted) the request, removed
        // our token and tags the response; its outcome, authenticated by
        // the marker, is the handlers' `Affinity`. Never forwarded again.
        // This replica is slot 0 of its table.
        let decision = Decision::relayed(0, shared.me_id, outcome);
        parts
            .extensions
            .insert(Affinity::new(decision, Some(shared.me.clone())));
        let future = self.take_inner().call(Request::from_parts(parts, body));
        PeerFuture::app(future, None)
    }
}

/// Serves the request with the local app; the response is tagged, and
/// the request counted in flight here until its body ends.
async fn serve_here<S, B>(
    inner: S,
    shared: Arc<Shared>,
    routed: Routed,
    mut parts: Parts,
    body: Body,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let name = shared.me.clone();
    parts
        .extensions
        .insert(Affinity::new(*routed.decision(), Some(name.clone())));
    let res = match inner.oneshot(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    relay::respond(&shared.engine, routed, res, name, Origin::Local)
}

/// A request on its way to the replica that owns its session.
struct Forward {
    shared: Arc<Shared>,
    routed: Routed,
    client: sticky_proxy::Backend,
    name: Arc<str>,
}

/// Forwards the request to the replica that owns its session, deciding
/// again (failover) when that replica cannot be reached: one failure
/// counted on it, ejected, and the request sent where the policy says,
/// which may be here.
async fn forward<S, B>(inner: S, x: Forward, mut parts: Parts, mut body: Body) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let Forward {
        shared,
        mut routed,
        mut client,
        mut name,
    } = x;
    let engine = &shared.engine;
    let client_upgrade = match relay::prepare(&mut parts, Hop::Peer) {
        Ok(u) => u,
        Err(e) => return relay::not_fit(routed, e.status()),
    };
    loop {
        let to = routed.backend().expect("a routed request has a backend");
        let marker = shared.hop.seal(to, routed.outcome(), &parts);
        parts.headers.insert(HOP_HEADER, marker);
        let sent = match client.pool().acquire().await {
            Ok(conn) => client.send_on(conn, &parts, Pin::new(&mut body)).await,
            Err(e) => Err(sticky_proxy::Error::Connect(e)),
        };
        let e = match sent {
            Ok(res) => {
                return relay::respond(engine, routed, res, name, Origin::Remote(client_upgrade))
            }
            Err(sticky_proxy::Error::Connect(e)) => e,
            Err(e) => return relay::failed(engine, &shared.table.load(), routed, name, &e),
        };
        // Nothing was sent: the request is decided again from its token.
        client.pool().clear();
        let next = relay::reroute(
            engine,
            &shared.table.load(),
            &mut routed,
            &name,
            &e,
            "no replica could be reached\n",
            |link| link.clone(),
        );
        let link = match next {
            Ok(link) => link,
            Err(answer) => return answer,
        };
        name = link.name;
        match link.client {
            Some(c) => client = c,
            None => {
                // The session now lives here (its head prepared already).
                parts.headers.remove(&HOP_HEADER);
                if let Some(up) = client_upgrade {
                    parts.extensions.insert(up);
                }
                return serve_here(inner, shared.clone(), routed, parts, body).await;
            }
        }
    }
}
