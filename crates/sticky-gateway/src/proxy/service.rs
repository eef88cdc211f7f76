//! The proxy path for one request: route, decide, connect (retrying on
//! another backend only when nothing was sent), forward, tag, stream back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use std::pin::Pin;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use sticky_proxy::{Backend, Error, Pool, RequestError, ResponseBody};
use tower_sticky::{Decision, Outcome, PeerAddr, Reason, Routed};

use super::body::{BackendBody, GatewayBody};
use super::headers;
use crate::access_log;
use crate::gateway::Gateway;
use crate::routes::Route;

/// What the proxy knows about one client connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The peer's `X-Forwarded-For` entry, made once per connection.
    pub forwarded_for: HeaderValue,
    /// The connection came through a TLS listener.
    pub tls: bool,
}

impl ConnInfo {
    /// Information about a connection from `peer`.
    pub fn new(peer: SocketAddr) -> Self {
        Self {
            peer,
            forwarded_for: headers::forwarded_for_value(peer),
            tls: false,
        }
    }

    /// Information about a connection from `peer` through a TLS listener.
    pub fn over_tls(peer: SocketAddr) -> Self {
        Self {
            tls: true,
            ..Self::new(peer)
        }
    }
}

/// What one request came to, for the access log.
pub(crate) struct Served {
    pub(crate) response: Response<GatewayBody>,
    pub(crate) backend: Option<Arc<str>>,
    /// What the engine decided (none when no route matched).
    pub(crate) decision: Option<Decision>,
}

fn plain(status: StatusCode, text: &'static str) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Handles one request. Never fails: errors become 4xx/5xx answers.
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<GatewayBody>, Infallible> {
    let start = Instant::now();
    let upgrade = headers::is_upgrade_request(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let log = gw
        .access_log
        .then(|| (parts.method.clone(), parts.uri.clone()));
    // CONNECT would make the backend connection a tunnel to wherever the
    // client asks (RFC 9110 §9.3.6): a reverse proxy does not offer that.
    let route = if parts.method == http::Method::CONNECT {
        None
    } else {
        let routes = gw.routes();
        routes
            .find(headers::request_host(&parts), parts.uri.path())
            .cloned()
    };
    let served = match route {
        Some(route) => forward(&gw, &route, &conn, parts, body, client_upgrade).await,
        None if parts.method == http::Method::CONNECT => Served {
            response: plain(StatusCode::NOT_IMPLEMENTED, "CONNECT is not supported\n"),
            backend: None,
            decision: None,
        },
        None => Served {
            response: plain(StatusCode::NOT_FOUND, "no route for this request\n"),
            backend: None,
            decision: None,
        },
    };
    let elapsed = start.elapsed();
    gw.latency.record(elapsed);
    if let Some((method, uri)) = log {
        let entry = access_log::Entry {
            status: served.response.status(),
            backend: served.backend.as_deref(),
            decision: served.decision.as_ref(),
        };
        access_log::line(&conn.peer, &method, &uri, entry, elapsed);
    }
    Ok(served.response)
}

/// A backend that took nothing because it could not be reached: the engine
/// counts the failure and ejects it ([`Routed::unreachable`]); its idle
/// connections go too, since they lead nowhere.
fn unreachable_backend(
    route: &Route,
    routed: &mut Routed,
    pool: &Pool,
    error: &dyn std::fmt::Display,
) {
    routed.unreachable(&route.engine, &route.table.load());
    pool.clear();
    tracing::warn!(
        route = %route.config.name,
        backend = %pool.name(),
        error = %error,
        attempt = routed.unreachable_count(),
        "backend unreachable, ejected"
    );
}

async fn forward(
    gw: &Gateway,
    route: &Route,
    conn: &ConnInfo,
    mut parts: http::request::Parts,
    mut body: Incoming,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Served {
    let upgrade = client_upgrade.is_some();
    let engine = &route.engine;
    if engine.needs_peer_addr() {
        // Only client-address affinity reads it; inserting allocates.
        parts.extensions.insert(PeerAddr(conn.peer));
    }
    // Decided once, from the request as the client sent it; a retry decides
    // again from the kept token (`Routed::reroute`), never from the head
    // prepared below, which no longer carries it. The table guard is dropped
    // before any await.
    let (mut routed, mut pool) = {
        let table = route.table.load();
        let mut routed = engine.decide(&table, &parts, |_| true);
        if conn.tls {
            // The engine writes our cookie `Secure` itself (as configured).
            routed.arrived_over_tls();
        }
        let Some(backend) = routed.target().and_then(|i| table.get(i)) else {
            return rejected(routed);
        };
        let pool: Arc<Pool> = backend.value().clone();
        routed.begin(engine, &table);
        (routed, pool)
    };
    routed.prepare_request(engine, &mut parts.headers);
    if let Err(e) = headers::prepare_request(&mut parts, &conn.forwarded_for, upgrade) {
        return refused(e, routed);
    }
    if conn.tls {
        crate::tls::mark_forwarded_https(&mut parts.headers);
    }
    let response = loop {
        let sent = match pool.acquire().await {
            Ok(c) => {
                Backend::new(pool.clone())
                    .send_on(c, &parts, Pin::new(&mut body))
                    .await
            }
            Err(e) => Err(Error::Connect(e)),
        };
        let e = match sent {
            Ok(response) => break response,
            Err(Error::Connect(e)) => e,
            Err(Error::Request(e)) => return refused(e, routed),
            Err(e) => return failed(routed, &pool, &e),
        };
        // Nothing was sent: the request may go to another backend, as the
        // route's failover policy says.
        unreachable_backend(route, &mut routed, &pool, &e);
        if routed.unreachable_count() > route.config.retries {
            return Served {
                response: plain(StatusCode::BAD_GATEWAY, "no backend could be reached\n"),
                backend: Some(pool.name().clone()),
                decision: Some(*routed.decision()),
            };
        }
        let table = route.table.load();
        routed.reroute(engine, &table, |_| true);
        let Some(next) = routed.target().and_then(|i| table.get(i)) else {
            return rejected(routed);
        };
        pool = next.value().clone();
        routed.begin(engine, &table);
    };
    // The result counts now; the request stays in flight until its
    // response body has streamed to the client.
    routed.record(!response.status().is_server_error());
    respond(gw, route, routed, response, &pool, client_upgrade)
}

/// A request the client should not have sent (400, or 501 for an unknown
/// transfer coding): nothing reached a backend, so the request stops being
/// counted in flight without a result (the client's fault says nothing of
/// the backend).
fn refused(e: RequestError, routed: Routed) -> Served {
    let text = match e.status() {
        StatusCode::NOT_IMPLEMENTED => "not implemented\n",
        _ => "bad request\n",
    };
    Served {
        response: plain(e.status(), text),
        backend: None,
        decision: Some(*routed.decision()),
    }
}

/// The request may have reached the backend and no answer came: never
/// replayed, answered 502.
fn failed(mut routed: Routed, pool: &Pool, error: &Error) -> Served {
    routed.finish(false);
    tracing::warn!(backend = %pool.name(), error = %error, "backend request failed");
    Served {
        response: plain(StatusCode::BAD_GATEWAY, "the backend failed to answer\n"),
        backend: Some(pool.name().clone()),
        decision: Some(*routed.decision()),
    }
}

fn respond(
    gw: &Gateway,
    route: &Route,
    mut routed: Routed,
    response: Response<ResponseBody>,
    pool: &Pool,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Served {
    let (mut parts, body) = response.into_parts();
    let name = pool.name().clone();
    // The client accepts 101 only for a request that asked to upgrade.
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    sticky_proxy::hop::strip_response(&mut parts.headers, switching);
    routed.tag_response(&route.engine, &mut parts.headers);
    let in_flight = routed.take_in_flight();
    let body = match client_upgrade {
        Some(client) if switching => {
            // The connection is the tunnel's now, never pooled.
            if let Some(upgraded) = body.into_upgraded() {
                super::upgrade::tunnel(&gw.shutdown, client, upgraded, name.clone());
            }
            GatewayBody::empty()
        }
        _ => GatewayBody::Backend(BackendBody::new(body, in_flight)),
    };
    Served {
        response: Response::from_parts(parts, body),
        backend: Some(name),
        decision: Some(*routed.decision()),
    }
}

fn rejected(routed: Routed) -> Served {
    let outcome = routed.outcome();
    let text = match outcome {
        Outcome::Rejected(Reason::NoBackend) => "no backend available\n",
        _ => "the session's backend is unavailable\n",
    };
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, text);
    response.extensions_mut().insert(outcome);
    Served {
        response,
        backend: None,
        decision: Some(*routed.decision()),
    }
}
