//! What the integration tests share: tokens made as a replica would, a
//! port nothing listens on, and a response body that streams on demand.
#![allow(dead_code)] // each test file uses its own part

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::mpsc;
use tower_sticky::token::{KeyRing, Token, TokenCodec};
use tower_sticky::StableId;

/// A `Cookie` value whose genuine token (session 42) names `member`.
pub fn token_for(keys: &KeyRing, member: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let t = Token::new(member.to_string().stable_id(), 42, now);
    format!(
        "sticky={}",
        TokenCodec::new(keys.clone(), "sticky").seal(&t).as_str()
    )
}

/// A loopback address nothing listens on (connections are refused).
pub fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A body that yields what is sent on the sender and ends when it drops.
pub fn streaming() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    (tx, Body::from_stream(stream))
}

/// A `GET` of `uri` for `app.test`, with `cookie` if any.
pub fn get(uri: &str, cookie: Option<&str>) -> http::Request<Body> {
    let mut b = http::Request::get(uri).header("host", "app.test");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Body::empty()).unwrap()
}

/// One member's counters: (in flight, failures, ejections).
pub fn counters(stats: &tower_sticky::Stats<String>, name: &str) -> (usize, u64, u64) {
    let b = stats
        .backends()
        .iter()
        .find(|b| b.key() == name)
        .expect("the member is in the table");
    (b.in_flight(), b.failures(), b.ejections())
}
