//! One keep-alive HTTP/1.1 connection to a backend, driven by the task of
//! the request using it: the head and body are written and the answer read
//! in place, with no connection task, channel or wake-up in between (see
//! [`codec`](crate::codec) for why).
//!
//! Generic over the byte stream so that the same code runs over TCP in
//! production and over an in-memory pipe in the differential harness.

use std::io;
use std::task::{Context, Poll};

use crate::stream::BackendStream;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// The read buffer's size: a whole small answer arrives in one read, and a
/// read that fills the buffer is rare.
const READ_SPACE: usize = 8 * 1024;
/// Below this much free space the buffer is renewed before a read. Renewing
/// on every read allocated once per request (the previous answer's bytes
/// still shared with the client side); this way, once per few dozen.
const MIN_READ_SPACE: usize = 2 * 1024;

/// A backend connection and what it has read but not yet handed on.
///
/// One pointer wide: the state lives in a box made once per connection, so
/// that a response body holding its connection stays small and cheap to
/// move (it is moved a few times per request; boxing took about a dozen
/// `memcpy` calls per request off the gateway's path).
#[derive(Debug)]
pub struct Connection<T = BackendStream> {
    pub(crate) inner: Box<Inner<T>>,
}

#[derive(Debug)]
pub(crate) struct Inner<T> {
    pub(crate) io: T,
    pub(crate) buf: BytesMut,
    pub(crate) out: Vec<u8>,
    reused: bool,
}

impl<T> Connection<T> {
    /// Wraps a connected stream.
    pub fn new(io: T) -> Self {
        Self {
            inner: Box::new(Inner {
                io,
                buf: BytesMut::with_capacity(READ_SPACE),
                out: Vec::with_capacity(512),
                reused: false,
            }),
        }
    }

    /// Whether the connection has carried a request before (a failure on
    /// it may mean the backend closed it while it sat idle).
    pub fn is_reused(&self) -> bool {
        self.inner.reused
    }

    /// Marks the connection as done with one exchange and fit for another,
    /// so that a failure on its next head counts as "closed while idle"
    /// (retried once on a fresh connection). The client calls it itself;
    /// public for callers that hand connections to a [`Pool`](crate::Pool)
    /// of their own making, and for tests.
    pub fn finish_exchange(&mut self) {
        self.inner.reused = true;
    }

    /// Bytes read past the current answer's head or body.
    pub(crate) fn buffered(&mut self) -> &mut BytesMut {
        &mut self.inner.buf
    }

    /// The stream and the bytes already read from it, for a tunnel.
    pub fn into_parts(self) -> (T, BytesMut) {
        let inner = *self.inner;
        (inner.io, inner.buf)
    }
}

impl<T: AsyncRead + Unpin> Connection<T> {
    /// Reads more into the buffer; `Ready(Ok(0))` is the end of the stream.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.inner.buf.capacity() - self.inner.buf.len() < MIN_READ_SPACE {
            self.inner.buf.reserve(READ_SPACE);
        }
        // `read_buf`'s future holds no state between polls, so making one
        // per poll is safe, and it fills the spare capacity without unsafe.
        std::future::Future::poll(
            std::pin::pin!(self.inner.io.read_buf(&mut self.inner.buf)),
            cx,
        )
    }
}

impl Connection<BackendStream> {
    /// Whether an idle connection can carry a request: the backend neither
    /// closed it nor sent anything since its last answer. No system call
    /// unless the reactor saw the socket become readable. Over TLS, bytes
    /// the TLS layer already decrypted count too, and so does any record
    /// arriving while idle (a `close_notify` most likely).
    pub fn is_idle_usable(&mut self) -> bool {
        if self.inner.io.has_pending_input() {
            return false;
        }
        // `try_read` answers `WouldBlock` from the reactor's readiness alone
        // when nothing arrived; a byte read here is stray and the connection
        // is dropped anyway.
        let mut byte = [0u8; 1];
        matches!(self.inner.io.tcp().try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl<T: AsyncWrite + Unpin> Connection<T> {
    pub(crate) fn poll_write(&mut self, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner.io).poll_write(cx, b)
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner.io).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Connection, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
        (Connection::new(c.unwrap().into()), s.unwrap().0)
    }

    #[tokio::test]
    async fn idle_check_sees_close_and_stray_bytes() {
        let (mut conn, server) = pair().await;
        assert!(conn.is_idle_usable());
        drop(server);
        // The reactor learns of the FIN on its next turn.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!conn.is_idle_usable());

        let (mut conn, mut server) = pair().await;
        server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!conn.is_idle_usable());
    }

    #[tokio::test]
    async fn reads_a_head_split_over_reads() {
        let (conn, mut server) = pair().await;
        let t = tokio::spawn(async move {
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-")
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            server.write_all(b"Length: 2\r\n\r\nok").await.unwrap();
            server
        });
        let parts = http::Request::get("/").body(()).unwrap().into_parts().0;
        let empty = http_body_util::Empty::<bytes::Bytes>::new();
        let resp = crate::send_over(conn, &parts, empty, "b").await.unwrap();
        assert_eq!(resp.headers()["content-length"], "2");
        // The body's bytes may come with the head or in a later read.
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(f) = body.frame().await {
            got.extend_from_slice(&f.unwrap().into_data().unwrap());
        }
        assert_eq!(got, b"ok");
        let conn = body
            .into_reusable()
            .expect("a whole answer leaves it reusable");
        drop(t.await.unwrap());
        let empty = http_body_util::Empty::<bytes::Bytes>::new();
        let err = crate::send_over(conn, &parts, empty, "b").await;
        assert!(err.is_err());
    }
}
