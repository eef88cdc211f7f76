//! Test harness: HTTP/1.1 backends on loopback (std threads), a pingora
//! server running our test `ProxyHttp` in-process, and a raw HTTP/1.1 client.
//! Everything listens on 127.0.0.1 only, every wait is bounded, and every
//! thread started here is stopped by the handle that started it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora_core::services::background::GenBackgroundService;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_proxy::{ProxyHttp, Session};
use pingora_sticky::{StickyBalancer, StickyCtx};

/// How long any single wait in these tests may take.
pub const BOUND: Duration = Duration::from_secs(10);

/// A backend on 127.0.0.1 that answers every request with its name, and the
/// `Cookie` headers it received in `x-seen-cookie`; `GET /health` (what the
/// tests' pingora health check asks) answers 200 or 503 as the test sets,
/// and is not counted in `hits`.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestBackend {
    pub fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(Health::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (n, h, hc, s) = (name.to_string(), hits.clone(), health.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            for stream in listener.incoming() {
                if s.load(SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (n, h, hc, s) = (n.clone(), h.clone(), hc.clone(), s.clone());
                conns.push(std::thread::spawn(move || serve(stream, &n, &h, &hc, &s)));
            }
            // The listener drops here: the port refuses from now on.
            drop(listener);
            for c in conns {
                let _ = c.join();
            }
        });
        Self {
            name: name.to_string(),
            addr,
            hits,
            health,
            stop,
            thread: Some(thread),
        }
    }

    /// What `GET /health` answers from now on: 200 if `healthy`, else 503.
    /// Every other request is still served.
    pub fn set_healthy(&self, healthy: bool) {
        self.health.unhealthy.store(!healthy, SeqCst);
    }

    /// How many `GET /health` requests it has answered.
    pub fn health_checks(&self) -> usize {
        self.health.checks.load(SeqCst)
    }

    /// Stops accepting and closes every connection (the port then refuses).
    pub fn stop(&mut self) {
        self.stop.store(true, SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(SeqCst)
    }
}

/// A backend's answer to `GET /health`, and how often it was asked.
#[derive(Default)]
struct Health {
    unhealthy: AtomicBool,
    checks: AtomicUsize,
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves keep-alive HTTP/1.1 GETs on one connection until the peer closes
/// it or the backend stops.
fn serve(stream: TcpStream, name: &str, hits: &AtomicUsize, health: &Health, stop: &AtomicBool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let started = Instant::now();
    let mut line = String::new();
    'conn: loop {
        let mut cookies = Vec::new();
        let mut first = true;
        let mut slow = false;
        let mut probe = false;
        loop {
            if stop.load(SeqCst) || started.elapsed() > Duration::from_secs(60) {
                break 'conn;
            }
            match r.read_line(&mut line) {
                Ok(0) => break 'conn,
                Ok(_) => {}
                // Timed out: what came so far stays in `line`; poll `stop`.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => break 'conn,
            }
            if !line.ends_with('\n') {
                continue;
            }
            let l = line.trim_end().to_string();
            line.clear();
            if first {
                first = false;
                slow = l.contains("/slow");
                probe = l.starts_with("GET /health ");
                continue;
            }
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("cookie") {
                    cookies.push(v.trim().to_string());
                }
            }
        }
        if probe {
            health.checks.fetch_add(1, SeqCst);
            let status = if health.unhealthy.load(SeqCst) {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            if w.write_all(resp.as_bytes()).is_err() {
                break;
            }
            continue;
        }
        hits.fetch_add(1, SeqCst);
        if slow {
            // GET /slow: answers late, for clients that hang up first.
            std::thread::sleep(Duration::from_millis(300));
        }
        let body = name;
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-seen-cookie: {}\r\nset-cookie: app=1\r\n\r\n{}",
            body.len(),
            cookies.join(" | "),
            body
        );
        if w.write_all(resp.as_bytes()).is_err() {
            break;
        }
    }
}

/// The test's `ProxyHttp`: every hook calls the helper of the same name.
pub struct TestProxy<S: BackendSelection>(pub StickyBalancer<S>);

#[async_trait]
impl<S> ProxyHttp for TestProxy<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    type CTX = StickyCtx;

    fn new_ctx(&self) -> StickyCtx {
        self.0.new_ctx()
    }

    async fn upstream_peer(&self, s: &mut Session, ctx: &mut StickyCtx) -> Result<Box<HttpPeer>> {
        self.0.upstream_peer(s, ctx)
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut StickyCtx,
    ) -> Result<()> {
        self.0.upstream_request_filter(req, ctx)
    }

    fn fail_to_connect(
        &self,
        _: &mut Session,
        _: &HttpPeer,
        ctx: &mut StickyCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.0.fail_to_connect(ctx, e)
    }

    async fn response_filter(
        &self,
        _: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut StickyCtx,
    ) -> Result<()> {
        self.0.response_filter(resp, ctx)?;
        // For the tests: what the helpers decided, on the response.
        if let Some(o) = ctx.outcome() {
            resp.insert_header("x-sticky-outcome", o.to_string())?;
        }
        Ok(())
    }

    async fn logging(&self, _: &mut Session, e: Option<&Error>, ctx: &mut StickyCtx) {
        self.0.logging(e, ctx);
    }
}

/// Stops the in-process pingora server when told.
struct StopSignal(Mutex<Option<tokio::sync::oneshot::Receiver<()>>>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        let rx = self.0.lock().unwrap().take();
        if let Some(rx) = rx {
            let _ = rx.await;
        }
        ShutdownSignal::FastShutdown
    }
}

/// A pingora server on 127.0.0.1 running a [`TestProxy`].
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start<S>(sticky: StickyBalancer<S>) -> Self
    where
        S: BackendSelection + Send + Sync + 'static,
        S::Iter: BackendIter,
    {
        Self::start_inner(sticky, false)
    }

    /// Also runs the balancer's `LoadBalancer` as a pingora background
    /// service, as a pingora application does: discovery once, then its
    /// health check every `health_check_frequency`.
    pub fn start_with_health_checks<S>(sticky: StickyBalancer<S>) -> Self
    where
        S: BackendSelection + Send + Sync + 'static,
        S::Iter: BackendIter,
    {
        Self::start_inner(sticky, true)
    }

    fn start_inner<S>(sticky: StickyBalancer<S>, health_checks: bool) -> Self
    where
        S: BackendSelection + Send + Sync + 'static,
        S::Iter: BackendIter,
    {
        let addr = free_port();
        let conf = ServerConf {
            threads: 1,
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(1),
            ..Default::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();
        if health_checks {
            server.add_service(GenBackgroundService::new(
                "health check".to_string(),
                sticky.load_balancer().clone(),
            ));
        }
        let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, TestProxy(sticky));
        proxy.add_tcp(&addr.to_string());
        server.add_service(proxy);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(StopSignal(Mutex::new(Some(rx)))),
            })
        });
        let deadline = Instant::now() + BOUND;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pingora did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One response, as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Our cookie's `name=value`, from `Set-Cookie`, if one was issued.
    pub fn sticky_cookie(&self) -> Option<String> {
        self.all("set-cookie")
            .into_iter()
            .find(|v| v.starts_with("sticky="))
            .map(|v| v.split(';').next().unwrap().to_string())
    }
}

/// Sends GET /slow through `addr` and hangs up before the answer.
pub fn hang_up(addr: SocketAddr, headers: &[(&str, &str)]) {
    let mut s = TcpStream::connect_timeout(&addr, BOUND).unwrap();
    let mut req = String::from("GET /slow HTTP/1.1\r\nHost: test\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(s);
}

/// GET / through `addr` with extra header lines; `Connection: close`.
pub fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, BOUND).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    let mut req = String::from("GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}
