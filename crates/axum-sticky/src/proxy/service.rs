//! [`StickyProxy`]: the service.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use sticky_proxy::hop::is_upgrade;
use sticky_proxy::HopByHop;
use tower::ServiceExt;
use tower_service::Service;
use tower_sticky::{Engine, StickyConfig};

use crate::answer::{bad_gateway, plain, rejected};
use crate::backends::Backends;
use crate::error::{classify, Failure};
use crate::{tunnel, Affinity, ResponseFuture};

use super::reroute::{self, Sent};

/// A reverse proxy with session affinity over a [`Backends`] set, shaped
/// for axum: `Clone + Send + Sync`, always ready, `Infallible`. Mount it
/// with `Router::fallback_service` (or `route_service`).
///
/// Each request is decided by the core engine (token opened, pinned
/// backend or failover, placement of new sessions), our cookie is removed
/// before the backend sees the request, hop-by-hop fields are stripped,
/// and the response is tagged with `Set-Cookie` when the pin is new,
/// changed or due a refresh. WebSocket upgrades are tunnelled.
///
/// A backend that cannot be reached (nothing sent) is ejected at once.
/// With sticky-proxy's client (the default, [`Backends::http`]) the request
/// is then decided again from its kept token and sent where the failover
/// policy says (`Strict`: 503); with another client, which consumed the
/// request, it is answered `502` and the session's next requests fail
/// over.
pub struct StickyProxy<S> {
    engine: Engine,
    backends: Backends<S>,
}

impl<S> Clone for StickyProxy<S> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            backends: self.backends.clone(),
        }
    }
}

impl<S> std::fmt::Debug for StickyProxy<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyProxy")
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

impl<S> StickyProxy<S> {
    /// A proxy deciding with `config` over `backends`.
    pub fn new(config: StickyConfig, backends: Backends<S>) -> Self {
        Self {
            engine: Engine::new(config),
            backends,
        }
    }

    /// The engine (its [`stats`](Engine::stats) over
    /// [`backends`](Self::backends) are the counters).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The backend set.
    pub fn backends(&self) -> &Backends<S> {
        &self.backends
    }
}

impl<S, ResBody> Service<Request<Body>> for StickyProxy<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tower::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    /// Always ready: backends' readiness is their clients' business.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture {
        let (mut parts, body) = req.into_parts();
        let engine = &self.engine;
        // The table guard is dropped before any await.
        let (mut routed, service, name) = {
            let table = self.backends.load();
            let routed = engine.decide(&table, &parts, |_| true);
            let Some(b) = routed.target().and_then(|i| table.get(i)) else {
                return ResponseFuture::ready(rejected(&routed));
            };
            let member = b.value();
            let (service, name) = (member.service().clone(), member.name().clone());
            let mut routed = routed;
            routed.begin(engine, &table);
            (routed, service, name)
        };
        routed.prepare_request(engine, &mut parts.headers);
        let upgrade = is_upgrade(&parts);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
        if HopByHop::of(&parts.headers)
            .strip_request(&mut parts.headers, upgrade)
            .is_err()
        {
            routed.finish(true);
            return ResponseFuture::ready(plain(
                StatusCode::NOT_IMPLEMENTED,
                "transfer coding not supported\n",
            ));
        }
        let affinity = Affinity::new(*routed.decision(), Some(name.clone()));
        parts.extensions.insert(affinity.clone());
        let engine = engine.clone();
        let backends = self.backends.clone();
        if let Some(client) = reroute::as_proxy_client(&service) {
            let client = client.clone();
            return ResponseFuture::exchange(send_rerouting(
                engine,
                backends,
                routed,
                client,
                name,
                parts,
                body,
                client_upgrade,
            ));
        }
        ResponseFuture::exchange(async move {
            let res = service.oneshot(Request::from_parts(parts, body)).await;
            let res = match res {
                Ok(res) => res,
                Err(e) => {
                    let e: tower::BoxError = e.into();
                    return match classify(&*e) {
                        Failure::Unreachable => {
                            routed.unreachable(&engine, &backends.load());
                            tracing::warn!(backend = %name, error = %e, "backend unreachable, ejected");
                            bad_gateway("the backend could not be reached\n", affinity)
                        }
                        Failure::Refused(status) => {
                            routed.finish(true);
                            plain(status, "request not fit to forward\n")
                        }
                        Failure::MaybeSent => {
                            routed.finish(false);
                            tracing::warn!(backend = %name, error = %e, "backend request failed");
                            bad_gateway("the backend failed to answer\n", affinity)
                        }
                    };
                }
            };
            routed.finish(!res.status().is_server_error());
            let (mut head, body) = res.into_parts();
            let switching = head.status == StatusCode::SWITCHING_PROTOCOLS;
            sticky_proxy::hop::strip_response(&mut head.headers, switching);
            routed.tag_response(&engine, &mut head.headers);
            head.extensions.insert(affinity);
            let body = match (switching, client_upgrade) {
                (true, Some(client)) => {
                    if let Some(backend) = tunnel::backend_side(&mut head, body) {
                        tunnel::spawn(client, backend, name);
                    }
                    Body::empty()
                }
                _ => Body::new(body),
            };
            Response::from_parts(head, body)
        })
    }
}

/// The exchange with sticky-proxy's client: an unreachable backend is
/// ejected and the request decided again from its kept token.
#[allow(clippy::too_many_arguments)]
async fn send_rerouting<S: Clone + 'static>(
    engine: Engine,
    backends: Backends<S>,
    mut routed: tower_sticky::Routed,
    client: sticky_proxy::Backend,
    mut name: std::sync::Arc<str>,
    parts: http::request::Parts,
    mut body: Body,
    client_upgrade: Option<OnUpgrade>,
) -> Response<Body> {
    let sent = reroute::send(
        &engine,
        &backends,
        &mut routed,
        client,
        &mut name,
        &parts,
        &mut body,
    )
    .await;
    let affinity = Affinity::new(*routed.decision(), Some(name.clone()));
    let res = match sent {
        Sent::Answer(res) => res,
        Sent::Rejected => return rejected(&routed),
        Sent::Failed(e) => {
            return match classify(&e) {
                Failure::Unreachable => bad_gateway("no backend could be reached\n", affinity),
                Failure::Refused(status) => {
                    routed.finish(true);
                    plain(status, "request not fit to forward\n")
                }
                Failure::MaybeSent => {
                    routed.finish(false);
                    tracing::warn!(backend = %name, error = %e, "backend request failed");
                    bad_gateway("the backend failed to answer\n", affinity)
                }
            };
        }
    };
    routed.finish(!res.status().is_server_error());
    let (mut head, body) = res.into_parts();
    let switching = head.status == StatusCode::SWITCHING_PROTOCOLS;
    sticky_proxy::hop::strip_response(&mut head.headers, switching);
    routed.tag_response(&engine, &mut head.headers);
    head.extensions.insert(affinity);
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
