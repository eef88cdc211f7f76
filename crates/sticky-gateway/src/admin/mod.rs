//! The admin listener: a JSON API over the gateway's backends and routes, a
//! Prometheus `/metrics` endpoint and a live dashboard page.
//!
//! | Endpoint | Answer |
//! | --- | --- |
//! | `GET /` | the dashboard (one self-contained HTML page) |
//! | `GET /backends` | JSON array of backends with `pinned_hit_rate` (and `fleet_active_sessions` on a store-fed route) |
//! | `POST /backends/{id}/drain` | 200 with the backend's new JSON, 404 for an unknown id |
//! | `POST /backends/{id}/activate` | the same |
//! | | on a route fed by a shared store (etcd): the intent is stored there first (503 "intent not stored" when the store is unreachable), and the answer comes once this replica applied it |
//! | | on a route fed by Kubernetes EndpointSlices: 409, nothing changed, with the `kubectl` way to drain a pod (Kubernetes owns drain there, on every replica) |
//! | `GET /stats` | JSON: `routes` (outcome counters), a `latency` summary and, with a shared state source, `store` ([`StoreView`]: engine, connected, revision, last sync age, live replicas and their applied revisions, fleet session estimates) |
//! | `GET /metrics` | Prometheus text exposition |
//!
//! [`serve_with_auth`] requires a bearer token as [`auth::AdminAuth`] says
//! (401 otherwise); [`serve`] is open, for a loopback listener.
//!
//! The gateway implements [`AdminView`] over its live routes and calls
//! [`serve`] with a loopback listener; its proxy records each request's
//! duration in the shared [`LatencyHistogram`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use sticky_gateway::admin::{serve, AdminView, BackendView, LatencyHistogram, RouteView};
//!
//! struct Gateway;
//! impl AdminView for Gateway {
//!     fn backends(&self) -> Vec<BackendView> { Vec::new() }
//!     fn routes(&self) -> Vec<RouteView> { Vec::new() }
//!     fn drain(&self, _id: &str) -> bool { false }
//!     fn activate(&self, _id: &str) -> bool { false }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9900").await?;
//! let latency = Arc::new(LatencyHistogram::new());
//! // In the proxy: latency.record(started.elapsed());
//! serve(listener, Arc::new(Gateway), latency, std::future::pending()).await
//! # }
//! ```

mod api;
pub mod auth;
mod dashboard;
mod metrics;
mod model;

use std::future::Future;
use std::sync::Arc;

pub use api::{router, router_with_auth};
pub use metrics::{
    escape_label, render_parts, HistogramSnapshot, LatencyHistogram, LATENCY_BOUNDS,
};
pub use model::{AdminView, BackendView, ReplicaView, RouteView, StoreView};

/// Renders the `/metrics` text for a view and a latency histogram.
pub fn render_metrics(view: &dyn AdminView, latency: &LatencyHistogram) -> String {
    metrics::render(view, latency)
}

/// Serves the admin API and dashboard on `listener` until `shutdown`
/// completes, then finishes the requests in progress and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    view: Arc<dyn AdminView>,
    latency: Arc<LatencyHistogram>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_auth(
        listener,
        view,
        latency,
        Arc::new(auth::AdminAuth::open()),
        shutdown,
    )
    .await
}

/// Serves the admin API as [`serve`] does, each call checked by `auth`
/// (refusals are logged with the peer's address).
pub async fn serve_with_auth(
    listener: tokio::net::TcpListener,
    view: Arc<dyn AdminView>,
    latency: Arc<LatencyHistogram>,
    auth: Arc<auth::AdminAuth>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with_auth(view, latency, auth)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
