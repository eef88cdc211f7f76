//! The request lifecycle through the gateway binary: a session in use never
//! idle-expires, and settings that would silently break stickiness are
//! refused at start.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_used_every_second_stays_on_its_backend_for_30_s_under_a_10_s_idle_timeout() {
    let bs = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let dir = scratch("idle-active");
    let cfg = dir.join("gw.toml");
    // refresh_interval left at its default (60 s), longer than the idle timeout.
    let mut t = String::from(
        "access_log = true\n[[routes]]\nname = \"app\"\n\
         [routes.session_persistence]\nidle_timeout = \"10s\"\n",
    );
    t.push_str(&backends_toml(&bs));
    std::fs::write(&cfg, t).unwrap();
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;

    let mut jar = Jar::new();
    let first = jar.get(gw.addr, "/login").await;
    assert_eq!(first.status, StatusCode::OK);
    let home = first.backend().to_string();
    let mut refreshed = 0;
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    for i in 1..=30 {
        tick.tick().await;
        let before = jar.cookie.clone();
        let r = jar.get(gw.addr, "/cart").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.backend(),
            home,
            "request {i}: the cart moved: {}",
            gw.logs()
        );
        refreshed += usize::from(jar.cookie != before);
    }
    assert!(
        start.elapsed() >= Duration::from_secs(30),
        "the session was used for 30 s"
    );
    // Refreshed at least every 5 s (half the idle timeout), not once a minute.
    assert!(refreshed >= 5, "refreshed {refreshed} times in 30 s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let access = gw.access();
    assert_eq!(access.len(), 31, "{}", gw.logs());
    assert_eq!(access[0]["outcome"], "new");
    for line in &access[1..] {
        assert_eq!(line["outcome"], "pinned", "{line}");
        assert_eq!(line["invalid_token"], "", "{line}");
    }
}

#[test]
fn settings_that_would_break_stickiness_exit_2_naming_the_field() {
    let dir = scratch("lifecycle-badcfg");
    let cfg = dir.join("bad.toml");
    let backend = "[[routes.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n";
    let cases = [
        (
            format!("[[routes]]\n[routes.session_persistence]\nidle_timeout = \"0s\"\n{backend}"),
            "routes[0].session_persistence.idle_timeout",
        ),
        (
            format!("[[routes]]\n[routes.health_check]\nhealthy_threshold = 0\n{backend}"),
            "routes[0].health_check.healthy_threshold",
        ),
        (
            format!(
                "[[routes]]\nname = \"one\"\nhost = \"app.test\"\nprefix = \"/api\"\n{backend}\
                 [[routes]]\nname = \"two\"\nhost = \"APP.test\"\nprefix = \"/api\"\n{backend}"
            ),
            "routes[1].prefix",
        ),
    ];
    for (text, field) in cases {
        std::fs::write(&cfg, &text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sticky-gateway"))
            .args(["--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert!(err.contains(field), "{field}: {err}");
    }
}

/// "Safe to stop" through the binary, on a 2 s idle timeout: a drained
/// backend's `GET /backends/NAME/drained` is 503 while its sessions may
/// come back and 200 only once the idle timeout has passed with no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_flips_to_200_only_after_the_idle_timeout_passes_with_no_traffic() {
    let bs = [Backend::start("b1").await, Backend::start("b2").await];
    let dir = scratch("drained");
    let cfg = dir.join("gw.toml");
    let mut t = String::from(
        "[[routes]]\nname = \"app\"\n[routes.session_persistence]\nidle_timeout = \"2s\"\n",
    );
    t.push_str(&backends_toml(&bs));
    std::fs::write(&cfg, t).unwrap();
    let admin_addr = free_addr();
    let gw = GatewayProcess::start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--admin",
            &admin_addr.to_string(),
        ],
        dir.join("gw.log"),
    )
    .await;
    eventually(10, "the admin listener accepts", || async {
        tokio::net::TcpStream::connect(admin_addr).await.is_ok()
    })
    .await;

    // Four sessions, two on each backend; then b1 drains.
    for _ in 0..4 {
        assert_eq!(get(gw.addr, "/", None).await.status, StatusCode::OK);
    }
    let last = tokio::time::Instant::now();
    assert_eq!(
        admin_field(admin_addr, "b1", "active_sessions")
            .await
            .as_deref(),
        Some("2")
    );
    let (s, body) = admin(admin_addr, "POST", "/backends/b1/drain").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = admin(admin_addr, "GET", "/backends/b1/drained").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["routes"][0]["active_sessions"], 2, "{v}");
    assert_eq!(v["routes"][0]["session_window_seconds"], 2, "{v}");
    // b2 is active: never drained.
    assert_eq!(
        admin(admin_addr, "GET", "/backends/b2/drained").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Poll as a preStop hook would; bounded at 6 s (the window is at most
    // 2 s x 4/3 after the last session).
    let deadline = last + Duration::from_secs(6);
    loop {
        let (s, body) = admin(admin_addr, "GET", "/backends/b1/drained").await;
        if s == StatusCode::OK {
            assert!(
                last.elapsed() >= Duration::from_millis(1_900),
                "drained {:?} after the last session, within the 2 s idle timeout: {body}",
                last.elapsed()
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never drained: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(gw);
}
