//! Use story 4, a pingora proxy: sealed-cookie session affinity in a
//! `ProxyHttp` of your own, over pingora's load balancer and health checks.
//!
//! ```text
//! cargo run --release -p sticky-examples --example pingora_gateway -- \
//!     --listen 127.0.0.1:8086 --backend b1=127.0.0.1:9001 --backend b2=127.0.0.1:9002 \
//!     --key-file KEYS [--threads 1] [--failover redistribute|temporary|strict] [--plain]
//! ```
//!
//! KEYS is a key file in sticky-gateway's format (`sticky-gateway keygen > KEYS`):
//! one base64 key per line, the sealing key first. Backends are pinned by
//! NAME, exactly as sticky-gateway pins them, so a token issued by either
//! routes identically on the other. A TCP health check probes every backend
//! each second. Prints one line once it listens; stops on SIGTERM or Ctrl-C.
//!
//! `--plain` runs the same server without pingora-sticky: the same
//! `LoadBalancer<RoundRobin>` over the same backends, health check and threads
//! (built with pingora's own `LoadBalancer::try_from_iter`), but a `ProxyHttp` whose
//! `upstream_peer` only picks `lb.select(b"", 256)` round robin: no cookie read or
//! stripped, no Set-Cookie. It is the baseline that shows what the sticky helpers
//! cost on top of pingora itself (bench-peers' `pingora-rr` scenario). The key file
//! is still read and checked, so the command line is the same in both modes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_load_balancing::health_check::TcpHealthCheck;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::LoadBalancer;
use pingora_proxy::{ProxyHttp, Session};
use pingora_sticky::{named_backend, static_load_balancer, StickyBalancer, StickyCtx};
use tower_sticky::token::KeyRing;
use tower_sticky::{FailoverPolicy, StickyConfig};

/// Command line (fixed: other tools drive the example this way).
#[derive(Parser, Debug)]
#[command(about = "A pingora reverse proxy with sealed-cookie session affinity")]
struct Args {
    /// Address to listen on, HOST:PORT.
    #[arg(long)]
    listen: String,
    /// A backend, NAME=HOST:PORT; repeat for each. Sessions are pinned to the NAME.
    #[arg(long = "backend", value_name = "NAME=HOST:PORT", required = true)]
    backends: Vec<String>,
    /// Key file in sticky-gateway's format (`sticky-gateway keygen`).
    #[arg(long)]
    key_file: std::path::PathBuf,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// What to do when a session's backend is down.
    #[arg(long, default_value = "redistribute", value_parser = ["redistribute", "temporary", "strict"])]
    failover: String,
    /// Plain pingora round robin, no pingora-sticky helper: no cookie read or
    /// stripped, no Set-Cookie (a baseline for measuring the helpers).
    #[arg(long)]
    plain: bool,
}

/// The proxy: each hook calls the sticky helper of the same name.
struct Gateway(StickyBalancer<RoundRobin>);

#[async_trait]
impl ProxyHttp for Gateway {
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
        self.0.response_filter(resp, ctx)
    }

    async fn logging(&self, _: &mut Session, e: Option<&Error>, ctx: &mut StickyCtx) {
        let outcome = self.0.logging(e, ctx);
        // Errors only: a line per request would cost more than the proxying.
        if let Some(e) = e {
            let outcome = outcome.map_or_else(|| "-".to_string(), |o| o.to_string());
            eprintln!(
                "pingora_gateway: {outcome} backend={} error: {e}",
                ctx.backend().unwrap_or("-")
            );
        }
    }
}

/// The `--plain` proxy: pingora's round robin and nothing else (no session
/// affinity), to measure pingora itself under the same load.
struct PlainGateway(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for PlainGateway {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        let backend = self
            .0
            .select(b"", 256)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no healthy backend"))?;
        Ok(Box::new(HttpPeer::new(backend.addr, false, String::new())))
    }

    async fn logging(&self, _: &mut Session, e: Option<&Error>, _: &mut ()) {
        // Errors only, as in the sticky proxy.
        if let Some(e) = e {
            eprintln!("pingora_gateway (plain): error: {e}");
        }
    }
}

/// Adds to `server` the proxy `make` builds over `lb`, listening on
/// `listen`, and `lb`'s TCP health check (every second) as a background
/// service: the same for both modes, so that they differ in the proxy only.
fn add_proxy<P>(
    server: &mut Server,
    listen: &str,
    mut lb: LoadBalancer<RoundRobin>,
    make: impl FnOnce(Arc<LoadBalancer<RoundRobin>>) -> P,
) where
    P: ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    lb.set_health_check(TcpHealthCheck::new());
    lb.health_check_frequency = Some(Duration::from_secs(1));
    let health = background_service("health check", lb);
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, make(health.task()));
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.add_service(health);
}

/// Prints one line once the listener answers.
struct AnnounceListening {
    addr: String,
    backends: String,
}

#[async_trait]
impl BackgroundService for AnnounceListening {
    async fn start(&self, _shutdown: ShutdownWatch) {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(&self.addr).await.is_ok() {
                println!(
                    "pingora_gateway listening on http://{} (backends: {})",
                    self.addr, self.backends
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!("pingora_gateway: {} did not start listening", self.addr);
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pingora_gateway: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> std::result::Result<(), String> {
    let text = std::fs::read_to_string(&args.key_file)
        .map_err(|e| format!("--key-file {}: {e}", args.key_file.display()))?;
    let keys = KeyRing::from_lines(&text)
        .map_err(|e| format!("--key-file {}: {e}", args.key_file.display()))?;
    let mut backends = Vec::new();
    for flag in &args.backends {
        let (name, addr) = flag
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| format!("--backend {flag:?} is not NAME=HOST:PORT"))?;
        backends.push(named_backend(name, addr).map_err(|e| format!("--backend {flag:?}: {e}"))?);
    }
    let failover = match args.failover.as_str() {
        "temporary" => FailoverPolicy::Temporary,
        "strict" => FailoverPolicy::Strict,
        _ => FailoverPolicy::Redistribute,
    };

    let conf = ServerConf {
        threads: args.threads.max(1),
        // SIGTERM stops at once: no grace period for a drain we do not do here.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    if args.plain {
        // pingora's own constructor: the plain proxy uses no pingora-sticky code.
        let addrs: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
        let lb = LoadBalancer::<RoundRobin>::try_from_iter(&addrs)
            .map_err(|e| format!("--backend: {e}"))?;
        add_proxy(&mut server, &args.listen, lb, PlainGateway);
    } else {
        let config = StickyConfig::new(keys).failover(failover);
        add_proxy(
            &mut server,
            &args.listen,
            static_load_balancer::<RoundRobin>(backends),
            |lb| Gateway(StickyBalancer::new(lb, config)),
        );
    }
    server.add_service(background_service(
        "announce",
        AnnounceListening {
            addr: args.listen.clone(),
            backends: args.backends.join(" "),
        },
    ));
    server.run(RunArgs::default());
    Ok(())
}
