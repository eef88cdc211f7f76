//! [`StickyBalancer`]: session affinity over a pingora [`LoadBalancer`].

use std::sync::Arc;

use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::selection::{BackendIter, BackendSelection, RoundRobin};
use pingora_load_balancing::{Backend, LoadBalancer};
use tower_sticky::table::BackendStatus;
use tower_sticky::{BackendState, Engine, Placement, StableId, StickyConfig};

use crate::membership::{Membership, Snapshot};
use crate::selection::InnerSelection;

/// Makes the [`HttpPeer`] a request to a backend goes to.
type PeerFn = dyn Fn(&Backend) -> HttpPeer + Send + Sync;

/// Sealed-cookie session affinity over the backends of a pingora
/// [`LoadBalancer`]: a session's requests go to its pinned backend; new
/// sessions are placed by the core's placement (the [`StickyConfig`]'s) or by
/// the load balancer's own [`BackendSelection`]; pingora's health checks and
/// enabled state decide which backends are up; the failover policy decides
/// where a session whose backend is down goes.
///
/// Cheap to clone: clones share the engine, counters and backend states. Call
/// its hook helpers from the hooks of the same name of your `ProxyHttp`.
pub struct StickyBalancer<S: BackendSelection = RoundRobin> {
    pub(crate) lb: Arc<LoadBalancer<S>>,
    pub(crate) engine: Engine,
    pub(crate) membership: Arc<Membership>,
    pub(crate) peer: Arc<PeerFn>,
}

impl<S: BackendSelection> Clone for StickyBalancer<S> {
    fn clone(&self) -> Self {
        Self {
            lb: self.lb.clone(),
            engine: self.engine.clone(),
            membership: self.membership.clone(),
            peer: self.peer.clone(),
        }
    }
}

impl<S: BackendSelection> std::fmt::Debug for StickyBalancer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyBalancer")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl<S> StickyBalancer<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    /// Affinity over `lb`'s backends; new sessions are placed by `config`'s
    /// placement (least loaded of two by default).
    pub fn new(lb: Arc<LoadBalancer<S>>, config: StickyConfig) -> Self {
        Self::build(lb, config, |_| None)
    }

    /// Affinity over `lb`'s backends; new sessions are placed by `lb`'s own
    /// selection (`RoundRobin`, `Consistent` keyed by the session id, ...),
    /// skipping backends that are draining, ejected or not ready.
    pub fn with_inner_selection(lb: Arc<LoadBalancer<S>>, config: StickyConfig) -> Self {
        Self::build(lb, config, |(lb, membership)| {
            Some(Placement::custom(InnerSelection {
                lb: lb.clone(),
                membership: membership.clone(),
            }))
        })
    }

    fn build(
        lb: Arc<LoadBalancer<S>>,
        config: StickyConfig,
        placement: impl FnOnce((&Arc<LoadBalancer<S>>, &Arc<Membership>)) -> Option<Placement>,
    ) -> Self {
        let membership = Arc::new(Membership::new());
        let config = match placement((&lb, &membership)) {
            Some(p) => config.placement(p),
            None => config,
        };
        Self {
            lb,
            engine: Engine::new(config),
            membership,
            peer: Arc::new(plain_http_peer),
        }
    }
}

impl<S> StickyBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    /// How the [`HttpPeer`] for a backend is made (TLS, SNI, timeouts).
    /// Default: plain HTTP to the backend's address.
    pub fn peer(mut self, make: impl Fn(&Backend) -> HttpPeer + Send + Sync + 'static) -> Self {
        self.peer = Arc::new(make);
        self
    }

    /// The pingora load balancer.
    pub fn load_balancer(&self) -> &Arc<LoadBalancer<S>> {
        &self.lb
    }

    /// The engine's configuration.
    pub fn config(&self) -> &StickyConfig {
        self.engine.config()
    }

    /// Stops giving the backend named `name` new sessions; its pinned
    /// sessions stay. False if there is no such backend.
    pub fn drain(&self, name: &str) -> bool {
        self.status(name).map(|s| s.drain()).is_some()
    }

    /// Returns a drained backend to service. False if there is no such backend.
    pub fn activate(&self, name: &str) -> bool {
        self.status(name).map(|s| s.activate()).is_some()
    }

    /// The state of the backend named `name` (active, draining, ejected, removed).
    pub fn state(&self, name: &str) -> Option<BackendState> {
        let now = self.now_ms();
        self.status(name).map(|s| s.state(now))
    }

    /// The live status of the backend named `name`: its state, requests in
    /// flight, requests routed, sessions placed, failures (what an operator
    /// reads to see when a drained backend is safe to stop).
    pub fn status(&self, name: &str) -> Option<Arc<BackendStatus>> {
        let snap = self.snapshot();
        let b = snap.table.get_by_id(name.stable_id())?;
        Some(b.status().clone())
    }

    /// The names of the backends in the table, in no particular order.
    pub fn backend_names(&self) -> Vec<String> {
        self.snapshot()
            .table
            .iter()
            .map(|b| b.key().name.to_string())
            .collect()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.engine.config().clock_ref().now_ms()
    }

    /// The table for pingora's current membership and health.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        let grace = self
            .engine
            .config()
            .removal_grace_period()
            .map(|d| d.as_millis() as u64);
        self.membership
            .load(self.lb.backends(), self.now_ms(), grace)
    }
}

/// Plain HTTP/1.1 to the backend's address.
fn plain_http_peer(b: &Backend) -> HttpPeer {
    match &b.addr {
        SocketAddr::Inet(a) => HttpPeer::new(*a, false, String::new()),
        #[cfg(unix)]
        SocketAddr::Unix(a) => {
            let path = a
                .as_pathname()
                .and_then(|p| p.to_str())
                .unwrap_or_default()
                .to_string();
            HttpPeer::new_uds(&path, false, String::new())
                .unwrap_or_else(|_| HttpPeer::new("0.0.0.0:0", false, String::new()))
        }
    }
}
