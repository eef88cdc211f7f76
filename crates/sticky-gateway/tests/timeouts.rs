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
