//! The gateway shape, driven with `oneshot` over tower-test mock backends.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use axum_sticky::{Affinity, Backends, StickyProxy};
use http::{Request, Response, StatusCode};
use tower::ServiceExt;
use tower_sticky::token::KeyRing;
use tower_sticky::{FailoverPolicy, Outcome, Reason, StickyConfig};
use tower_test::mock;

type Mock = mock::Mock<Request<Body>, Response<Body>>;
type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn cookie_of(res: &Response<Body>) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sticky="))
        .map(|v| v.split(';').next().unwrap().to_string())
}

fn get_with(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri).header("host", "app.test");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Body::empty()).unwrap()
}

/// Answers the next request with 200 and the backend's name, returning the
/// request's affinity and whether our cookie reached the backend.
async fn answer(handle: &mut Handle, name: &'static str) -> (Affinity, bool) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("the backend was called")
        .expect("mock open");
    let affinity = req
        .extensions()
        .get::<Affinity>()
        .cloned()
        .expect("affinity in the request");
    let cookie_seen = req
        .headers()
        .get_all("cookie")
        .iter()
        .any(|v| v.to_str().unwrap_or("").contains("sticky="));
    send.send_response(Response::new(Body::from(name)));
    (affinity, cookie_seen)
}

fn two_backends(config: StickyConfig) -> (StickyProxy<Mock>, Handle, Handle) {
    let (a, ha) = mock::pair();
    let (b, hb) = mock::pair();
    let proxy = StickyProxy::new(config, Backends::new([("a", a), ("b", b)]));
    (proxy, ha, hb)
}

/// Which handle the next request reaches: answered with its name.
async fn serve_either(ha: &mut Handle, hb: &mut Handle) -> (&'static str, Affinity, bool) {
    tokio::select! {
        r = answer(ha, "a") => ("a", r.0, r.1),
        r = answer(hb, "b") => ("b", r.0, r.1),
    }
}

#[tokio::test]
async fn local_routes_are_untagged_and_proxied_requests_are_pinned() {
    let (proxy, mut ha, mut hb) = two_backends(StickyConfig::new(KeyRing::generate()));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback_service(proxy);

    let res = app
        .clone()
        .oneshot(get_with("/healthz", None))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(cookie_of(&res).is_none(), "a local route gets no cookie");
    assert!(res.extensions().get::<Affinity>().is_none());

    let call = tokio::spawn(app.clone().oneshot(get_with("/cart", None)));
    let (first, affinity, _) = serve_either(&mut ha, &mut hb).await;
    assert_eq!(affinity.outcome(), Outcome::New);
    assert_eq!(affinity.backend(), Some(first));
    let res = call.await.unwrap().unwrap();
    let cookie = cookie_of(&res).expect("a new session is tagged");
    let seen = res
        .extensions()
        .get::<Affinity>()
        .expect("affinity in the response");
    assert_eq!(seen.backend(), Some(first));

    for _ in 0..5 {
        let call = tokio::spawn(app.clone().oneshot(get_with("/cart", Some(&cookie))));
        let (served, affinity, cookie_seen) = serve_either(&mut ha, &mut hb).await;
        assert_eq!(served, first, "the session stays on its backend");
        assert_eq!(affinity.outcome(), Outcome::Pinned);
        assert!(!cookie_seen, "our cookie is removed before the backend");
        let res = call.await.unwrap().unwrap();
        assert!(cookie_of(&res).is_none(), "a hit is not re-tagged");
    }
}

#[tokio::test]
async fn the_affinity_extractor_gives_the_decision_to_a_handler_backend() {
    // A backend that is itself an axum handler reading the extractor.
    let backend = Router::new().fallback(|a: Affinity| async move {
        format!("{} {}", a.outcome(), a.backend().unwrap_or("-"))
    });
    let proxy = StickyProxy::new(
        StickyConfig::new(KeyRing::generate()),
        Backends::new([("only", backend)]),
    );
    let res = proxy.oneshot(get_with("/", None)).await.unwrap();
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"new only");
}

#[tokio::test]
async fn backend_errors_are_502_and_refusals_503() {
    // A failing backend: 502, short plain text.
    let (proxy, mut ha, mut hb) = two_backends(StickyConfig::new(KeyRing::generate()));
    let call = tokio::spawn(proxy.clone().oneshot(get_with("/", None)));
    tokio::select! {
        Some((_, send)) = ha.next_request() => send.send_error("boom"),
        Some((_, send)) = hb.next_request() => send.send_error("boom"),
    }
    let res = call.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");

    // No backend at all: 503.
    let empty: StickyProxy<Mock> = StickyProxy::new(
        StickyConfig::new(KeyRing::generate()),
        Backends::new(Vec::<(String, Mock)>::new()),
    );
    let res = empty.oneshot(get_with("/", None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let a = res.extensions().get::<Affinity>().unwrap();
    assert_eq!(a.outcome(), Outcome::Rejected(Reason::NoBackend));
}

#[tokio::test]
async fn an_unreachable_backend_is_ejected_and_strict_answers_503() {
    let keys = KeyRing::generate();
    let config = StickyConfig::new(keys).failover(FailoverPolicy::Strict);
    let (proxy, mut ha, mut hb) = two_backends(config);
    // Pin a session.
    let call = tokio::spawn(proxy.clone().oneshot(get_with("/", None)));
    let (home, _, _) = serve_either(&mut ha, &mut hb).await;
    let cookie = cookie_of(&call.await.unwrap().unwrap()).unwrap();
    // Its backend refuses connections: 502 and ejected.
    let call = tokio::spawn(proxy.clone().oneshot(get_with("/", Some(&cookie))));
    let refused = || {
        sticky_proxy::Error::Connect(sticky_proxy::ConnectError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    };
    let h = if home == "a" { &mut ha } else { &mut hb };
    let (_, send) = h.next_request().await.unwrap();
    send.send_error(refused());
    let res = call.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    // Strict: the session's backend is out, so 503 without calling anyone.
    let res = proxy
        .clone()
        .oneshot(get_with("/", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.extensions().get::<Affinity>().unwrap().outcome(),
        Outcome::Rejected(Reason::Unhealthy)
    );
}

#[tokio::test]
async fn a_watch_channel_changes_the_set() {
    let (a, mut ha) = mock::pair::<Request<Body>, Response<Body>>();
    let (b, mut hb) = mock::pair::<Request<Body>, Response<Body>>();
    let (tx, rx) = tokio::sync::watch::channel(vec![("a".to_string(), a)]);
    let proxy = StickyProxy::new(
        StickyConfig::new(KeyRing::generate()),
        Backends::from_watch(rx),
    );
    let call = tokio::spawn(proxy.clone().oneshot(get_with("/", None)));
    let (served, _, _) = serve_either(&mut ha, &mut hb).await;
    assert_eq!(served, "a");
    call.await.unwrap().unwrap();
    tx.send(vec![("b".to_string(), b)]).unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while proxy.backends().load().get(0).map(|m| m.key().as_str()) != Some("b") {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the set follows the channel");
    let call = tokio::spawn(proxy.clone().oneshot(get_with("/", None)));
    let (affinity, _) = answer(&mut hb, "b").await;
    assert_eq!(affinity.backend(), Some("b"));
    call.await.unwrap().unwrap();
}
