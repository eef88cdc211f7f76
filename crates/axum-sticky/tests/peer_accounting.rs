//! Peer mode's accounting and forwarding fields: a request is in flight on
//! the replica that serves it until its response body ends (here or on a
//! peer), an unreachable peer counts one failure, a request not fit to
//! forward counts neither way, and the owner sees the original client in
//! `X-Forwarded-For`, never the forwarding replica.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use axum_sticky::{Affinity, PeerLayer};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_sticky::token::KeyRing;
use tower_sticky::{Ejection, Outcome, StickyConfig};

mod common;
use common::{closed_port, token_for};

fn get(cookie: Option<&str>) -> Request<Body> {
    common::get("/cart", cookie)
}

/// Per replica as `layer` sees it: (in flight, failures, ejections).
fn counters(layer: &PeerLayer, name: &str) -> (usize, u64, u64) {
    common::counters(&layer.stats(), name)
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_request_served_here_is_in_flight_until_its_body_ends() {
    let layer = PeerLayer::new(
        StickyConfig::new(KeyRing::generate()),
        "app-1",
        [("app-2", "127.0.0.1:9")],
    );
    let (tx, body) = common::streaming();
    let body = std::sync::Arc::new(std::sync::Mutex::new(Some(body)));
    let app = tower::service_fn(move |_req: Request<Body>| {
        let body = body.lock().unwrap().take().expect("one request");
        async move { Ok::<_, Infallible>(Response::new(body)) }
    });
    let res = layer.layer(app).oneshot(get(None)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(counters(&layer, "app-1").0, 1, "in flight while it streams");
    tx.send(Bytes::from_static(b"cart")).await.unwrap();
    drop(tx);
    let body = axum::body::to_bytes(res.into_body(), 64).await.unwrap();
    assert_eq!(&body[..], b"cart");
    assert_eq!(counters(&layer, "app-1").0, 0);
}

fn unused_app() -> Router {
    Router::new().fallback(|| async { "here" })
}

#[tokio::test]
async fn a_forwarded_request_is_in_flight_on_the_peer_until_its_body_ends() {
    let keys = KeyRing::generate();
    let (addr2, _heads, go) = common::raw_server(vec![b""]).await;
    let layer = PeerLayer::new(
        StickyConfig::new(keys.clone()),
        "app-1",
        [("app-2", addr2.as_str())],
    );
    let peer = layer.layer(unused_app());
    let res = tokio::time::timeout(WAIT, peer.oneshot(get(Some(&token_for(&keys, "app-2")))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.extensions().get::<Affinity>().unwrap().backend(),
        Some("app-2")
    );
    assert_eq!(counters(&layer, "app-2").0, 1, "in flight while it streams");
    go.send(()).await.unwrap();
    let body = tokio::time::timeout(WAIT, axum::body::to_bytes(res.into_body(), 64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body[..], b"cart");
    assert_eq!(counters(&layer, "app-2").0, 0);
}

#[tokio::test]
async fn an_unreachable_peer_counts_one_failure_and_the_session_comes_here() {
    let keys = KeyRing::generate();
    let layer = PeerLayer::new(
        StickyConfig::new(keys.clone()),
        "app-1",
        [("app-2", closed_port())],
    );
    let res = layer
        .layer(unused_app())
        .oneshot(get(Some(&token_for(&keys, "app-2"))))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let a = res.extensions().get::<Affinity>().unwrap().clone();
    assert!(matches!(a.outcome(), Outcome::Repinned(_)));
    assert_eq!(a.backend(), Some("app-1"));
    drop(res);
    assert_eq!(counters(&layer, "app-2"), (0, 1, 1), "one failure, ejected");
    assert_eq!(counters(&layer, "app-1"), (0, 0, 0));
}

#[tokio::test]
async fn a_request_not_fit_to_forward_neither_ejects_a_peer_nor_hides_its_failures() {
    let keys = KeyRing::generate();
    const FAIL: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n";
    let (addr2, _heads, _go) = common::raw_server(vec![FAIL, FAIL]).await;
    let config =
        StickyConfig::new(keys.clone()).ejection(Ejection::after(2, Duration::from_secs(30)));
    let layer = PeerLayer::new(config, "app-1", [("app-2", addr2.as_str())]);
    let peer = layer.layer(unused_app());
    let cookie = token_for(&keys, "app-2");
    let res = peer.clone().oneshot(get(Some(&cookie))).await.unwrap();
    assert_eq!(res.status(), 500);
    drop(res);
    let bad = Request::post("/cart")
        .header("host", "app.test")
        .header("cookie", &cookie)
        .header("transfer-encoding", "gzip")
        .body(Body::from("x"))
        .unwrap();
    let res = peer.clone().oneshot(bad).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(counters(&layer, "app-2"), (0, 1, 0));
    let res = peer.clone().oneshot(get(Some(&cookie))).await.unwrap();
    assert_eq!(res.status(), 500);
    drop(res);
    assert_eq!(
        counters(&layer, "app-2"),
        (0, 2, 1),
        "two failures in a row"
    );
}

#[tokio::test]
async fn the_owner_sees_the_original_client_not_the_forwarding_replica() {
    let keys = KeyRing::generate();
    // The owner, app-2, served with connection info: its app answers with
    // the forwarding fields it saw.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr2 = l.local_addr().unwrap().to_string();
    let app2 = Router::new()
        .fallback(|h: HeaderMap| async move {
            let f = |n: &str| h.get(n).map_or("-", |v| v.to_str().unwrap()).to_string();
            format!(
                "{}|{}|{}",
                f("x-forwarded-for"),
                f("x-forwarded-proto"),
                f("x-forwarded-host")
            )
        })
        .layer(PeerLayer::new(
            StickyConfig::new(keys.clone()),
            "app-2",
            [("app-1", "127.0.0.1:9")],
        ));
    tokio::spawn(async move {
        axum::serve(l, app2.into_make_service_with_connect_info::<SocketAddr>()).await
    });
    let app1 = PeerLayer::new(
        StickyConfig::new(keys.clone()),
        "app-1",
        [("app-2", addr2.as_str())],
    )
    .layer(unused_app());
    // The client reached app-1 from 203.0.113.7, through a balancer that
    // said it came over TLS.
    let mut req = get(Some(&token_for(&keys, "app-2")));
    req.headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    req.extensions_mut().insert(ConnectInfo(
        "203.0.113.7:40000".parse::<SocketAddr>().unwrap(),
    ));
    let res = tokio::time::timeout(WAIT, app1.oneshot(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = axum::body::to_bytes(res.into_body(), 256).await.unwrap();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "203.0.113.7|https|-",
        "the client once, the forwarding replica (127.0.0.1) not at all"
    );
}
