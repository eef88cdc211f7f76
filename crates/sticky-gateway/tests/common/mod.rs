//! Test harness: named loopback backends, a minimal HTTP client, and the
//! gateway binary started as a child process (stopped by its own pid).
#![allow(dead_code)]

pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A generated body of `left` bytes, produced in 64 KiB chunks (never held whole).
pub struct Generated {
    pub left: u64,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(64 * 1024);
        self.left -= n;
        static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &CHUNK[..n as usize],
        )))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// Either a small full body or a generated one.
pub enum TestBody {
    Full(Full<Bytes>),
    Gen(Generated),
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            TestBody::Full(b) => Pin::new(b).poll_frame(cx),
            TestBody::Gen(g) => Pin::new(g).poll_frame(cx),
        }
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            TestBody::Full(b) => b.size_hint(),
            TestBody::Gen(g) => g.size_hint(),
        }
    }
}

/// A named backend on 127.0.0.1:0. Answers with its name, counts every
/// `x-request-id` it sees, streams uploads and downloads, echoes upgraded
/// connections, and can be stopped (all its connections dropped).
/// `GET /healthz` answers 200 while `healthy` is set, 503 otherwise, and
/// counts the answers in `probes` (passed, failed; not in `requests`).
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub ids: Arc<Mutex<HashMap<String, u32>>>,
    pub requests: Arc<AtomicU64>,
    pub healthy: Arc<AtomicBool>,
    pub probes: Arc<[AtomicU64; 2]>,
    stop: watch::Sender<bool>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ids: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let requests = Arc::new(AtomicU64::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let probes: Arc<[AtomicU64; 2]> = Arc::default();
        let (stop, stop_rx) = watch::channel(false);
        let (n, i, r) = (name.to_string(), ids.clone(), requests.clone());
        let (h, p) = (healthy.clone(), probes.clone());
        tokio::spawn(async move {
            let mut stop_accept = stop_rx.clone();
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop_accept.wait_for(|v| *v) => return,
                    a = listener.accept() => match a { Ok(x) => x, Err(_) => continue },
                };
                let (n, i, r) = (n.clone(), i.clone(), r.clone());
                let (h, p) = (h.clone(), p.clone());
                let mut stop_conn = stop_rx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let health = (h.clone(), p.clone());
                        handle(n.clone(), i.clone(), r.clone(), health, req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = stop_conn.wait_for(|v| *v) => {}
                    }
                });
            }
        });
        Backend {
            name: name.into(),
            addr,
            ids,
            requests,
            healthy,
            probes,
            stop,
        }
    }

    /// Makes `GET /healthz` answer 200 (true) or 503 (false).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Health probes answered 200 so far.
    pub fn probes_passed(&self) -> u64 {
        self.probes[0].load(Ordering::Relaxed)
    }

    /// Health probes answered 503 so far.
    pub fn probes_failed(&self) -> u64 {
        self.probes[1].load(Ordering::Relaxed)
    }

    /// Stops listening and drops every connection, like a crashed process.
    pub fn stop(&self) {
        self.stop.send_replace(true);
        // Let the accept loop and connection tasks see it and close.
        std::thread::sleep(Duration::from_millis(50));
    }

    pub fn flag(&self) -> String {
        format!("{}={}", self.name, self.addr)
    }

    pub fn count(&self, id: &str) -> u32 {
        self.ids.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

async fn handle(
    name: String,
    ids: Arc<Mutex<HashMap<String, u32>>>,
    requests: Arc<AtomicU64>,
    (healthy, probes): (Arc<AtomicBool>, Arc<[AtomicU64; 2]>),
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    if req.uri().path() == "/healthz" {
        let mut r = Response::new(TestBody::Full(Full::new(Bytes::from_static(b"ok"))));
        if healthy.load(Ordering::Relaxed) {
            probes[0].fetch_add(1, Ordering::Relaxed);
        } else {
            probes[1].fetch_add(1, Ordering::Relaxed);
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        return Ok(r);
    }
    requests.fetch_add(1, Ordering::Relaxed);
    if let Some(id) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        *ids.lock().unwrap().entry(id.to_string()).or_default() += 1;
    }
    let cookie_seen = req
        .headers()
        .get_all("cookie")
        .iter()
        .any(|v| v.to_str().unwrap_or("").contains("sticky="));
    let path = req.uri().path().to_string();
    let mut resp = match path.as_str() {
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(f) = body.frame().await {
                if let Ok(d) = f.map(|f| f.into_data()) {
                    n += d.map(|d| d.len() as u64).unwrap_or(0);
                } else {
                    break;
                }
            }
            Response::new(TestBody::Full(Full::new(Bytes::from(n.to_string()))))
        }
        "/download" => {
            let n: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Response::new(TestBody::Gen(Generated { left: n }))
        }
        "/hang-up" => {
            // Reads the request, then drops the connection without answering.
            let _ = req.into_body().collect().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("hang up");
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(800)).await;
            Response::new(TestBody::Full(Full::new(Bytes::from(name.clone()))))
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            let n = name.clone();
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                loop {
                    let Ok(k) = io.read(&mut buf).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    let mut out = format!("{n}:").into_bytes();
                    out.extend_from_slice(&buf[..k]);
                    if io.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
            let mut r = Response::new(TestBody::Full(Full::new(Bytes::new())));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r
        }
        _ => {
            let _ = req.into_body().collect().await;
            Response::new(TestBody::Full(Full::new(Bytes::from(name.clone()))))
        }
    };
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    resp.headers_mut().insert(
        "x-saw-sticky-cookie",
        if cookie_seen { "yes" } else { "no" }.parse().unwrap(),
    );
    Ok(resp)
}

/// One exchange's result.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn backend(&self) -> &str {
        self.headers
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    /// The `sticky` cookie's `name=value`, if set.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_string())
    }
}

/// An admin API exchange: `METHOD path` on `admin`, the body as text.
pub async fn admin(admin: SocketAddr, method: &str, path: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", admin.to_string())
        .body(TestBody::Full(Full::default()))
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), send(admin, req))
        .await
        .expect("the admin API answers within 10 s")
        .unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// `GET /backends` on the admin listener, as JSON.
pub async fn admin_backends(admin_addr: SocketAddr) -> Vec<serde_json::Value> {
    let (status, body) = admin(admin_addr, "GET", "/backends").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The field `field` of backend `id` in `GET /backends`.
pub async fn admin_field(admin_addr: SocketAddr, id: &str, field: &str) -> Option<String> {
    admin_backends(admin_addr)
        .await
        .iter()
        .find(|b| b["id"] == id)
        .map(|b| match &b[field] {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        })
}

/// Polls `check` every 20 ms until it holds, failing after `secs` seconds
/// with `what` (never a fixed sleep: as fast as the system allows).
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends one request on a fresh connection.
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Result<Reply, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`, its driver
/// spawned.
pub async fn h2c(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (s, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    s
}

/// GET `path` with an optional cookie header.
pub async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    let mut b = Request::get(path).header("host", "app.test");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    send(addr, b.body(TestBody::Full(Full::default())).unwrap())
        .await
        .unwrap()
}

/// A client with a one-cookie jar.
pub struct Jar {
    pub cookie: Option<String>,
}

impl Jar {
    pub fn new() -> Self {
        Jar { cookie: None }
    }
    pub async fn get(&mut self, addr: SocketAddr, path: &str) -> Reply {
        let r = get(addr, path, self.cookie.as_deref()).await;
        if let Some(c) = r.set_cookie("sticky") {
            self.cookie = Some(c);
        }
        r
    }
}

/// A free loopback port (bound, then released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Port 0 on loopback, for an in-process gateway: it binds the port itself
/// and reports it (`Running::addr`, `admin_addr`), so no test running
/// alongside can take it between picking and binding, as it can a
/// [`free_addr`] (a cold CI run met `AddrInUse` that way).
#[allow(dead_code)]
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A scratch directory for this test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sticky-gw-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The gateway binary as a child process, killed (by its pid) on drop.
pub struct GatewayProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl GatewayProcess {
    /// Starts `sticky-gateway ARGS --listen <free port>` and waits until it
    /// listens. A port picked free can be taken by a test running alongside
    /// before the gateway binds it: a gateway that exits before listening
    /// is started again on another port, twice at most.
    pub async fn start(args: &[&str], log: PathBuf) -> Self {
        for _ in 0..2 {
            if let Ok(me) = Self::try_start_at(free_addr(), args, log.clone()).await {
                return me;
            }
        }
        Self::start_at(free_addr(), args, log).await
    }

    pub async fn start_at(addr: SocketAddr, args: &[&str], log: PathBuf) -> Self {
        match Self::try_start_at(addr, args, log).await {
            Ok(me) => me,
            Err(logs) => panic!("gateway did not start: {logs}"),
        }
    }

    /// Starts the gateway on `addr` and waits until it says it listens
    /// (logged once every listener is bound); its logs if it exits first or
    /// does not listen within 10 s. Not "until `addr` accepts": another
    /// test's gateway that took the port first would accept too, and this
    /// test would talk to it.
    async fn try_start_at(addr: SocketAddr, args: &[&str], log: PathBuf) -> Result<Self, String> {
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sticky-gateway"))
            .args(args)
            .args(["--listen", &addr.to_string(), "--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut me = GatewayProcess { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !me
            .logs()
            .contains("\"message\":\"sticky-gateway listening\"")
        {
            if Instant::now() >= deadline || me.child.try_wait().unwrap().is_some() {
                // Dropping `me` stops the process if it still runs.
                return Err(me.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(me)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Access-log lines as JSON objects (client, path, status, backend,
    /// outcome, reason, ...).
    pub fn access(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter(|l| l.contains("\"target\":\"access\""))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Access-log lines (JSON objects) with `outcome`.
    pub fn outcomes(&self) -> Vec<String> {
        self.logs()
            .lines()
            .filter(|l| l.contains("\"target\":\"access\""))
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                Some(v.get("outcome")?.as_str()?.to_string())
            })
            .collect()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A key file with one fresh key.
pub fn key_file(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_sticky-gateway"))
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success());
    let p = dir.join("keys");
    std::fs::write(&p, &out.stdout).unwrap();
    p
}

/// An in-process gateway over `backends` (one catch-all route, no access
/// log), after `tune` has adjusted its configuration.
#[allow(dead_code)]
pub async fn in_process_gateway(
    backends: &[&Backend],
    tune: impl FnOnce(&mut sticky_gateway::GatewayConfig),
) -> sticky_gateway::run::Running {
    let named: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (&*b.name, b.addr)).collect();
    gateway_over(&named, tune).await
}

/// An in-process gateway over backends given by name and address (raw-socket
/// backends of the wire tests), one catch-all route, no access log.
#[allow(dead_code)]
pub async fn gateway_over(
    backends: &[(&str, SocketAddr)],
    tune: impl FnOnce(&mut sticky_gateway::GatewayConfig),
) -> sticky_gateway::run::Running {
    let backends = backends
        .iter()
        .map(|(name, addr)| sticky_gateway::config::BackendConfig {
            name: name.to_string(),
            address: addr.to_string(),
            weight: 1,
        })
        .collect();
    let mut config = sticky_gateway::GatewayConfig::new(
        any_port(),
        vec![sticky_gateway::config::RouteConfig::catch_all(backends)],
    );
    config.access_log = false;
    tune(&mut config);
    sticky_gateway::run::start(config, tower_sticky::token::KeyRing::generate(), None)
        .await
        .unwrap()
}

/// The `[[routes.backends]]` tables naming `backends` by name and address,
/// to append after a `[[routes]]` table in a test's config file.
#[allow(dead_code)]
pub fn backends_toml<'a>(backends: impl IntoIterator<Item = &'a Backend>) -> String {
    backends
        .into_iter()
        .map(|b| {
            format!(
                "[[routes.backends]]\nname = \"{}\"\naddress = \"{}\"\n",
                b.name, b.addr
            )
        })
        .collect()
}

/// Runs the binary with `args`, bounded, and returns its status and stderr.
pub fn run_bounded(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sticky-gateway"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sticky-gateway {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
