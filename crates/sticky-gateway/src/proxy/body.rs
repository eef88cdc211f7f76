//! What the gateway answers with: a backend's body (from `sticky-proxy`),
//! which keeps its request counted as in flight on its backend until it
//! ends, or a small body the gateway writes itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use sticky_proxy::ResponseBody;
use tower_sticky::service::InFlightBody;

/// A backend's response body, counted in flight on its backend until it
/// ends (the core's [`InFlightBody`]).
pub type BackendBody = InFlightBody<ResponseBody>;

/// What the gateway answers with: a backend's body or its own bytes.
// Boxing the backend body would cost an allocation per proxied answer; the
// enum lives once per response in hyper's connection task.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum GatewayBody {
    /// From a backend.
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
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
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
