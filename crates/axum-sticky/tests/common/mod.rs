//! What the integration tests share: tokens made as a replica would, a
//! port nothing listens on, and a response body that streams on demand.
#![allow(dead_code)] // each test file uses its own part

use axum::body::Body;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
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

/// A server on 127.0.0.1 speaking raw HTTP/1.1 (a backend, or a stand-in
/// for a peer): answers each request on one connection with the next of
/// `answers`, an empty one being a chunked body whose end waits for the
/// returned sender, and sends each request head it read on the receiver.
pub async fn raw_server(
    answers: Vec<&'static [u8]>,
) -> (String, mpsc::UnboundedReceiver<String>, mpsc::Sender<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (heads_tx, heads) = mpsc::unbounded_channel();
    let (go, mut gone) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        for answer in answers {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => n += k,
                }
            }
            let _ = heads_tx.send(String::from_utf8_lossy(&buf[..n]).to_string());
            if answer.is_empty() {
                // A chunked body whose end waits for `go`.
                s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\ncart\r\n")
                    .await
                    .unwrap();
                gone.recv().await;
                s.write_all(b"0\r\n\r\n").await.unwrap();
            } else {
                s.write_all(answer).await.unwrap();
            }
        }
        let _ = s.read(&mut [0u8; 64]).await;
    });
    (addr, heads, go)
}
