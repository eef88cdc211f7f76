//! `sticky-gateway demo`: three replicas of a small stateful app behind the
//! gateway, so that affinity (and losing it) is visible.
//!
//! Each replica keeps its logins and carts in its own memory, like an app
//! with in-process sessions. The page says which replica served it; while
//! the gateway keeps the browser on one replica the login and cart stay;
//! drain or stop that replica from the dashboard and the page shows the
//! session moving, and the app's state being lost on the new replica.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::config::{BackendConfig, GatewayConfig, HealthCheck, RouteConfig};
use crate::run::{self, Running};

#[derive(Default)]
struct Session {
    user: Option<String>,
    cart: Vec<String>,
}

/// One replica of the demo app.
pub struct DemoApp {
    name: String,
    dashboard: OnceLock<String>,
    sessions: Mutex<HashMap<String, Session>>,
    next: AtomicU64,
    served: AtomicU64,
}

impl DemoApp {
    /// A replica called `name`.
    pub fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            dashboard: OnceLock::new(),
            sessions: Mutex::default(),
            next: AtomicU64::new(1),
            served: AtomicU64::new(0),
        })
    }

    async fn call(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.served.fetch_add(1, Ordering::Relaxed);
        let sid = cookie(&req, "demo_sid");
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        match (method, path.as_str()) {
            (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (Method::GET, "/api/whoami") => {
                let s = self.sessions.lock().unwrap();
                let sess = sid.as_deref().and_then(|id| s.get(id));
                let body = serde_json::json!({
                    "replica": self.name,
                    "known_session": sess.is_some(),
                    "user": sess.and_then(|x| x.user.clone()),
                    "cart": sess.map(|x| x.cart.clone()).unwrap_or_default(),
                });
                let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
                r
            }
            (Method::POST, "/login") | (Method::POST, "/cart") | (Method::POST, "/logout") => {
                let form = read_form(req).await;
                let mut s = self.sessions.lock().unwrap();
                let (id, fresh) = match sid.filter(|id| s.contains_key(id)) {
                    Some(id) => (id, false),
                    None => (
                        format!(
                            "{}-{}",
                            self.name,
                            self.next.fetch_add(1, Ordering::Relaxed)
                        ),
                        true,
                    ),
                };
                let sess = s.entry(id.clone()).or_default();
                match path.as_str() {
                    "/login" => sess.user = form.get("user").filter(|u| !u.is_empty()).cloned(),
                    "/cart" => {
                        if let Some(item) = form.get("item").filter(|i| !i.is_empty()) {
                            sess.cart.push(item.clone());
                        }
                    }
                    _ => {
                        s.remove(&id);
                    }
                }
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::SEE_OTHER;
                r.headers_mut()
                    .insert(header::LOCATION, "/".parse().unwrap());
                if fresh {
                    let c = format!("demo_sid={id}; Path=/; HttpOnly; SameSite=Lax");
                    r.headers_mut()
                        .insert(header::SET_COOKIE, c.parse().unwrap());
                }
                r
            }
            (Method::GET, "/") => self.page(sid.as_deref()),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Makes the page link to the dashboard at `admin` (set once; until
    /// then, and by default, 127.0.0.1:9900).
    pub fn link_dashboard(&self, admin: SocketAddr) {
        let _ = self.dashboard.set(format!("http://{admin}/"));
    }

    fn dashboard(&self) -> &str {
        self.dashboard
            .get()
            .map_or("http://127.0.0.1:9900/", String::as_str)
    }

    fn page(&self, sid: Option<&str>) -> Response<Full<Bytes>> {
        let s = self.sessions.lock().unwrap();
        let sess = sid.and_then(|id| s.get(id));
        let n = self.served.load(Ordering::Relaxed);
        let body = match sess {
            Some(Session {
                user: Some(u),
                cart,
            }) => {
                let items: String = cart
                    .iter()
                    .map(|i| format!("<li>{}</li>", esc(i)))
                    .collect();
                format!(
                    "<p class=ok>Logged in as <b>{}</b>. Your cart lives in this replica's memory:</p>\
                     <ul>{}</ul><form method=post action=/cart><input name=item placeholder='an item'>\
                     <button>Add to cart</button></form><form method=post action=/logout><button>Log out</button></form>",
                    esc(u),
                    if items.is_empty() { "<li><i>empty</i></li>".into() } else { items }
                )
            }
            _ => {
                let lost = if sid.is_some() && sess.is_none() {
                    format!(
                        "<p class=lost>{} does not know your session: the request reached a replica \
                         that does not hold your state (affinity lost or moved).</p>",
                        esc(&self.name)
                    )
                } else {
                    String::new()
                };
                format!(
                    "{lost}<form method=post action=/login><input name=user placeholder='your name'>\
                     <button>Log in</button></form>"
                )
            }
        };
        let html = format!(
            "<!doctype html><html><head><meta charset=utf-8><title>sticky demo: {name}</title>\
             <style>body{{font:16px system-ui;margin:2em auto;max-width:40em}}.badge{{font-size:2em;padding:.2em .6em;\
             border-radius:.3em;background:#1d4ed8;color:#fff}}.lost{{color:#b91c1c}}.ok{{color:#15803d}}</style></head>\
             <body><p>Served by <span class=badge>{name}</span> (request {n} on this replica)</p>{body}\
             <p><small>Reload the page: the gateway's <code>sticky</code> cookie keeps you on {name}. \
             Drain or activate replicas on the <a href='{dashboard}'>dashboard</a>.</small></p></body></html>",
            name = esc(&self.name),
            dashboard = esc(self.dashboard()),
        );
        let mut r = Response::new(Full::new(Bytes::from(html)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            "text/html; charset=utf-8".parse().unwrap(),
        );
        r
    }
}

fn text(status: StatusCode, t: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(t.as_bytes())));
    *r.status_mut() = status;
    r
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    tower_sticky::cookie::find_cookie(req.headers(), name)
        .and_then(|v| std::str::from_utf8(v).ok().map(str::to_string))
}

async fn read_form(req: Request<Incoming>) -> HashMap<String, String> {
    let Ok(body) = Limited::new(req.into_body(), 4096).collect().await else {
        return HashMap::new();
    };
    let body = body.to_bytes();
    String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves `app` on `listener` until the task is dropped.
pub async fn serve_app(listener: TcpListener, app: Arc<DemoApp>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.call(req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Starts `n` demo replicas on loopback ports; returns their names and addresses.
pub async fn start_replicas(n: usize) -> std::io::Result<Vec<(String, SocketAddr)>> {
    Ok(start_apps(n)
        .await?
        .into_iter()
        .map(|(name, addr, _)| (name, addr))
        .collect())
}

async fn start_apps(n: usize) -> std::io::Result<Vec<(String, SocketAddr, Arc<DemoApp>)>> {
    let mut out = Vec::with_capacity(n);
    for i in 1..=n {
        let name = format!("replica-{i}");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let app = DemoApp::new(name.clone());
        out.push((name, listener.local_addr()?, app.clone()));
        tokio::spawn(serve_app(listener, app));
    }
    Ok(out)
}

/// A started demo: the replicas and the gateway in front of them.
#[derive(Debug)]
pub struct Demo {
    /// The replicas' names and addresses.
    pub replicas: Vec<(String, SocketAddr)>,
    /// The gateway (its `addr` and `admin_addr` are where it listens).
    pub running: Running,
}

/// Starts the demo: three replicas, and a gateway on `listen` with its admin
/// listener on `admin` (`sticky-gateway demo` uses 127.0.0.1:8080 and
/// 127.0.0.1:9900; port 0 picks a free port). The replicas are health
/// checked on `/healthz` every 2 s.
pub async fn start(listen: SocketAddr, admin: SocketAddr) -> std::io::Result<Demo> {
    start_with(listen, admin, None).await
}

/// The TLS side of `demo --tls`: a listener with a throwaway certificate.
#[derive(Debug)]
pub struct DemoTls {
    /// Where the TLS listener listens.
    pub listen: SocketAddr,
    /// The throwaway authority's certificate, for clients to trust.
    pub ca_file: std::path::PathBuf,
}

/// Makes a throwaway authority and a certificate for `localhost`,
/// `127.0.0.1` and `::1` in `dir`; returns the listener's settings and the
/// authority's certificate file (`ca.pem`).
pub fn throwaway_tls(
    listen: SocketAddr,
    dir: &std::path::Path,
) -> std::io::Result<(crate::tls::TlsListenerConfig, DemoTls)> {
    use crate::tls::throwaway::Authority;
    let err = |e: rcgen::Error| std::io::Error::other(e.to_string());
    let ca = Authority::new("sticky-gateway demo CA (throwaway)").map_err(err)?;
    let site = ca.issue(&["localhost", "127.0.0.1", "::1"]).map_err(err)?;
    std::fs::create_dir_all(dir)?;
    let files = crate::tls::CertificateFiles {
        cert: dir.join("localhost.pem"),
        key: dir.join("localhost.key"),
    };
    let ca_file = dir.join("ca.pem");
    std::fs::write(&files.cert, &site.cert_pem)?;
    write_private(&files.key, &site.key_pem)?;
    std::fs::write(&ca_file, &ca.cert_pem)?;
    Ok((
        crate::tls::TlsListenerConfig {
            listen,
            certificates: vec![files],
            resumption: true,
        },
        DemoTls { listen, ca_file },
    ))
}

/// Writes a key readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    std::io::Write::write_all(&mut o.open(path)?, text.as_bytes())
}

/// [`start`], with a TLS listener beside the plain one when `tls` is given
/// (see [`throwaway_tls`]).
pub async fn start_with(
    listen: SocketAddr,
    admin: SocketAddr,
    tls: Option<crate::tls::TlsListenerConfig>,
) -> std::io::Result<Demo> {
    let apps = start_apps(3).await?;
    let backends = apps
        .iter()
        .map(|(name, addr, _)| BackendConfig {
            name: name.clone(),
            address: addr.to_string(),
            weight: 1,
        })
        .collect();
    let mut route = RouteConfig::catch_all(backends);
    route.name = "demo".into();
    route.health_check = Some(HealthCheck {
        path: "/healthz".into(),
        interval: std::time::Duration::from_secs(2),
        timeout: std::time::Duration::from_secs(1),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
    });
    let mut config = GatewayConfig::new(listen, vec![route]);
    config.admin = Some(admin);
    config.tls_listeners.extend(tls);
    let keys = tower_sticky::token::KeyRing::generate();
    let running = run::start(config, keys, None).await?;
    if let Some(a) = running.admin_addr {
        for (_, _, app) in &apps {
            app.link_dashboard(a);
        }
    }
    let replicas = apps
        .into_iter()
        .map(|(name, addr, _)| (name, addr))
        .collect();
    Ok(Demo { replicas, running })
}
