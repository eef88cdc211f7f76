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
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Default)]
struct Session {
    user: Option<String>,
    cart: Vec<String>,
}

/// One replica of the demo app.
pub struct DemoApp {
    name: String,
    sessions: Mutex<HashMap<String, Session>>,
    next: AtomicU64,
    served: AtomicU64,
}

impl DemoApp {
    /// A replica called `name`.
    pub fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
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
             Drain or activate replicas on the <a href='http://127.0.0.1:9900/'>dashboard</a>.</small></p></body></html>",
            name = esc(&self.name),
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
    let mut out = Vec::with_capacity(n);
    for i in 1..=n {
        let name = format!("replica-{i}");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        out.push((name.clone(), listener.local_addr()?));
        tokio::spawn(serve_app(listener, DemoApp::new(name)));
    }
    Ok(out)
}
