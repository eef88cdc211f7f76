//! Raw-socket backends on 127.0.0.1 for the client's regression tests: each
//! accepted connection is handed to a script that reads and writes exact
//! bytes, so a test controls every byte the client sees.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use sticky_proxy::{Backend, Error, Pool, PoolSettings};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Every test bounds its waits with this.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A scripted backend: its address, how many connections it accepted, and
/// every byte it received, per connection.
#[derive(Clone)]
pub struct Raw {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Raw {
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Everything received on every connection, concatenated.
    pub fn all_received(&self) -> Vec<u8> {
        self.received.lock().unwrap().concat()
    }
}

/// A connection of a scripted backend: reads record what arrived.
pub struct Conn {
    pub s: TcpStream,
    pub index: usize,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
    pub pending: Vec<u8>,
}

impl Conn {
    /// Reads until `pat` has arrived; returns everything up to and
    /// including it (what follows stays pending). `None`: closed first.
    pub async fn read_until(&mut self, pat: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.pending.windows(pat.len()).position(|w| w == pat) {
                let rest = self.pending.split_off(i + pat.len());
                return Some(std::mem::replace(&mut self.pending, rest));
            }
            let mut buf = [0u8; 16 * 1024];
            let n = match self.s.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            self.log.lock().unwrap()[self.index].extend_from_slice(&buf[..n]);
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads a request head.
    pub async fn head(&mut self) -> Option<Vec<u8>> {
        self.read_until(b"\r\n\r\n").await
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = tokio::io::AsyncWriteExt::write_all(&mut self.s, bytes).await;
    }
}

/// Starts a backend running `script` on every accepted connection.
pub async fn raw<F, Fut>(script: F) -> Raw
where
    F: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw = Raw {
        addr: listener.local_addr().unwrap(),
        accepted: Arc::new(AtomicUsize::new(0)),
        received: Arc::new(Mutex::new(Vec::new())),
    };
    let r = raw.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let index = {
                let mut log = r.received.lock().unwrap();
                log.push(Vec::new());
                log.len() - 1
            };
            r.accepted.fetch_add(1, Ordering::SeqCst);
            let conn = Conn {
                s,
                index,
                log: r.received.clone(),
                pending: Vec::new(),
            };
            tokio::spawn(script(conn));
        }
    });
    raw
}

/// A backend that answers every request on a connection with `answer`.
pub async fn answering(answer: &'static [u8]) -> Raw {
    raw(move |mut c| async move {
        while c.head().await.is_some() {
            c.write(answer).await;
        }
    })
    .await
}

pub fn client(addr: SocketAddr, idle_timeout: Duration) -> Backend {
    let settings = PoolSettings {
        connect_timeout: Duration::from_secs(2),
        max_idle: 8,
        idle_timeout,
    };
    Backend::new(Arc::new(Pool::new("raw", &addr.to_string(), settings)))
}

/// What came back: status, headers, body bytes, trailers.
#[derive(Debug)]
pub struct Got {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub extensions: http::Extensions,
    pub body: Result<Vec<u8>, std::io::Error>,
    pub trailers: Option<HeaderMap>,
}

/// Sends `req` and reads the whole answer.
pub async fn send<B>(b: &Backend, req: Request<B>) -> Result<Got, Error>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let body = std::pin::pin!(body);
    let resp = tokio::time::timeout(LIMIT, b.send(&parts, body))
        .await
        .expect("answered in time")?;
    let (parts, mut body) = resp.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    let mut failed = None;
    while let Some(f) = tokio::time::timeout(LIMIT, body.frame())
        .await
        .expect("body in time")
    {
        match f {
            Ok(f) => match f.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            },
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        extensions: parts.extensions,
        body: failed.map_or(Ok(data), Err),
        trailers,
    })
}

pub fn get(path: &str) -> Request<http_body_util::Empty<Bytes>> {
    Request::get(path)
        .header("host", "app.test")
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// A body of `len` bytes made as it is read (never held whole), in
/// 64 KiB chunks; counts the bytes handed out.
pub struct Lazy {
    pub left: u64,
    pub taken: Arc<AtomicUsize>,
}

impl Body for Lazy {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len() as u64) as usize;
        self.left -= n as u64;
        self.taken.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }
}

/// A body of these frames, in order.
pub struct Frames(pub std::collections::VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}
