//! Admin authentication: bearer tokens from a file, 401 without the right
//! one (and nothing changes), failures counted and logged, reads and
//! `/metrics` opened only by configuration, no open admin beyond loopback.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

const TOKEN: &str = "s3cret-admin-token-0123456789";
const LIMIT: Duration = Duration::from_secs(30);

fn token_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("admin-tokens");
    std::fs::write(&p, text).unwrap();
    p
}

/// `METHOD path` on the admin listener with an optional bearer token.
async fn call(admin: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", admin.to_string());
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = b.body(TestBody::Full(Full::new(Bytes::new()))).unwrap();
    tokio::time::timeout(Duration::from_secs(10), send(admin, req))
        .await
        .expect("the admin API answers")
        .unwrap()
}

async fn state(admin: SocketAddr, id: &str) -> String {
    let r = call(admin, "GET", "/backends", Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
    v.iter().find(|b| b["id"] == id).unwrap()["state"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn gateway(
    backends: &[&Backend],
    tokens: PathBuf,
    open_metrics: bool,
) -> sticky_gateway::run::Running {
    in_process_gateway(backends, |c| {
        c.admin = Some("127.0.0.1:0".parse().unwrap());
        c.admin_auth.token_file = Some(tokens);
        c.admin_auth.open_metrics = open_metrics;
        c.file_watch_interval = Duration::from_millis(100);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_right_token_drains_and_refusals_are_counted() {
    tokio::time::timeout(LIMIT, async {
        let (a, b) = (Backend::start("a").await, Backend::start("b").await);
        let dir = scratch("admin-auth");
        let tokens = token_file(
            &dir,
            &format!("# operators\n\nother-token-abcdefghijkl\n{TOKEN}\n"),
        );
        let gw = gateway(&[&a, &b], tokens, false).await;
        let admin = gw.admin_addr.unwrap();

        // The page itself is open: it asks for the token.
        let page = call(admin, "GET", "/", None).await;
        assert_eq!(page.status, StatusCode::OK);

        // No token: 401, and nothing changes.
        let r = call(admin, "POST", "/backends/a/drain", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers["www-authenticate"],
            "Bearer realm=\"sticky-gateway admin\""
        );
        assert_eq!(state(admin, "a").await, "active");
        // A wrong token, one a character short, another scheme: 401.
        for auth in [
            "Bearer not-the-token-0123456789",
            &format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            &format!("Basic {TOKEN}"),
        ] {
            let req = Request::post("/backends/a/drain")
                .header("host", admin.to_string())
                .header("authorization", auth)
                .body(TestBody::Full(Full::new(Bytes::new())))
                .unwrap();
            let r = send(admin, req).await.unwrap();
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth}");
        }
        assert_eq!(state(admin, "a").await, "active");
        // Reads need it too (not opened by the configuration).
        for path in ["/backends", "/stats", "/metrics"] {
            let r = call(admin, "GET", path, None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        }

        // The right token (either one in the file): the drain happens.
        let r = call(admin, "POST", "/backends/a/drain", Some(TOKEN)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(state(admin, "a").await, "draining");
        let r = call(
            admin,
            "POST",
            "/backends/a/activate",
            Some("other-token-abcdefghijkl"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(state(admin, "a").await, "active");

        // Every refusal counted: 1 + 3 + 3.
        let m = call(admin, "GET", "/metrics", Some(TOKEN)).await;
        let text = String::from_utf8_lossy(&m.body);
        assert!(
            text.contains("sticky_admin_auth_failures_total 7\n"),
            "{text}"
        );
        gw.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_may_be_opened_for_scrapers_and_tokens_reload_when_the_file_changes() {
    tokio::time::timeout(LIMIT, async {
        let a = Backend::start("a").await;
        let dir = scratch("admin-open-metrics");
        let tokens = token_file(&dir, &format!("{TOKEN}\n"));
        let gw = gateway(&[&a], tokens.clone(), true).await;
        let admin = gw.admin_addr.unwrap();
        assert_eq!(
            call(admin, "GET", "/metrics", None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            call(admin, "GET", "/stats", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(admin, "POST", "/backends/a/drain", None).await.status,
            StatusCode::UNAUTHORIZED
        );

        // A rotated token: the new one works, the old one stops working.
        let next = "rotated-admin-token-9876543210";
        std::fs::write(&tokens, format!("{next}\n")).unwrap();
        eventually(10, "the rotated token is accepted", || async {
            call(admin, "GET", "/stats", Some(next)).await.status == StatusCode::OK
        })
        .await;
        assert_eq!(
            call(admin, "GET", "/stats", Some(TOKEN)).await.status,
            StatusCode::UNAUTHORIZED
        );
        // An emptied file is refused; the tokens in use stay.
        std::fs::write(&tokens, "\n").unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            call(admin, "GET", "/stats", Some(next)).await.status,
            StatusCode::OK
        );
        gw.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[test]
fn a_non_loopback_admin_without_a_token_file_exits_2() {
    let (code, err) = run_bounded(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "a=127.0.0.1:1",
        "--admin",
        "0.0.0.0:9900",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("admin: 0.0.0.0:9900 is not a loopback address"),
        "{err}"
    );
    assert!(err.contains("--admin-token-file"), "{err}");

    // The file form says the same.
    let dir = scratch("admin-bind");
    let conf = dir.join("gw.toml");
    std::fs::write(
        &conf,
        "admin = \"[::]:9900\"\n[[routes]]\n[[routes.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let (code, err) = run_bounded(&["--config", conf.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("admin: [::]:9900 is not a loopback address"),
        "{err}"
    );
}

#[test]
fn unusable_token_files_exit_2_naming_the_file() {
    let dir = scratch("admin-token-files");
    for (text, reason) in [
        ("# nothing here\n\n", "no token in the file"),
        (
            "short\n",
            "line 1: a token is one word of at least 16 characters",
        ),
    ] {
        let tokens = token_file(&dir, text);
        let (code, err) = run_bounded(&[
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "a=127.0.0.1:1",
            "--admin",
            "127.0.0.1:0",
            "--admin-token-file",
            tokens.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(tokens.to_str().unwrap()), "{err}");
        assert!(err.contains(reason), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_are_logged_with_the_peer() {
    tokio::time::timeout(LIMIT, async {
        let a = Backend::start("a").await;
        let dir = scratch("admin-log");
        let tokens = token_file(&dir, &format!("{TOKEN}\n"));
        let admin = free_addr();
        let gw = GatewayProcess::start(
            &[
                "--backend",
                &a.flag(),
                "--admin",
                &admin.to_string(),
                "--admin-token-file",
                tokens.to_str().unwrap(),
            ],
            dir.join("gw.log"),
        )
        .await;
        eventually(10, "the admin listener accepts", || async {
            tokio::net::TcpStream::connect(admin).await.is_ok()
        })
        .await;
        let r = call(
            admin,
            "POST",
            "/backends/a/drain",
            Some("wrong-token-0123456789"),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        eventually(10, "the refusal is logged", || async {
            gw.logs().contains("admin call refused")
        })
        .await;
        let line = gw
            .logs()
            .lines()
            .find(|l| l.contains("admin call refused"))
            .unwrap()
            .to_string();
        assert!(
            line.contains("wrong token") && line.contains("127.0.0.1:"),
            "{line}"
        );
        assert!(
            !line.contains("wrong-token-0123456789"),
            "the token is not logged: {line}"
        );
    })
    .await
    .expect("bounded");
}
