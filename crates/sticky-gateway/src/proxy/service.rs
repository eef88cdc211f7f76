//! The proxy path for one request: route, decide, connect (retrying on
//! another backend only when nothing was sent), forward, tag, stream back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tower_sticky::table::InFlight;
use tower_sticky::{Decision, Outcome, PeerAddr, Reason};

use std::pin::Pin;

use sticky_proxy::{Backend, Error, Pool, RequestError, ResponseBody};

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
}

impl ConnInfo {
    /// Information about a connection from `peer`.
    pub fn new(peer: SocketAddr) -> Self {
        Self {
            peer,
            forwarded_for: headers::forwarded_for_value(peer),
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
        access_log::line(&conn.peer, &method, &uri, &served, elapsed);
    }
    Ok(served.response)
}

/// A backend that took nothing because it could not be reached: the request
/// counts as failed on it, and it is ejected at once (its idle connections
/// dropped) so that deciding again fails the session over per the route's
/// policy.
fn eject(
    route: &Route,
    pool: &Pool,
    guard: Option<InFlight>,
    error: &dyn std::fmt::Display,
    attempt: u32,
) {
    let status = guard.as_ref().map(|g| g.status().clone());
    if let Some(g) = guard {
        g.finish(false);
    }
    if let Some(s) = status {
        let cool = route
            .config
            .ejection
            .cool_down()
            .max(Duration::from_secs(1));
        s.eject(route.router.config().clock_ref().now_ms(), cool);
    }
    pool.clear();
    tracing::warn!(route = %route.config.name, backend = %pool.name(), error = %error, attempt, "backend unreachable, ejected");
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
    let router = &route.router;
    if router.needs_peer_addr() {
        // Only client-address affinity reads it; inserting allocates.
        parts.extensions.insert(PeerAddr(conn.peer));
    }
    let unreachable = |decision, pool: &Pool| Served {
        response: plain(StatusCode::BAD_GATEWAY, "no backend could be reached\n"),
        backend: Some(pool.name().clone()),
        decision: Some(decision),
    };
    let mut attempts = 0u32;
    let mut prepared = false;
    loop {
        // The table guard is dropped before any await.
        let (decision, pool, guard): (Decision, Arc<Pool>, _) = {
            let table = route.table.load();
            let decision = router.decide(&table, &parts, |_| true);
            let Some(backend) = decision.target().and_then(|i| table.get(i)) else {
                return rejected(decision);
            };
            (
                decision,
                backend.value().clone(),
                router.begin(&table, &decision),
            )
        };
        let backend = match pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                attempts += 1;
                eject(route, &pool, guard, &e, attempts);
                if attempts > route.config.retries {
                    return unreachable(decision, &pool);
                }
                continue;
            }
        };
        if !prepared {
            // Once: a request sent elsewhere after a failed first write
            // keeps the head as prepared (our token already removed, the
            // client already appended to X-Forwarded-For).
            router.prepare_request(&decision, &mut parts.headers);
            if let Err(e) = headers::prepare_request(&mut parts, &conn.forwarded_for, upgrade) {
                return refused(e, guard, decision);
            }
            prepared = true;
        }
        let sent = Backend::new(pool.clone())
            .send_on(backend, &parts, Pin::new(&mut body))
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(Error::Request(e)) => return refused(e, guard, decision),
            Err(Error::Connect(e)) => {
                // Nothing was sent (no connection, or the backend vanished
                // under a pooled one and takes no new one): the request
                // goes elsewhere (as a new session when our token was
                // removed already).
                attempts += 1;
                eject(route, &pool, guard, &e, attempts);
                if attempts > route.config.retries {
                    return unreachable(decision, &pool);
                }
                continue;
            }
            Err(e) => {
                if let Some(g) = guard {
                    g.finish(false);
                }
                tracing::warn!(backend = %pool.name(), error = %e, "backend request failed");
                return Served {
                    response: plain(StatusCode::BAD_GATEWAY, "the backend failed to answer\n"),
                    backend: Some(pool.name().clone()),
                    decision: Some(decision),
                };
            }
        };
        let mut guard = guard;
        if let Some(g) = guard.as_mut() {
            // The result counts now; the request stays in flight until its
            // response body has streamed to the client.
            g.record(!response.status().is_server_error());
        }
        return respond(gw, route, decision, response, &pool, client_upgrade, guard);
    }
}

/// A request the client refused to send (400, or 501 for an unknown
/// transfer coding): nothing reached the backend, so its guard is dropped
/// without a result (the client's fault says nothing of the backend).
fn refused(e: RequestError, guard: Option<InFlight>, decision: Decision) -> Served {
    drop(guard);
    let text = match e.status() {
        StatusCode::NOT_IMPLEMENTED => "not implemented\n",
        _ => "bad request\n",
    };
    Served {
        response: plain(e.status(), text),
        backend: None,
        decision: Some(decision),
    }
}

fn respond(
    gw: &Gateway,
    route: &Route,
    decision: Decision,
    response: Response<ResponseBody>,
    pool: &Pool,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    in_flight: Option<InFlight>,
) -> Served {
    let (mut parts, body) = response.into_parts();
    let name = pool.name().clone();
    // The client accepts 101 only for a request that asked to upgrade.
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    sticky_proxy::hop::strip_response(&mut parts.headers, switching);
    route.router.tag_response(&decision, &mut parts.headers);
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
        decision: Some(decision),
    }
}

fn rejected(decision: Decision) -> Served {
    let outcome = decision.outcome();
    let text = match outcome {
        Outcome::Rejected(Reason::NoBackend) => "no backend available\n",
        _ => "the session's backend is unavailable\n",
    };
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, text);
    response.extensions_mut().insert(outcome);
    Served {
        response,
        backend: None,
        decision: Some(decision),
    }
}
