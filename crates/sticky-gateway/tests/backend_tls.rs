//! TLS to backends over loopback, with authorities made in the test:
//! `https://` backends are proxied to with SNI the configured host and
//! keep-alive over one handshake, a certificate from an unknown authority
//! is refused (and the log says why), health probes go over TLS too, and
//! configuration errors exit with status 2 naming the field.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sticky_gateway::config::{BackendConfig, HealthCheck, PlacementKind, RouteConfig};
use sticky_gateway::tls::backends::BackendCa;
use sticky_gateway::tls::certs::provider;
use sticky_gateway::tls::throwaway::{Authority, Issued};
use sticky_gateway::GatewayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const LIMIT: Duration = Duration::from_secs(30);

/// An HTTPS backend (tokio-rustls and hyper) that counts its handshakes,
/// records the SNI each client sent, and answers with its name.
struct TlsBackend {
    name: String,
    addr: SocketAddr,
    handshakes: Arc<AtomicU64>,
    failed_handshakes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    probes: Arc<AtomicU64>,
    sni: Arc<Mutex<Vec<Option<String>>>>,
}

impl TlsBackend {
    async fn start(name: &str, cert: &Issued) -> Self {
        Self::start_closing_idle(name, cert, None).await
    }

    /// A backend that, with `idle_close`, closes each connection (TLS
    /// `close_notify`, then FIN) that long after it was opened, between
    /// requests, as a backend's keep-alive timeout does.
    async fn start_closing_idle(name: &str, cert: &Issued, idle_close: Option<Duration>) -> Self {
        let chain = vec![CertificateDer::from(cert.cert_der.clone())];
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let me = TlsBackend {
            name: name.into(),
            addr: listener.local_addr().unwrap(),
            handshakes: Arc::default(),
            failed_handshakes: Arc::default(),
            requests: Arc::default(),
            probes: Arc::default(),
            sni: Arc::default(),
        };
        let (hs, failed, sni) = (
            me.handshakes.clone(),
            me.failed_handshakes.clone(),
            me.sni.clone(),
        );
        let (requests, probes, name) = (me.requests.clone(), me.probes.clone(), me.name.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let (hs, failed, sni) = (hs.clone(), failed.clone(), sni.clone());
                let (requests, probes, name) = (requests.clone(), probes.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    hs.fetch_add(1, Ordering::Relaxed);
                    sni.lock()
                        .unwrap()
                        .push(tls.get_ref().1.server_name().map(str::to_owned));
                    let svc = service_fn(move |mut req: Request<Incoming>| {
                        let counter = if req.uri().path() == "/healthz" {
                            &probes
                        } else {
                            &requests
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        let mut r = Response::new(Full::new(Bytes::from(name.clone())));
                        if req.uri().path() == "/ws" {
                            // Echoes each read, prefixed with the backend's name.
                            let on = hyper::upgrade::on(&mut req);
                            let n = name.clone();
                            tokio::spawn(async move {
                                let Ok(up) = on.await else { return };
                                let mut io = TokioIo::new(up);
                                let mut buf = [0u8; 256];
                                while let Ok(k @ 1..) = io.read(&mut buf).await {
                                    let mut out = format!("{n}:").into_bytes();
                                    out.extend_from_slice(&buf[..k]);
                                    if io.write_all(&out).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                            r.headers_mut()
                                .insert("upgrade", "websocket".parse().unwrap());
                            r.headers_mut()
                                .insert("connection", "upgrade".parse().unwrap());
                        }
                        r.headers_mut().insert("x-backend", name.parse().unwrap());
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .with_upgrades();
                    let mut conn = std::pin::pin!(conn);
                    match idle_close {
                        None => {
                            let _ = conn.await;
                        }
                        Some(after) => {
                            tokio::select! {
                                _ = conn.as_mut() => {}
                                _ = tokio::time::sleep(after) => {
                                    conn.as_mut().graceful_shutdown();
                                    let _ = conn.await;
                                }
                            }
                        }
                    }
                });
            }
        });
        me
    }

    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.addr.port())
    }

    fn count(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

fn ca_file(dir: &Path, ca: &Authority) -> std::path::PathBuf {
    let f = dir.join("backend-ca.pem");
    std::fs::write(&f, &ca.cert_pem).unwrap();
    f
}

/// An in-process gateway with one route over `backends` (name, address),
/// verifying https ones against `ca`.
async fn gateway(
    backends: &[(&str, String)],
    ca: &Path,
    health: Option<HealthCheck>,
) -> sticky_gateway::run::Running {
    let backends = backends
        .iter()
        .map(|(n, a)| BackendConfig {
            name: n.to_string(),
            address: a.clone(),
            weight: 1,
        })
        .collect();
    let mut route = RouteConfig::catch_all(backends);
    route.backend_ca = Some(BackendCa::load("backend_ca_file", ca).unwrap());
    route.health_check = health;
    // Deterministic turns, so that every backend is tried.
    route.placement = PlacementKind::RoundRobin;
    let mut config = GatewayConfig::new(any_port(), vec![route]);
    config.access_log = false;
    sticky_gateway::run::start(config, tower_sticky::token::KeyRing::generate(), None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_backend_is_proxied_to_with_its_host_as_sni_over_one_kept_connection() {
    tokio::time::timeout(LIMIT, async {
        let ca = Authority::new("backend CA").unwrap();
        let dir = scratch("backend-tls-ok");
        let b = TlsBackend::start("secure-1", &ca.issue(&["localhost"]).unwrap()).await;
        let gw = gateway(
            &[("secure-1", b.url("localhost"))],
            &ca_file(&dir, &ca),
            None,
        )
        .await;

        // Each request on a new client connection; the gateway's backend
        // connection is pooled and reused, TLS and all.
        for _ in 0..5 {
            let r = get(gw.addr, "/", None).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.backend(), "secure-1");
            assert_eq!(&r.body[..], b"secure-1");
        }
        assert_eq!(TlsBackend::count(&b.requests), 5);
        assert_eq!(
            TlsBackend::count(&b.handshakes),
            1,
            "keep-alive reuses the TLS connection"
        );
        assert_eq!(
            b.sni.lock().unwrap().as_slice(),
            [Some("localhost".to_string())],
            "SNI is the configured host name"
        );
        gw.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_tls_connection_the_backend_closed_while_idle_is_not_reused() {
    tokio::time::timeout(LIMIT, async {
        let ca = Authority::new("backend CA").unwrap();
        let dir = scratch("backend-tls-idle");
        let cert = ca.issue(&["localhost"]).unwrap();
        let b =
            TlsBackend::start_closing_idle("closer", &cert, Some(Duration::from_millis(150))).await;
        let gw = gateway(&[("closer", b.url("localhost"))], &ca_file(&dir, &ca), None).await;
        assert_eq!(get(gw.addr, "/", None).await.status, StatusCode::OK);
        // The backend sends close_notify and closes while the connection
        // sits in the gateway's pool (well within the pool's idle timeout).
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = get(gw.addr, "/", None).await;
        assert_eq!(r.status, StatusCode::OK, "a fresh connection carries it");
        assert_eq!(TlsBackend::count(&b.requests), 2);
        assert_eq!(TlsBackend::count(&b.handshakes), 2);
        gw.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_is_tunnelled_over_the_tls_backend_connection() {
    tokio::time::timeout(LIMIT, async {
        let ca = Authority::new("backend CA").unwrap();
        let dir = scratch("backend-tls-ws");
        let b = TlsBackend::start("ws-1", &ca.issue(&["localhost"]).unwrap()).await;
        let gw = gateway(&[("ws-1", b.url("localhost"))], &ca_file(&dir, &ca), None).await;
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(
                s.read(&mut byte).await.unwrap(),
                1,
                "closed before the head ended"
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        for msg in ["hello", "again"] {
            s.write_all(msg.as_bytes()).await.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                format!("ws-1:{msg}")
            );
        }
        assert_eq!(TlsBackend::count(&b.handshakes), 1);
        drop(s);
        gw.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_backend_sends_no_sni_and_is_verified_against_its_ip_name() {
    tokio::time::timeout(LIMIT, async {
        let ca = Authority::new("backend CA").unwrap();
        let dir = scratch("backend-tls-ip");
        let b = TlsBackend::start("ip-1", &ca.issue(&["127.0.0.1"]).unwrap()).await;
        let gw = gateway(&[("ip-1", b.url("127.0.0.1"))], &ca_file(&dir, &ca), None).await;
        let r = get(gw.addr, "/", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.backend(), "ip-1");
        assert_eq!(b.sni.lock().unwrap().as_slice(), [None]);
        gw.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_certificate_from_an_unknown_authority_is_refused_and_the_log_says_why() {
    tokio::time::timeout(LIMIT, async {
        let (trusted, stranger) = (
            Authority::new("backend CA").unwrap(),
            Authority::new("someone else").unwrap(),
        );
        let dir = scratch("backend-tls-refused");
        let ca = ca_file(&dir, &trusted);
        let b = TlsBackend::start("rogue", &stranger.issue(&["localhost"]).unwrap()).await;
        let flag = format!("rogue={}", b.url("localhost"));
        let gw = GatewayProcess::start(
            &["--backend", &flag, "--backend-ca", ca.to_str().unwrap()],
            dir.join("gw.log"),
        )
        .await;
        let r = get(gw.addr, "/", None).await;
        assert!(
            r.status == StatusCode::BAD_GATEWAY || r.status == StatusCode::SERVICE_UNAVAILABLE,
            "{:?}",
            r.status
        );
        assert_eq!(TlsBackend::count(&b.requests), 0, "nothing was sent to it");
        assert!(TlsBackend::count(&b.handshakes) == 0);
        let logs = gw.logs();
        assert!(
            logs.contains("backend unreachable") && logs.contains("UnknownIssuer"),
            "the log names the reason: {logs}"
        );
        drop(gw);
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_a_backend_that_fails_verification_go_to_another() {
    tokio::time::timeout(LIMIT, async {
        let (trusted, stranger) = (
            Authority::new("backend CA").unwrap(),
            Authority::new("someone else").unwrap(),
        );
        let dir = scratch("backend-tls-reroute");
        let good = TlsBackend::start("good", &trusted.issue(&["localhost"]).unwrap()).await;
        let rogue = TlsBackend::start("rogue", &stranger.issue(&["localhost"]).unwrap()).await;
        let gw = gateway(
            &[
                ("good", good.url("localhost")),
                ("rogue", rogue.url("localhost")),
            ],
            &ca_file(&dir, &trusted),
            None,
        )
        .await;
        for _ in 0..6 {
            let r = get(gw.addr, "/", None).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.backend(), "good");
        }
        assert!(
            TlsBackend::count(&rogue.failed_handshakes) >= 1,
            "it was tried"
        );
        assert_eq!(TlsBackend::count(&rogue.requests), 0);
        gw.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_go_over_verified_tls() {
    tokio::time::timeout(LIMIT, async {
        let (trusted, stranger) = (
            Authority::new("backend CA").unwrap(),
            Authority::new("someone else").unwrap(),
        );
        let dir = scratch("backend-tls-health");
        let good = TlsBackend::start("good", &trusted.issue(&["localhost"]).unwrap()).await;
        let rogue = TlsBackend::start("rogue", &stranger.issue(&["localhost"]).unwrap()).await;
        let health = HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(2),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        };
        let gw = gateway(
            &[
                ("good", good.url("localhost")),
                ("rogue", rogue.url("localhost")),
            ],
            &ca_file(&dir, &trusted),
            Some(health),
        )
        .await;
        let healthy = |name: &str| {
            let routes = gw.gateway.routes_full();
            let table = routes.iter().next().unwrap().table.load_full();
            let b = table
                .iter()
                .find(|b| b.value().name().as_ref() == name)
                .unwrap();
            b.status().probe_healthy()
        };
        eventually(
            10,
            "probes reach the good backend and fail the rogue one",
            || async { TlsBackend::count(&good.probes) >= 3 && !healthy("rogue") },
        )
        .await;
        assert!(healthy("good"));
        assert_eq!(TlsBackend::count(&rogue.probes), 0);
        assert!(
            good.sni
                .lock()
                .unwrap()
                .iter()
                .all(|s| s.as_deref() == Some("localhost")),
            "probes send the host as SNI"
        );
        // Traffic only reaches the good one.
        for _ in 0..4 {
            assert_eq!(get(gw.addr, "/", None).await.backend(), "good");
        }
        gw.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
    .expect("bounded");
}

#[test]
fn https_backends_without_a_usable_ca_exit_2_naming_the_field() {
    let (code, err) = run_bounded(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "a=https://localhost:1",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--backend") && err.contains("--backend-ca"),
        "{err}"
    );

    let dir = scratch("backend-tls-config");
    let (code, err) = run_bounded(&[
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "a=https://localhost:1",
        "--backend-ca",
        dir.join("missing.pem").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--backend-ca") && err.contains("cannot read"),
        "{err}"
    );

    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let cfg = dir.join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "backend_ca_file = {:?}\n[[routes]]\n[[routes.backends]]\nname = \"a\"\naddress = \"https://localhost:1\"\n",
            bad.to_str().unwrap()
        ),
    )
    .unwrap();
    let (code, err) = run_bounded(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("backend_ca_file"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
