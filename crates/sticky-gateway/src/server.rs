//! The client side: the accept loop and one task per connection, speaking
//! HTTP/1.1 or h2c (prior knowledge) on the same port, with header-read and
//! idle timeouts, a head size limit (431 beyond it) and graceful shutdown.
//!
//! TLS listeners ([`crate::tls`]) hand their decrypted streams to the same
//! connection handling.
//!
//! Both timeouts are kept by one small watchdog task per connection that
//! wakes once per period and reads a few counters the connection bumps as
//! it goes (`ConnState`), rather than by timers armed on every request
//! (hyper's header-read timer allocated and registered one per request).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::proxy::body::GatewayBody;
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

pub(crate) fn builder(s: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // Kept by the connection's watchdog instead (module docs).
        .header_read_timeout(None)
        .max_buf_size(s.max_header_bytes.max(8192))
        // One flattened write per response instead of a writev of head and
        // body: measured 0.7 us less proxy CPU per request on small
        // responses (BENCHMARKS.md); large bodies still stream in frames.
        .writev(false)
        // A request in progress is not watched for the client's EOF (as
        // HAProxy without `abortonclose`): hyper's check read into a fresh
        // 8 KiB buffer on every request (~1,400 instructions, one malloc),
        // and a client may half-close after sending its request. A client
        // gone for good is noticed when its response is written.
        .half_close(true)
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
            serve_connection(stream, ConnInfo::new(peer), gw, builder, settings).await;
        });
    }
}

/// Serves one client connection (plain TCP, or TLS once its handshake is
/// done) until it closes, idles out or the gateway shuts down.
pub(crate) async fn serve_connection<S>(
    stream: S,
    info: ConnInfo,
    gw: Arc<Gateway>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    settings: ServerSettings,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = info.peer;
    let info = Arc::new(info);
    let state = Arc::new(ConnState::default());
    let io = TokioIo::new(Tracked {
        inner: stream,
        state: state.clone(),
    });
    let svc_gw = gw.clone();
    let svc_state = state.clone();
    let svc = service_fn(move |req: http::Request<Incoming>| {
        let busy = Busy::begin(&svc_state, req.version() == http::Version::HTTP_2);
        let (gw, info) = (svc_gw.clone(), info.clone());
        // `handle`'s future (a few KiB) is made inside this one, on its first
        // poll, rather than made here and moved in.
        async move {
            let response = handle(gw, info, req).await?;
            Ok::<_, std::convert::Infallible>(
                response.map(|inner| ServedBody { inner, _busy: busy }),
            )
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    // The connection's own task polls one cheap signal beside the
    // connection on every wake-up, not timers.
    let close = Arc::new(tokio::sync::Notify::new());
    let watchdog = tokio::spawn(watch_connection(
        gw.clone(),
        state.clone(),
        settings,
        close.clone(),
    ));
    let closing = close.notified();
    tokio::pin!(closing);
    let r = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        _ = &mut closing => {
            if state.cut.load(Relaxed) {
                // No request in progress: dropping the connection closes it
                // (hyper's graceful close would wait for a head that may never
                // complete).
                Ok(())
            } else {
                conn.as_mut().graceful_shutdown();
                conn.as_mut().await
            }
        }
    };
    watchdog.abort();
    if let Err(e) = r {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// What one client connection has done, counted by its own task and read
/// by its watchdog.
#[derive(Debug, Default)]
struct ConnState {
    /// Reads that returned bytes (or the end of the stream).
    reads: AtomicU64,
    /// Writes that took bytes.
    writes: AtomicU64,
    /// Request heads received.
    heads: AtomicU64,
    /// Requests whose response has not ended yet.
    busy: AtomicU64,
    /// The connection speaks HTTP/2 (its frames are not request heads).
    h2: AtomicBool,
    /// Set by the watchdog: close at once, no request is in progress.
    cut: AtomicBool,
}

/// Counts a request as busy until its response body ends or is dropped.
#[derive(Debug)]
struct Busy(Arc<ConnState>);

impl Busy {
    fn begin(state: &Arc<ConnState>, h2: bool) -> Self {
        state.heads.fetch_add(1, Relaxed);
        state.busy.fetch_add(1, Relaxed);
        if h2 {
            state.h2.store(true, Relaxed);
        }
        Busy(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
    }
}

/// A response body that keeps its request counted as busy.
#[derive(Debug)]
struct ServedBody {
    inner: GatewayBody,
    _busy: Busy,
}

impl Body for ServedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Signals `close` when the gateway shuts down; when a whole idle period
/// passes with no byte read or written; or when a request head has been
/// arriving for the header-read timeout (bytes read, no request in
/// progress, no new head since: a slow or stalled head). On shutdown, or
/// idle with a request in progress, the connection finishes that request
/// and closes; otherwise it is cut at once. Each limit is enforced within
/// one check period (the smaller of the two) past it.
async fn watch_connection(
    gw: Arc<Gateway>,
    state: Arc<ConnState>,
    settings: ServerSettings,
    close: Arc<tokio::sync::Notify>,
) {
    let (idle, header_read) = (settings.idle_timeout, settings.header_read_timeout);
    let period = idle.min(header_read);
    let stop = gw.shutdown.triggered();
    tokio::pin!(stop);
    let snapshot = |s: &ConnState| {
        (
            s.reads.load(Relaxed),
            s.writes.load(Relaxed),
            s.heads.load(Relaxed),
        )
    };
    let mut last = snapshot(&state);
    let (mut quiet_for, mut head_for) = (Duration::ZERO, Duration::ZERO);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(period) => {}
        }
        let now = snapshot(&state);
        let (read, wrote, new_head) = (now.0 != last.0, now.1 != last.1, now.2 != last.2);
        quiet_for = if read || wrote {
            Duration::ZERO
        } else {
            quiet_for + period
        };
        let head_arriving = !new_head
            && state.busy.load(Relaxed) == 0
            && !state.h2.load(Relaxed)
            && (read || head_for > Duration::ZERO);
        head_for = if head_arriving {
            head_for + period
        } else {
            Duration::ZERO
        };
        if quiet_for >= idle {
            state.cut.store(state.busy.load(Relaxed) == 0, Relaxed);
            break;
        }
        if head_for >= header_read {
            tracing::debug!("request head not received within the header-read timeout");
            state.cut.store(true, Relaxed);
            break;
        }
        last = now;
    }
    close.notify_one();
}

/// A stream that counts reads and writes, for the watchdog.
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.state.reads.fetch_add(1, Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.state.writes.fetch_add(1, Relaxed);
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
            self.state.writes.fetch_add(1, Relaxed);
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
