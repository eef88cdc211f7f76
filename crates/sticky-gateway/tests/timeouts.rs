//! Client-side timeouts: a keep-alive connection with no traffic for the idle
//! timeout is closed by the gateway; one that keeps talking stays open.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(idle: Duration) -> (sticky_gateway::run::Running, Backend) {
    let b = Backend::start("b1").await;
    let running = in_process_gateway(&[&b], |config| {
        config.timeouts.idle = idle;
        // Longer than the test, so that only the idle timeout can close the connection.
        config.timeouts.header_read = Duration::from_secs(60);
    })
    .await;
    (running, b)
}

/// Sends one keep-alive GET and reads its whole (small) response.
async fn exchange(s: &mut TcpStream) {
    s.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"b1")) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the response arrives")
            .unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    let idle = Duration::from_millis(300);
    let (running, _b) = gateway(idle).await;

    // Busy: a request every 100 ms for 1.5 s (five idle periods) keeps it open.
    let mut busy = TcpStream::connect(running.addr).await.unwrap();
    for _ in 0..15 {
        exchange(&mut busy).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exchange(&mut busy).await;

    // Idle: after one exchange, silence; the gateway closes within two periods
    // (generous bound for a loaded machine).
    let mut quiet = TcpStream::connect(running.addr).await.unwrap();
    exchange(&mut quiet).await;
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), quiet.read(&mut buf))
        .await
        .expect("the idle connection is closed by the gateway")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed, not answered");
    assert!(
        start.elapsed() >= idle,
        "not closed before the idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_is_cut_at_the_header_read_timeout_and_a_slow_body_is_not() {
    let b = Backend::start("b1").await;
    let header_read = Duration::from_millis(300);
    let running = in_process_gateway(&[&b], |config| {
        config.timeouts.header_read = header_read;
        config.timeouts.idle = Duration::from_secs(60);
    })
    .await;

    // A head trickling in a byte every 50 ms (never idle) is cut off.
    // hyper's header-read clock may start when the connection is accepted,
    // before the head's first byte, so ours starts before connecting (after,
    // a loaded machine put the gateway's clock ahead of ours).
    let start = Instant::now();
    let mut slow = TcpStream::connect(running.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n")
        .await
        .unwrap();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(5) {
        if slow.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(50), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    assert!(closed, "a head still arriving after 5 s was not cut off");
    assert!(
        start.elapsed() >= header_read,
        "cut before the header-read timeout"
    );

    // A body trickling in for longer than the header-read timeout is a
    // request in progress, not a slow head: it is answered.
    let mut upload = TcpStream::connect(running.addr).await.unwrap();
    upload
        .write_all(b"POST / HTTP/1.1\r\nhost: app.test\r\ncontent-length: 10\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        upload.write_all(b"y").await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), upload.read(&mut buf))
            .await
            .expect("the upload is answered")
            .unwrap();
        assert!(n > 0, "closed instead of answered");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    running.shutdown().await;
}
