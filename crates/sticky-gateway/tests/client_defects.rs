//! Issue 8's defects as a client of the gateway sees them: exact bytes from
//! a raw client, through the running gateway (in process), to a raw-socket
//! backend on 127.0.0.1 that records every byte it receives. The client's
//! own regression tests are in `crates/sticky-proxy/tests/defects.rs`.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(10);

/// A backend that reads one request head (and a chunked body, if the head
/// says so) per exchange, records the bytes, and answers `answer`.
async fn recording_backend(answer: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let log = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                loop {
                    let Some(head) = read_until(&mut s, &mut pending, &log, b"\r\n\r\n").await
                    else {
                        return;
                    };
                    if String::from_utf8_lossy(&head)
                        .to_ascii_lowercase()
                        .contains("transfer-encoding: chunked")
                        && read_until(&mut s, &mut pending, &log, b"0\r\n")
                            .await
                            .and(read_until(&mut s, &mut pending, &log, b"\r\n\r\n").await)
                            .is_none()
                    {
                        return;
                    }
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, got)
}

async fn read_until(
    s: &mut TcpStream,
    pending: &mut Vec<u8>,
    log: &Mutex<Vec<u8>>,
    pat: &[u8],
) -> Option<Vec<u8>> {
    loop {
        if let Some(i) = pending.windows(pat.len()).position(|w| w == pat) {
            let rest = pending.split_off(i + pat.len());
            return Some(std::mem::replace(pending, rest));
        }
        let mut buf = [0u8; 8192];
        let n = s.read(&mut buf).await.ok().filter(|&n| n > 0)?;
        log.lock().unwrap().extend_from_slice(&buf[..n]);
        pending.extend_from_slice(&buf[..n]);
    }
}

async fn gateway(backend: SocketAddr) -> sticky_gateway::run::Running {
    common::gateway_over(&[("raw", backend)], |_| {}).await
}

/// Writes `bytes` to the gateway and reads until it closes.
async fn exchange(gw: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut got))
        .await
        .expect("answered and closed")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_answered_501_and_never_reaches_a_backend() {
    let (b, got) =
        recording_backend(b"HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n")
            .await;
    let gw = gateway(b).await;
    // The exact bytes: the connection stays open, so read the head.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"CONNECT attacker.test:443 HTTP/1.1\r\nHost: attacker.test:443\r\n\r\n")
        .await
        .unwrap();
    let (mut pending, log) = (Vec::new(), Mutex::new(Vec::new()));
    let head = tokio::time::timeout(LIMIT, read_until(&mut s, &mut pending, &log, b"\r\n\r\n"))
        .await
        .expect("answered")
        .expect("a head");
    let text = String::from_utf8_lossy(&head);
    assert!(text.starts_with("HTTP/1.1 501"), "{text}");
    assert!(got.lock().unwrap().is_empty(), "the backend saw nothing");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_fields_are_answered_400() {
    let (b, got) = recording_backend(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let gw = gateway(b).await;
    let text = exchange(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(got.lock().unwrap().is_empty(), "the backend saw nothing");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_an_unknown_transfer_coding_is_answered_501() {
    let (b, got) = recording_backend(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let gw = gateway(b).await;
    let text = exchange(
        gw.addr,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 501"), "{text}");
    assert!(got.lock().unwrap().is_empty(), "the backend saw nothing");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_trailers_lose_framing_routing_and_forwarding_fields() {
    let (b, got) = recording_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let gw = gateway(b).await;
    let text = exchange(
        gw.addr,
        b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          2\r\nhi\r\n0\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\nHost: evil.test\r\nX-Forwarded-For: 127.0.0.1\r\nX-Sum: 2\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    let trailer = &seen[seen.rfind("0\r\n").expect("last chunk")..];
    assert_eq!(trailer, "0\r\nx-sum: 2\r\n\r\n", "backend got: {seen}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_trailers_reach_a_client_that_sent_te_trailers() {
    let (b, _) = recording_backend(
        b"HTTP/1.1 200 OK\r\nTrailer: x-sum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-sum: 2\r\n\r\n",
    )
    .await;
    let gw = gateway(b).await;
    let text = exchange(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("0\r\nx-sum: 2\r\n\r\n"), "{text}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupting_transfer_coding_from_a_backend_is_a_502() {
    let (b, _) = recording_backend(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n",
    )
    .await;
    let gw = gateway(b).await;
    let text = exchange(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_cookie_crumbs_reach_the_backend_as_one_line_with_the_authority_as_host() {
    let (b, got) = recording_backend(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let gw = gateway(b).await;
    let mut s = common::h2c(gw.addr).await;
    let req = Request::get("http://real.test/")
        .header("host", "other.test")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::<Bytes>::default())
        .unwrap();
    let r = tokio::time::timeout(LIMIT, s.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let _ = r.into_body().collect().await;
    let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(seen.contains("\r\ncookie: a=1; b=2\r\n"), "{seen}");
    assert_eq!(seen.matches("cookie:").count(), 1, "{seen}");
    assert!(seen.contains("\r\nhost: real.test\r\n"), "{seen}");
    assert!(!seen.contains("other.test\r\n"), "{seen}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_request_with_an_empty_content_length_is_answered_400_and_never_sent() {
    // Issue 8, defect 2, through the whole gateway: h2 reads `content-length:
    // ""` as no length, the request was re-framed as chunked and the empty
    // field written beside `transfer-encoding: chunked`.
    let (b, got) = recording_backend(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let gw = gateway(b).await;
    let mut s = common::h2c(gw.addr).await;
    let req = Request::post("http://app.test/upload")
        .header("content-length", "")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    match tokio::time::timeout(LIMIT, s.send_request(req))
        .await
        .unwrap()
    {
        Ok(r) => assert_eq!(r.status(), StatusCode::BAD_REQUEST),
        // The gateway's h2 server may refuse the stream itself (a
        // malformed length is a PROTOCOL_ERROR reset): refused by the
        // gateway either way, not by this client.
        Err(e) => {
            let e = format!("{e:?}");
            assert!(e.contains("PROTOCOL_ERROR") && e.contains("Remote"), "{e}");
        }
    }
    // And a well-formed upload on the same connection still goes through,
    // with one framing header.
    let req = Request::post("http://app.test/upload")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let r = tokio::time::timeout(LIMIT, s.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert_eq!(
        seen.matches("POST /upload").count(),
        1,
        "only the good one: {seen}"
    );
    let framing =
        seen.matches("content-length:").count() + seen.matches("transfer-encoding:").count();
    assert_eq!(framing, 1, "one framing field: {seen}");
    assert!(!seen.contains("content-length: \r\n"), "{seen}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_413_reaches_the_client_of_a_large_upload() {
    // Answers 413 after the head and closes, never reading the body.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let log = Mutex::new(Vec::new());
                if read_until(&mut s, &mut pending, &log, b"\r\n\r\n")
                    .await
                    .is_some()
                {
                    let _ = s
                        .write_all(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    let gw = gateway(b).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let len = 32 << 20;
    s.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = s.into_split();
    // Keep uploading in the background; the answer must come anyway.
    let upload = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(len / chunk.len()) {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut head = [0u8; 12];
    tokio::time::timeout(LIMIT, rd.read_exact(&mut head))
        .await
        .expect("answered while uploading")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    upload.abort();
    gw.shutdown().await;
}
