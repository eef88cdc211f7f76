//! [`Peer`]: the service the layer wraps an app in.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use sticky_proxy::hop::is_upgrade;
use sticky_proxy::HopByHop;
use tower::ServiceExt;
use tower_service::Service;
use tower_sticky::{Engine, Routed};

use super::hop::HOP_HEADER;
use super::Shared;
use crate::answer::{bad_gateway, plain, rejected};
use crate::error::{classify, Failure};
use crate::{tunnel, Affinity, ResponseFuture};

/// An app in peer mode: made by [`PeerLayer`](crate::PeerLayer). `Clone`,
/// always ready, `Infallible`, as axum wants.
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
    type Future = ResponseFuture;

    /// Always ready: the app is called with `oneshot` on a clone, as
    /// axum's own routes are.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture {
        let shared = &self.shared;
        let engine = &shared.engine;
        let (mut parts, body) = req.into_parts();
        if parts.headers.contains_key(&HOP_HEADER) {
            return self.hop_received(parts, body);
        }
        let (routed, client, name) = {
            let table = shared.table.load();
            let mut routed = engine.decide(&table, &parts, |_| true);
            let Some(b) = routed.target().and_then(|i| table.get(i)) else {
                return ResponseFuture::ready(rejected(&routed));
            };
            routed.begin(engine, &table);
            let link = b.value();
            (routed, link.client.clone(), link.name.clone())
        };
        match client {
            None => {
                routed.prepare_request(engine, &mut parts.headers);
                let shared = shared.clone();
                let inner = self.take_inner();
                ResponseFuture::exchange(serve_here(inner, shared, routed, parts, body))
            }
            Some(client) => {
                let inner = self.inner.clone();
                ResponseFuture::exchange(forward(
                    inner,
                    shared.clone(),
                    routed,
                    client,
                    name,
                    parts,
                    body,
                ))
            }
        }
    }
}

impl<S: Clone> Peer<S> {
    /// The ready service, leaving a clone in its place (axum's pattern:
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
    fn hop_received(&mut self, mut parts: Parts, body: Body) -> ResponseFuture {
        let shared = &self.shared;
        let mut markers = parts.headers.get_all(&HOP_HEADER).iter();
        let checked = match (markers.next(), markers.next()) {
            (Some(v), None) => shared.hop.check(v.as_bytes(), shared.me_id, &parts),
            _ => Err(super::hop::HopRefused::OtherRequest),
        };
        if let Err(why) = checked {
            tracing::warn!(replica = %shared.me, ?why, "hop marker refused");
            return ResponseFuture::ready(plain(StatusCode::FORBIDDEN, "hop marker refused\n"));
        }
        parts.headers.remove(&HOP_HEADER);
        // Decided for the extensions and to remove our cookie; never
        // forwarded again, never tagged (the forwarding replica tags).
        let routed = {
            let table = shared.table.load();
            shared.engine.decide(&table, &parts, |_| true)
        };
        routed.prepare_request(&shared.engine, &mut parts.headers);
        let affinity = Affinity::new(*routed.decision(), Some(shared.me.clone()));
        parts.extensions.insert(affinity);
        let inner = self.take_inner();
        ResponseFuture::exchange(async move {
            let res = match inner.oneshot(Request::from_parts(parts, body)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            res.map(|b| Body::new(b))
        })
    }
}

/// Serves the request with the local app; the response is tagged.
async fn serve_here<S, B>(
    inner: S,
    shared: Arc<Shared>,
    mut routed: Routed,
    mut parts: Parts,
    body: Body,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let affinity = Affinity::new(*routed.decision(), Some(shared.me.clone()));
    parts.extensions.insert(affinity.clone());
    let res = match inner.oneshot(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    routed.finish(!res.status().is_server_error());
    let (mut head, body) = res.into_parts();
    routed.tag_response(&shared.engine, &mut head.headers);
    head.extensions.insert(affinity);
    Response::from_parts(head, Body::new(body))
}

/// Forwards the request to the replica that owns its session, deciding
/// again (failover) when that replica cannot be reached.
async fn forward<S, B>(
    inner: S,
    shared: Arc<Shared>,
    mut routed: Routed,
    mut client: sticky_proxy::Backend,
    mut name: Arc<str>,
    mut parts: Parts,
    mut body: Body,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let engine = &shared.engine;
    let upgrade = is_upgrade(&parts);
    let client_upgrade = if upgrade {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };
    if let Err(e) = HopByHop::of(&parts.headers).strip_request(&mut parts.headers, upgrade) {
        routed.finish(true);
        return plain(e.status(), "request not fit to forward\n");
    }
    loop {
        let to = routed.backend().expect("a routed request has a backend");
        parts
            .headers
            .insert(HOP_HEADER, shared.hop.seal(to, &parts));
        let sent = match client.pool().acquire().await {
            Ok(conn) => client.send_on(conn, &parts, Pin::new(&mut body)).await,
            Err(e) => Err(sticky_proxy::Error::Connect(e)),
        };
        let e = match sent {
            Ok(res) => return answered(&shared, routed, name, res, client_upgrade),
            Err(e) => e,
        };
        let affinity = Affinity::new(*routed.decision(), Some(name.clone()));
        match classify(&e) {
            Failure::Unreachable => {}
            Failure::Refused(status) => {
                routed.finish(true);
                return plain(status, "request not fit to forward\n");
            }
            Failure::MaybeSent => {
                routed.finish(false);
                tracing::warn!(peer = %name, error = %e, "forwarded request failed");
                return bad_gateway("the session's replica failed to answer\n", affinity);
            }
        }
        // Nothing was sent: eject the peer, decide again from the token.
        client.pool().clear();
        tracing::warn!(peer = %name, error = %e, "peer unreachable, ejected");
        let table = shared.table.load();
        if routed.unreachable_count() as usize >= table.len() {
            return bad_gateway("no replica could be reached\n", affinity);
        }
        routed.reroute(engine, &table, |_| true);
        let Some(b) = routed.target().and_then(|i| table.get(i)) else {
            return rejected(&routed);
        };
        routed.begin(engine, &table);
        let link = b.value().clone();
        drop(table);
        name = link.name;
        match link.client {
            Some(c) => client = c,
            None => {
                // The session now lives here.
                parts.headers.remove(&HOP_HEADER);
                routed.prepare_request(engine, &mut parts.headers);
                if let Some(up) = client_upgrade {
                    parts.extensions.insert(up);
                }
                return serve_here(inner, shared.clone(), routed, parts, body).await;
            }
        }
    }
}

/// The owner's answer, tagged and sent back; an upgrade is tunnelled.
fn answered(
    shared: &Shared,
    mut routed: Routed,
    name: Arc<str>,
    res: Response<sticky_proxy::ResponseBody>,
    client_upgrade: Option<OnUpgrade>,
) -> Response<Body> {
    routed.finish(!res.status().is_server_error());
    let (mut head, body) = res.into_parts();
    let switching = head.status == StatusCode::SWITCHING_PROTOCOLS;
    sticky_proxy::hop::strip_response(&mut head.headers, switching);
    routed.tag_response(&shared.engine, &mut head.headers);
    head.extensions
        .insert(Affinity::new(*routed.decision(), Some(name.clone())));
    let body = match (switching, client_upgrade) {
        (true, Some(client)) => {
            if let Some(backend) = body.into_upgraded() {
                tunnel::spawn(client, tunnel::BackendSide::Proxy(backend), name);
            }
            Body::empty()
        }
        _ => Body::new(body),
    };
    Response::from_parts(head, body)
}
