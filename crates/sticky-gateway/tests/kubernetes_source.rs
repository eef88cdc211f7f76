//! A whole in-process gateway fed by the Kubernetes source, against a mocked
//! API server (`tower_test::mock::pair()` behind `kube::Client`: no real
//! cluster can run here), with real loopback backends: the list becomes the
//! route's backends, a terminating pod drains (its pinned session stays, new
//! sessions avoid it), a 410 Gone relists, a broken watch shows as
//! disconnected while the last set keeps serving (and connected once a watch
//! starts again), and the admin API refuses
//! a drain click with the `kubectl` way instead.

#![cfg(feature = "kubernetes")]

mod common;

use std::time::Duration;

use common::{admin, admin_field, any_port, eventually, get, Backend, Jar};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use sticky_gateway::config::{KubePort, KubernetesConfig, RouteConfig};
use sticky_gateway::state::kubernetes::KubernetesSource;
use sticky_gateway::GatewayConfig;
use tokio::time::timeout;
use tower_sticky::token::KeyRing;
use tower_test::mock;

type ApiServer = mock::Handle<Request<Body>, Response<Body>>;
type Reply = mock::SendResponse<Response<Body>>;

const PATH: &str = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices";

async fn next_request(server: &mut ApiServer) -> (Request<Body>, Reply) {
    timeout(Duration::from_secs(10), server.next_request())
        .await
        .expect("the watcher sent no request within 10 s")
        .expect("the client was dropped")
}

fn query(req: &Request<Body>) -> String {
    assert_eq!(req.uri().path(), PATH);
    let q = req.uri().query().unwrap_or_default().to_owned();
    assert!(
        q.contains("labelSelector=kubernetes.io%2Fservice-name%3Dweb"),
        "{q}"
    );
    q
}

fn assert_list(req: &Request<Body>) {
    let q = query(req);
    assert!(!q.contains("watch=true"), "a list, not a watch: {q}");
}

fn assert_watch(req: &Request<Body>, rv: &str) {
    let q = query(req);
    assert!(q.contains("watch=true"), "{q}");
    assert!(q.contains(&format!("resourceVersion={rv}")), "{q}");
}

/// One slice per pod, so that each (loopback) pod has its own port.
fn slice(pod: &str, port: u16, state: &str, rv: &str) -> Value {
    let (ready, serving, terminating) = match state {
        "ready" => (true, true, false),
        "terminating" => (false, true, true),
        other => panic!("{other}"),
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("web-{pod}"),
            "namespace": "shop",
            "resourceVersion": rv,
            "labels": { "kubernetes.io/service-name": "web" },
        },
        "addressType": "IPv4",
        "ports": [
            { "name": "metrics", "port": 1, "protocol": "TCP" },
            { "name": "http", "port": port, "protocol": "TCP" },
        ],
        "endpoints": [{
            "addresses": ["127.0.0.1"],
            "conditions": { "ready": ready, "serving": serving, "terminating": terminating },
            "targetRef": { "kind": "Pod", "name": pod, "namespace": "shop" },
        }],
    })
}

fn list(reply: Reply, rv: &str, items: &[Value]) {
    let body = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": { "resourceVersion": rv },
        "items": items,
    });
    reply.send_response(Response::new(Body::from(
        serde_json::to_vec(&body).unwrap(),
    )));
}

/// Answers a watch with these events, then ends it (as the API server does
/// at its timeout), so the watcher watches again.
fn events(reply: Reply, events: &[Value]) {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    reply.send_response(Response::new(Body::from(body)));
}

async fn stats_store(admin_addr: std::net::SocketAddr) -> Value {
    let (status, body) = admin(admin_addr, "GET", "/stats").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["store"].clone()
}

/// New sessions (no cookie) and the backends they land on.
async fn place(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = get(addr, "/", None).await;
        assert_eq!(r.status, StatusCode::OK);
        out.push(r.backend().to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_fed_by_endpointslices_drains_terminating_pods_and_relists_after_410() {
    timeout(Duration::from_secs(90), scenario())
        .await
        .expect("the scenario ends within 90 s");
}

async fn scenario() {
    let a = Backend::start("web-a").await;
    let b = Backend::start("web-b").await;
    let c = Backend::start("web-c").await;
    let d = Backend::start("web-d").await;

    // A route with no static backends, fed by Service shop/web.
    let mut config = GatewayConfig::new(any_port(), vec![RouteConfig::catch_all(Vec::new())]);
    config.access_log = false;
    config.admin = Some(any_port());
    let route = config.routes[0].name.clone();
    let mut k = KubernetesConfig::new("web", route.clone());
    k.port = KubePort::Name("http".into());
    config.kubernetes = Some(k);
    let (service, mut server) = mock::pair::<Request<Body>, Response<Body>>();
    let source = KubernetesSource::new(
        Client::new(service, "shop"),
        None,
        "web",
        "http".parse().unwrap(),
    )
    .unwrap();
    let starting = tokio::spawn(sticky_gateway::run::start_with_kubernetes(
        config,
        KeyRing::generate(),
        None,
        source,
    ));

    // The list: three ready pods. Start-up waits for it.
    let (req, reply) = next_request(&mut server).await;
    assert_list(&req);
    list(
        reply,
        "10",
        &[
            slice("web-a", a.addr.port(), "ready", "5"),
            slice("web-b", b.addr.port(), "ready", "6"),
            slice("web-c", c.addr.port(), "ready", "7"),
        ],
    );
    let running = timeout(Duration::from_secs(10), starting)
        .await
        .expect("start-up ends within 10 s")
        .unwrap()
        .unwrap();
    let addr = running.addr;
    let admin_addr = running.admin_addr.unwrap();

    // Requests go to the listed pods, and only to them.
    let placed = place(addr, 30).await;
    for name in ["web-a", "web-b", "web-c"] {
        assert!(placed.iter().any(|p| p == name), "{name}: {placed:?}");
    }
    assert!(placed.iter().all(|p| p != "web-d"), "{placed:?}");
    let store = stats_store(admin_addr).await;
    assert_eq!(store["engine"], "kubernetes");
    assert_eq!(store["route"], route.as_str());
    assert_eq!(store["connected"], true, "{store}");
    assert!(store["last_sync_age_seconds"].is_number(), "{store}");
    assert!(store["intent_refused"].is_string(), "{store}");

    // A session pinned to web-b.
    let mut pinned = Jar::new();
    for _ in 0..200 {
        if pinned.get(addr, "/").await.backend() == "web-b" {
            break;
        }
        pinned.cookie = None;
    }
    assert!(pinned.cookie.is_some());
    assert_eq!(pinned.get(addr, "/").await.backend(), "web-b");

    // MODIFIED: web-b is terminating and still serving: it drains.
    let (req, reply) = next_request(&mut server).await;
    assert_watch(&req, "10");
    events(
        reply,
        &[
            json!({ "type": "MODIFIED", "object": slice("web-b", b.addr.port(), "terminating", "11") }),
        ],
    );
    eventually(5, "web-b drains", || async {
        admin_field(admin_addr, "web-b", "state").await.as_deref() == Some("draining")
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            pinned.get(addr, "/").await.backend(),
            "web-b",
            "the pinned session stays on the draining pod"
        );
    }
    let placed = place(addr, 40).await;
    assert!(
        placed.iter().all(|p| p == "web-a" || p == "web-c"),
        "new sessions avoid the draining pod: {placed:?}"
    );

    // A drain click is refused: Kubernetes owns the drain, on every replica.
    for action in ["drain", "activate"] {
        let (status, body) = admin(admin_addr, "POST", &format!("/backends/web-a/{action}")).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.contains("kubectl"), "{body}");
    }
    assert_eq!(
        admin_field(admin_addr, "web-a", "state").await.as_deref(),
        Some("active"),
        "nothing changed locally"
    );

    // 410 Gone: the watcher relists. Meanwhile web-b finished terminating
    // and web-d started.
    let (req, reply) = next_request(&mut server).await;
    assert_watch(&req, "11");
    events(
        reply,
        &[json!({
            "type": "ERROR",
            "object": {
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": "too old resource version: 11 (40)", "reason": "Expired", "code": 410,
            },
        })],
    );
    let (req, reply) = next_request(&mut server).await;
    assert_list(&req);
    list(
        reply,
        "40",
        &[
            slice("web-a", a.addr.port(), "ready", "30"),
            slice("web-c", c.addr.port(), "ready", "31"),
            slice("web-d", d.addr.port(), "ready", "38"),
        ],
    );
    eventually(5, "web-d joins and web-b leaves", || async {
        admin_field(admin_addr, "web-d", "state").await.as_deref() == Some("active")
            && admin_field(admin_addr, "web-b", "state").await.as_deref() != Some("draining")
    })
    .await;
    let placed = place(addr, 40).await;
    assert!(placed.iter().any(|p| p == "web-d"), "{placed:?}");
    assert!(placed.iter().all(|p| p != "web-b"), "{placed:?}");

    // The watch breaks (a 500): shown as disconnected, the last set serves on.
    let (req, reply) = next_request(&mut server).await;
    assert_watch(&req, "40");
    let mut broken = Response::new(Body::from(
        serde_json::to_vec(&json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500,
        }))
        .unwrap(),
    ));
    *broken.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    reply.send_response(broken);
    eventually(5, "the store shows disconnected", || async {
        stats_store(admin_addr).await["connected"] == false
    })
    .await;
    let (status, metrics) = admin(admin_addr, "GET", "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains(&format!(
            "sticky_store_connected{{engine=\"kubernetes\",route=\"{route}\"}} 0"
        )),
        "{metrics}"
    );
    let placed = place(addr, 10).await;
    assert!(placed.iter().all(|p| p != "web-b"), "{placed:?}");

    // It retries from the same version; the watch starting again is
    // connected again, with no change to the pods.
    let (req, reply) = next_request(&mut server).await;
    assert_watch(&req, "40");
    events(reply, &[]);
    eventually(5, "the store shows connected again", || async {
        stats_store(admin_addr).await["connected"] == true
    })
    .await;

    // It stops with the gateway.
    let (req, _held) = next_request(&mut server).await;
    assert_watch(&req, "40");
    timeout(Duration::from_secs(20), running.shutdown())
        .await
        .expect("shutdown within 20 s");
}

/// The binary's answer to `args`, with no Kubernetes client to be found (no
/// kubeconfig, not in a cluster): its exit status and stderr, bounded.
fn run_without_cluster(args: &[&str]) -> (Option<i32>, String) {
    let home = std::env::temp_dir().join(format!("sticky-kube-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sticky-gateway"))
        .args(args)
        .env("HOME", &home)
        .env("KUBECONFIG", home.join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sticky-gateway {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_kubernetes_settings_exit_2_naming_the_field() {
    let listen = ["--listen", "127.0.0.1:0"];
    let cases: [(&[&str], &str); 4] = [
        (&["--kube-service", "Web"], "kubernetes.service"),
        (
            &["--kube-service", "web", "--kube-port", "0"],
            "kubernetes.port",
        ),
        (
            &[
                "--kube-service",
                "web",
                "--etcd",
                "http://127.0.0.1:1",
                "--etcd-prefix",
                "p",
            ],
            "kubernetes:",
        ),
        // Valid settings, but no client: neither a kubeconfig nor a cluster.
        (&["--kube-service", "web"], "no Kubernetes client"),
    ];
    for (args, field) in cases {
        let all: Vec<&str> = listen.iter().chain(args).copied().collect();
        let (code, err) = run_without_cluster(&all);
        assert_eq!(code, Some(2), "{all:?}: {err}");
        assert!(err.contains(field), "{all:?}: {err}");
    }
}
