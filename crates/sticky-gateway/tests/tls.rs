//! TLS termination over loopback, with certificates made in the test:
//! ALPN (h2 and http/1.1), SNI, session resumption, the Secure cookie,
//! WebSocket tunnels, redirects to HTTPS. Reloads and bad files are in
//! `tls_reload.rs`.

mod common;

use std::time::Duration;

use common::tls::*;
use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_picks_h2_or_http11_and_the_cookie_is_secure_over_tls_only() {
    tokio::time::timeout(LIMIT, async {
        let (a, b) = (Backend::start("a").await, Backend::start("b").await);
        let ca = ca();
        let dir = scratch("alpn");
        let site = write_files(&dir, "site", &ca.issue(&["app.test"]).unwrap());
        let gw = tls_gateway(&[&a, &b], vec![site]).await;
        let tls = gw.tls_addrs[0];

        // A client offering both gets h2, and verifies the chain it is sent.
        let s = connect(tls, "app.test", trusting(&ca.cert_der, &["h2", "http/1.1"]))
            .await
            .unwrap();
        assert_eq!(negotiated(&s).as_deref(), Some("h2"));
        let mut h2 = http2(s).await;
        let (r, v) = collect(
            h2.send_request(get_request("app.test", "/", None))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(v, http::Version::HTTP_2);
        assert_eq!(r.status, StatusCode::OK);
        let set = r.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(set.starts_with("sticky="), "{set}");
        assert!(set.contains("; Secure"), "Secure over TLS: {set}");
        // The pin holds over h2: the cookie brings the request back.
        let cookie = r.set_cookie("sticky").unwrap();
        let home = r.backend().to_string();
        for _ in 0..5 {
            let (again, _) = collect(
                h2.send_request(get_request("app.test", "/", Some(&cookie)))
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(again.backend(), home);
        }

        // A client offering only http/1.1 gets it.
        let s = connect(tls, "app.test", trusting(&ca.cert_der, &["http/1.1"]))
            .await
            .unwrap();
        assert_eq!(negotiated(&s).as_deref(), Some("http/1.1"));
        let mut h1 = http1(s).await;
        let (r, v) = collect(
            h1.send_request(get_request("app.test", "/", None))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(v, http::Version::HTTP_11);
        assert!(r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure"));

        // The plain listener of the same gateway does not mark it Secure
        // (a browser would drop a Secure cookie set over http).
        let plain = get(gw.addr, "/", None).await;
        let set = plain.headers["set-cookie"].to_str().unwrap();
        assert!(!set.contains("Secure"), "{set}");
        gw.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_that_covers_the_name() {
    tokio::time::timeout(LIMIT, async {
        let a = Backend::start("a").await;
        let ca = ca();
        let dir = scratch("sni");
        let (default, api) = (
            ca.issue(&["default.test"]).unwrap(),
            ca.issue(&["api.test", "*.wild.test"]).unwrap(),
        );
        let gw = tls_gateway(
            &[&a],
            vec![
                write_files(&dir, "default", &default),
                write_files(&dir, "api", &api),
            ],
        )
        .await;
        let tls = gw.tls_addrs[0];
        for (name, want, which) in [
            ("api.test", &api, "api"),
            ("API.Test", &api, "api"),
            ("x.wild.test", &api, "api"),
            ("a.b.wild.test", &default, "default"),
            ("default.test", &default, "default"),
            ("elsewhere.test", &default, "default"),
            // An IP address: no SNI at all.
            ("127.0.0.1", &default, "default"),
        ] {
            let s = connect(tls, name, any_cert()).await.unwrap();
            assert_eq!(
                leaf(&s),
                want.cert_der,
                "{name} gets the {which} certificate"
            );
        }
        // A verifying client accepts what it is given for each name.
        for name in ["api.test", "x.wild.test", "default.test"] {
            let s = connect(tls, name, trusting(&ca.cert_der, &["http/1.1"])).await;
            assert!(s.is_ok(), "{name}: {s:?}");
        }
        gw.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_over_tls13_and_tls12() {
    tokio::time::timeout(LIMIT, async {
        let a = Backend::start("a").await;
        let ca = ca();
        let dir = scratch("resume");
        let site = write_files(&dir, "site", &ca.issue(&["app.test"]).unwrap());
        let gw = tls_gateway(&[&a], vec![site]).await;
        let tls = gw.tls_addrs[0];
        let tls12 = {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert_der.clone().into()).unwrap();
            let mut c =
                rustls::ClientConfig::builder_with_provider(sticky_gateway::tls::certs::provider())
                    .with_protocol_versions(&[&rustls::version::TLS12])
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            std::sync::Arc::new(c)
        };
        for (version, config) in [
            ("TLS 1.3", trusting(&ca.cert_der, &["http/1.1"])),
            ("TLS 1.2", tls12),
        ] {
            let mut kinds = Vec::new();
            for _ in 0..2 {
                let s = connect(tls, "app.test", config.clone()).await.unwrap();
                kinds.push(s.get_ref().1.handshake_kind());
                // One exchange, so that TLS 1.3 tickets (sent after the
                // handshake) reach the client.
                let mut h1 = http1(s).await;
                let (r, _) = collect(
                    h1.send_request(get_request("app.test", "/", None))
                        .await
                        .unwrap(),
                )
                .await;
                assert_eq!(r.status, StatusCode::OK);
            }
            assert_eq!(
                kinds,
                [
                    Some(rustls::HandshakeKind::Full),
                    Some(rustls::HandshakeKind::Resumed)
                ],
                "{version}: the second connection resumes"
            );
        }
        gw.shutdown().await;

        // resumption = false: every handshake is a full one.
        let site = write_files(&dir, "site", &ca.issue(&["app.test"]).unwrap());
        let gw = in_process_gateway(&[&a], |c| {
            let mut l = listener(vec![site]);
            l.resumption = false;
            c.tls_listeners = vec![l];
        })
        .await;
        let config = trusting(&ca.cert_der, &["http/1.1"]);
        for _ in 0..2 {
            let s = connect(gw.tls_addrs[0], "app.test", config.clone())
                .await
                .unwrap();
            assert_eq!(
                s.get_ref().1.handshake_kind(),
                Some(rustls::HandshakeKind::Full)
            );
            let mut h1 = http1(s).await;
            let (r, _) = collect(
                h1.send_request(get_request("app.test", "/", None))
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK);
        }
        gw.shutdown().await;
    })
    .await
    .expect("bounded");
}

async fn read_head<S: AsyncReadExt + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "head cut short");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_over_tls_is_pinned_and_tunnelled() {
    tokio::time::timeout(LIMIT, async {
        let bs = [
            Backend::start("b1").await,
            Backend::start("b2").await,
            Backend::start("b3").await,
        ];
        let ca = ca();
        let dir = scratch("ws");
        let site = write_files(&dir, "site", &ca.issue(&["app.test"]).unwrap());
        let gw = tls_gateway(&[&bs[0], &bs[1], &bs[2]], vec![site]).await;
        let tls = gw.tls_addrs[0];
        // A session, pinned over TLS.
        let s = connect(tls, "app.test", trusting(&ca.cert_der, &["http/1.1"])).await.unwrap();
        let mut h1 = http1(s).await;
        let (r, _) = collect(h1.send_request(get_request("app.test", "/", None)).await.unwrap()).await;
        let (cookie, home) = (r.set_cookie("sticky").unwrap(), r.backend().to_string());
        for _ in 0..3 {
            let mut s = connect(tls, "app.test", trusting(&ca.cert_der, &["http/1.1"]))
                .await
                .unwrap();
            let req = format!(
                "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: {cookie}\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let head = read_head(&mut s).await;
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            assert!(head.to_ascii_lowercase().contains(&format!("x-backend: {home}")), "pinned: {head}");
            // The tunnel: bytes both ways through TLS to the pinned backend.
            for msg in ["hello", "again"] {
                s.write_all(msg.as_bytes()).await.unwrap();
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap();
                assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), format!("{home}:{msg}"));
            }
        }
        gw.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_listener_may_redirect_to_https() {
    tokio::time::timeout(LIMIT, async {
        let a = Backend::start("a").await;
        let ca = ca();
        let dir = scratch("redirect");
        let site = write_files(&dir, "site", &ca.issue(&["app.test"]).unwrap());
        let gw = in_process_gateway(&[&a], |c| {
            c.tls_listeners = vec![listener(vec![site])];
            c.redirect_to_https = true;
        })
        .await;
        let port = gw.tls_addrs[0].port();
        let r = get(gw.addr, "/cart?item=3", None).await;
        assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            r.headers["location"],
            format!("https://app.test:{port}/cart?item=3").as_str()
        );
        assert_eq!(
            a.requests.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "nothing proxied"
        );
        gw.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_serves_several_tls_listeners_with_several_certificates() {
    tokio::time::timeout(LIMIT, async {
        let a = Backend::start("a").await;
        let ca = ca();
        let dir = scratch("multi");
        let first_cert = ca.issue(&["first.test"]).unwrap();
        let first = write_files(&dir, "first", &first_cert);
        let (b, c) = (
            ca.issue(&["b.test"]).unwrap(),
            ca.issue(&["c.test"]).unwrap(),
        );
        let (bf, cf) = (write_files(&dir, "b", &b), write_files(&dir, "c", &c));
        let (one, two) = (free_addr(), free_addr());
        let cert = |f: &sticky_gateway::tls::CertificateFiles| {
            format!(
                "[[tls_listeners.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n",
                f.cert.display(),
                f.key.display()
            )
        };
        let conf = dir.join("gateway.toml");
        std::fs::write(
            &conf,
            format!(
                "redirect_to_https = true\n\
                 [[tls_listeners]]\nlisten = \"{one}\"\n{}\
                 [[tls_listeners]]\nlisten = \"{two}\"\n{}{}\
                 [[routes]]\n{}",
                cert(&first),
                cert(&bf),
                cert(&cf),
                backends_toml([&a])
            ),
        )
        .unwrap();
        // The harness adds --listen: the plain listener, redirecting.
        let gw =
            GatewayProcess::start(&["--config", conf.to_str().unwrap()], dir.join("gw.log")).await;
        for addr in [one, two] {
            eventually(10, "the TLS listeners accept", || async {
                tokio::net::TcpStream::connect(addr).await.is_ok()
            })
            .await;
        }
        let s = connect(one, "first.test", trusting(&ca.cert_der, &["h2"]))
            .await
            .unwrap();
        assert_eq!(negotiated(&s).as_deref(), Some("h2"));
        assert_eq!(leaf(&s), first_cert.cert_der);
        let mut h2 = http2(s).await;
        let (r, _) = collect(
            h2.send_request(get_request("first.test", "/", None))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((r.status, r.backend()), (StatusCode::OK, "a"));
        // The second listener: b.test's certificate by default, c.test's by SNI.
        for (name, want) in [("b.test", &b), ("c.test", &c), ("other.test", &b)] {
            let s = connect(two, name, any_cert()).await.unwrap();
            assert_eq!(leaf(&s), want.cert_der, "{name} on the second listener");
        }
        // The plain listener sends clients to the first TLS listener.
        let r = get(gw.addr, "/x", None).await;
        assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            r.headers["location"],
            format!("https://app.test:{}/x", one.port()).as_str()
        );
    })
    .await
    .expect("bounded");
}
