//! What an operator relies on, end to end over loopback: active health
//! checks, removal grace on reload, host-name resolution, and the metrics.

mod common;

use std::net::SocketAddr;

use common::*;
use http::StatusCode;

/// A config file: an admin listener, one route called `app` with the lines
/// of `route_extra`, and `backends` (name, address, weight).
fn config_toml(
    admin: SocketAddr,
    top: &str,
    route_extra: &str,
    backends: &[(&str, &str, u32)],
) -> String {
    let mut t = format!("admin = \"{admin}\"\naccess_log = true\n{top}\n[[routes]]\nname = \"app\"\n{route_extra}\n");
    for (name, address, weight) in backends {
        t.push_str(&format!(
            "[[routes.backends]]\nname = \"{name}\"\naddress = \"{address}\"\nweight = {weight}\n"
        ));
    }
    t
}

fn addr_of(b: &Backend) -> String {
    b.addr.to_string()
}

/// Waits until the access log has `n` lines and returns them.
async fn access_lines(gw: &GatewayProcess, n: usize) -> Vec<serde_json::Value> {
    eventually(10, &format!("{n} access-log lines"), || async {
        gw.access().len() >= n
    })
    .await;
    gw.access()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_mark_a_backend_down_and_up_again() {
    let bs = vec![
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let dir = scratch("health");
    let cfg = dir.join("gw.toml");
    let adm = free_addr();
    let (a1, a2, a3) = (addr_of(&bs[0]), addr_of(&bs[1]), addr_of(&bs[2]));
    std::fs::write(
        &cfg,
        config_toml(
            adm,
            "",
            "failover = \"redistribute\"\n\
             [routes.health_check]\npath = \"/healthz\"\ninterval = \"50ms\"\ntimeout = \"2s\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 3\n",
            &[("b1", &a1, 1), ("b2", &a2, 1), ("b3", &a3, 1)],
        ),
    )
    .unwrap();
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;

    eventually(10, "every backend probed", || async {
        bs.iter().all(|b| b.probes_passed() >= 2)
    })
    .await;
    for b in admin_backends(adm).await {
        assert_eq!(b["health"], "healthy", "{b}");
    }

    let mut jar = Jar::new();
    let first = jar.get(gw.addr, "/").await;
    let home = first.backend().to_string();
    let hb = bs.iter().find(|b| b.name == home).unwrap();
    let pinned_cookie = jar.cookie.clone().unwrap();

    // /healthz starts failing: down after `unhealthy_threshold` failed probes.
    assert_eq!(hb.probes_failed(), 0);
    hb.set_healthy(false);
    eventually(10, "the failing backend marked unhealthy", || async {
        admin_field(adm, &home, "health").await.as_deref() == Some("unhealthy")
    })
    .await;
    assert!(
        hb.probes_failed() >= 3,
        "marked down after {} failed probes, the threshold is 3",
        hb.probes_failed()
    );
    assert_eq!(
        admin_field(adm, &home, "state").await.as_deref(),
        Some("ejected")
    );
    let served_before = hb.requests.load(std::sync::atomic::Ordering::Relaxed);

    // Its pinned session fails over (redistribute: a new cookie) and stays moved.
    let moved = jar.get(gw.addr, "/").await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_ne!(moved.backend(), home, "no request to a backend probed down");
    assert!(
        moved.set_cookie("sticky").is_some(),
        "re-pinned with a new cookie"
    );
    assert_ne!(jar.cookie.as_deref(), Some(pinned_cookie.as_str()));
    let new_home = moved.backend().to_string();
    for _ in 0..10 {
        assert_eq!(jar.get(gw.addr, "/").await.backend(), new_home);
    }
    // New sessions avoid it.
    for _ in 0..30 {
        let r = get(gw.addr, "/", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_ne!(r.backend(), home, "no new session on an unhealthy backend");
    }
    assert_eq!(
        hb.requests.load(std::sync::atomic::Ordering::Relaxed),
        served_before,
        "the unhealthy backend got no traffic"
    );
    let lines = access_lines(&gw, 1 + 1 + 10 + 30).await;
    let repinned: Vec<_> = lines
        .iter()
        .filter(|l| l["outcome"] == "repinned")
        .collect();
    assert_eq!(repinned.len(), 1, "{lines:?}");
    assert_eq!(repinned[0]["reason"], "unhealthy");

    // /healthz passes again: up after `healthy_threshold` good probes.
    let passed_before = hb.probes_passed();
    hb.set_healthy(true);
    eventually(10, "the recovered backend marked healthy", || async {
        admin_field(adm, &home, "health").await.as_deref() == Some("healthy")
    })
    .await;
    assert!(
        hb.probes_passed() - passed_before >= 2,
        "marked up after {} good probes, the threshold is 2",
        hb.probes_passed() - passed_before
    );
    assert_eq!(
        admin_field(adm, &home, "state").await.as_deref(),
        Some("active")
    );
    // New sessions can land on it again (odds of missing it 200 times: (2/3)^200).
    let mut landed = false;
    for _ in 0..200 {
        if get(gw.addr, "/", None).await.backend() == home {
            landed = true;
            break;
        }
    }
    assert!(landed, "a backend probed up again takes new sessions");
    // The moved session stays where it was re-pinned.
    assert_eq!(jar.get(gw.addr, "/").await.backend(), new_home);
}
