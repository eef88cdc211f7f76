//! The tower middleware: [`StickyLayer`] over a `Discover` backend set.
//!
//! Like tower's `Balance`, the [`Sticky`] service drives discovery and the
//! readiness of every backend in `poll_ready` (through a keyed
//! [`ReadyCache`](tower::ready_cache::ReadyCache)), and keys backends by
//! their `Discover` key, never by index. Unlike `Balance`, it chooses the
//! backend in `call`, from the request: the pinned one if it can serve, else
//! what placement and the failover policy say.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{discover::ServiceList, service_fn, ServiceBuilder, ServiceExt};
//! use tower_sticky::{StickyConfig, StickyLayer, token::KeyRing};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let backend = |name: &'static str| service_fn(move |_req: Request<String>| async move {
//!     Ok::<_, Infallible>(Response::new(format!("hello from {name}")))
//! });
//! // ServiceList keys backends by position; real deployments discover named backends.
//! let backends = ServiceList::new([backend("a"), backend("b")]);
//! let sticky = ServiceBuilder::new()
//!     .layer(StickyLayer::new(StickyConfig::new(KeyRing::generate())))
//!     .service(backends);
//! let res = sticky.oneshot(Request::new(String::new())).await.unwrap();
//! assert!(res.headers().contains_key("set-cookie"));
//! # }
//! ```

mod body;
mod future;
mod layer;
mod load;
#[allow(clippy::module_inception)]
mod service;

pub use body::InFlightBody;
pub use future::ResponseFuture;
pub use layer::StickyLayer;
pub use load::{CountedInFlight, LoadSource, ServiceLoad};
pub use service::Sticky;

#[cfg(test)]
mod tests;

/// Errors the [`Sticky`] service returns besides its backends' own.
pub mod error {
    use std::fmt;

    /// A boxed error, as tower's `balance` uses.
    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// Discovery failed; the backend set can no longer be trusted.
    #[derive(Debug)]
    pub struct Discover(pub BoxError);

    impl fmt::Display for Discover {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "backend discovery failed: {}", self.0)
        }
    }

    impl std::error::Error for Discover {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    /// The layer refused the request without calling a backend: `Strict`
    /// failover, or no backend can serve ([`Reason::NoBackend`](crate::Reason::NoBackend)).
    /// Returned only with [`StickyConfig::reject_with_error`](crate::StickyConfig::reject_with_error);
    /// by default the layer answers `503 Service Unavailable` instead.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Rejected(pub crate::Reason);

    impl fmt::Display for Rejected {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "request rejected by the sticky layer: {}", self.0)
        }
    }

    impl std::error::Error for Rejected {}
}
