//! Which load measure least-loaded placement compares.

use std::cmp::Ordering;

/// How [`Sticky`](super::Sticky) compares two backends' load when placing a
/// new session.
pub trait LoadSource<S> {
    /// How the loads of two backend services compare; `None` means "use the
    /// in-flight counts the layer keeps".
    fn compare(&self, a: &S, b: &S) -> Option<Ordering>;
}

/// Compare the requests in flight that the layer counts itself (the default):
/// works with any backend service.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountedInFlight;

impl<S> LoadSource<S> for CountedInFlight {
    fn compare(&self, _: &S, _: &S) -> Option<Ordering> {
        None
    }
}

/// Compare the backends' own [`tower::load::Load`] measures, for services
/// wrapped in `PeakEwma` or `PendingRequests` (or any other `Load`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceLoad;

impl<S> LoadSource<S> for ServiceLoad
where
    S: tower::load::Load,
    S::Metric: PartialOrd,
{
    fn compare(&self, a: &S, b: &S) -> Option<Ordering> {
        a.load().partial_cmp(&b.load())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use http::{Request, Response};
    use tower::discover::ServiceList;
    use tower::{Service, ServiceBuilder, ServiceExt};

    use super::ServiceLoad;
    use crate::token::KeyRing;
    use crate::{StickyConfig, StickyLayer};

    /// A backend answering with its name and reporting a fixed load.
    #[derive(Clone)]
    struct Fixed {
        name: &'static str,
        load: u32,
    }

    impl Service<Request<String>> for Fixed {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<String>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<String>) -> Self::Future {
            std::future::ready(Ok(Response::new(self.name.to_string())))
        }
    }

    impl tower::load::Load for Fixed {
        type Metric = u32;
        fn load(&self) -> u32 {
            self.load
        }
    }

    fn backends() -> ServiceList<Vec<Fixed>> {
        ServiceList::new(vec![
            Fixed {
                name: "busy",
                load: 100,
            },
            Fixed {
                name: "idle",
                load: 1,
            },
        ])
    }

    #[tokio::test]
    async fn service_load_steers_new_sessions_to_the_lighter_backend() {
        let layer = StickyLayer::new(StickyConfig::new(KeyRing::generate()));
        let mut by_load = ServiceBuilder::new()
            .layer(layer.clone().with_load(ServiceLoad))
            .service(backends());
        let mut counted = ServiceBuilder::new().layer(layer).service(backends());
        let (mut busy_by_load, mut busy_counted) = (0, 0);
        for _ in 0..200 {
            let res = by_load
                .ready()
                .await
                .unwrap()
                .call(Request::new(String::new()))
                .await
                .unwrap();
            busy_by_load += usize::from(res.body().get_ref() == "busy");
            let res = counted
                .ready()
                .await
                .unwrap()
                .call(Request::new(String::new()))
                .await
                .unwrap();
            busy_counted += usize::from(res.body().get_ref() == "busy");
        }
        // Comparing the services' Load, "busy" only wins when both random
        // choices land on it; counting in flight (always 0 here), it gets its share.
        assert!(busy_by_load < 80, "busy got {busy_by_load} of 200 by load");
        assert!(busy_counted > 60, "busy got {busy_counted} of 200 by count");
    }
}
