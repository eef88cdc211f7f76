//! The proxy path for one request: route, decide, connect (retrying on
//! another backend only when nothing was sent), forward, tag, stream back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use tower_sticky::table::InFlight;
use tower_sticky::{Decision, Outcome, PeerAddr, Reason};

use super::body::{BackendBody, GatewayBody};
use super::codec::{RequestFraming, ResponseHead};
use super::conn::BackendConn;
use super::headers;
use super::pool::{ConnectError, Pool};
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

/// An idle pooled connection, or a new one.
async fn acquire(pool: &Pool) -> Result<BackendConn, ConnectError> {
    match pool.take() {
        Some(c) => Ok(c),
        None => pool.dial().await,
    }
}

/// Why an exchange failed after a connection was had.
enum ExchangeError {
    /// Nothing was written: a fresh connection could not be opened.
    Unsent(ConnectError),
    /// The request may have reached the backend.
    Io(std::io::Error),
}

/// Sends the request and reads the answer's head. A reused connection that
/// fails on the head's write was closed by the backend while idle and took
/// nothing: the head goes once more on a fresh connection, the body (not
/// read yet) after it.
async fn exchange(
    conn: &mut BackendConn,
    pool: &Pool,
    parts: &http::request::Parts,
    body: Incoming,
    upgrade: bool,
) -> Result<ResponseHead, ExchangeError> {
    let framing = RequestFraming::of(&parts.headers, body.is_end_stream());
    if let Err(e) = conn.write_head(parts, framing, pool.address()).await {
        if !conn.is_reused() {
            return Err(ExchangeError::Io(e));
        }
        *conn = pool.dial().await.map_err(ExchangeError::Unsent)?;
        conn.write_head(parts, framing, pool.address())
            .await
            .map_err(ExchangeError::Io)?;
    }
    conn.write_body(body, framing)
        .await
        .map_err(ExchangeError::Io)?;
    conn.read_head(&parts.method, upgrade)
        .await
        .map_err(ExchangeError::Io)
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
        let mut backend = match acquire(&pool).await {
            Ok(c) => c,
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
        let head = match exchange(&mut backend, &pool, &parts, body, upgrade).await {
            Ok(head) => head,
            Err(e) => {
                if let Some(g) = guard {
                    g.finish(false);
                }
                match e {
                    ExchangeError::Unsent(e) => {
                        tracing::warn!(backend = %pool.name(), error = %e, "backend unreachable after a stale connection")
                    }
                    ExchangeError::Io(e) => {
                        tracing::warn!(backend = %pool.name(), error = %e, "backend request failed")
                    }
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
            g.record(!head.parts.status.is_server_error());
        }
        return respond(
            gw,
            route,
            decision,
            head,
            backend,
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
    head: ResponseHead,
    backend: BackendConn,
    pool: Arc<Pool>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    in_flight: Option<InFlight>,
) -> Served {
    let ResponseHead {
        mut parts,
        framing,
        keep_alive,
    } = head;
    let name = pool.name().clone();
    // The codec accepts 101 only for a request that asked to upgrade.
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    headers::strip_hop_by_hop(&mut parts.headers, switching);
    route.router.tag_response(&decision, &mut parts.headers);
    let body = match client_upgrade {
        Some(client) if switching => {
            // The connection is the tunnel's now, never pooled.
            super::upgrade::tunnel(&gw.shutdown, client, backend, name.clone());
            GatewayBody::empty()
        }
        _ => GatewayBody::Backend(BackendBody::new(
            backend, pool, framing, keep_alive, in_flight,
        )),
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
