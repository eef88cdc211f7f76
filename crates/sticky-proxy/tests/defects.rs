//! Regression tests for the defects of issue 8, each over a raw-socket
//! backend on 127.0.0.1 sending the exact bytes of the issue. (The ones
//! that need a front, such as 400 for two `Host` fields, are also in the
//! gateway's `tests/client_defects.rs`.)

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::{Method, Request, StatusCode, Version};
use sticky_proxy::{Error, InterimResponses, ProtocolError, RequestError};

const IDLE: Duration = Duration::from_secs(30);

// 1. CONNECT
#[tokio::test]
async fn connect_is_refused_unless_allowed_and_its_connection_never_pooled() {
    let b = answering(b"HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n").await;
    let client = client(b.addr, IDLE);
    let connect = || {
        Request::connect("attacker.test:443")
            .header("host", "attacker.test:443")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let refused = send(&client, connect()).await.unwrap_err();
    assert!(matches!(refused, Error::Request(RequestError::Connect)));
    assert!(refused.is_unsent());
    assert_eq!(b.accepted(), 0, "nothing reached the backend");

    let allowed = client.clone().allow_connect(true);
    let (parts, body) = connect().into_parts();
    let resp = allowed
        .send(&parts, std::pin::pin!(body))
        .await
        .expect("forwarded when allowed");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.into_body().into_upgraded().is_some(),
        "a 2xx to CONNECT is a tunnel"
    );
    assert_eq!(allowed.pool().idle_len(), 0, "never pooled");
    let r = send(&allowed, get("/next")).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(b.accepted(), 2, "the next request took a new connection");
}

// 2. Content-Length and Transfer-Encoding together
#[tokio::test]
async fn one_framing_header_only_and_an_unparsable_length_is_refused() {
    let b = raw(|mut c| async move {
        while c.head().await.is_some() {
            let _ = c.read_until(b"0\r\n\r\n").await;
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    })
    .await;
    let client = client(b.addr, IDLE);
    // HTTP/2's `content-length: ""` over a streamed body.
    let taken = Arc::new(AtomicUsize::new(0));
    let bad = Request::post("http://app.test/up")
        .version(Version::HTTP_2)
        .header("content-length", "")
        .body(Lazy {
            left: 3,
            taken: taken.clone(),
        })
        .unwrap();
    let e = send(&client, bad).await.unwrap_err();
    assert!(
        matches!(e, Error::Request(RequestError::ContentLength)),
        "{e}"
    );
    assert!(e.is_unsent());
    assert_eq!(
        RequestError::ContentLength.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(b.accepted(), 0);
    // Chunked framing with a stale `transfer-encoding` and no length.
    let streamed = Request::post("http://app.test/up")
        .version(Version::HTTP_2)
        .header("transfer-encoding", "chunked")
        .body(Lazy {
            left: 3,
            taken: taken.clone(),
        })
        .unwrap();
    assert_eq!(
        send(&client, streamed).await.unwrap().status,
        StatusCode::OK
    );
    let got = String::from_utf8(b.all_received())
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(
        got.matches("transfer-encoding: chunked").count(),
        1,
        "{got}"
    );
    assert!(!got.contains("content-length"), "{got}");
}

// 3. Early answers
#[tokio::test]
async fn an_early_final_answer_is_forwarded_while_the_body_is_still_being_written() {
    // 413 and close after the head, as the backend does.
    let b = raw(|mut c| async move {
        c.head().await;
        c.write(
            b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
    })
    .await;
    let client = client(b.addr, IDLE);
    let taken = Arc::new(AtomicUsize::new(0));
    let upload = |len: u64| {
        Request::post("/upload")
            .header("host", "app.test")
            .header("content-length", len.to_string())
            .body(Lazy {
                left: len,
                taken: taken.clone(),
            })
            .unwrap()
    };
    let r = send(&client, upload(32 << 20))
        .await
        .expect("the 413 arrives");
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    // 200 without reading, the socket kept open: a 256 MiB upload is answered.
    let b = raw(|mut c| async move {
        c.head().await;
        c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
            .await;
        tokio::time::sleep(LIMIT * 2).await;
        drop(c);
    })
    .await;
    let client = common::client(b.addr, IDLE);
    let r = send(&client, upload(256 << 20)).await.expect("answered");
    assert_eq!(
        (r.status, r.body.unwrap()),
        (StatusCode::OK, b"done".to_vec())
    );
    assert!(
        (taken.load(std::sync::atomic::Ordering::SeqCst) as u64) < (256 << 20),
        "the upload stopped early"
    );
    assert_eq!(
        client.pool().idle_len(),
        0,
        "a half-sent request's connection is dropped"
    );
}

// 4. Keep-alive race and idle age
#[tokio::test]
async fn a_pooled_connection_closed_as_the_head_arrives_is_retried_once_on_a_fresh_one() {
    // Each connection answers one request, then closes on the next head
    // without answering: the race of a backend's keep-alive timeout.
    let b = raw(|mut c| async move {
        c.head().await;
        c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
        c.head().await;
    })
    .await;
    let client = client(b.addr, IDLE);
    for round in 0..3 {
        let r = send(&client, get("/")).await.expect("no 502");
        assert_eq!(r.body.unwrap(), b"ok", "round {round}");
    }
    assert_eq!(b.accepted(), 3, "a retry on a fresh connection each time");

    // A body byte taken: never retried.
    let taken = Arc::new(AtomicUsize::new(0));
    let post = Request::post("/")
        .header("host", "app.test")
        .header("content-length", "3")
        .body(Lazy { left: 3, taken })
        .unwrap();
    let e = send(&client, post).await.unwrap_err();
    assert!(!e.is_unsent(), "{e}");
}

#[tokio::test]
async fn idle_connections_older_than_the_idle_timeout_are_not_reused() {
    let b = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let client = client(b.addr, Duration::from_millis(150));
    send(&client, get("/")).await.unwrap();
    send(&client, get("/")).await.unwrap();
    assert_eq!(b.accepted(), 1, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&client, get("/")).await.unwrap();
    assert_eq!(b.accepted(), 2, "closed once idle too long");
}

// 5. HTTP/2 cookie crumbs and :authority
#[tokio::test]
async fn h2_cookie_crumbs_are_joined_and_authority_is_the_host() {
    let b = answering(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let client = client(b.addr, IDLE);
    let req = Request::get("https://real.test/p")
        .version(Version::HTTP_2)
        .header("host", "other.test")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    send(&client, req).await.unwrap();
    let got = String::from_utf8(b.all_received()).unwrap();
    assert!(
        got.starts_with("GET /p HTTP/1.1\r\nhost: real.test\r\n"),
        "{got}"
    );
    assert!(got.contains("\r\ncookie: a=1; b=2\r\n"), "{got}");
    assert_eq!(got.matches("cookie:").count(), 1, "{got}");
    assert!(!got.contains("other.test"), "{got}");
}

// 6. Transfer codings other than chunked
#[tokio::test]
async fn a_body_in_an_unknown_transfer_coding_is_an_error_not_a_corrupt_body() {
    let b = answering(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n",
    )
    .await;
    let e = send(&client(b.addr, IDLE), get("/")).await.unwrap_err();
    assert!(
        matches!(e, Error::Protocol(ProtocolError::TransferCoding)),
        "{e}"
    );
    // And for requests: refused before sending (501).
    let mut h = http::HeaderMap::new();
    h.insert("transfer-encoding", "gzip, chunked".parse().unwrap());
    let e = sticky_proxy::HopByHop::of(&h)
        .strip_request(&mut h, false)
        .unwrap_err();
    assert_eq!(e, RequestError::TransferCoding);
    assert_eq!(e.status(), StatusCode::NOT_IMPLEMENTED);
}

// 7. Faulty framing pooled
#[tokio::test]
async fn http10_chunked_and_cl_te_answers_are_read_but_not_pooled() {
    for answer in [
        &b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
    ] {
        let answer: &'static [u8] = Box::leak(answer.to_vec().into_boxed_slice());
        let b = answering(answer).await;
        let client = client(b.addr, IDLE);
        let r = send(&client, get("/")).await.unwrap();
        assert_eq!(r.body.unwrap(), b"ok");
        assert_eq!(client.pool().idle_len(), 0, "{:?}", String::from_utf8_lossy(answer));
        send(&client, get("/")).await.unwrap();
        assert_eq!(b.accepted(), 2);
    }
}

// 8. Trailers bypass the header rules (requests; the gateway test sends
// the exact client bytes)
#[tokio::test]
async fn forbidden_trailer_fields_never_reach_the_backend_or_the_caller() {
    let b = raw(|mut c| async move {
        c.head().await;
        c.read_until(b"\r\n\r\n").await;
        c.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nSet-Cookie: sid=stolen\r\nContent-Length: 5\r\nX-Sum: 7\r\n\r\n")
            .await;
    })
    .await;
    let client = client(b.addr, IDLE);
    let mut trailers = http::HeaderMap::new();
    for (k, v) in [
        ("content-length", "999"),
        ("transfer-encoding", "chunked"),
        ("host", "evil.test"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-sum", "1"),
    ] {
        trailers.append(k, v.parse().unwrap());
    }
    let body = Frames(vec![http_body::Frame::trailers(trailers)].into());
    let req = Request::post("/")
        .header("host", "app.test")
        .body(body)
        .unwrap();
    let r = send(&client, req).await.unwrap();
    let got = String::from_utf8(b.all_received()).unwrap();
    assert!(got.ends_with("0\r\nx-sum: 1\r\n\r\n"), "{got:?}");
    let t = r.trailers.expect("trailers");
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t["x-sum"], "7");
}

// 9. Two Host headers
#[tokio::test]
async fn two_host_fields_are_refused_before_anything_is_sent() {
    let b = answering(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let req = Request::get("/")
        .header("host", "a.test")
        .header("host", "b.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let e = send(&client(b.addr, IDLE), req).await.unwrap_err();
    assert!(
        matches!(e, Error::Request(RequestError::DuplicateHost)),
        "{e}"
    );
    assert_eq!(
        RequestError::DuplicateHost.status(),
        StatusCode::BAD_REQUEST
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(b.all_received().is_empty(), "nothing was written");
}

// 10. Lenient chunk decoder
#[tokio::test]
async fn malformed_chunk_size_lines_are_errors_as_in_hyper() {
    let ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(17 * 1024));
    let ext: &'static str = Box::leak(ext.into_boxed_str());
    for body in ["\r\n", ";ext\r\n", "1;a\nb\r\nx\r\n0\r\n\r\n", ext] {
        let answer = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let answer: &'static [u8] = Box::leak(answer.into_bytes().into_boxed_slice());
        let b = answering(answer).await;
        let client = client(b.addr, IDLE);
        let r = send(&client, get("/")).await.unwrap();
        assert!(r.body.is_err(), "{body:?} accepted");
        assert_eq!(client.pool().idle_len(), 0);
    }
}

// 11. Spurious failures
#[tokio::test]
async fn no_body_answers_ignore_their_content_length_and_100_trailers_pass() {
    let b = answering(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n").await;
    let client = client(b.addr, IDLE);
    let head = Request::head("/")
        .header("host", "app.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(send(&client, head).await.unwrap().status, StatusCode::OK);
    let b = answering(b"HTTP/1.1 204 No Content\r\nContent-Length: 1, 2\r\n\r\n").await;
    assert_eq!(
        send(&client_for(&b), get("/")).await.unwrap().status,
        StatusCode::NO_CONTENT
    );

    let trailers = |n: usize| {
        let mut a =
            String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n");
        for i in 0..n {
            a.push_str(&format!("x-t{i}: {i}\r\n"));
        }
        a.push_str("\r\n");
        &*Box::leak(a.into_bytes().into_boxed_slice())
    };
    let b = answering(trailers(100)).await;
    let r = send(&client_for(&b), get("/")).await.unwrap();
    assert_eq!(r.trailers.expect("trailers").len(), 100);
    let b = answering(trailers(101)).await;
    assert!(send(&client_for(&b), get("/")).await.unwrap().body.is_err());
}

#[tokio::test]
async fn early_hints_reach_the_caller_with_the_final_answer() {
    let b = answering(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let r = send(&client_for(&b), get("/")).await.unwrap();
    assert_eq!(r.body.unwrap(), b"ok");
    let hints = r
        .extensions
        .get::<InterimResponses>()
        .expect("interim answers");
    assert_eq!(hints.0.len(), 1);
    assert_eq!(hints.0[0].0, StatusCode::EARLY_HINTS);
    assert_eq!(hints.0[0].1["link"], "</a.css>; rel=preload");
    let _ = Method::GET;
}

fn client_for(b: &Raw) -> sticky_proxy::Backend {
    client(b.addr, IDLE)
}
