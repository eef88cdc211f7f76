//! The gateway shape: an axum app that proxies to a backend set, with
//! affinity, in one line.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use axum_sticky::{Backends, StickyProxy};
//! use tower_sticky::{token::KeyRing, StickyConfig};
//!
//! # async fn run() {
//! let config = StickyConfig::new(KeyRing::generate());
//! let backends = Backends::http([("app-1", "127.0.0.1:3001"), ("app-2", "127.0.0.1:3002")]);
//! let app = Router::new()
//!     .route("/healthz", get(|| async { "ok" })) // local: no cookie
//!     .fallback_service(StickyProxy::new(config, backends));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! Local routes never see the proxy, so they get no cookie. Every proxied
//! request carries an [`Affinity`](crate::Affinity) in its extensions (the
//! backend service sees it) and its response carries it too (outer
//! middleware sees it). A refused request is a `503`, an unreachable or
//! failing backend a `502`, each with a one-line plain-text reason.
//!
//! Serve the app with `into_make_service_with_connect_info::<SocketAddr>()`
//! and the backend sees the client's address appended to
//! `X-Forwarded-For`, as sticky-gateway sends it.

mod reroute;
mod service;

pub use service::StickyProxy;
