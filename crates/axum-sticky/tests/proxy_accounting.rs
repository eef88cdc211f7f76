//! The gateway shape's accounting and forwarding fields: a request is in
//! flight until its response body ends, a connect failure counts once and
//! is rerouted, a request not fit to forward counts neither way, and the
//! backend sees `X-Forwarded-*` as sticky-gateway sends them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum_sticky::{Affinity, Backends, StickyProxy};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower::ServiceExt;
use tower_sticky::token::KeyRing;
use tower_sticky::{Ejection, Outcome, StickyConfig};
use tower_test::mock;

mod common;

fn get_with(cookie: Option<&str>) -> Request<Body> {
    common::get("/", cookie)
}

/// Per backend: (in flight, failures, ejections).
fn counters<S>(proxy: &StickyProxy<S>, name: &str) -> (usize, u64, u64) {
    common::counters(&proxy.engine().stats(&proxy.backends().load()), name)
}

type Mock = mock::Mock<Request<Body>, Response<Body>>;
type Handle = mock::Handle<Request<Body>, Response<Body>>;

const WAIT: Duration = Duration::from_secs(5);

fn cookie_of<B>(res: &Response<B>) -> String {
    let v = res.headers()["set-cookie"].to_str().unwrap();
    v.split(';').next().unwrap().to_string()
}

async fn next(h: &mut Handle) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
    tokio::time::timeout(WAIT, h.next_request())
        .await
        .expect("the backend was called")
        .expect("mock open")
}

#[tokio::test]
async fn a_request_is_in_flight_until_its_response_body_ends() {
    let (a, mut ha) = mock::pair();
    let proxy = StickyProxy::new(
        StickyConfig::new(KeyRing::generate()),
        Backends::new([("a", a)]),
    );
    let call = tokio::spawn(proxy.clone().oneshot(get_with(None)));
    let (_, send) = next(&mut ha).await;
    let (tx, body) = common::streaming();
    send.send_response(Response::new(body));
    let res = call.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        counters(&proxy, "a").0,
        1,
        "in flight while the body streams"
    );
    tx.send(Bytes::from_static(b"part")).await.unwrap();
    drop(tx);
    let body = axum::body::to_bytes(res.into_body(), 64).await.unwrap();
    assert_eq!(&body[..], b"part");
    assert_eq!(counters(&proxy, "a").0, 0, "released when the body ended");

    // A body dropped unread releases it too.
    let call = tokio::spawn(proxy.clone().oneshot(get_with(None)));
    let (_, send) = next(&mut ha).await;
    let (_tx, body) = common::streaming();
    send.send_response(Response::new(body));
    let res = call.await.unwrap().unwrap();
    assert_eq!(counters(&proxy, "a").0, 1);
    drop(res);
    assert_eq!(counters(&proxy, "a").0, 0, "released when the body dropped");
}

#[tokio::test]
async fn with_the_http_client_too_a_request_is_in_flight_until_its_body_ends() {
    let (addr, _heads, finish) = common::raw_server(vec![b""]).await;
    let proxy = StickyProxy::new(
        StickyConfig::new(KeyRing::generate()),
        Backends::http([("a", addr.as_str())]),
    );
    let res = tokio::time::timeout(WAIT, proxy.clone().oneshot(get_with(None)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        counters(&proxy, "a").0,
        1,
        "in flight while the body streams"
    );
    finish.send(()).await.unwrap();
    let body = tokio::time::timeout(WAIT, axum::body::to_bytes(res.into_body(), 64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body[..], b"cart");
    assert_eq!(counters(&proxy, "a").0, 0);
}

fn refused() -> sticky_proxy::Error {
    sticky_proxy::Error::Connect(sticky_proxy::ConnectError::Io(std::io::Error::from(
        std::io::ErrorKind::ConnectionRefused,
    )))
}

#[tokio::test]
async fn a_backend_that_cannot_take_the_request_counts_one_failure_and_the_request_is_rerouted() {
    let (a, mut ha) = mock::pair();
    let (b, mut hb) = mock::pair();
    let proxy: StickyProxy<Mock> = StickyProxy::new(
        StickyConfig::new(KeyRing::generate()),
        Backends::new([("a", a), ("b", b)]),
    );
    // Pin a session on either.
    let call = tokio::spawn(proxy.clone().oneshot(get_with(None)));
    let home = tokio::select! {
        Some((_, send)) = ha.next_request() => { send.send_response(Response::new(Body::empty())); "a" }
        Some((_, send)) = hb.next_request() => { send.send_response(Response::new(Body::empty())); "b" }
    };
    let other = if home == "a" { "b" } else { "a" };
    let cookie = cookie_of(&call.await.unwrap().unwrap());
    let (hh, ho) = if home == "a" {
        (&mut ha, &mut hb)
    } else {
        (&mut hb, &mut ha)
    };
    // Its backend's client is not ready (it could not connect): nothing was
    // sent, so the request goes to the other backend in the same exchange.
    hh.send_error(refused());
    let call = tokio::spawn(proxy.clone().oneshot(get_with(Some(&cookie))));
    let (req, send) = next(ho).await;
    assert!(
        matches!(
            req.extensions().get::<Affinity>().unwrap().outcome(),
            Outcome::Repinned(_)
        ),
        "the backend sees the decision made again"
    );
    send.send_response(Response::new(Body::from("other")));
    let res = call.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let a = res.extensions().get::<Affinity>().unwrap();
    assert_eq!(a.backend(), Some(other));
    assert!(res.headers().get("set-cookie").is_some(), "re-pinned");
    drop(res);
    assert_eq!(counters(&proxy, home), (0, 1, 1), "one failure, ejected");
    assert_eq!(counters(&proxy, other), (0, 0, 0));
}

#[tokio::test]
async fn a_request_not_fit_to_forward_neither_ejects_nor_hides_failures() {
    let (a, mut ha) = mock::pair();
    let config = StickyConfig::new(KeyRing::generate())
        .ejection(Ejection::after(2, Duration::from_secs(30)));
    let proxy: StickyProxy<Mock> = StickyProxy::new(config, Backends::new([("a", a)]));
    let fail = |h: &mut Handle| {
        let mut h = std::mem::replace(h, mock::pair().1);
        async move {
            let (_, send) = next(&mut h).await;
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            send.send_response(r);
            h
        }
    };
    // A 5xx: one failure.
    let call = tokio::spawn(proxy.clone().oneshot(get_with(None)));
    ha = fail(&mut ha).await;
    assert_eq!(call.await.unwrap().unwrap().status(), 500);
    // A request with a transfer coding no one can frame: 501, and no result
    // for the backend (a success here would end its failure streak).
    let bad = Request::post("/")
        .header("host", "app.test")
        .header("transfer-encoding", "gzip")
        .body(Body::from("x"))
        .unwrap();
    let res = proxy.clone().oneshot(bad).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(counters(&proxy, "a"), (0, 1, 0));
    // A second 5xx in a row: ejected.
    let call = tokio::spawn(proxy.clone().oneshot(get_with(None)));
    let _ha = fail(&mut ha).await;
    assert_eq!(call.await.unwrap().unwrap().status(), 500);
    assert_eq!(counters(&proxy, "a"), (0, 2, 1));
}

#[tokio::test]
async fn the_backend_sees_the_client_in_x_forwarded_for() {
    let (a, mut ha) = mock::pair();
    let proxy: StickyProxy<Mock> = StickyProxy::new(
        StickyConfig::new(KeyRing::generate()),
        Backends::new([("a", a)]),
    );
    let mut req = Request::get("/")
        .header("host", "app.test")
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=198.51.100.1")
        .body(Body::empty())
        .unwrap();
    let client: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(client));
    let call = tokio::spawn(proxy.clone().oneshot(req));
    let (seen, send) = next(&mut ha).await;
    send.send_response(Response::new(Body::empty()));
    call.await.unwrap().unwrap();
    let h = seen.headers();
    assert_eq!(h["x-forwarded-for"], "198.51.100.1, 203.0.113.7");
    assert_eq!(h["x-forwarded-proto"], "http", "this hop's scheme");
    assert_eq!(h["x-forwarded-host"], "app.test");
    assert_eq!(h["forwarded"], "for=198.51.100.1", "passed on unchanged");
}
