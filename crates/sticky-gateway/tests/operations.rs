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
    let bs = [
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

/// Sends SIGHUP and waits for the gateway to log its `n`-th reload.
async fn reload_and_wait(gw: &GatewayProcess, n: usize) {
    gw.signal("-HUP");
    eventually(10, &format!("reload number {n}"), || async {
        gw.logs().matches("configuration reloaded").count() >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_removed_by_reload_keeps_its_sessions_for_the_grace_then_is_purged() {
    let bs = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let dir = scratch("grace");
    let cfg = dir.join("gw.toml");
    let adm = free_addr();
    let (a1, a2, a3) = (addr_of(&bs[0]), addr_of(&bs[1]), addr_of(&bs[2]));
    let write = |grace: &str, with_b3: bool| {
        let mut backends = vec![("b1", a1.as_str(), 1), ("b2", a2.as_str(), 1)];
        if with_b3 {
            backends.push(("b3", a3.as_str(), 1));
        }
        let extra = format!("failover = \"redistribute\"\nremoval_grace = \"{grace}\"\n");
        std::fs::write(&cfg, config_toml(adm, "", &extra, &backends)).unwrap();
    };
    write("1h", true);
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;

    // A session on b3, and one on another backend.
    let mut on_b3 = None;
    let mut elsewhere = None;
    for _ in 0..300 {
        let mut j = Jar::new();
        let home = j.get(gw.addr, "/").await.backend().to_string();
        if home == "b3" && on_b3.is_none() {
            on_b3 = Some(j);
        } else if home != "b3" && elsewhere.is_none() {
            elsewhere = Some((j, home));
        }
        if on_b3.is_some() && elsewhere.is_some() {
            break;
        }
    }
    let mut on_b3 = on_b3.expect("a session on b3 within 300 new sessions");
    let (mut other, other_home) = elsewhere.unwrap();
    let b3_cookie = on_b3.cookie.clone().unwrap();

    // b3 leaves the file; the grace (1 h) keeps it for its sessions.
    write("1h", false);
    reload_and_wait(&gw, 1).await;
    assert_eq!(
        admin_field(adm, "b3", "state").await.as_deref(),
        Some("removed")
    );
    // What the example config promises: removed, serving its sessions, with
    // the end of its grace shown (an hour from the removal).
    let deadline: u64 = admin_field(adm, "b3", "removal_deadline_ms")
        .await
        .and_then(|v| v.parse().ok())
        .expect("a removed backend shows its grace deadline");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        (now_ms + 3_500_000..=now_ms + 3_600_000).contains(&deadline),
        "{deadline} vs now {now_ms}"
    );
    assert_eq!(
        admin_field(adm, "b1", "removal_deadline_ms")
            .await
            .as_deref(),
        Some("null")
    );
    let logged = gw.access().len();
    for _ in 0..5 {
        let r = on_b3.get(gw.addr, "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.backend(),
            "b3",
            "a removed backend serves its sessions during the grace"
        );
        assert!(r.set_cookie("sticky").is_none());
    }
    for _ in 0..30 {
        let r = get(gw.addr, "/", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_ne!(r.backend(), "b3", "no new session on a removed backend");
    }
    assert_eq!(other.get(gw.addr, "/").await.backend(), other_home);
    let lines = access_lines(&gw, logged + 36).await;
    let during = &lines[logged..];
    let to_b3: Vec<_> = during.iter().filter(|l| l["backend"] == "b3").collect();
    assert_eq!(to_b3.len(), 5, "{during:?}");
    assert!(to_b3.iter().all(|l| l["outcome"] == "pinned"), "{to_b3:?}");
    assert_eq!(
        during.iter().filter(|l| l["outcome"] == "new").count(),
        30,
        "{during:?}"
    );

    // The grace is shortened to 1 s: it counts from the removal (the first
    // reload), so b3 is purged by the upkeep within about a second. Shortening
    // it, rather than waiting out a short grace, keeps every assertion above
    // independent of how fast this machine runs.
    write("1s", false);
    reload_and_wait(&gw, 2).await;
    eventually(15, "b3 purged after its grace", || async {
        !admin_backends(adm).await.iter().any(|b| b["id"] == "b3")
    })
    .await;
    assert!(gw.logs().contains("removal grace over, backend dropped"));
    let logged = gw.access().len();
    let r = on_b3.get(gw.addr, "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.backend(), "b3");
    let moved = r.set_cookie("sticky").expect("re-pinned with a new cookie");
    assert_ne!(moved, b3_cookie);
    let line = &access_lines(&gw, logged + 1).await[logged];
    assert_eq!(line["outcome"], "repinned", "{line}");
    assert_eq!(line["reason"], "backend_removed", "{line}");
    let new_home = r.backend().to_string();
    for _ in 0..10 {
        assert_eq!(on_b3.get(gw.addr, "/").await.backend(), new_home);
    }
    // The staying backend's session was never touched.
    let r = other.get(gw.addr, "/").await;
    assert_eq!(r.backend(), other_home);
    assert!(r.set_cookie("sticky").is_none());
}

/// A backend called `name` on 127.0.0.1 and, where this host has IPv6
/// loopback, also on [::1] with the same port: `localhost` reaches it
/// whichever address the resolver lists first.
async fn dual_stack(name: &str) -> (Backend, Option<Backend>) {
    let v4 = Backend::start(name).await;
    let v6_addr: SocketAddr = format!("[::1]:{}", v4.addr.port()).parse().unwrap();
    let v6 = match std::net::TcpListener::bind(v6_addr) {
        Ok(l) => {
            drop(l);
            Some(Backend::start_on(name, v6_addr).await)
        }
        Err(_) => None,
    };
    (v4, v6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_named_by_host_name_are_reachable_at_start_and_after_a_reload() {
    let (b1, _b1_v6) = dual_stack("b1").await;
    let (b2, _b2_v6) = dual_stack("b2").await;
    let dir = scratch("resolve");
    let cfg = dir.join("gw.toml");
    let adm = free_addr();
    let n1 = format!("localhost:{}", b1.addr.port());
    let n2 = format!("localhost:{}", b2.addr.port());
    // Re-resolution is hourly: whatever works here works without it.
    let top = "resolve_interval = \"1h\"";
    std::fs::write(&cfg, config_toml(adm, top, "", &[("b1", &n1, 1)])).unwrap();
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;

    let r = get(gw.addr, "/", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", gw.logs());
    assert_eq!(r.backend(), "b1");
    assert_eq!(
        admin_field(adm, "b1", "address").await.as_deref(),
        Some(n1.as_str())
    );

    // A backend added by reload under a host name is reachable at once, not
    // only after the next periodic resolution.
    std::fs::write(
        &cfg,
        config_toml(adm, top, "", &[("b1", &n1, 1), ("b2", &n2, 1)]),
    )
    .unwrap();
    reload_and_wait(&gw, 1).await;
    let (status, body) = admin(adm, "POST", "/backends/b1/drain").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..10 {
        let r = get(gw.addr, "/", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", gw.logs());
        assert_eq!(r.backend(), "b2");
    }
    assert_eq!(
        admin_field(adm, "b2", "failures").await.as_deref(),
        Some("0")
    );
}

/// The value of the one sample of `name` whose labels include every one of
/// `labels` (`key="value"` pairs), from Prometheus text.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|kv| l.contains(kv)))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "one {name} {labels:?} sample in:\n{text}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_outcomes_and_every_request_served() {
    let bs = [Backend::start("b1").await, Backend::start("b2").await];
    let dir = scratch("metrics");
    let cfg = dir.join("gw.toml");
    let adm = free_addr();
    let (a1, a2) = (addr_of(&bs[0]), addr_of(&bs[1]));
    std::fs::write(
        &cfg,
        config_toml(adm, "", "", &[("b1", &a1, 1), ("b2", &a2, 1)]),
    )
    .unwrap();
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;

    // 1 new session then 14 pinned requests on it, and 5 more new sessions.
    let mut jar = Jar::new();
    for _ in 0..15 {
        assert_eq!(jar.get(gw.addr, "/").await.status, StatusCode::OK);
    }
    for _ in 0..5 {
        assert_eq!(get(gw.addr, "/", None).await.status, StatusCode::OK);
    }
    let (status, text) = admin(adm, "GET", "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let route = "route=\"app\"";
    assert_eq!(
        metric(
            &text,
            "sticky_outcomes_total",
            &[route, "outcome=\"pinned\""]
        ),
        14.0
    );
    assert_eq!(
        metric(&text, "sticky_outcomes_total", &[route, "outcome=\"new\""]),
        6.0
    );
    assert_eq!(
        metric(&text, "sticky_request_duration_seconds_count", &[]),
        20.0,
        "one latency sample per request served"
    );
    assert_eq!(
        metric(
            &text,
            "sticky_request_duration_seconds_bucket",
            &["le=\"+Inf\""]
        ),
        20.0
    );
    let per_backend: f64 = ["b1", "b2"]
        .iter()
        .map(|b| {
            metric(
                &text,
                "sticky_requests_total",
                &[route, &format!("backend=\"{b}\"")],
            )
        })
        .sum();
    assert_eq!(per_backend, 20.0, "{text}");
}

/// Backends of `n` new sessions (no cookie, one fresh connection each).
async fn place(gw: &GatewayProcess, n: usize) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for _ in 0..n {
        let r = get(gw.addr, "/", None).await;
        assert_eq!(r.status, StatusCode::OK);
        *counts.entry(r.backend().to_string()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_placement_follows_the_configured_weights() {
    let bs = [Backend::start("light").await, Backend::start("heavy").await];
    let dir = scratch("weighted");
    let cfg = dir.join("gw.toml");
    let (a1, a2) = (addr_of(&bs[0]), addr_of(&bs[1]));
    std::fs::write(
        &cfg,
        config_toml(
            free_addr(),
            "",
            "placement = \"weighted\"\n",
            &[("light", &a1, 1), ("heavy", &a2, 3)],
        ),
    )
    .unwrap();
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;
    let counts = place(&gw, 400).await;
    let light = counts.get("light").copied().unwrap_or(0);
    // Expected 100 of 400 (sd 8.7); equal shares would give 200. The bounds
    // are 5.7 sd away: a flake is about one run in 10^8.
    assert!(
        (50..=150).contains(&light),
        "weights 1:3 gave {counts:?} of 400 new sessions"
    );
    assert_eq!(counts.values().sum::<usize>(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_by_reload_starts_slowly() {
    let bs = [
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let dir = scratch("slowstart");
    let cfg = dir.join("gw.toml");
    let (a1, a2, a3) = (addr_of(&bs[0]), addr_of(&bs[1]), addr_of(&bs[2]));
    let write = |route: &str, with_b3: bool| {
        let mut backends = vec![("b1", a1.as_str(), 1), ("b2", a2.as_str(), 1)];
        if with_b3 {
            backends.push(("b3", a3.as_str(), 1));
        }
        std::fs::write(&cfg, config_toml(free_addr(), "", route, &backends)).unwrap();
    };
    // A window far longer than the test: the ramp stays at its floor (10 %)
    // throughout, so nothing depends on timing.
    write("slow_start = \"1h\"\n", false);
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;
    // The backends the gateway starts with are not slow-started.
    let start = place(&gw, 200).await;
    for b in ["b1", "b2"] {
        let n = start.get(b).copied().unwrap_or(0);
        assert!((50..=150).contains(&n), "{start:?}");
    }

    write("slow_start = \"1h\"\n", true);
    reload_and_wait(&gw, 1).await;
    let young = place(&gw, 300).await;
    let b3 = young.get("b3").copied().unwrap_or(0);
    // A fair share would be 100 of 300 (sd 8.2).
    assert!(b3 < 50, "a backend in slow start got {young:?}");

    // Without slow start the same backend takes at least its full share at
    // once; holding by far the fewest sessions (placement balances sessions
    // held), it takes most new ones until it has caught up: b1 and b2 hold
    // about 250 each, b3 a few, so b3 gets about 250 of the next 300.
    write("", true);
    reload_and_wait(&gw, 2).await;
    let grown = place(&gw, 300).await;
    let b3 = grown.get("b3").copied().unwrap_or(0);
    assert!(b3 >= 200, "{grown:?}");
}
