//! The byte stream under a pooled backend connection: plain TCP or, with
//! the `tls` feature, TLS over TCP.
//!
//! An enum rather than a boxed trait object: a plain backend's reads and
//! writes cost one predictable branch more than a bare `TcpStream`, with
//! no allocation and no virtual call per request. The TLS variant is boxed
//! (once per connection) so that the enum stays as small as a `TcpStream`
//! for plain backends.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A backend connection's stream: what a [`Pool`](crate::Pool) dials and
/// what an upgraded connection ([`Upgraded`](crate::Upgraded)) tunnels
/// over.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackendStream {
    /// Plain TCP (`HOST:PORT` backends).
    Plain(TcpStream),
    /// TLS over TCP (`https://HOST:PORT` backends), after a handshake that
    /// verified the backend's certificate.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl BackendStream {
    /// The TCP socket underneath, for readiness checks and socket options.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            BackendStream::Plain(s) => s,
            #[cfg(feature = "tls")]
            BackendStream::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        match self {
            BackendStream::Plain(_) => false,
            #[cfg(feature = "tls")]
            BackendStream::Tls(_) => true,
        }
    }

    /// Whether the TLS layer holds bytes the backend sent that were not
    /// read yet: a record decrypted past the end of an answer, which makes
    /// the connection unfit for another exchange (its next answer would
    /// start with them). Always false for plain TCP, whose unread bytes
    /// stay in the socket where the idle check sees them.
    pub(crate) fn has_pending_input(&mut self) -> bool {
        match self {
            BackendStream::Plain(_) => false,
            #[cfg(feature = "tls")]
            BackendStream::Tls(s) => match s.get_mut().1.process_new_packets() {
                Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
                Err(_) => true,
            },
        }
    }
}

impl From<TcpStream> for BackendStream {
    fn from(s: TcpStream) -> Self {
        BackendStream::Plain(s)
    }
}

#[cfg(feature = "tls")]
impl From<tokio_rustls::client::TlsStream<TcpStream>> for BackendStream {
    fn from(s: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        BackendStream::Tls(Box::new(s))
    }
}

impl AsyncRead for BackendStream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            BackendStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            BackendStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            BackendStream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BackendStream::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            BackendStream::Tls(s) => s.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            BackendStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            BackendStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
