//! Key rotation on a live gateway, as the README tells operators to do it:
//! put a new key first in the key file and reload (SIGHUP); sessions sealed
//! with the old key keep their backend; once the old line is dropped and the
//! file reloaded again, old cookies are no longer trusted.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn keygen() -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sticky-gateway"))
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn reload(gw: &GatewayProcess, count: usize) {
    gw.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.logs().matches("configuration reloaded").count() < count {
        assert!(Instant::now() < deadline, "no reload: {}", gw.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_keys_keeps_sessions_until_the_old_key_is_dropped() {
    let bs = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let dir = scratch("rotation");
    let keys = dir.join("keys");
    let (old, new) = (keygen(), keygen());
    std::fs::write(&keys, format!("{old}\n")).unwrap();
    let cfg = dir.join("gw.toml");
    let admin_addr = free_addr();
    let mut t = format!(
        "access_log = true\nadmin = \"{admin_addr}\"\nkey_file = {:?}\n[[routes]]\nname = \"app\"\n",
        keys.to_str().unwrap()
    );
    t.push_str(&backends_toml(&bs));
    std::fs::write(&cfg, t).unwrap();
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;

    let mut jar = Jar::new();
    let home = jar.get(gw.addr, "/").await.backend().to_string();
    let old_cookie = jar.cookie.clone().unwrap();

    // New key first, old key after it: old cookies still open and stay home.
    std::fs::write(&keys, format!("{new}\n{old}\n")).unwrap();
    reload(&gw, 1).await;
    for _ in 0..10 {
        let r = get(gw.addr, "/", Some(&old_cookie)).await;
        assert_eq!(r.backend(), home, "an old-key cookie keeps its backend");
        assert!(r.set_cookie("sticky").is_none(), "and is not re-issued");
    }
    // New sessions are sealed with the new key: they survive dropping the old one.
    let mut fresh = Jar::new();
    let fresh_home = fresh.get(gw.addr, "/").await.backend().to_string();

    // Old key dropped: old cookies are untrusted (a new session), new ones still pin.
    std::fs::write(&keys, format!("{new}\n")).unwrap();
    reload(&gw, 2).await;
    let r = get(gw.addr, "/", Some(&old_cookie)).await;
    assert!(
        r.set_cookie("sticky").is_some(),
        "an old-key cookie starts a new session"
    );
    for _ in 0..10 {
        assert_eq!(fresh.get(gw.addr, "/").await.backend(), fresh_home);
    }
    let logs = gw.logs();
    assert!(
        logs.contains(r#""invalid_token":"unknown_key""#)
            || logs.contains(r#""invalid_token":"forged""#),
        "the access log says why the old cookie was not trusted:\n{logs}"
    );
    let (_, metrics) = admin(admin_addr, "GET", "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sticky_invalid_tokens_total")
                && l.contains("unknown_key")
                && l.ends_with(" 1")),
        "the old cookie is counted as untrusted:\n{metrics}"
    );
}
