//! What the admin listener presents: the [`AdminView`] the gateway implements,
//! and the plain views of backends and routes it returns.

use serde::Serialize;
use tower_sticky::{BackendStats, Stats};

/// The gateway's side of the admin listener: a read of its backends and
/// routes, and the two operator actions.
///
/// Every method is called from the admin listener's tasks, never from the
/// proxy's hot path; each call should be a cheap snapshot.
pub trait AdminView: Send + Sync + 'static {
    /// Every backend of every route, as it is now.
    fn backends(&self) -> Vec<BackendView>;
    /// Every route with its outcome counters.
    fn routes(&self) -> Vec<RouteView>;
    /// Puts the backend named `id` into draining: it keeps its sessions and
    /// gets no new ones. Returns `false` for an unknown backend id.
    fn drain(&self, id: &str) -> bool;
    /// Returns the backend named `id` to active. Returns `false` for an
    /// unknown backend id.
    fn activate(&self, id: &str) -> bool;
    /// When a store shared by replicas owns the backend named `id`, stores
    /// the operator's intent there instead of changing this replica alone
    /// (see [`crate::state::SharedStore::set_intent`]); `None` (the
    /// default) when no store owns it, for [`drain`](Self::drain) and
    /// [`activate`](Self::activate) to act locally.
    fn set_intent(
        &self,
        id: &str,
        state: crate::state::AdminState,
    ) -> Option<crate::state::IntentFuture> {
        let _ = (id, state);
        None
    }
    /// The shared store's state, when one feeds a route (default: none).
    fn store(&self) -> Option<StoreView> {
        None
    }
}

/// A shared state source (etcd, Kubernetes) as the operator sees it, in
/// `GET /stats` (`store`), the metrics and the dashboard.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreView {
    /// `etcd` or `kubernetes`.
    pub engine: String,
    /// The route it feeds.
    pub route: String,
    /// Whether this replica's watch is up now.
    pub connected: bool,
    /// Serving a snapshot from the local cache file, not yet confirmed by
    /// the store since this process started.
    pub stale: bool,
    /// The store revision this replica has applied.
    pub revision: u64,
    /// The revision of the backend set in use: it moves only when the set
    /// (membership, weights, intent) changed, not on every store revision.
    pub snapshot_revision: u64,
    /// Seconds since the store last answered (`null`: never, since start).
    pub last_sync_age_seconds: Option<f64>,
    /// The revision of the last operator-intent change (drain, activate):
    /// a replica that has applied it or later follows it.
    pub intent_revision: u64,
    /// Every live replica (those whose lease has not expired).
    pub replicas: Vec<ReplicaView>,
    /// Per backend: the fleet's estimate of distinct active sessions, every
    /// live replica's session sketch merged (this replica's own live one
    /// included).
    pub fleet_sessions: std::collections::BTreeMap<String, u64>,
    /// Set when the admin API's drain and activate on the fed route are
    /// refused because the source owns them (Kubernetes: a pod drains while
    /// it terminates), with what to do instead; `null` when they are stored.
    pub intent_refused: Option<String>,
}

impl StoreView {
    /// Live replicas that have applied the last intent change.
    pub fn intent_acknowledged(&self) -> usize {
        self.replicas
            .iter()
            .filter(|r| r.applied_revision >= self.intent_revision)
            .count()
    }
}

/// One live replica in [`StoreView`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplicaView {
    /// Its id.
    pub id: String,
    /// Its proxy address.
    pub address: String,
    /// Its sticky-gateway version.
    pub version: String,
    /// The store revision it had applied when it last published.
    pub applied_revision: u64,
    /// Whether it is this replica.
    pub this: bool,
}

/// One backend as the operator sees it.
#[derive(Clone, Debug, Serialize)]
pub struct BackendView {
    /// The route (pool) the backend belongs to.
    pub route: String,
    /// The backend's name, its id in the admin API.
    pub id: String,
    /// Where it is reached (`host:port`).
    pub address: String,
    /// `active`, `draining`, `ejected` or `removed`. A `removed` backend
    /// (gone from the file or from discovery, within its route's
    /// `removal_grace`) keeps serving the sessions pinned to it and takes no
    /// new ones, as a draining one does, until `removal_deadline_ms`; then it
    /// is dropped.
    pub state: String,
    /// For a `removed` backend, when its removal grace ends (ms since the
    /// UNIX epoch); `null` otherwise.
    pub removal_deadline_ms: Option<u64>,
    /// `healthy`, `unhealthy` or `unknown` (no active health check).
    pub health: String,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests routed here since start.
    pub requests: u64,
    /// New sessions placed here since start.
    pub new_sessions: u64,
    /// Requests that arrived pinned here and were served here.
    pub pinned_hits: u64,
    /// Failed requests (connect errors, 5xx).
    pub failures: u64,
    /// Estimated distinct sessions that reached this backend within the
    /// route's session window (its idle timeout): the sessions it still
    /// holds. A HyperLogLog estimate (about 1.6 % error, 0 exactly when no
    /// session came).
    pub active_sessions: u64,
    /// The window `active_sessions` covers, in seconds.
    pub session_window_seconds: u64,
    /// Safe to stop: draining (or removed), nothing in flight, no session
    /// within the window. What `GET /backends/NAME/drained` answers 200 on.
    pub drained: bool,
}

impl BackendView {
    /// Builds a view from the core's per-backend snapshot; the gateway
    /// supplies what the core does not know (name, address, health).
    pub fn from_stats<K>(
        route: impl Into<String>,
        id: impl Into<String>,
        address: impl Into<String>,
        health: impl Into<String>,
        stats: &BackendStats<K>,
    ) -> Self {
        Self {
            route: route.into(),
            id: id.into(),
            address: address.into(),
            state: stats.state().as_str().to_owned(),
            removal_deadline_ms: stats.removal_deadline_ms(),
            health: health.into(),
            in_flight: stats.in_flight(),
            requests: stats.requests(),
            new_sessions: stats.new_sessions(),
            pinned_hits: stats.pinned_hits(),
            failures: stats.failures(),
            active_sessions: stats.active_sessions(),
            session_window_seconds: stats.session_window().as_secs(),
            drained: stats.is_drained(),
        }
    }

    /// Pinned hits over requests, 0 when there were no requests.
    pub fn pinned_hit_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.pinned_hits as f64 / self.requests as f64
        }
    }
}

/// One route's outcome counters since start.
#[derive(Clone, Debug, Serialize)]
pub struct RouteView {
    /// The route's name.
    pub name: String,
    /// The path prefix it matches.
    pub prefix: String,
    /// Requests that went to their pinned backend.
    pub pinned: u64,
    /// New sessions placed.
    pub new: u64,
    /// Sessions re-pinned, by reason (`Reason::as_str`).
    pub repinned: Vec<(String, u64)>,
    /// Requests served temporarily elsewhere, by reason.
    pub temporary: Vec<(String, u64)>,
    /// Requests answered 503 by the layer, by reason.
    pub rejected: Vec<(String, u64)>,
    /// Presented tokens that were not trusted, by reason
    /// (`InvalidToken::as_str`).
    pub invalid_tokens: Vec<(String, u64)>,
}

impl RouteView {
    /// Builds a route's view from the core's [`Stats`] snapshot. Every reason
    /// is listed, zero counts included, in the core's fixed order.
    pub fn from_stats<K>(
        name: impl Into<String>,
        prefix: impl Into<String>,
        stats: &Stats<K>,
    ) -> Self {
        let reasons = |rs: &[(tower_sticky::Reason, u64)]| {
            rs.iter()
                .map(|(r, n)| (r.as_str().to_owned(), *n))
                .collect()
        };
        Self {
            name: name.into(),
            prefix: prefix.into(),
            pinned: stats.pinned(),
            new: stats.new_sessions(),
            repinned: reasons(stats.repinned()),
            temporary: reasons(stats.temporary()),
            rejected: reasons(stats.rejected()),
            invalid_tokens: stats
                .invalid_tokens()
                .iter()
                .map(|(r, n)| (r.as_str().to_owned(), *n))
                .collect(),
        }
    }
}
