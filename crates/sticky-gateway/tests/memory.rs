//! The gateway's memory stays flat: 100 MB streamed each way, and many
//! distinct sessions (the token is the state; the gateway keeps none).
//!
//! `STICKY_GW_SESSIONS` sets the session count (default 50,000 to keep CI
//! short; the recorded run uses 1,000,000 with a release build:
//! `STICKY_GW_SESSIONS=1000000 cargo test --release -p sticky-gateway --test memory`).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

const MB: u64 = 1024 * 1024;

/// Samples the process's RSS every 20 ms until stopped; returns the maximum.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut max = 0;
        while !stop.load(Ordering::Relaxed) {
            max = max.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        max
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_and_download_leave_memory_flat() {
    let b = Backend::start("b1").await;
    let dir = scratch("bigbody");
    let flag = b.flag();
    let gw = GatewayProcess::start(
        &["--backend", &flag, "--no-access-log", "--threads", "2"],
        dir.join("gw.log"),
    )
    .await;
    // Warm up: connections, buffers, allocator arenas.
    for _ in 0..20 {
        assert_eq!(get(gw.addr, "/", None).await.status, StatusCode::OK);
    }
    let base = gw.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(gw.pid(), stop.clone());

    let req = Request::post("/upload")
        .body(TestBody::Gen(Generated { left: 100 * MB }))
        .unwrap();
    let r = send(gw.addr, req).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        (100 * MB).to_string(),
        "every byte reached the backend"
    );

    // Download, counting frames as they come (never holding the body).
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = s
        .send_request(
            Request::get(format!("/download?n={}", 100 * MB))
                .body(Full::<bytes::Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let got = AtomicU64::new(0);
    while let Some(f) = body.frame().await {
        if let Some(d) = f.unwrap().data_ref() {
            got.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
    }
    assert_eq!(got.load(Ordering::Relaxed), 100 * MB);

    stop.store(true, Ordering::Relaxed);
    let max = sampler.join().unwrap();
    let growth = max.saturating_sub(base);
    eprintln!("100 MB each way: RSS baseline {base} KiB, peak {max} KiB, growth {growth} KiB");
    assert!(
        growth < 16 * 1024,
        "RSS grew by {growth} KiB while streaming 100 MB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_distinct_sessions_leave_memory_flat() {
    let sessions: u64 = std::env::var("STICKY_GW_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let bs = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let dir = scratch("sessions");
    let (f1, f2, f3) = (bs[0].flag(), bs[1].flag(), bs[2].flag());
    let gw = GatewayProcess::start(
        &[
            "--backend",
            &f1,
            "--backend",
            &f2,
            "--backend",
            &f3,
            "--no-access-log",
            "--threads",
            "1",
        ],
        dir.join("gw.log"),
    )
    .await;
    let addr = gw.addr;
    const CONNS: u64 = 16;
    let run = |n: u64| async move {
        let mut tasks = Vec::new();
        for _ in 0..CONNS {
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut s, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let mut cookies = 0u64;
                for _ in 0..n / CONNS {
                    s.ready().await.unwrap();
                    let r = s
                        .send_request(
                            Request::get("/")
                                .body(Full::<bytes::Bytes>::default())
                                .unwrap(),
                        )
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                    cookies += u64::from(r.headers().contains_key("set-cookie"));
                    let _ = r.into_body().collect().await.unwrap();
                }
                cookies
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    };
    // Warm up past every one-time allocation (pools, buffers, arenas).
    run(20_000).await;
    let base = gw.rss_kib();
    let started = std::time::Instant::now();
    let issued = run(sessions).await;
    let secs = started.elapsed().as_secs_f64();
    let after = gw.rss_kib();
    let growth = after as i64 - base as i64;
    eprintln!(
        "{issued} distinct sessions in {secs:.1} s ({:.0} req/s): RSS {base} KiB -> {after} KiB ({growth:+} KiB)",
        issued as f64 / secs
    );
    assert_eq!(
        issued,
        sessions / CONNS * CONNS,
        "every request started a new session"
    );
    assert!(
        growth < 10 * 1024,
        "RSS grew by {growth} KiB over {issued} sessions"
    );
}
