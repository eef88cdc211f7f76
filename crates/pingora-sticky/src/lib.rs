//! Sealed-cookie session affinity for [pingora] proxies, on the same engine
//! as tower-sticky and sticky-gateway.
//!
//! pingora gives selection primitives (`LoadBalancer`, `BackendSelection`,
//! health checks) but no affinity. [`StickyBalancer`] wraps your
//! [`LoadBalancer`](pingora_load_balancing::LoadBalancer) and gives one
//! helper per `ProxyHttp` hook:
//!
//! | hook | helper | what it does |
//! |---|---|---|
//! | `new_ctx` | [`StickyBalancer::new_ctx`] | the per-request [`StickyCtx`] |
//! | `upstream_peer` | [`StickyBalancer::upstream_peer`] | opens the token from every `Cookie` header, picks the pinned backend, or places a new session |
//! | `upstream_request_filter` | [`StickyBalancer::upstream_request_filter`] | strips our cookie before the backend sees it |
//! | `fail_to_connect` | [`StickyBalancer::fail_to_connect`] | records the failure; pingora's retry goes to the deterministic fallback (or 503 under `Strict`) |
//! | `response_filter` | [`StickyBalancer::response_filter`] | appends `Set-Cookie` and `Cache-Control: private` |
//! | `logging` | [`StickyBalancer::logging`] | ends in-flight counting and records the outcome |
//!
//! Backends are named by [`BackendName`] in `Backend.ext` (tokens carry a
//! stable id of the name, the same sticky-gateway derives), so every replica
//! with the same key routes every token identically.
//!
//! ```no_run
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use pingora_core::{upstreams::peer::HttpPeer, Result};
//! use pingora_http::{RequestHeader, ResponseHeader};
//! use pingora_load_balancing::selection::RoundRobin;
//! use pingora_proxy::{ProxyHttp, Session};
//! use pingora_sticky::{named_backend, static_load_balancer, StickyBalancer, StickyCtx};
//! use tower_sticky::{token::KeyRing, StickyConfig};
//!
//! struct Gateway(StickyBalancer<RoundRobin>);
//!
//! #[async_trait]
//! impl ProxyHttp for Gateway {
//!     type CTX = StickyCtx;
//!     fn new_ctx(&self) -> StickyCtx {
//!         self.0.new_ctx()
//!     }
//!     async fn upstream_peer(&self, s: &mut Session, ctx: &mut StickyCtx) -> Result<Box<HttpPeer>> {
//!         self.0.upstream_peer(s, ctx)
//!     }
//!     async fn upstream_request_filter(
//!         &self, _: &mut Session, req: &mut RequestHeader, ctx: &mut StickyCtx,
//!     ) -> Result<()> {
//!         self.0.upstream_request_filter(req, ctx)
//!     }
//!     fn fail_to_connect(
//!         &self, _: &mut Session, _: &HttpPeer, ctx: &mut StickyCtx, e: Box<pingora_core::Error>,
//!     ) -> Box<pingora_core::Error> {
//!         self.0.fail_to_connect(ctx, e)
//!     }
//!     async fn response_filter(
//!         &self, _: &mut Session, resp: &mut ResponseHeader, ctx: &mut StickyCtx,
//!     ) -> Result<()> {
//!         self.0.response_filter(resp, ctx)
//!     }
//!     async fn logging(&self, _: &mut Session, e: Option<&pingora_core::Error>, ctx: &mut StickyCtx) {
//!         self.0.logging(e, ctx);
//!     }
//! }
//!
//! let lb = static_load_balancer::<RoundRobin>([
//!     named_backend("b1", "127.0.0.1:9001").unwrap(),
//!     named_backend("b2", "127.0.0.1:9002").unwrap(),
//! ]);
//! let sticky = StickyBalancer::new(Arc::new(lb), StickyConfig::new(KeyRing::generate()));
//! let mut server = pingora_core::server::Server::new(None).unwrap();
//! let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Gateway(sticky));
//! proxy.add_tcp("127.0.0.1:8080");
//! server.add_service(proxy);
//! server.run_forever();
//! ```
//!
//! Draining: [`StickyBalancer::drain`] keeps a backend's sessions and gives
//! it no new ones; [`StickyBalancer::status`] shows what still reaches it.
//! pingora's health checks and `Backends::set_enable` take a backend out: its
//! sessions fail over by the configured
//! [`FailoverPolicy`](tower_sticky::FailoverPolicy).
//!
//! [pingora]: https://github.com/cloudflare/pingora

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod backend;
mod balancer;
mod ctx;
mod hooks;
mod membership;
mod selection;

pub use backend::{named_backend, static_load_balancer, BackendName};
pub use balancer::StickyBalancer;
pub use ctx::StickyCtx;
