//! One keep-alive HTTP/1.1 connection to a backend, driven by the task of
//! the request using it: the head and body are written and the answer read
//! in place, with no connection task, channel or wake-up in between (see
//! [`codec`] for why).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::request::Parts;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, RequestFraming, ResponseHead};

/// The read buffer's size: a whole small answer arrives in one read, and a
/// read that fills the buffer is rare.
const READ_SPACE: usize = 8 * 1024;
/// Below this much free space the buffer is renewed before a read. Renewing
/// on every read allocated once per request (the previous answer's bytes
/// still shared with the client side); this way, once per few dozen.
const MIN_READ_SPACE: usize = 2 * 1024;

/// A backend connection and what it has read but not yet handed on.
#[derive(Debug)]
pub struct BackendConn {
    io: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
    reused: bool,
}

impl BackendConn {
    /// Wraps a connected stream.
    pub fn new(io: TcpStream) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_SPACE),
            out: Vec::with_capacity(512),
            reused: false,
        }
    }

    /// Whether the connection has carried a request before (a failure to
    /// write to it may mean the backend closed it while it sat idle).
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Whether an idle connection can carry a request: the backend neither
    /// closed it nor sent anything since its last answer. No system call
    /// unless the reactor saw the socket become readable.
    pub fn is_idle_usable(&self) -> bool {
        // `try_read` answers `WouldBlock` from the reactor's readiness alone
        // when nothing arrived; a byte read here is stray and the connection
        // is dropped anyway.
        let mut byte = [0u8; 1];
        matches!(self.io.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Marks the connection as done with one exchange and fit for another.
    pub(crate) fn finish_exchange(&mut self) {
        self.reused = true;
    }

    /// Bytes read past the current answer's head or body.
    pub(crate) fn buffered(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Writes the request head. `host` is sent only if the request has none.
    pub async fn write_head(
        &mut self,
        parts: &Parts,
        framing: RequestFraming,
        host: &str,
    ) -> io::Result<()> {
        codec::encode_request_head(
            &mut self.out,
            &parts.method,
            &parts.uri,
            &parts.headers,
            framing,
            host,
        );
        self.io.write_all(&self.out).await
    }

    /// Streams the request body, framed as the head announced.
    pub async fn write_body(
        &mut self,
        mut body: Incoming,
        framing: RequestFraming,
    ) -> io::Result<()> {
        if framing == RequestFraming::Empty {
            return Ok(());
        }
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(io::Error::other)?;
            let frame = match frame.into_data() {
                Ok(data) if framing == RequestFraming::Chunked => {
                    self.out.clear();
                    codec::encode_chunk(&mut self.out, &data);
                    self.io.write_all(&self.out).await?;
                    continue;
                }
                Ok(data) => {
                    self.io.write_all(&data).await?;
                    continue;
                }
                Err(frame) => frame,
            };
            if let Ok(t) = frame.into_trailers() {
                trailers = Some(t);
            }
        }
        if framing == RequestFraming::Chunked {
            self.out.clear();
            codec::encode_last_chunk(&mut self.out, trailers.as_ref());
            self.io.write_all(&self.out).await?;
        }
        Ok(())
    }

    /// Reads the answer's head (interim answers skipped).
    pub async fn read_head(&mut self, method: &Method, upgrade: bool) -> io::Result<ResponseHead> {
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = codec::parse_response_head(&mut self.buf, method, upgrade)? {
                    return Ok(head);
                }
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "backend closed the connection before answering",
                ));
            }
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < MIN_READ_SPACE {
            self.buf.reserve(READ_SPACE);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Reads more into the buffer; `Ready(Ok(0))` is the end of the stream.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        pin!(self.fill()).poll(cx)
    }

    /// The stream and the bytes already read from it, for a tunnel.
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.io, self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (BackendConn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
        (BackendConn::new(c.unwrap()), s.unwrap().0)
    }

    #[tokio::test]
    async fn idle_check_sees_close_and_stray_bytes() {
        let (conn, server) = pair().await;
        assert!(conn.is_idle_usable());
        drop(server);
        // The reactor learns of the FIN on its next turn.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!conn.is_idle_usable());

        let (conn, mut server) = pair().await;
        server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!conn.is_idle_usable());
    }

    #[tokio::test]
    async fn reads_a_head_split_over_reads() {
        let (mut conn, mut server) = pair().await;
        let t = tokio::spawn(async move {
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-")
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            server.write_all(b"Length: 2\r\n\r\nok").await.unwrap();
            server
        });
        let head = conn.read_head(&Method::GET, false).await.unwrap();
        assert_eq!(head.framing, codec::ResponseFraming::Length(2));
        // The body's bytes may come with the head or in a later read.
        while conn.buffered().len() < 2 {
            assert!(conn.fill().await.unwrap() > 0);
        }
        assert_eq!(&conn.buffered()[..], b"ok");
        conn.buffered().clear();
        drop(t.await.unwrap());
        let err = conn.read_head(&Method::GET, false).await;
        assert!(err.is_err());
    }
}
