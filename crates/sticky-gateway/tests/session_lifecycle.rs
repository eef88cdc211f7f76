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
