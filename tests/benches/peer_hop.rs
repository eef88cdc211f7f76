//! The peer-mode forward hop against sticky-gateway's proxy hop, CPU per
//! request.
//!
//! Everything runs in this process on one current-thread tokio runtime:
//! a client with one keep-alive connection sends requests one after the
//! other, through a front, to a backend on 127.0.0.1. With one thread and
//! one request at a time, the wall time of a request is the CPU time of
//! client, front and backend together (plus loopback syscalls, counted in
//! both). Three paths:
//!
//! - `direct`: client → backend app (an axum `Router` answering "ok");
//! - `sticky_gateway`: client → sticky-gateway (started in-process with
//!   `run::start`, one catch-all route) → backend app, on a pinned session;
//! - `peer_mode`: client → replica A (the app with `PeerLayer`) → replica B
//!   (the same app with `PeerLayer`, which owns the session and checks the
//!   hop marker). A is served with connection info, so it appends the
//!   client to `X-Forwarded-For` as sticky-gateway does.
//! - `peer_mode_wrapped`: the same, with `PeerLayer` around each replica's
//!   `Router` rather than on it, so that A forwards before routing.
//!
//! A hop's cost is its path's time minus `direct`'s.
//!
//! `cargo bench -p sticky-tests --bench peer_hop`
//!
//! For instruction counts (repeatable on a busy machine), the bench binary
//! runs one path `N` times and exits when `STICKY_ITERS=PATH:N` (`direct`,
//! `sticky_gateway`, `peer_mode` or `peer_mode_wrapped`) is set: under
//! `valgrind --tool=callgrind`, two runs with different `N` give the
//! instructions per request by difference (set-up cancels out). Callgrind
//! counts user-space instructions only, the same syscalls on every path
//! aside.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use axum_sticky::PeerLayer;
use criterion::{criterion_group, Criterion};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower_layer::Layer;
use tower_sticky::token::{KeyRing, Token, TokenCodec};
use tower_sticky::{StableId, StickyConfig};

fn app() -> Router {
    Router::new().fallback(|| async { "ok" })
}

async fn serve(app: Router) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

async fn client(addr: SocketAddr) -> SendRequest<Body> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn get(send: &mut SendRequest<Body>, cookie: &str) -> hyper::Response<hyper::body::Incoming> {
    send.ready().await.unwrap();
    let req = http::Request::get("/cart")
        .header("host", "app.test")
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    res
}

async fn run(send: &mut SendRequest<Body>, cookie: &str, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let res = get(send, cookie).await;
        res.into_body().collect().await.unwrap();
    }
    start.elapsed()
}

struct Paths {
    direct: SendRequest<Body>,
    gateway: (SendRequest<Body>, String),
    peer: (SendRequest<Body>, String),
    peer_wrapped: (SendRequest<Body>, String),
    _gw: sticky_gateway::run::Running,
}

async fn setup() -> Paths {
    let backend = serve(app()).await;
    let direct = client(backend).await;

    // sticky-gateway in front of the backend.
    let free = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = sticky_gateway::GatewayConfig::new(
        free,
        vec![sticky_gateway::config::RouteConfig::catch_all(vec![
            sticky_gateway::config::BackendConfig {
                name: "b".into(),
                address: backend.to_string(),
                weight: 1,
            },
        ])],
    );
    config.access_log = false;
    let gw = sticky_gateway::run::start(config, KeyRing::generate(), None)
        .await
        .unwrap();
    let mut gw_client = client(gw.addr).await;
    let first = get(&mut gw_client, "").await;
    let set = first.headers()["set-cookie"].to_str().unwrap();
    let gw_cookie = set.split(';').next().unwrap().to_string();
    first.into_body().collect().await.unwrap();

    // Peer mode: A forwards to B, which owns the session; the layer on
    // the `Router` (`Router::layer`), then around it.
    let peer = peer_pair(false).await;
    let peer_wrapped = peer_pair(true).await;

    Paths {
        direct,
        gateway: (gw_client, gw_cookie),
        peer,
        peer_wrapped,
        _gw: gw,
    }
}

/// Replicas A and B in peer mode, B owning a session; a client connected
/// to A and the session's cookie. `wrapped`: `PeerLayer` around the
/// `Router` (`Layer::layer(&peer_layer, router)`) instead of on it
/// (`Router::layer`), so that A forwards before any routing.
async fn peer_pair(wrapped: bool) -> (SendRequest<Body>, String) {
    let keys = KeyRing::generate();
    let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = lb.local_addr().unwrap();
    let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_addr = la.local_addr().unwrap();
    let layer = |me: &str, other: &str, at: SocketAddr| {
        PeerLayer::new(
            StickyConfig::new(keys.clone()),
            me,
            [(other, at.to_string())],
        )
    };
    // A, the replica the client reached, knows the client's address and
    // appends it to X-Forwarded-For, as sticky-gateway does; B is served
    // as the direct path's app is.
    if wrapped {
        // `with_state(())` turns the handlers into routes once, as
        // `axum::serve` does for a bare Router; a Router called as a plain
        // service without it boxes its handler again on every request.
        let app_a = layer("a", "b", b_addr).layer(app().with_state(()));
        let app_b = layer("b", "a", a_addr).layer(app().with_state(()));
        tokio::spawn(async move {
            axum::serve(
                la,
                axum::ServiceExt::<Request<Body>>::into_make_service_with_connect_info::<SocketAddr>(app_a),
            )
            .await
        });
        tokio::spawn(async move {
            axum::serve(
                lb,
                axum::ServiceExt::<Request<Body>>::into_make_service(app_b),
            )
            .await
        });
    } else {
        let app_a = app().layer(layer("a", "b", b_addr));
        let app_b = app().layer(layer("b", "a", a_addr));
        tokio::spawn(async move {
            axum::serve(
                la,
                app_a.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        tokio::spawn(async move { axum::serve(lb, app_b).await });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let token = TokenCodec::new(keys.clone(), "sticky").seal(&Token::new(
        "b".to_string().stable_id(),
        9,
        now,
    ));
    let cookie = format!("sticky={}", token.as_str());
    let mut send = client(a_addr).await;
    let res = get(&mut send, &cookie).await;
    assert!(
        res.headers().get("set-cookie").is_none(),
        "a pinned hit on B"
    );
    res.into_body().collect().await.unwrap();
    (send, cookie)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut paths = rt.block_on(setup());
    let mut g = c.benchmark_group("hop");
    g.bench_function("direct", |b| {
        b.iter_custom(|n| rt.block_on(run(&mut paths.direct, "", n)))
    });
    g.bench_function("sticky_gateway", |b| {
        b.iter_custom(|n| {
            let (send, cookie) = &mut paths.gateway;
            rt.block_on(run(send, cookie, n))
        })
    });
    g.bench_function("peer_mode", |b| {
        b.iter_custom(|n| {
            let (send, cookie) = &mut paths.peer;
            rt.block_on(run(send, cookie, n))
        })
    });
    g.bench_function("peer_mode_wrapped", |b| {
        b.iter_custom(|n| {
            let (send, cookie) = &mut paths.peer_wrapped;
            rt.block_on(run(send, cookie, n))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("STICKY_ITERS") {
        let (path, n) = spec.split_once(':').expect("STICKY_ITERS=PATH:N");
        let n: u64 = n.parse().expect("a count");
        let rt = runtime();
        let mut paths = rt.block_on(setup());
        let (send, cookie) = match path {
            "direct" => (&mut paths.direct, String::new()),
            "sticky_gateway" => (&mut paths.gateway.0, paths.gateway.1.clone()),
            "peer_mode_wrapped" => (&mut paths.peer_wrapped.0, paths.peer_wrapped.1.clone()),
            _ => (&mut paths.peer.0, paths.peer.1.clone()),
        };
        rt.block_on(run(send, &cookie, n));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
