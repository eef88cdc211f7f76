//! The running gateway's shared state: the routes (swapped whole on reload),
//! the latency histogram, and the settings the proxy path reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use tower_sticky::token::KeyRing;
use tower_sticky::Clock;

use crate::admin::LatencyHistogram;
use crate::config::GatewayConfig;
use crate::routes::RouteSet;
use crate::shutdown::Shutdown;

/// Everything the proxy path and the admin side share.
#[derive(Debug)]
pub struct Gateway {
    routes: ArcSwap<RouteSet>,
    config: ArcSwap<GatewayConfig>,
    /// Request latency, as the admin API reports it.
    pub latency: Arc<LatencyHistogram>,
    /// Graceful shutdown and the count of open connections and tunnels.
    pub shutdown: Shutdown,
    /// Whether to write an access-log line per request.
    pub access_log: bool,
    /// The config file, for SIGHUP reloads.
    pub config_path: Option<PathBuf>,
    /// Background tasks tied to the current routes (health checks).
    pub(crate) tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    keys: Mutex<KeyRing>,
    clock: Clock,
    /// The last snapshot a state source applied, per route it feeds.
    pub(crate) fed: Mutex<BTreeMap<String, crate::state::Snapshot>>,
    /// The shared store, when one feeds a route.
    pub(crate) store: OnceLock<Arc<dyn crate::state::SharedStore>>,
}

impl Gateway {
    /// A gateway for `config`, sealing with `keys`.
    pub fn new(
        config: GatewayConfig,
        keys: &KeyRing,
        config_path: Option<PathBuf>,
    ) -> Result<Arc<Self>, String> {
        let clock = Clock::system();
        let routes = RouteSet::build(&config, keys, None, clock.now_ms())?;
        Ok(Arc::new(Self {
            routes: ArcSwap::from_pointee(routes),
            access_log: config.access_log,
            config: ArcSwap::from_pointee(config),
            latency: Arc::new(LatencyHistogram::default()),
            shutdown: Shutdown::new(),
            config_path,
            tasks: Mutex::new(Vec::new()),
            keys: Mutex::new(keys.clone()),
            clock,
            fed: Mutex::new(BTreeMap::new()),
            store: OnceLock::new(),
        }))
    }

    /// The routes now. A cheap, lock-free load.
    #[inline]
    pub fn routes(&self) -> arc_swap::Guard<Arc<RouteSet>> {
        self.routes.load()
    }

    /// The routes now, as an owned handle.
    pub fn routes_full(&self) -> Arc<RouteSet> {
        self.routes.load_full()
    }

    /// The configuration now.
    pub fn config(&self) -> Arc<GatewayConfig> {
        self.config.load_full()
    }

    /// Milliseconds since the UNIX epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Replaces the routes with those of `config`; backends that stay keep
    /// their state and every session. Backends new under a host name have
    /// no address until resolved: a reload resolves them
    /// between [`Gateway::build_routes`] and [`Gateway::install`].
    pub fn apply(&self, config: GatewayConfig, keys: &KeyRing) -> Result<(), String> {
        let routes = self.build_routes(&config, keys)?;
        self.install(routes, config, keys);
        Ok(())
    }

    /// The routes of `config`, carrying over the state of backends that stay
    /// in the routes now, without installing them.
    pub fn build_routes(&self, config: &GatewayConfig, keys: &KeyRing) -> Result<RouteSet, String> {
        let prev = self.routes.load_full();
        RouteSet::build(config, keys, Some(&prev), self.now_ms())
    }

    /// Installs routes built by [`Gateway::build_routes`] for `config`.
    pub fn install(&self, routes: RouteSet, config: GatewayConfig, keys: &KeyRing) {
        self.routes.store(Arc::new(routes));
        self.config.store(Arc::new(config));
        *self.keys.lock().unwrap() = keys.clone();
    }

    /// The key ring in use.
    pub fn keys(&self) -> KeyRing {
        self.keys.lock().unwrap().clone()
    }

    /// The shared store feeding a route, if any.
    pub fn store(&self) -> Option<&Arc<dyn crate::state::SharedStore>> {
        self.store.get()
    }

    /// The backend route `route` would send a request with head `parts` to
    /// now, by name: the proxy path's own decision (counted as one
    /// request), without sending anything. For tools and tests comparing
    /// replicas; `None` for an unknown route or when no backend may take it.
    pub fn decide(&self, route: &str, parts: &http::request::Parts) -> Option<String> {
        let routes = self.routes();
        let r = routes.by_name(route)?;
        let table = r.table.load();
        let routed = r.engine.decide(&table, parts, |_: usize| true);
        let id = routed.backend()?;
        table.get_by_id(id).map(|b| b.key().clone())
    }

    /// The backend names of route `route` now, with whether each takes new
    /// sessions (`false` while draining or removed). For tools and tests.
    pub fn backend_names(&self, route: &str) -> Option<Vec<(String, bool)>> {
        let routes = self.routes();
        let r = routes.by_name(route)?;
        let now = self.now_ms();
        let table = r.table.load();
        Some(
            table
                .iter()
                .map(|b| {
                    let s = b.status().state(now);
                    (b.key().clone(), s == tower_sticky::BackendState::Active)
                })
                .collect(),
        )
    }
}
