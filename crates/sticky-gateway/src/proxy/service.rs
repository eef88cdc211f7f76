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

use super::body::{BackendBody, GatewayBody};
use super::headers;
use super::pool::{ConnectError, Pool, Sender};
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
    let route = {
        let routes = gw.routes();
        routes
            .find(headers::request_host(&parts), parts.uri.path())
            .cloned()
    };
    let served = match route {
        Some(route) => forward(&gw, &route, &conn, parts, body, client_upgrade).await,
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

/// Why getting a connection failed, and whether anything could have been sent.
async fn acquire(pool: &Pool, upgrade: bool) -> Result<Sender, ConnectError> {
    if upgrade {
        return pool.dial_upgradable().await;
    }
    while let Some(mut s) = pool.take() {
        if s.is_ready() || s.ready().await.is_ok() {
            return Ok(s);
        }
    }
    pool.dial().await
}

async fn forward(
    gw: &Gateway,
    route: &Route,
    conn: &ConnInfo,
    mut parts: http::request::Parts,
    body: Incoming,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Served {
    let upgrade = client_upgrade.is_some();
    let router = &route.router;
    if router.needs_peer_addr() {
        // Only client-address affinity reads it; inserting allocates.
        parts.extensions.insert(PeerAddr(conn.peer));
    }
    let mut attempts = 0u32;
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
        let mut sender = match acquire(&pool, upgrade).await {
            Ok(s) => s,
            Err(e) => {
                // Nothing reached the backend: eject it at once and decide
                // again, which fails the session over per the route's policy.
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
                    s.eject(router.config().clock_ref().now_ms(), cool);
                }
                pool.clear();
                tracing::warn!(route = %route.config.name, backend = %pool.name(), error = %e, attempt = attempts + 1, "backend unreachable, ejected");
                attempts += 1;
                if attempts > route.config.retries {
                    return Served {
                        response: plain(StatusCode::BAD_GATEWAY, "no backend could be reached\n"),
                        backend: Some(pool.name().clone()),
                        decision: Some(decision),
                    };
                }
                continue;
            }
        };
        router.prepare_request(&decision, &mut parts.headers);
        headers::prepare_request(&mut parts, &conn.forwarded_for, upgrade);
        let req = Request::from_parts(parts, body);
        let sent: Result<Response<Incoming>, Option<hyper::Error>> = match sender
            .try_send_request(req)
            .await
        {
            Ok(resp) => Ok(resp),
            Err(mut e) => match e.take_message() {
                // Not written (the idle connection closed under us): one fresh
                // connection to the same backend.
                Some(req) => match pool.dial().await {
                    Ok(mut fresh) => {
                        let r = fresh.send_request(req).await.map_err(Some);
                        sender = fresh;
                        r
                    }
                    Err(e) => {
                        tracing::warn!(backend = %pool.name(), error = %e, "backend unreachable after a stale connection");
                        Err(None)
                    }
                },
                None => Err(Some(e.into_error())),
            },
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                if let Some(g) = guard {
                    g.finish(false);
                }
                if let Some(e) = e {
                    tracing::warn!(backend = %pool.name(), error = %e, "backend request failed");
                }
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
            g.record(!resp.status().is_server_error());
        }
        return respond(
            gw,
            route,
            decision,
            resp,
            sender,
            pool,
            client_upgrade,
            guard,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn respond(
    gw: &Gateway,
    route: &Route,
    decision: Decision,
    mut resp: Response<Incoming>,
    sender: Sender,
    pool: Arc<Pool>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    in_flight: Option<InFlight>,
) -> Served {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let name = pool.name().clone();
    let body = match (switching, client_upgrade) {
        (true, Some(client)) => {
            let backend = hyper::upgrade::on(&mut resp);
            super::upgrade::tunnel(&gw.shutdown, client, backend, name.clone());
            None
        }
        _ => Some(()),
    };
    let (mut parts, incoming) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, switching);
    route.router.tag_response(&decision, &mut parts.headers);
    let body = match body {
        // An upgraded connection is the tunnel's now, never pooled.
        None => GatewayBody::empty(),
        Some(()) if switching => GatewayBody::empty(),
        Some(()) => {
            GatewayBody::Backend(BackendBody::new(incoming, Some((sender, pool)), in_flight))
        }
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
