use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::error::BoxError;
use super::InFlightBody;
use crate::{Engine, Outcome, Routed};

pin_project! {
    /// Response future of [`Sticky`](super::Sticky): either the backend's
    /// response, tagged with the affinity token when one is issued, or a 503
    /// the layer answers by itself. The backend's body comes in an
    /// [`InFlightBody`], so the request counts as load on its backend until
    /// its answer has streamed whole, not only until its head.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        routed: Routed,
        // Only set when the response must carry a new token (not on the hit path).
        engine: Option<Engine>,
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
        routed: Routed,
        engine: Option<Engine>,
        span: tracing::Span,
    ) -> Self {
        Self {
            kind: Kind::Backend { future },
            routed,
            engine,
            span,
        }
    }

    pub(super) fn reject(routed: Routed, span: tracing::Span) -> Self {
        Self {
            kind: Kind::Reject,
            routed,
            engine: None,
            span,
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    ResBody: http_body::Body + Default,
{
    type Output = Result<Response<InFlightBody<ResBody>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let outcome: Outcome = this.routed.outcome();
        match this.kind.project() {
            KindProj::Reject => {
                if this.routed.decision().reject_as_error() {
                    let reason = outcome.reason().unwrap_or(crate::Reason::NoBackend);
                    return Poll::Ready(Err(super::error::Rejected(reason).into()));
                }
                let mut res = Response::new(InFlightBody::new(ResBody::default(), None));
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                res.extensions_mut().insert(outcome);
                tracing::debug!(%outcome, "rejected");
                Poll::Ready(Ok(res))
            }
            KindProj::Backend { future } => match ready!(future.poll(cx)) {
                Ok(mut res) => {
                    this.routed.record(!res.status().is_server_error());
                    if let Some(engine) = this.engine.take() {
                        this.routed.tag_response(&engine, res.headers_mut());
                    }
                    res.extensions_mut().insert(outcome);
                    let in_flight = this.routed.take_in_flight();
                    Poll::Ready(Ok(res.map(|body| InFlightBody::new(body, in_flight))))
                }
                Err(e) => {
                    this.routed.finish(false);
                    Poll::Ready(Err(e.into()))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response, StatusCode};
    use tower::discover::ServiceList;
    use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

    use crate::service::error::Rejected;
    use crate::token::{KeyRing, Token, TokenCodec};
    use crate::{BackendId, FailoverPolicy, Outcome, Reason, StickyConfig, StickyLayer};

    /// A request pinned to a backend that is not in the set, under `Strict`.
    async fn pinned_to_gone(
        as_error: bool,
    ) -> Result<Response<String>, crate::service::error::BoxError> {
        let keys = KeyRing::generate();
        let token = Token::new(BackendId::from_u64(12345), 1, u32::MAX / 2);
        let cookie = format!(
            "sticky={}",
            TokenCodec::new(keys.clone(), "sticky")
                .seal(&token)
                .as_str()
        );
        let config = StickyConfig::new(keys)
            .failover(FailoverPolicy::Strict)
            .reject_with_error(as_error);
        let backend = service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new("served".to_string()))
        });
        let mut svc = ServiceBuilder::new()
            .layer(StickyLayer::new(config))
            .service(ServiceList::new([backend]));
        let req = Request::builder()
            .header("cookie", cookie)
            .body(String::new())
            .unwrap();
        svc.ready()
            .await
            .unwrap()
            .call(req)
            .await
            .map(|res| res.map(crate::service::InFlightBody::into_inner))
    }

    #[tokio::test]
    async fn strict_rejection_is_a_503_by_default_and_a_typed_error_on_request() {
        let res = pinned_to_gone(false).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            res.extensions().get::<Outcome>(),
            Some(&Outcome::Rejected(Reason::Removed))
        );
        assert_eq!(res.body(), "");

        let err = pinned_to_gone(true).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<Rejected>(),
            Some(&Rejected(Reason::Removed))
        );
    }

    /// Records the `outcome` field of every `sticky` span created.
    struct SpanOutcomes(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    struct OutcomeField<'a>(&'a mut Option<String>);

    impl tracing::field::Visit for OutcomeField<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "outcome" {
                *self.0 = Some(format!("{value:?}"));
            }
        }
    }

    impl tracing::Subscriber for SpanOutcomes {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            if span.metadata().name() == "sticky" {
                let mut outcome = None;
                span.record(&mut OutcomeField(&mut outcome));
                self.0.lock().unwrap().extend(outcome);
            }
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[tokio::test]
    async fn the_outcome_is_recorded_on_the_sticky_span() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let _guard = tracing::subscriber::set_default(SpanOutcomes(seen.clone()));
        let backend = service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let mut svc = ServiceBuilder::new()
            .layer(StickyLayer::new(StickyConfig::new(KeyRing::generate())))
            .service(ServiceList::new([backend]));
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(String::new()))
            .await
            .unwrap();
        let cookie = res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let req = Request::builder()
            .header("cookie", cookie)
            .body(String::new())
            .unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap();
        drop(_guard);
        assert_eq!(*seen.lock().unwrap(), ["new", "pinned"]);
    }

    /// Least-loaded placement compares requests in flight: one whose answer
    /// is still streaming is load until its body ends, not only until its
    /// head.
    #[tokio::test]
    async fn a_request_counts_in_flight_until_its_response_body_ends() {
        use http_body::Body;
        let backend = service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new("streamed".to_string()))
        });
        let mut svc = ServiceBuilder::new()
            .layer(StickyLayer::new(StickyConfig::new(KeyRing::generate())))
            .service(ServiceList::new([backend]));
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(String::new()))
            .await
            .unwrap();
        let in_flight =
            |svc: &crate::Sticky<_, String>| svc.table().get(0).unwrap().status().in_flight();
        assert_eq!(
            in_flight(&svc),
            1,
            "the head has come, the body has not been read"
        );
        let mut body = std::pin::pin!(res.into_body());
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "streamed");
        assert_eq!(in_flight(&svc), 0, "the body has ended");

        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(String::new()))
            .await
            .unwrap();
        assert_eq!(in_flight(&svc), 1);
        drop(res);
        assert_eq!(in_flight(&svc), 0, "a dropped answer stops counting");
    }
}
