//! The proxy path for one request: route, decide, connect (retrying on
//! another backend only when nothing was sent), forward, tag, stream back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use tower_sticky::{Decision, Outcome, PeerAddr, Reason, Routed};

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
        let entry = access_log::Entry {
            status: served.response.status(),
            backend: served.backend.as_deref(),
            decision: served.decision.as_ref(),
        };
        access_log::line(&conn.peer, &method, &uri, entry, elapsed);
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

/// Writes the request head. A reused connection that fails on it was closed
/// by the backend while idle and took nothing: the head goes once more on a
/// fresh connection.
async fn send_head(
    conn: &mut BackendConn,
    pool: &Pool,
    parts: &http::request::Parts,
    framing: RequestFraming,
) -> Result<(), ExchangeError> {
    if let Err(e) = conn.write_head(parts, framing, pool.address()).await {
        if !conn.is_reused() {
            return Err(ExchangeError::Io(e));
        }
        *conn = pool.dial().await.map_err(ExchangeError::Unsent)?;
        conn.write_head(parts, framing, pool.address())
            .await
            .map_err(ExchangeError::Io)?;
    }
    Ok(())
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

/// Opens (or reuses) a connection and writes the request head. `Err` only
/// when nothing was sent: the request may go elsewhere.
async fn connect_and_send_head(
    pool: &Pool,
    parts: &http::request::Parts,
    framing: RequestFraming,
) -> Result<Result<BackendConn, std::io::Error>, ConnectError> {
    let mut backend = acquire(pool).await?;
    match send_head(&mut backend, pool, parts, framing).await {
        Ok(()) => Ok(Ok(backend)),
        Err(ExchangeError::Unsent(e)) => Err(e),
        Err(ExchangeError::Io(e)) => Ok(Err(e)),
    }
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
        let Some(backend) = routed.target().and_then(|i| table.get(i)) else {
            return rejected(routed);
        };
        let pool: Arc<Pool> = backend.value().clone();
        routed.begin(engine, &table);
        (routed, pool)
    };
    routed.prepare_request(engine, &mut parts.headers);
    headers::prepare_request(&mut parts, &conn.forwarded_for, upgrade);
    let framing = RequestFraming::of(&parts.headers, body.is_end_stream());
    let mut backend = loop {
        let e = match connect_and_send_head(&pool, &parts, framing).await {
            Ok(Ok(backend)) => break backend,
            Ok(Err(e)) => return failed(routed, &pool, &e),
            Err(e) => e,
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
    let head = match backend.write_body(body, framing).await {
        Ok(()) => backend.read_head(&parts.method, upgrade).await,
        Err(e) => Err(e),
    };
    match head {
        Ok(head) => {
            // The result counts now; the request stays in flight until its
            // response body has streamed to the client.
            routed.record(!head.parts.status.is_server_error());
            respond(gw, route, routed, head, backend, pool, client_upgrade)
        }
        Err(e) => failed(routed, &pool, &e),
    }
}

/// The request may have reached the backend and no answer came: never
/// replayed, answered 502.
fn failed(mut routed: Routed, pool: &Pool, error: &std::io::Error) -> Served {
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
    head: ResponseHead,
    backend: BackendConn,
    pool: Arc<Pool>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
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
    routed.tag_response(&route.engine, &mut parts.headers);
    let in_flight = routed.take_in_flight();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::pool::PoolSettings;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connection whose backend end was reset (closed with unread state
    /// discarded), marked as having carried an exchange before.
    async fn reset_connection(reused: bool) -> BackendConn {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
        let server = s.unwrap().0;
        // A zero linger resets instead of closing (and never blocks, which
        // is what the deprecation warns of).
        #[allow(deprecated)]
        server.set_linger(Some(Duration::ZERO)).unwrap();
        drop(server);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut conn = BackendConn::new(c.unwrap());
        if reused {
            conn.finish_exchange();
        }
        conn
    }

    fn pool(address: std::net::SocketAddr) -> Pool {
        let settings = PoolSettings {
            connect_timeout: Duration::from_secs(2),
            max_idle: 4,
        };
        Pool::new("b", &address.to_string(), settings)
    }

    fn head() -> http::request::Parts {
        Request::get("/x")
            .header("host", "app.test")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[tokio::test]
    async fn a_head_refused_by_a_reused_connection_goes_on_a_fresh_one_or_is_unsent() {
        // The fresh connection is made and carries the head.
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = pool(live.local_addr().unwrap());
        let mut conn = reset_connection(true).await;
        let sent = send_head(&mut conn, &p, &head(), RequestFraming::Empty).await;
        assert!(sent.is_ok(), "sent on a fresh connection");
        let (mut s, _) = live.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"GET /x HTTP/1.1\r\n"));

        // No fresh connection to be had: nothing was sent, so the caller may
        // send the request to another backend.
        let gone = pool(closed_port());
        let mut conn = reset_connection(true).await;
        let sent = send_head(&mut conn, &gone, &head(), RequestFraming::Empty).await;
        assert!(matches!(sent, Err(ExchangeError::Unsent(_))));

        // A connection new for this request failing is an I/O error, not retried.
        let mut conn = reset_connection(false).await;
        let sent = send_head(&mut conn, &p, &head(), RequestFraming::Empty).await;
        assert!(matches!(sent, Err(ExchangeError::Io(_))));
    }

    fn closed_port() -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }
}
