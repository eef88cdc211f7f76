//! Upgraded connections (WebSocket and other `Upgrade` protocols, and
//! `CONNECT` tunnels when a front allows them): once the backend answers
//! `101` (or 2xx to `CONNECT`), the connection is taken out of HTTP for
//! good, never pooled, and handed to the caller, who drives the tunnel
//! (and so decides which task runs it and how shutdown waits for it).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::Connection;
use crate::stream::BackendStream;

/// A backend connection after a protocol switch. Reads first yield the
/// bytes the backend sent right after its `101` (read with the head), then
/// the stream's.
#[derive(Debug)]
pub struct Upgraded<T = BackendStream> {
    io: T,
    early: BytesMut,
}

impl<T> Upgraded<T> {
    pub(crate) fn new(conn: Connection<T>) -> Self {
        let (io, early) = conn.into_parts();
        Self { io, early }
    }

    /// The stream and the bytes already read from it.
    pub fn into_parts(self) -> (T, BytesMut) {
        (self.io, self.early)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Upgraded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early[..n]);
            self.early.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Upgraded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Copies bytes both ways between the client's upgraded connection and the
/// backend's until either side closes; resolves to the bytes sent up (to
/// the backend) and down. The caller spawns or awaits it.
pub async fn tunnel<C, T>(mut client: C, mut backend: Upgraded<T>) -> io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional(&mut client, &mut backend).await
}
