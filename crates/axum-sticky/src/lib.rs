//! Session affinity for axum, in two shapes.
//!
//! - **The gateway shape** ([`StickyProxy`]): an axum app that proxies to a
//!   backend set gains affinity in one line,
//!   `Router::new().route("/healthz", get(ok)).fallback_service(StickyProxy::new(config, backends))`.
//!   See [`proxy`].
//! - **Peer mode** ([`PeerLayer`]): each replica of a stateful axum app adds
//!   `.layer(PeerLayer::new(config, "app-1", peers))` and requests that a
//!   round-robin balancer delivered to the wrong replica are forwarded to
//!   the one that owns the session. See [`peer`].
//!
//! Both are built on tower-sticky's request lifecycle (the same engine,
//! token, failover and counters as the gateway and the tower layer) and
//! sticky-proxy's HTTP/1 client. Both services are what axum wants:
//! `Clone + Send + Sync`, always ready, `Infallible` (errors are short
//! plain-text `502`/`503` answers). What was decided is an [`Affinity`],
//! in request and response extensions and as an extractor.
//!
//! # With tower-http
//!
//! Layers added after (outside) the sticky layer see the request first.
//! The orders that work, outermost first:
//!
//! - `SetRequestIdLayer` → `TraceLayer` → `PeerLayer`: the id is set once,
//!   on the replica the client reached, and travels with a forwarded
//!   request (it is an ordinary header), so both replicas' traces carry it;
//!   the trace span covers the hop.
//! - `TimeoutLayer` outside `PeerLayer`: the timeout covers the hop, and a
//!   timed-out forward is dropped (the peer connection with it, never
//!   pooled). Inside, it would time only local handling.
//! - `CompressionLayer` **inside** `PeerLayer` (on the router, before
//!   `.layer(PeerLayer…)`): the owner compresses, and the forwarding
//!   replica passes the compressed body and its `Content-Encoding` on
//!   untouched. Outside, a forwarded answer would be compressed by the
//!   replica that forwards it, which works but spends the CPU on the
//!   wrong replica.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use axum_sticky::PeerLayer;
//! use tower::ServiceBuilder;
//! use tower_http::{compression::CompressionLayer, request_id::{MakeRequestUuid, SetRequestIdLayer},
//!     timeout::TimeoutLayer, trace::TraceLayer};
//! use tower_sticky::{token::KeyRing, StickyConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let app: Router = Router::new()
//!     .route("/cart", get(|| async { "cart" }))
//!     .layer(CompressionLayer::new()) // inside: the owner compresses
//!     .layer(PeerLayer::new(StickyConfig::new(KeyRing::generate()), "app-1", [("app-2", "127.0.0.1:1")]))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
//!             .layer(TraceLayer::new_for_http())
//!             .layer(TimeoutLayer::with_status_code(http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30))),
//!     );
//! # let _ = app; }
//! ```
//!
//! The gateway shape is the same: `fallback_service(StickyProxy…)` then
//! `.layer(...)` on the router puts every tower-http layer outside it.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod affinity;
mod answer;
mod backends;
mod body;
mod error;
mod forwarded;
mod future;
pub mod peer;
pub mod proxy;
mod relay;
mod tunnel;

pub use affinity::Affinity;
pub use backends::{Backends, HttpBackend, Member, Table};
pub use future::ResponseFuture;
pub use peer::{Peer, PeerLayer, Peers, HOP_HEADER};
pub use proxy::StickyProxy;
