//! Peer mode: session affinity behind a plain round-robin balancer (a
//! Kubernetes Service, a cloud L4 balancer), with no sticky balancer and no
//! shared session store.
//!
//! Each replica of a stateful axum app adds one layer naming itself and
//! its peers, with the same key file on every replica:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use axum_sticky::PeerLayer;
//! use tower_sticky::{token::KeyRing, StickyConfig};
//!
//! # async fn run(keys: KeyRing) {
//! let config = StickyConfig::new(keys);
//! let app = Router::new()
//!     .route("/cart", get(|| async { "your cart" }))
//!     .layer(PeerLayer::new(config, "app-1", [("app-2", "10.0.0.2:3000"), ("app-3", "10.0.0.3:3000")]));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! For each request:
//! - **no token** (a new user): served here, and the response pins the
//!   session to this replica (`Set-Cookie`);
//! - **a token naming this replica**: served here;
//! - **a token naming another live replica**: forwarded to it with the
//!   sticky-proxy client, bodies streamed both ways, WebSocket upgrades
//!   tunnelled; its answer goes back to the client;
//! - **a token naming a dead or removed replica**: the failover policy
//!   decides. A peer that cannot be reached is ejected at once and the
//!   request decided again from its token; under `Redistribute` the new
//!   owner is the session's rendezvous winner among the live replicas, the
//!   same on every replica, and the response re-pins the session there.
//!   `Strict` answers 503.
//!
//! A forwarded request carries a hop marker ([`HOP_HEADER`]): a MAC under
//! a key derived from the shared key (AES-256-CMAC, the derivation
//! HKDF-SHA256), good for one replica, one request and a few seconds,
//! and only once. The owner serves a marked request itself, so a request
//! is forwarded at most once; a marker that fails any check is refused
//! with `403`, so a client can neither force a forwarding loop nor pass for
//! a peer. A forged or foreign-key token is no token: served here, never
//! forwarded.
//!
//! The handlers never see the difference: our cookie and the marker are
//! removed before they run, and [`Affinity`](crate::Affinity) is in the
//! request extensions. On a forwarded request it is the forwarding
//! replica's decision (its outcome, under the marker's tag): the request is
//! decided and counted once, where it arrived, and the owner neither opens
//! the token again nor sees it (the forwarding replica removes it). The replica the client reached appends the
//! client's address to `X-Forwarded-For` on the forwarded request (from
//! axum's `ConnectInfo<SocketAddr>`: serve the app with
//! `into_make_service_with_connect_info::<SocketAddr>()`) and adds no
//! other field (`Host` passes unchanged; `X-Forwarded-Proto` and `-Host`
//! are the balancer's if it set them); the owner adds nothing, so the
//! forwarding replica's address never appears.
//!
//! A request counts in flight on the replica that serves it, here or a
//! peer, until its response body has ended or is dropped. A peer that
//! cannot be reached counts one failure and is ejected; a request not fit
//! to forward (`400`, `501`) counts neither way.
//!
//! **What it costs.** Behind round robin over `n` replicas, a session's
//! requests land on its owner `1/n` of the time: `(n-1)/n` of requests take
//! one extra hop (two thirds with three replicas), a pooled loopback or
//! LAN HTTP/1 exchange. New sessions never do.
//!
//! **On the router or around it.** `Router::layer(PeerLayer…)` puts the
//! layer on every route: a request is routed first, then forwarded. The
//! layer can also wrap the whole router, so that a request for another
//! replica's session leaves before any routing (its route, boxed handler
//! and extension maps are never built on this replica): about 3,300
//! instructions less per forwarded request (BENCHMARKS.md, peer hop). A
//! router used as a plain service needs `with_state(())` first, which
//! turns its handlers into routes once (`axum::serve` does this for a
//! bare router; without it the handler is boxed again on every request):
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{extract::Request, routing::get, Router, ServiceExt};
//! use axum_sticky::PeerLayer;
//! use tower::Layer as _;
//! use tower_sticky::{token::KeyRing, StickyConfig};
//!
//! # async fn run(listener: tokio::net::TcpListener) {
//! let router = Router::new().route("/cart", get(|| async { "cart" }));
//! let peer = PeerLayer::new(StickyConfig::new(KeyRing::generate()), "app-1", [("app-2", "10.0.0.12:8000")]);
//! let app = peer.layer(router.with_state(()));
//! axum::serve(listener, ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app))
//!     .await
//!     .unwrap();
//! # }
//! ```

mod future;
mod hop;
mod layer;
mod peers;
mod service;

pub use future::PeerFuture;
pub use hop::HOP_HEADER;
pub use layer::PeerLayer;
pub use peers::Peers;
pub use service::Peer;

use arc_swap::ArcSwap;
use std::sync::Arc;
use tower_sticky::{BackendId, Engine};

/// What every clone of a peer layer and its services shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) me: Arc<str>,
    pub(crate) me_id: BackendId,
    pub(crate) table: ArcSwap<peers::PeerTable>,
    pub(crate) hop: hop::HopMarker,
}
