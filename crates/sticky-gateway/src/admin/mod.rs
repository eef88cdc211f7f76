//! Admin API contract (stub until the admin module lands).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// What the admin API sees of a running gateway.
pub trait AdminView: Send + Sync + 'static {
    /// Every backend of every route.
    fn backends(&self) -> Vec<BackendView>;
    /// Every route with its counters.
    fn routes(&self) -> Vec<RouteView>;
    /// Drains the backend `id`; false when unknown.
    fn drain(&self, id: &str) -> bool;
    /// Returns the backend `id` to service; false when unknown.
    fn activate(&self, id: &str) -> bool;
}

/// One backend as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BackendView {
    /// Route name.
    pub route: String,
    /// Backend name.
    pub id: String,
    /// Configured address.
    pub address: String,
    /// active | draining | ejected | removed.
    pub state: String,
    /// healthy | unhealthy | unknown.
    pub health: String,
    /// Requests in flight.
    pub in_flight: usize,
    /// Requests routed here.
    pub requests: u64,
    /// New sessions placed here.
    pub new_sessions: u64,
    /// Pinned requests served here.
    pub pinned_hits: u64,
    /// Failed requests.
    pub failures: u64,
}

/// One route's counters.
#[derive(Clone, Debug, Serialize)]
pub struct RouteView {
    /// Route name.
    pub name: String,
    /// Path prefix.
    pub prefix: String,
    /// Requests that went to their pinned backend.
    pub pinned: u64,
    /// New sessions.
    pub new: u64,
    /// Re-pins by reason.
    pub repinned: Vec<(String, u64)>,
    /// Temporary routes by reason.
    pub temporary: Vec<(String, u64)>,
    /// Rejections by reason.
    pub rejected: Vec<(String, u64)>,
    /// Invalid tokens by reason.
    pub invalid_tokens: Vec<(String, u64)>,
}

/// Request latency histogram.
#[derive(Debug, Default)]
pub struct LatencyHistogram {}

impl LatencyHistogram {
    /// Records one request's latency.
    pub fn record(&self, _latency: Duration) {}
}

/// Serves the admin API until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    view: Arc<dyn AdminView>,
    latency: Arc<LatencyHistogram>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (listener, view, latency);
    shutdown.await;
    Ok(())
}
