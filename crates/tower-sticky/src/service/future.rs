use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::error::BoxError;
use crate::table::InFlight;
use crate::{Decision, Outcome, Router};

pin_project! {
    /// Response future of [`Sticky`](super::Sticky): either the backend's
    /// response, tagged with the affinity token when one is issued, or a 503
    /// the layer answers by itself.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        decision: Decision,
        // Only set when the response must carry a new token (not on the hit path).
        router: Option<Router>,
        guard: Option<InFlight>,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Backend { #[pin] future: F },
        Reject,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn backend(
        future: F,
        decision: Decision,
        router: Option<Router>,
        guard: Option<InFlight>,
        span: tracing::Span,
    ) -> Self {
        Self {
            kind: Kind::Backend { future },
            decision,
            router,
            guard,
            span,
        }
    }

    pub(super) fn reject(decision: Decision, span: tracing::Span) -> Self {
        Self {
            kind: Kind::Reject,
            decision,
            router: None,
            guard: None,
            span,
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let outcome: Outcome = this.decision.outcome();
        match this.kind.project() {
            KindProj::Reject => {
                let mut res = Response::new(ResBody::default());
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                res.extensions_mut().insert(outcome);
                tracing::debug!(%outcome, "rejected");
                Poll::Ready(Ok(res))
            }
            KindProj::Backend { future } => match ready!(future.poll(cx)) {
                Ok(mut res) => {
                    if let Some(g) = this.guard.take() {
                        g.finish(!res.status().is_server_error());
                    }
                    if let Some(router) = this.router.take() {
                        router.tag_response(this.decision, res.headers_mut());
                    }
                    res.extensions_mut().insert(outcome);
                    Poll::Ready(Ok(res))
                }
                Err(e) => {
                    if let Some(g) = this.guard.take() {
                        g.finish(false);
                    }
                    Poll::Ready(Err(e.into()))
                }
            },
        }
    }
}
