//! Response bodies: the backend's body streamed through (its connection
//! returned to the pool when it ends), or a small body the gateway writes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use tower_sticky::table::InFlight;

use super::pool::{Pool, Sender};

/// A backend's response body. When it has been read to the end, the
/// connection it came on goes back to its pool; a body dropped half-read
/// takes its connection with it (its framing is unknown). The request counts
/// as in flight on its backend until the body ends or is dropped.
#[derive(Debug)]
pub struct BackendBody {
    inner: Incoming,
    give_back: Option<(Sender, Arc<Pool>)>,
    in_flight: Option<InFlight>,
}

impl BackendBody {
    /// Streams `inner`, returning `sender` to `pool` at the end, and keeps
    /// `in_flight` counted until then.
    pub fn new(
        inner: Incoming,
        sender: Option<(Sender, Arc<Pool>)>,
        in_flight: Option<InFlight>,
    ) -> Self {
        Self {
            inner,
            give_back: sender,
            in_flight,
        }
    }

    fn release(&mut self) {
        self.in_flight = None;
        if let Some((s, pool)) = self.give_back.take() {
            pool.put(s);
        }
    }
}

impl Drop for BackendBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &r {
            None => self.release(),
            Some(Ok(_)) if self.inner.is_end_stream() => self.release(),
            Some(Err(_)) => self.give_back = None,
            _ => {}
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the gateway answers with: a backend's body or its own bytes.
#[derive(Debug)]
pub enum GatewayBody {
    /// Streamed from a backend.
    Backend(BackendBody),
    /// Written by the gateway (errors, the demo, probes' answers).
    Full(Option<Bytes>),
}

impl GatewayBody {
    /// A body of these bytes.
    pub fn full(b: impl Into<Bytes>) -> Self {
        GatewayBody::Full(Some(b.into()))
    }

    /// No body.
    pub fn empty() -> Self {
        GatewayBody::Full(None)
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            GatewayBody::Backend(b) => Pin::new(b).poll_frame(cx),
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Backend(b) => b.is_end_stream(),
            GatewayBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Backend(b) => b.size_hint(),
            GatewayBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
