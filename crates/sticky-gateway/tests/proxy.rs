//! The gateway over real loopback sockets: affinity, failover, drain,
//! reload, upgrades, shared keys, no double delivery, limits, bad config.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

async fn three() -> Vec<Backend> {
    vec![
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ]
}

fn flags<'a>(bs: &'a [Backend], owned: &'a mut Vec<String>) -> Vec<&'a str> {
    for b in bs {
        owned.push("--backend".into());
        owned.push(b.flag());
    }
    owned.iter().map(String::as_str).collect()
}

fn by_name<'a>(bs: &'a [Backend], name: &str) -> &'a Backend {
    bs.iter().find(|b| b.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_jar_client_stays_on_one_backend_and_moves_when_it_dies() {
    let bs = three().await;
    let dir = scratch("failover");
    let mut owned = vec![];
    let gw = GatewayProcess::start(&flags(&bs, &mut owned), dir.join("gw.log")).await;

    let mut jar = Jar::new();
    let first = jar.get(gw.addr, "/").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(jar.cookie.is_some(), "the first answer pins the session");
    assert_eq!(first.headers["cache-control"], "private");
    let home = first.backend().to_string();
    for _ in 0..100 {
        let r = jar.get(gw.addr, "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.backend(), home, "the session stays on its backend");
        assert!(
            r.set_cookie("sticky").is_none(),
            "a pinned request is not re-tagged"
        );
        assert_eq!(
            r.headers["x-saw-sticky-cookie"], "no",
            "our cookie is stripped before the backend"
        );
    }

    by_name(&bs, &home).stop();
    let old_cookie = jar.cookie.clone();
    let moved = jar.get(gw.addr, "/").await;
    assert_eq!(
        moved.status,
        StatusCode::OK,
        "another backend could serve: no failure"
    );
    assert_ne!(moved.backend(), home);
    assert_ne!(jar.cookie, old_cookie, "a new cookie pins the new backend");
    let new_home = moved.backend().to_string();
    for _ in 0..20 {
        let r = jar.get(gw.addr, "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.backend(), new_home);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcomes = gw.outcomes();
    assert_eq!(
        outcomes.iter().filter(|o| *o == "repinned").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(outcomes.iter().filter(|o| *o == "new").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_failover_answers_503_without_calling_a_backend() {
    let bs = three().await;
    let dir = scratch("strict");
    let mut owned = vec!["--failover".to_string(), "strict".to_string()];
    let gw = GatewayProcess::start(&flags(&bs, &mut owned), dir.join("gw.log")).await;
    let mut jar = Jar::new();
    let home = jar.get(gw.addr, "/").await.backend().to_string();
    by_name(&bs, &home).stop();
    // The first request finds the backend unreachable (ejected, then rejected).
    let r = jar.get(gw.addr, "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let before: u64 = bs
        .iter()
        .map(|b| b.requests.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let r = jar.get(gw.addr, "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let after: u64 = bs
        .iter()
        .map(|b| b.requests.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(before, after, "no backend was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_through_the_admin_api_keeps_sessions_and_sends_new_ones_elsewhere() {
    let bs = three().await;
    let running = in_process_gateway(&[&bs[0], &bs[1], &bs[2]], |config| {
        config.admin = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = running.addr;
    let adm = running.admin_addr.expect("an admin listener");

    let mut jar = Jar::new();
    let home = jar.get(addr, "/").await.backend().to_string();
    assert_eq!(
        admin_field(adm, &home, "state").await.as_deref(),
        Some("active")
    );
    let (status, body) = admin(adm, "POST", &format!("/backends/{home}/drain")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["id"], home.as_str());
    assert_eq!(answer["state"], "draining");
    let (status, _) = admin(adm, "POST", "/backends/nope/drain").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "unknown ids are refused");
    for b in admin_backends(adm).await {
        let want = if b["id"] == home.as_str() {
            "draining"
        } else {
            "active"
        };
        assert_eq!(b["state"], want, "{b}");
    }

    for _ in 0..20 {
        let r = jar.get(addr, "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.backend(), home, "existing sessions stay");
    }
    for _ in 0..30 {
        let r = get(addr, "/", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_ne!(r.backend(), home, "no new session on a draining backend");
    }
    let drained = admin_backends(adm).await;
    let h = drained.iter().find(|b| b["id"] == home.as_str()).unwrap();
    assert_eq!(h["new_sessions"], 1, "only the first session: {h}");
    assert_eq!(
        h["pinned_hits"], 20,
        "the operator sees what still reaches it: {h}"
    );

    let (status, body) = admin(adm, "POST", &format!("/backends/{home}/activate")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        admin_field(adm, &home, "state").await.as_deref(),
        Some("active")
    );
    // Back in service: new sessions land on it again (3 backends, uniform
    // choice among idle ones: missing it 200 times has odds (2/3)^200).
    let mut landed = false;
    for _ in 0..200 {
        if get(addr, "/", None).await.backend() == home {
            landed = true;
            break;
        }
    }
    assert!(landed, "an activated backend takes new sessions again");
    assert_eq!(jar.get(addr, "/").await.backend(), home);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_keeps_sessions_on_unchanged_backends() {
    let bs = three().await;
    let dir = scratch("reload");
    let cfg = dir.join("gw.toml");
    let write = |names: &[&Backend], extra: &str| {
        let mut t = String::from("access_log = true\n[[routes]]\nname = \"app\"\n");
        t.push_str(extra);
        t.push_str(&backends_toml(names.iter().copied()));
        std::fs::write(&cfg, t).unwrap();
    };
    write(&[&bs[0], &bs[1], &bs[2]], "");
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;

    // Pin sessions until every backend holds one.
    let mut jars: Vec<(Jar, String)> = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let mut j = Jar::new();
        let home = j.get(gw.addr, "/").await.backend().to_string();
        if seen.insert(home.clone()) {
            jars.push((j, home));
        }
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(jars.len(), 3);
    // Drop b3, add b4, change a setting: b1 and b2 keep their sessions.
    let b4 = Backend::start("b4").await;
    write(
        &[&bs[0], &bs[1], &b4],
        "failover = \"redistribute\"\nretries = 3\n",
    );
    gw.signal("-HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gw.logs().contains("configuration reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload: {}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (jar, home) in jars.iter_mut() {
        let r = jar.get(gw.addr, "/").await;
        assert_eq!(r.status, StatusCode::OK);
        if home == "b3" {
            assert_ne!(r.backend(), "b3", "a removed backend's sessions move");
            assert!(r.set_cookie("sticky").is_some());
        } else {
            assert_eq!(
                r.backend(),
                home.as_str(),
                "unchanged backends keep their sessions"
            );
            assert!(r.set_cookie("sticky").is_none());
        }
    }
    // The new backend takes new sessions.
    let mut got_b4 = false;
    for _ in 0..100 {
        if get(gw.addr, "/", None).await.backend() == "b4" {
            got_b4 = true;
            break;
        }
    }
    assert!(got_b4);
}

async fn open_tunnel(addr: std::net::SocketAddr, cookie: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: {cookie}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    s
}

async fn echo(s: &mut tokio::net::TcpStream, msg: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(msg.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_session_is_pinned_and_survives_other_backends_changing() {
    let bs = three().await;
    let dir = scratch("ws");
    let mut owned = vec![];
    let gw = GatewayProcess::start(&flags(&bs, &mut owned), dir.join("gw.log")).await;
    let mut jar = Jar::new();
    let home = jar.get(gw.addr, "/").await.backend().to_string();
    let cookie = jar.cookie.clone().unwrap();

    let mut t1 = open_tunnel(gw.addr, &cookie).await;
    assert_eq!(echo(&mut t1, "hello").await, format!("{home}:hello"));
    // Every other backend dies; the tunnel and new upgrades stay on home.
    for b in bs.iter().filter(|b| b.name != home) {
        b.stop();
    }
    for _ in 0..3 {
        let _ = jar.get(gw.addr, "/").await;
    }
    assert_eq!(
        echo(&mut t1, "still there").await,
        format!("{home}:still there")
    );
    let mut t2 = open_tunnel(gw.addr, &cookie).await;
    assert_eq!(echo(&mut t2, "again").await, format!("{home}:again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_a_key_file_agree_also_after_a_backend_dies() {
    let bs = three().await;
    let dir = scratch("replicas");
    let keys = key_file(&dir);
    let mut owned = vec!["--key-file".to_string(), keys.to_str().unwrap().to_string()];
    let args = flags(&bs, &mut owned);
    let g1 = GatewayProcess::start(&args, dir.join("g1.log")).await;
    let g2 = GatewayProcess::start(&args, dir.join("g2.log")).await;

    let mut sessions = Vec::new();
    for _ in 0..12 {
        let r = get(g1.addr, "/", None).await;
        sessions.push((r.set_cookie("sticky").unwrap(), r.backend().to_string()));
    }
    for (cookie, home) in &sessions {
        assert_eq!(
            get(g2.addr, "/", Some(cookie)).await.backend(),
            home,
            "replica 2 routes replica 1's cookie"
        );
    }
    let dead = sessions[0].1.clone();
    by_name(&bs, &dead).stop();
    for (cookie, home) in sessions.iter().filter(|(_, h)| *h == dead) {
        let a = get(g1.addr, "/", Some(cookie)).await;
        let b = get(g2.addr, "/", Some(cookie)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(b.status, StatusCode::OK);
        assert_ne!(a.backend(), home);
        assert_eq!(
            a.backend(),
            b.backend(),
            "both replicas move the session to the same backend"
        );
        let moved = a.set_cookie("sticky").unwrap();
        assert_eq!(get(g2.addr, "/", Some(&moved)).await.backend(), a.backend());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_never_delivered_twice() {
    let bs = three().await;
    let dir = scratch("post");
    let mut owned = vec![];
    let gw = GatewayProcess::start(&flags(&bs, &mut owned), dir.join("gw.log")).await;
    let mut jar = Jar::new();
    let home = jar.get(gw.addr, "/").await.backend().to_string();

    // A backend that reads the request and hangs up: 502, and no retry.
    let req = Request::post("/hang-up")
        .header("cookie", jar.cookie.clone().unwrap())
        .header("x-request-id", "hang-1")
        .body(TestBody::Full(Full::new(Bytes::from_static(b"order=1"))))
        .unwrap();
    let r = send(gw.addr, req).await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let total: u32 = bs.iter().map(|b| b.count("hang-1")).sum();
    assert_eq!(total, 1, "delivered once, never replayed");

    // POSTs while the pinned backend dies: each id reaches at most one
    // backend once, and every 200 was delivered exactly once.
    let mut ok_ids = Vec::new();
    for i in 0..60 {
        if i == 30 {
            by_name(&bs, &home).stop();
        }
        let id = format!("post-{i}");
        let req = Request::post("/order")
            .header("cookie", jar.cookie.clone().unwrap())
            .header("x-request-id", &id)
            .body(TestBody::Full(Full::new(Bytes::from_static(b"order=1"))))
            .unwrap();
        let r = send(gw.addr, req).await.unwrap();
        if let Some(c) = r.set_cookie("sticky") {
            jar.cookie = Some(c);
        }
        assert_eq!(r.status, StatusCode::OK, "another backend could serve {id}");
        ok_ids.push(id);
    }
    for id in &ok_ids {
        let n: u32 = bs.iter().map(|b| b.count(id)).sum();
        assert_eq!(n, 1, "{id} delivered {n} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_gets_431_and_h2c_works() {
    let bs = three().await;
    let dir = scratch("limits");
    let mut owned = vec![];
    let gw = GatewayProcess::start(&flags(&bs, &mut owned), dir.join("gw.log")).await;
    let big = "x".repeat(100 * 1024);
    let req = Request::get("/")
        .header("x-big", big)
        .body(TestBody::Full(Full::default()))
        .unwrap();
    let r = send(gw.addr, req).await.unwrap();
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    // HTTP/2 with prior knowledge.
    let mut s = common::h2c(gw.addr).await;
    let req = Request::get("http://app.test/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let r = s.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("set-cookie").is_some());
    assert!(r.headers().get("x-backend").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests() {
    let bs = three().await;
    let dir = scratch("term");
    let mut owned = vec![];
    let mut gw = GatewayProcess::start(&flags(&bs, &mut owned), dir.join("gw.log")).await;
    let addr = gw.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow", None).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.signal("-TERM");
    let r = slow.await.unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the in-flight request was answered"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "gateway did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[test]
fn bad_config_and_flags_exit_2_naming_the_field() {
    let dir = scratch("badcfg");
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "[[routes]]\n[[routes.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[routes.backends]]\nname = \"b\"\naddress = \"x\"\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_sticky-gateway");
    let out = std::process::Command::new(bin)
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes[0].backends[1].address: invalid socket address \"x\""),
        "{err}"
    );

    std::fs::write(&cfg, "[[routes]]\nflavour = 1\n").unwrap();
    let out = std::process::Command::new(bin)
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flavour"));

    let out = std::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--backend", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backend"));

    let out = std::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = std::process::Command::new(bin)
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().len() >= 43,
        "32 bytes of base64"
    );
}

#[test]
fn the_example_config_parses() {
    let text = include_str!("../gateway.example.toml");
    let c = sticky_gateway::GatewayConfig::from_toml(text).unwrap();
    assert!(c.routes.len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_apply_their_own_persistence() {
    let bs = three().await;
    let dir = scratch("routes");
    let cfg = dir.join("gw.toml");
    let mut t = String::new();
    for (name, prefix, kind) in [
        ("web", "/", "cookie"),
        ("api", "/api", "header"),
        ("static", "/static", "none"),
    ] {
        t.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"{prefix}\"\n[routes.session_persistence]\ntype = \"{kind}\"\n"
        ));
        if kind == "header" {
            t.push_str("session_name = \"x-session\"\n");
        }
        t.push_str(&backends_toml(&bs));
    }
    std::fs::write(&cfg, t).unwrap();
    let gw = GatewayProcess::start(&["--config", cfg.to_str().unwrap()], dir.join("gw.log")).await;

    let r = get(gw.addr, "/static/app.js", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers.get("set-cookie").is_none(),
        "no stickiness on this route"
    );

    let first = get(gw.addr, "/api/items", None).await;
    assert!(first.headers.get("set-cookie").is_none());
    let token = first.headers["x-session"].to_str().unwrap().to_string();
    let home = first.backend().to_string();
    for _ in 0..20 {
        let req = Request::get("/api/items")
            .header("x-session", &token)
            .body(TestBody::Full(Full::default()))
            .unwrap();
        let r = send(gw.addr, req).await.unwrap();
        assert_eq!(r.backend(), home, "the header token pins the session");
    }

    let r = get(gw.addr, "/", None).await;
    assert!(r.set_cookie("sticky").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_after_its_request_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Backend::start("b1").await;
    let running = in_process_gateway(&[&b], |_| {}).await;
    let mut s = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("answered and closed")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("b1"), "{text}");
    running.shutdown().await;
}
