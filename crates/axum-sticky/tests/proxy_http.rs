//! The gateway shape with its default client (sticky-proxy) over real
//! backends on 127.0.0.1: a session whose backend stops answering is
//! decided again in the same request, as the failover policy says.

use axum::body::Body;
use axum::Router;
use axum_sticky::{Affinity, Backends, StickyProxy};
use http::{Request, StatusCode};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_sticky::token::{KeyRing, Token, TokenCodec};
use tower_sticky::{FailoverPolicy, Outcome, StableId, StickyConfig};

async fn backend(name: &'static str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let app = Router::new().fallback(move || async move { name });
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn pinned_to(keys: &KeyRing, backend: &str) -> Request<Body> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let t = Token::new(backend.to_string().stable_id(), 5, now);
    let cookie = format!(
        "sticky={}",
        TokenCodec::new(keys.clone(), "sticky").seal(&t).as_str()
    );
    Request::get("/")
        .header("host", "app.test")
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_unreachable_backend_is_rerouted_in_the_same_request() {
    let keys = KeyRing::generate();
    let alive = backend("alive").await;
    let backends = Backends::http([("alive", alive.as_str()), ("gone", closed_port().as_str())]);
    let proxy = StickyProxy::new(StickyConfig::new(keys.clone()), backends);

    let res = proxy
        .clone()
        .oneshot(pinned_to(&keys, "gone"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let a = res.extensions().get::<Affinity>().unwrap().clone();
    assert!(
        matches!(a.outcome(), Outcome::Repinned(_)),
        "{}",
        a.outcome()
    );
    assert_eq!(a.backend(), Some("alive"));
    assert!(res.headers().get("set-cookie").is_some(), "re-pinned");
    let body = axum::body::to_bytes(res.into_body(), 64).await.unwrap();
    assert_eq!(&body[..], b"alive");
}

#[tokio::test]
async fn strict_answers_503_when_the_session_backend_is_unreachable() {
    let keys = KeyRing::generate();
    let alive = backend("alive").await;
    let backends = Backends::http([("alive", alive.as_str()), ("gone", closed_port().as_str())]);
    let config = StickyConfig::new(keys.clone()).failover(FailoverPolicy::Strict);
    let proxy = StickyProxy::new(config, backends);
    let res = proxy
        .clone()
        .oneshot(pinned_to(&keys, "gone"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A session pinned to the live backend is served there.
    let res = proxy.oneshot(pinned_to(&keys, "alive")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
