//! [`StickyProxy`]: the service.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use hyper::upgrade::OnUpgrade;
use tower::ServiceExt;
use tower_service::Service;
use tower_sticky::{Engine, Routed, StickyConfig};

use crate::backends::Backends;
use crate::forwarded::Hop;
use crate::relay::{self, Origin};
use crate::{Affinity, ResponseFuture};

use super::reroute;

/// A reverse proxy with session affinity over a [`Backends`] set, shaped
/// for axum: `Clone + Send + Sync`, always ready, `Infallible`. Mount it
/// with `Router::fallback_service` (or `route_service`).
///
/// Each request is decided by the core engine (token opened, pinned
/// backend or failover, placement of new sessions), our cookie is removed
/// before the backend sees the request, hop-by-hop fields are stripped,
/// the client's address is appended to `X-Forwarded-For` (from axum's
/// `ConnectInfo<SocketAddr>` when the app is served with
/// `into_make_service_with_connect_info`), `X-Forwarded-Proto` and
/// `X-Forwarded-Host` are set, and the response is tagged with
/// `Set-Cookie` when the pin is new, changed or due a refresh. WebSocket
/// upgrades are tunnelled. A request counts in flight on its backend (for
/// least-loaded placement) until its response body has ended or is
/// dropped.
///
/// A backend that cannot be reached (nothing sent) counts one failure and
/// is ejected at once, and the request is decided again from its kept
/// token and sent where the failover policy says (`Strict`: 503): with
/// sticky-proxy's client (the default, [`Backends::http`]) whenever the
/// connection fails; with another client when its `poll_ready` fails (an
/// error from its `call` comes after it took the request, which is then
/// answered `502`, and the session's next requests fail over).
pub struct StickyProxy<S> {
    shared: Arc<Shared<S>>,
}

/// What every clone shares: cloning the proxy (axum does, per request) is
/// one reference count.
pub(super) struct Shared<S> {
    pub(super) engine: Engine,
    pub(super) backends: Backends<S>,
}

impl<S> Clone for StickyProxy<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for StickyProxy<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyProxy")
            .field("backends", &self.shared.backends)
            .finish_non_exhaustive()
    }
}

impl<S> StickyProxy<S> {
    /// A proxy deciding with `config` over `backends`.
    pub fn new(config: StickyConfig, backends: Backends<S>) -> Self {
        Self {
            shared: Arc::new(Shared {
                engine: Engine::new(config),
                backends,
            }),
        }
    }

    /// The engine (its [`stats`](Engine::stats) over
    /// [`backends`](Self::backends) are the counters).
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The backend set.
    pub fn backends(&self) -> &Backends<S> {
        &self.shared.backends
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
        let shared = &self.shared;
        let engine = &shared.engine;
        // Decided once, from the request as the client sent it, and our
        // token removed in the same scan of its cookies; a reroute decides
        // again from the kept token. The table guard is dropped before any
        // await.
        let decided = relay::decide_prepared(engine, &shared.backends.load(), &mut parts, |m| {
            (m.service().clone(), m.name().clone())
        });
        let (routed, (service, name)) = match decided {
            Ok(d) => d,
            Err(answer) => return ResponseFuture::ready(answer),
        };
        let client_upgrade = match relay::prepare(&mut parts, Hop::Edge) {
            Ok(u) => u,
            Err(e) => return ResponseFuture::ready(relay::not_fit(routed, e.status())),
        };
        let shared = shared.clone();
        let x = Exchange {
            routed,
            name,
            parts,
            client_upgrade,
        };
        if let Some(client) = reroute::as_proxy_client(&service) {
            let client = client.clone();
            return ResponseFuture::exchange(reroute::send(shared, x, client, body));
        }
        ResponseFuture::exchange(send(shared, x, service, body))
    }
}

/// The answer's text when no backend could be reached.
pub(super) const NONE_LEFT: &str = "no backend could be reached\n";

/// One request on its way: its lifecycle, its backend's name, its head
/// (ready to leave) and the client's upgrade.
pub(super) struct Exchange {
    pub(super) routed: Routed,
    pub(super) name: Arc<str>,
    pub(super) parts: Parts,
    pub(super) client_upgrade: Option<OnUpgrade>,
}

/// The exchange with any tower client: a backend that is not ready (nothing
/// sent) is ejected and the request decided again; once called, the client
/// has the request.
///
/// An `async` block over the arguments rather than an `async fn`: an
/// `async fn` keeps its arguments twice in its future (as given, and moved
/// into locals), which made this one 1,032 bytes to write and copy into
/// its box per request instead of about half that.
// Not an `async fn`: see above.
#[allow(clippy::manual_async_fn)]
fn send<S, ResBody>(
    shared: Arc<Shared<S>>,
    mut x: Exchange,
    mut service: S,
    body: Body,
) -> impl Future<Output = Response<Body>>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + 'static,
    S::Error: Into<tower::BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tower::BoxError>,
{
    async move {
        let engine = &shared.engine;
        // Not ready: nothing was sent, the request is still ours.
        while let Err(e) = ServiceExt::<Request<Body>>::ready(&mut service).await {
            let e: tower::BoxError = e.into();
            let table = shared.backends.load();
            let next = relay::reroute(engine, &table, &mut x.routed, &x.name, &e, NONE_LEFT, |m| {
                (m.service().clone(), m.name().clone())
            });
            (service, x.name) = match next {
                Ok(next) => next,
                Err(answer) => return answer,
            };
        }
        let affinity = Affinity::new(*x.routed.decision(), Some(x.name.clone()));
        x.parts.extensions.insert(affinity);
        match service.call(Request::from_parts(x.parts, body)).await {
            Ok(res) => relay::respond(
                engine,
                x.routed,
                res,
                x.name,
                Origin::Remote(x.client_upgrade),
            ),
            Err(e) => {
                let e: tower::BoxError = e.into();
                relay::failed(engine, &shared.backends.load(), x.routed, x.name, &*e)
            }
        }
    }
}
