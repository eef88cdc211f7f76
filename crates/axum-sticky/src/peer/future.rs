//! [`PeerFuture`]: the response future of [`Peer`](super::Peer).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use tower_sticky::Routed;

use super::Shared;
use crate::relay::{self, Origin};
use crate::ResponseFuture;

pin_project! {
    /// The response future of [`Peer`](super::Peer). Never fails.
    ///
    /// When this replica's app serves the request (a session it owns, a
    /// new one, or a hop another replica forwarded here), the app's own
    /// future, held as it is: no box per request. Otherwise (a forward to
    /// the owner, an answer the layer gave by itself) the shared
    /// [`ResponseFuture`].
    pub struct PeerFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        App {
            #[pin]
            future: F,
            // What a response to a session served here still owes (its
            // tag, its accounting); `None` for a forwarded request, whose
            // forwarding replica tags and counts it.
            local: Option<Local>,
        },
        Other {
            #[pin]
            future: ResponseFuture,
        },
    }
}

/// A request this replica decided and serves itself: its response is
/// tagged and counted in flight here until its body ends.
pub(crate) struct Local {
    pub(crate) shared: Arc<Shared>,
    pub(crate) routed: Routed,
}

impl<F> PeerFuture<F> {
    /// The app's future for a request served here.
    pub(crate) fn app(future: F, local: Option<Local>) -> Self {
        Self {
            kind: Kind::App { future, local },
        }
    }

    /// A forward, or an answer the layer gave by itself.
    pub(crate) fn other(future: ResponseFuture) -> Self {
        Self {
            kind: Kind::Other { future },
        }
    }
}

impl<F, B> Future for PeerFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Other { future } => future.poll(cx),
            KindProj::App { future, local } => {
                let res = match ready!(future.poll(cx)) {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Poll::Ready(Ok(match local.take() {
                    Some(Local { shared, routed }) => relay::respond(
                        &shared.engine,
                        routed,
                        res,
                        shared.me.clone(),
                        Origin::Local,
                    ),
                    None => res.map(Body::new),
                }))
            }
        }
    }
}

impl<F> std::fmt::Debug for PeerFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerFuture").finish_non_exhaustive()
    }
}
