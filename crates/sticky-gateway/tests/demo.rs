//! The demo, started through the library on ephemeral ports: a browser-like
//! client logs in and fills a cart through the gateway, and its state
//! survives because every request reaches the replica that holds it.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

/// A cookie jar that keeps every cookie by name, as a browser would for one site.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    async fn send(&mut self, addr: SocketAddr, method: &str, path: &str, form: &str) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        if let Some(c) = self.header() {
            b = b.header("cookie", c);
        }
        if !form.is_empty() {
            b = b.header("content-type", "application/x-www-form-urlencoded");
        }
        let req = b
            .body(TestBody::Full(Full::new(Bytes::from(form.to_string()))))
            .unwrap();
        let r = send(addr, req).await.unwrap();
        for v in r.headers.get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.insert(k.trim().to_string(), v.to_string());
        }
        r
    }

    async fn whoami(&mut self, addr: SocketAddr) -> serde_json::Value {
        let r = self.send(addr, "GET", "/api/whoami", "").await;
        assert_eq!(r.status, StatusCode::OK);
        serde_json::from_slice(&r.body).unwrap()
    }
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_keeps_a_logged_in_cart_on_one_replica() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let demo = sticky_gateway::demo::start(any, any).await.unwrap();
    let gw = demo.running.addr;
    let adm = demo
        .running
        .admin_addr
        .expect("the demo has an admin listener");
    assert_eq!(demo.replicas.len(), 3);

    let mut browser = Browser::default();
    let home = browser.send(gw, "GET", "/", "").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(text(&home).contains("Log in"), "{}", text(&home));
    assert!(
        browser.cookies.contains_key("sticky"),
        "the gateway pins the browser"
    );
    let replica = browser.whoami(gw).await["replica"]
        .as_str()
        .unwrap()
        .to_string();

    let login = browser.send(gw, "POST", "/login", "user=alice").await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert!(
        browser.cookies.contains_key("demo_sid"),
        "the app's own cookie is kept beside ours"
    );
    for item in ["apple", "pear"] {
        let r = browser
            .send(gw, "POST", "/cart", &format!("item={item}"))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
    }

    for i in 0..20 {
        let me = browser.whoami(gw).await;
        assert_eq!(me["replica"], replica.as_str(), "request {i}: {me}");
        assert_eq!(me["known_session"], true, "request {i}: {me}");
        assert_eq!(me["user"], "alice");
        assert_eq!(me["cart"], serde_json::json!(["apple", "pear"]));
    }
    let page = browser.send(gw, "GET", "/", "").await;
    let html = text(&page);
    assert!(html.contains("Logged in as <b>alice</b>"), "{html}");
    assert!(html.contains("<li>apple</li><li>pear</li>"), "{html}");
    assert!(
        html.contains(&format!("href='http://{adm}/'")),
        "the page links to this demo's dashboard: {html}"
    );

    // The dashboard answers with a page.
    let (status, body) = admin(adm, "GET", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.to_ascii_lowercase().contains("<!doctype html"),
        "{body}"
    );
    let backends = admin_backends(adm).await;
    assert_eq!(backends.len(), 3);
    let mine = backends
        .iter()
        .find(|b| b["id"] == replica.as_str())
        .unwrap();
    assert!(mine["pinned_hits"].as_u64().unwrap() >= 20, "{mine}");

    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tls_serves_https_with_a_throwaway_certificate_clients_can_trust() {
    use common::tls::*;
    use rustls_pki_types::pem::PemObject;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let dir = scratch("demo-tls");
    let (listener, info) = sticky_gateway::demo::throwaway_tls(any, &dir).unwrap();
    let demo = sticky_gateway::demo::start_with(any, any, Some(listener))
        .await
        .unwrap();
    let tls = demo.running.tls_addrs[0];
    // The printed authority file is all a client needs to trust it.
    let pem = std::fs::read(&info.ca_file).unwrap();
    let ca = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    for name in ["localhost", "127.0.0.1"] {
        let s = connect(tls, name, trusting(&ca, &["h2", "http/1.1"]))
            .await
            .unwrap();
        let mut h2 = http2(s).await;
        let (r, v) = collect(h2.send_request(get_request(name, "/", None)).await.unwrap()).await;
        assert_eq!((r.status, v), (StatusCode::OK, http::Version::HTTP_2));
        assert!(String::from_utf8_lossy(&r.body).contains("Log in"));
        assert!(r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure"));
    }
    demo.running.shutdown().await;
}
