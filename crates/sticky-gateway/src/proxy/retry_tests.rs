//! A request whose backend vanished under a pooled connection (the head's
//! write fails on it) and whose port then refuses a fresh one: nothing was
//! sent, so the request is decided again, from the token it came with (the
//! head no longer carries it), under the route's failover policy, and it
//! counts once.
//!
//! Either way the dead pooled connection fails (the pool's idle check sees
//! the reset, or the head written into it gets no answer byte and the client
//! retries once on a fresh connection), the fresh dial is refused: nothing
//! was sent anywhere.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_sticky::token::{KeyRing, Token, TokenCodec};
use tower_sticky::{FailoverPolicy, Reason, StableId};

use crate::admin::render_metrics;
use crate::admin_view::GatewayView;
use crate::config::{BackendConfig, GatewayConfig, RouteConfig};
use crate::run::Running;
use sticky_proxy::Connection as BackendConn;

/// A backend that answers every request with its name, counting the bytes
/// and connections it receives.
struct RawBackend {
    addr: SocketAddr,
    bytes: Arc<AtomicU64>,
    conns: Arc<AtomicU64>,
}

impl RawBackend {
    async fn start(name: &'static str) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let bytes = Arc::new(AtomicU64::new(0));
        let conns = Arc::new(AtomicU64::new(0));
        let (b, c) = (bytes.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::Relaxed);
                let b = b.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        b.fetch_add(n as u64, Ordering::Relaxed);
                        buf.extend_from_slice(&chunk[..n]);
                        // Requests here have no body: one answer per head.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: 2\r\n\r\nok"
                            );
                            if s.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, bytes, conns }
    }

    fn received(&self) -> (u64, u64) {
        (
            self.conns.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// A loopback port nothing listens on: connecting is refused.
fn refused_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A connection that carried an exchange and whose backend then reset it.
/// Whether the pool's idle check notices the reset (and dials afresh) or the
/// head is written into it (and the client retries once on a fresh
/// connection, since no answer byte came), the fresh dial is refused: the
/// request was never sent.
async fn reset_pooled_connection() -> BackendConn {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
    let server = server.unwrap().0;
    // A zero linger resets instead of closing.
    #[allow(deprecated)]
    server.set_linger(Some(Duration::ZERO)).unwrap();
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut conn = BackendConn::new(client.unwrap().into());
    conn.finish_exchange();
    conn
}

async fn gateway(
    keys: &KeyRing,
    backends: &[(&str, SocketAddr)],
    policy: FailoverPolicy,
) -> Running {
    let backends = backends
        .iter()
        .map(|(name, addr)| BackendConfig {
            name: name.to_string(),
            address: addr.to_string(),
            weight: 1,
        })
        .collect();
    let mut route = RouteConfig::catch_all(backends);
    route.failover = policy;
    let mut config = GatewayConfig::new("127.0.0.1:0".parse().unwrap(), vec![route]);
    config.access_log = false;
    crate::run::start(config, keys.clone(), None).await.unwrap()
}

/// Puts `conn` among backend `name`'s idle connections.
fn pool_into(gw: &Running, name: &str, conn: BackendConn) {
    let routes = gw.gateway.routes_full();
    let table = routes.by_name("default").unwrap().table.load_full();
    table.get_by_id(name.stable_id()).unwrap().value().put(conn);
}

/// One request with our cookie; the answer's status, `x-backend` and our
/// `Set-Cookie` value (if any).
async fn get(addr: SocketAddr, cookie: &str) -> (u16, String, Option<String>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /cart HTTP/1.1\r\nhost: app.test\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let header = |name: &str| {
        text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let sticky = header("set-cookie").map(|v| {
        let pair = v.split(';').next().unwrap();
        pair.strip_prefix("sticky=").unwrap().to_string()
    });
    (status, header("x-backend").unwrap_or_default(), sticky)
}

/// The sum of every `sticky_outcomes_total` sample: outcomes counted.
fn outcomes_counted(gw: &Running) -> f64 {
    let text = render_metrics(&GatewayView(gw.gateway.clone()), &gw.gateway.latency);
    text.lines()
        .filter(|l| l.starts_with("sticky_outcomes_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn stats(gw: &Running) -> tower_sticky::Stats<String> {
    let routes = gw.gateway.routes_full();
    let r = routes.by_name("default").unwrap();
    r.engine.stats(&r.table.load())
}

fn now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_a_reset_pooled_connection_then_a_refused_port_is_a_503_and_no_backend_sees_a_byte()
{
    let keys = KeyRing::generate();
    let (b, c) = (RawBackend::start("b").await, RawBackend::start("c").await);
    let gw = gateway(
        &keys,
        &[("a", refused_port()), ("b", b.addr), ("c", c.addr)],
        FailoverPolicy::Strict,
    )
    .await;
    let conn = reset_pooled_connection().await;
    pool_into(&gw, "a", conn);
    let token = Token::new("a".stable_id(), 77, now_s());
    let cookie = format!(
        "sticky={}",
        TokenCodec::new(keys.clone(), "sticky")
            .seal(&token)
            .as_str()
    );

    let (status, backend, set_cookie) = get(gw.addr, &cookie).await;
    assert_eq!(status, 503, "Strict: the session's backend is gone");
    assert_eq!(backend, "");
    assert_eq!(set_cookie, None, "no new session behind the user's back");
    assert_eq!(b.received(), (0, 0), "b never saw a byte");
    assert_eq!(c.received(), (0, 0), "c never saw a byte");
    let st = stats(&gw);
    assert_eq!(st.rejected_for(Reason::Unhealthy), 1);
    assert_eq!(st.new_sessions(), 0);
    assert_eq!(outcomes_counted(&gw), 1.0, "one request, one outcome");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redistribute_after_a_reset_pooled_connection_goes_where_another_replica_sends_the_session()
{
    let keys = KeyRing::generate();
    let backends = [
        RawBackend::start("b").await,
        RawBackend::start("c").await,
        RawBackend::start("d").await,
        RawBackend::start("e").await,
    ];
    let a = refused_port();
    let set = [
        ("a", a),
        ("b", backends[0].addr),
        ("c", backends[1].addr),
        ("d", backends[2].addr),
        ("e", backends[3].addr),
    ];
    let gw = gateway(&keys, &set, FailoverPolicy::Redistribute).await;
    let replica = gateway(&keys, &set, FailoverPolicy::Redistribute).await;
    let conn = reset_pooled_connection().await;
    pool_into(&gw, "a", conn);
    let codec = TokenCodec::new(keys.clone(), "sticky");
    let token = Token::new("a".stable_id(), 4242, now_s());
    let cookie = format!("sticky={}", codec.seal(&token).as_str());

    let (status, moved_to, reissued) = get(gw.addr, &cookie).await;
    assert_eq!(status, 200);
    // The other replica has no pooled connection: its dial is refused, and
    // it decides from the same token.
    let (status, there, _) = get(replica.addr, &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(moved_to, there, "both replicas move the session alike");
    let reissued = codec
        .open(reissued.expect("the moved session is re-pinned").as_bytes())
        .unwrap();
    assert_eq!(reissued.session, token.session, "the same session");
    assert_eq!(reissued.backend, moved_to.as_str().stable_id());
    let st = stats(&gw);
    assert_eq!(
        (
            st.repinned_for(Reason::Unhealthy),
            st.new_sessions(),
            st.pinned()
        ),
        (1, 0, 0)
    );

    // The re-pinned session stays; every request counted once.
    let cookie = format!("sticky={}", codec.seal(&reissued).as_str());
    for _ in 0..3 {
        let (status, backend, _) = get(gw.addr, &cookie).await;
        assert_eq!((status, backend.as_str()), (200, moved_to.as_str()));
    }
    assert_eq!(outcomes_counted(&gw), 4.0, "4 requests, 4 outcomes");
    assert_eq!(stats(&gw).pinned(), 3);
    let per_backend: u64 = stats(&gw).backends().iter().map(|b| b.requests()).sum();
    assert_eq!(per_backend, 4);
    gw.shutdown().await;
    replica.shutdown().await;
}
