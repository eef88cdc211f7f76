//! [`ResponseFuture`]: the future of both shapes' services. It either holds
//! an answer the layer gave by itself (a 503, a refused hop marker) or
//! drives the exchange with the backend, peer or local handler.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::Response;

type Exchange = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

enum Kind {
    Ready(Option<Response<Body>>),
    Exchange(Exchange),
}

/// The response future of [`StickyProxy`](crate::StickyProxy) and
/// [`Peer`](crate::Peer). Never fails: errors are answers (502, 503).
pub struct ResponseFuture {
    kind: Kind,
}

impl ResponseFuture {
    pub(crate) fn ready(response: Response<Body>) -> Self {
        Self {
            kind: Kind::Ready(Some(response)),
        }
    }

    pub(crate) fn exchange(f: impl Future<Output = Response<Body>> + Send + 'static) -> Self {
        Self {
            kind: Kind::Exchange(Box::pin(f)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            Kind::Ready(r) => Poll::Ready(Ok(r.take().expect("polled after completion"))),
            Kind::Exchange(f) => f.as_mut().poll(cx).map(Ok),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
