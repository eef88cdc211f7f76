//! Peer mode, driven with `oneshot`: the local app is a tower-test mock,
//! peers are real servers (or raw sockets) on 127.0.0.1.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use axum_sticky::{Affinity, PeerLayer, HOP_HEADER};
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_sticky::token::KeyRing;
use tower_sticky::{FailoverPolicy, Outcome, StickyConfig};
use tower_test::mock;

mod common;
use common::{closed_port, get, token_for};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

/// The local app: a mock behind an infallible adapter, as axum wants.
fn local_app() -> (
    impl tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future = impl Send,
        > + Clone
        + Send
        + 'static,
    Handle,
) {
    let (m, h) = mock::pair::<Request<Body>, Response<Body>>();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let m = m.clone();
        async move {
            Ok::<_, Infallible>(m.oneshot(req).await.unwrap_or_else(|_| {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }))
        }
    });
    (svc, h)
}

async fn answer_local(h: &mut Handle) -> Request<Body> {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), h.next_request())
        .await
        .expect("the local app was called")
        .unwrap();
    send.send_response(Response::new(Body::from("local")));
    req
}

/// A peer replica "app-2" served on 127.0.0.1: answers with what it saw,
/// and counts its requests. Its `PeerLayer` is on its `Router`
/// (`Router::layer`) or, `wrapped`, around the whole `Router` (the layout
/// that forwards before any routing).
async fn spawn_app2(keys: &KeyRing, wrapped: bool) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(move |req: Request<Body>| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let cookie = req.headers().get("cookie").is_some();
            let hop = req.headers().contains_key(&HOP_HEADER);
            format!("app-2 cookie={cookie} hop={hop}")
        }
    });
    let layer = PeerLayer::new(
        StickyConfig::new(keys.clone()),
        "app-2",
        [("app-1", "127.0.0.1:9")],
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    if wrapped {
        let app = layer.layer(router.with_state(()));
        tokio::spawn(async move {
            axum::serve(l, axum::ServiceExt::<Request<Body>>::into_make_service(app)).await
        });
    } else {
        let app = router.layer(layer);
        tokio::spawn(async move { axum::serve(l, app).await });
    }
    (addr, hits)
}

async fn body_text(res: Response<Body>) -> String {
    let b = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(b.to_vec()).unwrap()
}

#[tokio::test]
async fn no_token_is_served_here_and_pinned_here() {
    let keys = KeyRing::generate();
    let (app, mut h) = local_app();
    let peer =
        PeerLayer::new(StickyConfig::new(keys), "app-1", [("app-2", "127.0.0.1:9")]).layer(app);
    let call = tokio::spawn(peer.oneshot(get("/cart", None)));
    let req = answer_local(&mut h).await;
    let a = req.extensions().get::<Affinity>().unwrap();
    assert_eq!((a.outcome(), a.backend()), (Outcome::New, Some("app-1")));
    let res = call.await.unwrap().unwrap();
    assert!(
        res.headers().get("set-cookie").is_some(),
        "pinned to this replica"
    );
    assert_eq!(
        res.extensions().get::<Affinity>().unwrap().backend(),
        Some("app-1")
    );
}

#[tokio::test]
async fn a_token_naming_a_live_peer_is_forwarded_once_and_a_forged_one_is_not() {
    forwarded_once_and_forged_refused(false).await;
}

#[tokio::test]
async fn an_owner_wrapping_its_whole_router_serves_a_forward_as_one_with_the_layer_on_it() {
    forwarded_once_and_forged_refused(true).await;
}

/// A genuine token naming app-2 is forwarded there once; a forged token is
/// served here; a hop marker a client made up is refused by app-2. With
/// app-2's `PeerLayer` on its router or, `wrapped`, around it.
async fn forwarded_once_and_forged_refused(wrapped: bool) {
    let keys = KeyRing::generate();
    let (addr2, hits2) = spawn_app2(&keys, wrapped).await;
    let (app, mut h) = local_app();
    let peer = PeerLayer::new(
        StickyConfig::new(keys.clone()),
        "app-1",
        [("app-2", addr2.as_str())],
    )
    .layer(app);

    // A genuine token naming app-2: forwarded, answered by app-2's app,
    // which sees neither our cookie nor the hop marker.
    let cookie = token_for(&keys, "app-2");
    let res = peer
        .clone()
        .oneshot(get("/cart", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("set-cookie").is_none(),
        "a hit is not re-tagged"
    );
    let a = res.extensions().get::<Affinity>().unwrap().clone();
    assert_eq!((a.outcome(), a.backend()), (Outcome::Pinned, Some("app-2")));
    assert_eq!(body_text(res).await, "app-2 cookie=false hop=false");
    assert_eq!(hits2.load(Ordering::SeqCst), 1);

    // A token naming app-2 sealed with another key: no token, served here.
    let forged = token_for(&KeyRing::generate(), "app-2");
    let call = tokio::spawn(peer.clone().oneshot(get("/cart", Some(&forged))));
    let req = answer_local(&mut h).await;
    assert_eq!(
        req.extensions().get::<Affinity>().unwrap().outcome(),
        Outcome::New
    );
    let res = call.await.unwrap().unwrap();
    assert!(res.headers().get("set-cookie").is_some());
    assert_eq!(
        hits2.load(Ordering::SeqCst),
        1,
        "the forged token was not forwarded"
    );

    // A client reaching app-2 directly with a marker it made up: refused,
    // and app-2's app never runs.
    let mut raw = tokio::net::TcpStream::connect(&addr2).await.unwrap();
    let made_up = format!(
        "GET /cart HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n{}: {}\r\n\r\n",
        HOP_HEADER,
        "A".repeat(40)
    );
    raw.write_all(made_up.as_bytes()).await.unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(hits2.load(Ordering::SeqCst), 1, "the app never ran");
}

#[tokio::test]
async fn a_dead_owner_fails_over_and_the_session_is_repinned() {
    let keys = KeyRing::generate();
    let (app, mut h) = local_app();
    let peer = PeerLayer::new(
        StickyConfig::new(keys.clone()),
        "app-1",
        [("app-2", closed_port())],
    )
    .layer(app);
    let cookie = token_for(&keys, "app-2");
    let call = tokio::spawn(peer.clone().oneshot(get("/cart", Some(&cookie))));
    answer_local(&mut h).await;
    let res = call.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    assert!(matches!(
        res.extensions().get::<Affinity>().unwrap().outcome(),
        Outcome::Repinned(_)
    ));
    assert!(res.headers().get("set-cookie").is_some(), "re-pinned here");
}

#[tokio::test]
async fn peer_errors_are_503_under_strict_and_502_when_the_owner_fails_to_answer() {
    let keys = KeyRing::generate();
    // Strict: the owner cannot be reached, the session may not move.
    let (app, mut h) = local_app();
    let config = StickyConfig::new(keys.clone()).failover(FailoverPolicy::Strict);
    let peer = PeerLayer::new(config, "app-1", [("app-2", closed_port())]).layer(app);
    // Answered by the layer: the local mock, never answered, would hang.
    let call = peer.oneshot(get("/cart", Some(&token_for(&keys, "app-2"))));
    let res = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("answered by the layer")
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get("set-cookie").is_none());
    let a = res.extensions().get::<Affinity>().unwrap();
    assert!(
        matches!(a.outcome(), Outcome::Rejected(_)),
        "{}",
        a.outcome()
    );
    let called = tokio::time::timeout(Duration::from_millis(100), h.next_request()).await;
    // (`None` once the layer, and the mock in it, is dropped.)
    assert!(
        !matches!(called, Ok(Some(_))),
        "the local app is not called"
    );

    // The owner takes the request and closes without answering: it may
    // have been served, so it is not sent again anywhere.
    let owner = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = owner.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = owner.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
    });
    let (app, mut h) = local_app();
    let peer = PeerLayer::new(StickyConfig::new(keys.clone()), "app-1", [("app-2", at)]).layer(app);
    // Answered by the layer: the local mock, never answered, would hang.
    let call = peer.oneshot(get("/cart", Some(&token_for(&keys, "app-2"))));
    let res = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("answered by the layer")
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let a = res.extensions().get::<Affinity>().unwrap();
    assert_eq!(a.backend(), Some("app-2"));
    assert_eq!(body_text(res).await, "the backend failed to answer\n");
    let called = tokio::time::timeout(Duration::from_millis(100), h.next_request()).await;
    assert!(
        !matches!(called, Ok(Some(_))),
        "not served here after it may have been served"
    );
}

#[tokio::test]
async fn hop_markers_forged_or_replayed_by_a_client_are_refused() {
    let keys = KeyRing::generate();
    // "app-3" as app-1 sees it: a raw socket that captures the forwarded head.
    let capture = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr3 = capture.local_addr().unwrap().to_string();
    let captured = tokio::spawn(async move {
        let (mut s, _) = capture.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let mut n = 0;
        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            n += s.read(&mut buf[n..]).await.unwrap();
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    });
    let (app1, _h1) = local_app();
    let layer1 = PeerLayer::new(
        StickyConfig::new(keys.clone()),
        "app-1",
        [("app-3", addr3.as_str())],
    );
    let app1 = layer1.layer(app1);
    let res = app1
        .oneshot(get("/cart", Some(&token_for(&keys, "app-3"))))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let head = captured.await.unwrap();
    let marker = head
        .lines()
        .find_map(|l| l.strip_prefix("x-sticky-hop: ").map(str::to_string))
        .expect("the forwarded request carries a marker");
    assert!(
        !head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("cookie:")),
        "the forwarding replica removes our token: {head}"
    );

    // The real app-3, whose peer app-1 counts connections: a marked request
    // is served here even when its token names another live replica.
    let app1_socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app1_addr = app1_socket.local_addr().unwrap().to_string();
    let dialled = Arc::new(AtomicUsize::new(0));
    let d = dialled.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = app1_socket.accept().await {
            d.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (app3, mut h3) = local_app();
    let layer3 = PeerLayer::new(
        StickyConfig::new(keys.clone()),
        "app-3",
        [("app-1", app1_addr.as_str())],
    );
    let app3 = layer3.layer(app3);
    let marked = |uri: &str, marker: &str| {
        let mut r = get(uri, Some(&token_for(&keys, "app-1")));
        r.headers_mut().insert(HOP_HEADER, marker.parse().unwrap());
        r
    };

    // A marker a client made up: refused, the app not called.
    let res = app3
        .clone()
        .oneshot(marked("/cart", "not-a-marker"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A genuine marker moved onto another request: refused.
    let res = app3
        .clone()
        .oneshot(marked("/admin", &marker))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // The genuine hop: served here, once, marker and cookie removed (a
    // cookie app-1 would not have sent), with app-1's decision.
    let call = tokio::spawn(app3.clone().oneshot(marked("/cart", &marker)));
    let req = answer_local(&mut h3).await;
    assert!(!req.headers().contains_key(&HOP_HEADER));
    assert!(req.headers().get("cookie").is_none());
    let affinity = req.extensions().get::<Affinity>().unwrap();
    assert_eq!(affinity.outcome(), Outcome::Pinned);
    assert_eq!(affinity.backend(), Some("app-3"));
    // Decided and counted once, on app-1, which it reached: app-3 took the
    // decision from the marker and never read the (app-1) token it carried.
    assert_eq!(layer1.stats().pinned(), 1);
    let owner = layer3.stats();
    assert_eq!(owner.pinned(), 0, "the owner decided again");
    assert!(owner.backends().iter().all(|b| b.requests() == 0));
    let res = call.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("set-cookie").is_none(),
        "the forwarding replica tags"
    );
    // The same marker again (a replay): refused.
    let res = app3
        .clone()
        .oneshot(marked("/cart", &marker))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        dialled.load(Ordering::SeqCst),
        0,
        "never forwarded a second time"
    );
}
