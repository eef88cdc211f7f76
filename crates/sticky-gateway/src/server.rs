//! The client side: the accept loop and one task per connection, speaking
//! HTTP/1.1 or h2c (prior knowledge) on the same port, with header-read and
//! idle timeouts, a head size limit (431 beyond it) and graceful shutdown.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::proxy::service::{handle, ConnInfo};

/// Client-side connection settings.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// Time allowed to read a request head.
    pub header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
}

impl ServerSettings {
    /// The settings of a configuration.
    pub fn of(c: &GatewayConfig) -> Self {
        Self {
            header_read_timeout: c.timeouts.header_read,
            idle_timeout: c.timeouts.idle,
            max_header_bytes: c.limits.max_header_bytes,
            max_headers: c.limits.max_headers,
        }
    }
}

/// hyper's own limit on request header fields.
const DEFAULT_MAX_HEADERS: usize = 100;

fn builder(s: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_bytes.max(8192))
        // One flattened write per response instead of a writev of head and
        // body: measured 0.7 us less proxy CPU per request on small
        // responses (BENCHMARKS.md); large bodies still stream in frames.
        .writev(false)
        .keep_alive(true);
    if s.max_headers != DEFAULT_MAX_HEADERS {
        // Only when it differs: with an explicit limit hyper initialises a
        // header array on every request (1,300 instructions per request
        // measured); its default limit uses an uninitialised one.
        b.http1().max_headers(s.max_headers);
    }
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(s.max_header_bytes.min(u32::MAX as usize) as u32);
    b
}

/// Accepts connections until shutdown, then returns (connections already
/// open finish their current request; see [`crate::shutdown`]).
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>, settings: ServerSettings) {
    let builder = Arc::new(builder(&settings));
    let stop = gw.shutdown.triggered();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let _work = gw.shutdown.enter();
            serve_connection(stream, peer, gw, builder, settings.idle_timeout).await;
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    gw: Arc<Gateway>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    idle_timeout: Duration,
) {
    let info = Arc::new(ConnInfo::new(peer));
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let svc_gw = gw.clone();
    let svc = service_fn(move |req| handle(svc_gw.clone(), info.clone(), req));
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    // Shutdown and the idle timeout are watched by a small task of their own,
    // which wakes once per idle period; the connection's own task then polls
    // one cheap signal beside the connection, not timers, on every wake-up.
    let close = Arc::new(tokio::sync::Notify::new());
    let watchdog = tokio::spawn(watch_connection(
        gw.clone(),
        activity,
        idle_timeout,
        close.clone(),
    ));
    let closing = close.notified();
    tokio::pin!(closing);
    let r = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        _ = &mut closing => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    watchdog.abort();
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Signals `close` when the gateway shuts down, or when a whole idle period
/// passes with no byte read or written on the connection. The connection
/// then finishes the request in progress, if any, and closes.
async fn watch_connection(
    gw: Arc<Gateway>,
    activity: Arc<AtomicU64>,
    idle_timeout: Duration,
    close: Arc<tokio::sync::Notify>,
) {
    let stop = gw.shutdown.triggered();
    tokio::pin!(stop);
    let mut last = activity.load(Relaxed);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(idle_timeout) => {
                let now = activity.load(Relaxed);
                if now == last {
                    break;
                }
                last = now;
            }
        }
    }
    close.notify_one();
}

/// A stream that counts reads and writes, for the idle timeout.
struct Tracked {
    inner: TcpStream,
    activity: Arc<AtomicU64>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.activity.fetch_add(1, Relaxed);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.activity.fetch_add(1, Relaxed);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.activity.fetch_add(1, Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
