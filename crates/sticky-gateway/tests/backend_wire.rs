//! The gateway's own HTTP/1.1 client against a scripted backend that answers
//! in each framing the protocol allows, over loopback: chunked with
//! trailers, close-delimited, interim 1xx answers, HEAD, 204, garbage, and
//! keep-alive connections the backend closes while they sit idle in the pool;
//! and a client's chunked upload re-framed for the backend.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted backend answers to a request line, and whether it
/// closes the connection afterwards (`Some(delay)`: after that delay).
fn script(request_line: &str) -> (&'static [u8], Option<Duration>) {
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nx-sum: 11\r\n\r\n",
            None,
        ),
        "/close" => (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", Some(Duration::ZERO)),
        "/interim" => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            None,
        ),
        "/no-content" => (b"HTTP/1.1 204 No Content\r\n\r\n", None),
        "/idle-close" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce",
            Some(Duration::from_millis(50)),
        ),
        "/garbage" => (b"SPAM SPAM SPAM\r\n\r\n", Some(Duration::ZERO)),
        _ if request_line.starts_with("HEAD ") => {
            (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", None)
        }
        _ => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain", None),
    }
}

/// Serves [`script`] on loopback; counts the connections it accepted.
async fn scripted_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s));
        }
    });
    (addr, accepted)
}

async fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < length {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..length);
        let (answer, close) = script(head.lines().next().unwrap_or(""));
        if s.write_all(answer).await.is_err() {
            return;
        }
        if let Some(after) = close {
            tokio::time::sleep(after).await;
            return;
        }
    }
}

async fn gateway(backend: SocketAddr) -> sticky_gateway::run::Running {
    common::gateway_over(&[("wire", backend)], |_| {}).await
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.test")
        .body(TestBody::Full(Full::default()))
        .unwrap();
    send(addr, req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_reaches_the_client() {
    let (backend, accepted) = scripted_backend().await;
    let gw = gateway(backend).await;

    for _ in 0..3 {
        let r = request(gw.addr, "GET", "/chunked").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"hello world");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "a connection whose chunked body ended is reused"
    );

    let r = request(gw.addr, "GET", "/interim").await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::OK, &b"ok"[..]),
        "1xx skipped"
    );

    let r = request(gw.addr, "HEAD", "/head").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-length"], "9");
    assert!(r.body.is_empty());
    let r = request(gw.addr, "GET", "/no-content").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = request(gw.addr, "GET", "/").await;
    assert_eq!(
        &r.body[..],
        b"plain",
        "bodiless answers left the connection usable"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let r = request(gw.addr, "GET", "/close").await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::OK, &b"until the end"[..])
    );
    let r = request(gw.addr, "GET", "/").await;
    assert_eq!(&r.body[..], b"plain");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a close-delimited body is not reused"
    );

    let r = request(gw.addr, "POST", "/garbage").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_backend_closed_while_idle_is_not_used() {
    let (backend, accepted) = scripted_backend().await;
    let gw = gateway(backend).await;
    for round in 1..=5 {
        let r = request(gw.addr, "GET", "/idle-close").await;
        assert_eq!(
            (r.status, &r.body[..]),
            (StatusCode::OK, &b"once"[..]),
            "round {round}"
        );
        // The backend drops the connection 50 ms after answering, without
        // saying so in its answer; the pool must notice, not fail a request.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_is_re_chunked_to_the_backend() {
    let b = Backend::start("b1").await;
    let gw = in_process_gateway(&[&b], |_| {}).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nhost: app.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n11"),
        "the backend read 11 body bytes: {text}"
    );
    gw.shutdown().await;
}
