//! Routes: each a host and path prefix with its own backend pool, decision
//! engine ([`tower_sticky::Engine`]) and session persistence.
//!
//! A route's backends live in an [`ArcSwap`]ped [`BackendTable`] keyed by
//! backend *name*: the stable id that tokens carry derives from the name, so
//! a backend keeps its sessions when its address changes or the file is
//! reloaded. Readers on the hot path load the table without locking.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderName;
use tower_sticky::table::upkeep::Rebuild;
use tower_sticky::token::KeyRing;
use tower_sticky::{AffinitySource, BackendTable, CookieConfig, Engine, Placement, StickyConfig};

use crate::config::{GatewayConfig, Persistence, PlacementKind, RouteConfig};
use crate::proxy::pool::{Pool, PoolSettings};
use crate::tls::backends;

/// A route's backend table: backend name → connection pool.
pub type Table = BackendTable<String, Arc<Pool>>;

/// One route.
#[derive(Debug)]
pub struct Route {
    /// Its settings.
    pub config: RouteConfig,
    /// Its decision engine (counters included).
    pub engine: Engine,
    /// Its backends.
    pub table: ArcSwap<Table>,
}

impl Route {
    /// Whether this route serves `host` and `path`.
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(h) = &self.config.host {
            if !host.is_some_and(|x| x.eq_ignore_ascii_case(h)) {
                return false;
            }
        }
        let p = self.config.prefix.as_str();
        p == "/"
            || path == p
            || (path.starts_with(p)
                && (p.ends_with('/') || path.as_bytes().get(p.len()) == Some(&b'/')))
    }
}

/// Every route, most specific first (host routes, then longer prefixes).
#[derive(Debug, Default)]
pub struct RouteSet {
    routes: Vec<Arc<Route>>,
}

impl RouteSet {
    /// Builds the routes of `config`, reusing from `prev` the state of
    /// backends that stay (status, counters, sessions) and their idle
    /// connections when the address is unchanged.
    pub fn build(
        config: &GatewayConfig,
        keys: &KeyRing,
        prev: Option<&RouteSet>,
        now_ms: u64,
    ) -> Result<Self, String> {
        let pool = PoolSettings {
            connect_timeout: config.timeouts.connect,
            max_idle: config.limits.max_idle_per_backend,
            idle_timeout: config.timeouts.backend_idle,
        };
        let mut routes = Vec::with_capacity(config.routes.len());
        for rc in &config.routes {
            let old = prev.and_then(|p| p.by_name(&rc.name));
            // The same authorities as before: keep the running client
            // configuration (its TLS session cache) so that the route's
            // TLS pools, and their idle connections, carry over.
            let kept;
            let rc = match (
                old.and_then(|o| o.config.backend_ca.as_ref()),
                &rc.backend_ca,
            ) {
                (Some(o), Some(n)) if o == n && !std::sync::Arc::ptr_eq(o.client(), n.client()) => {
                    let mut c = rc.clone();
                    c.backend_ca = Some(o.clone());
                    kept = c;
                    &kept
                }
                _ => rc,
            };
            let fed = config.fed_route() == Some(rc.name.as_str());
            let table = match old {
                // A state source owns this route's backends: a reload of the
                // file keeps them as they are (the source applies the next
                // snapshot to the new route, see `crate::state::apply`).
                Some(o) if fed => o.table.load_full(),
                _ => Arc::new(build_table(
                    rc,
                    old.map(|r| r.table.load_full()).as_deref(),
                    pool,
                    now_ms,
                )?),
            };
            routes.push(Arc::new(Route {
                config: rc.clone(),
                engine: Engine::new(sticky_config(rc, keys.clone())),
                table: ArcSwap::new(table),
            }));
        }
        routes.sort_by_key(|r| {
            (
                r.config.host.is_none(),
                std::cmp::Reverse(r.config.prefix.len()),
            )
        });
        Ok(Self { routes })
    }

    /// The route for a request, if any.
    #[inline]
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(host, path))
    }

    /// The route called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.config.name == name)
    }

    /// Every route.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }
}

/// A route's table: backends of `rc`, keeping the state of those already in
/// `prev` and reusing their idle connections when the address (and, for an
/// `https://` backend, the route's CA) is unchanged.
/// The rules (slow start only for backends new to the set, removal grace)
/// are the core's: [`Rebuild`].
pub fn build_table(
    rc: &RouteConfig,
    prev: Option<&Table>,
    pool: PoolSettings,
    now_ms: u64,
) -> Result<Table, String> {
    let mut rebuild = Rebuild::new(prev, now_ms);
    for b in &rc.backends {
        let ca = rc.backend_ca.as_ref();
        let value = match rebuild.previous(&b.name) {
            Some(o) if backends::is_same(o.value(), &b.address, ca) => o.value().clone(),
            _ => Arc::new(
                backends::pool(&b.name, &b.address, pool, ca)
                    .map_err(|e| format!("backend {:?}: {e}", b.name))?,
            ),
        };
        rebuild
            .insert(b.name.clone(), value, b.weight)
            .map_err(|e| format!("backend {:?}: {e}", b.name))?;
    }
    rebuild
        .finish(rc.removal_grace)
        .map_err(|e| format!("backend table: {e}"))
}

/// The core engine's settings for a route.
pub fn sticky_config(rc: &RouteConfig, keys: KeyRing) -> StickyConfig {
    let source = match &rc.persistence {
        Persistence::Cookie(c) => {
            let mut cookie = CookieConfig::new(c.name.clone())
                .path(c.path.clone())
                .secure(c.secure)
                .secure_over_tls(c.secure_on_tls)
                .http_only(c.http_only)
                .same_site(c.same_site)
                .lifetime(c.lifetime);
            if let Some(d) = &c.domain {
                cookie = cookie.domain(d.clone());
            }
            AffinitySource::cookie(cookie)
        }
        Persistence::Header(h) => AffinitySource::header(
            HeaderName::from_bytes(h.as_bytes()).expect("validated header name"),
        ),
        Persistence::ClientAddr(trusted) => AffinitySource::client_addr(trusted.iter().copied()),
        // No stickiness: every request is placed as if new, and no token is issued.
        Persistence::None => AffinitySource::extractor(|_| None),
    };
    let placement = match rc.placement {
        PlacementKind::LeastLoaded => Placement::least_loaded(),
        PlacementKind::RoundRobin => Placement::round_robin(),
        PlacementKind::Weighted => Placement::weighted(),
        PlacementKind::Rendezvous => Placement::rendezvous(rc.hash_balance_factor),
    };
    let mut c = StickyConfig::new(keys)
        .source(source)
        .placement(placement)
        .hash_balance_factor(rc.hash_balance_factor)
        .failover(rc.failover)
        .ejection(rc.ejection)
        .strip_token(rc.strip_token);
    if let Some(d) = rc.absolute_timeout {
        c = c.absolute_timeout(d);
    }
    if let Some(d) = rc.idle_timeout {
        c = c.idle_timeout(d);
    }
    if let Some(d) = rc.refresh_interval {
        c = c.refresh_interval(d);
    }
    if let Some(d) = rc.slow_start {
        c = c.slow_start(d);
    }
    if let Some(d) = rc.removal_grace {
        c = c.removal_grace(d);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;
    use std::time::Duration;
    use tower_sticky::StableId;

    fn settings() -> PoolSettings {
        PoolSettings {
            connect_timeout: Duration::from_secs(1),
            max_idle: 8,
            idle_timeout: Duration::from_secs(4),
        }
    }

    fn backends(names: &[(&str, &str)]) -> Vec<BackendConfig> {
        names
            .iter()
            .map(|(n, a)| BackendConfig {
                name: n.to_string(),
                address: a.to_string(),
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn rebuild_keeps_status_of_staying_backends() {
        let mut rc =
            RouteConfig::catch_all(backends(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]));
        let t1 = build_table(&rc, None, settings(), 1000).unwrap();
        t1.get_by_id("a".stable_id()).unwrap().status().drain();
        rc.backends = backends(&[("a", "127.0.0.1:9"), ("c", "127.0.0.1:3")]);
        let t2 = build_table(&rc, Some(&t1), settings(), 2000).unwrap();
        assert_eq!(t2.len(), 2);
        let a = t2.get_by_id("a".stable_id()).unwrap();
        assert!(a.status().is_draining(), "state kept across a reload");
        assert_eq!(a.value().address(), "127.0.0.1:9");
        assert!(t2.get_by_id("b".stable_id()).is_none());
        rc.removal_grace = Some(Duration::from_secs(60));
        rc.backends = backends(&[("c", "127.0.0.1:3")]);
        let t3 = build_table(&rc, Some(&t2), settings(), 3000).unwrap();
        assert_eq!(t3.len(), 2, "a removed backend stays for its grace period");
        assert_eq!(
            t3.get_by_id("a".stable_id()).unwrap().status().state(3000),
            tower_sticky::BackendState::Removed
        );
    }

    #[test]
    fn only_backends_added_by_a_rebuild_are_slow_started() {
        let mut rc =
            RouteConfig::catch_all(backends(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]));
        let t1 = build_table(&rc, None, settings(), 1_000_000).unwrap();
        for b in t1.iter() {
            assert_eq!(b.status().added_ms(), 0, "at start: fully ramped");
        }
        rc.backends = backends(&[("a", "127.0.0.1:1"), ("c", "127.0.0.1:3")]);
        let t2 = build_table(&rc, Some(&t1), settings(), 2_000_000).unwrap();
        let added = |t: &Table, n: &str| t.get_by_id(n.stable_id()).unwrap().status().added_ms();
        assert_eq!(added(&t2, "a"), 0, "a staying backend keeps its age");
        assert_eq!(
            added(&t2, "c"),
            2_000_000,
            "a new one ramps from the reload"
        );
    }

    #[test]
    fn a_reload_keeps_tls_pools_while_the_ca_is_the_same() {
        use crate::tls::backends::BackendCa;
        use crate::tls::throwaway::Authority;
        let dir = std::env::temp_dir().join(format!("sticky-routes-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        let write_ca = || std::fs::write(&file, Authority::new("ca").unwrap().cert_pem).unwrap();
        let config = || {
            let mut rc = RouteConfig::catch_all(backends(&[("a", "https://localhost:8443")]));
            rc.backend_ca = Some(BackendCa::load("backend_ca_file", &file).unwrap());
            GatewayConfig::new("127.0.0.1:0".parse().unwrap(), vec![rc])
        };
        let pool = |set: &RouteSet| {
            let table = set.iter().next().unwrap().table.load_full();
            table.get_by_id("a".stable_id()).unwrap().value().clone()
        };
        let keys = KeyRing::generate();
        write_ca();
        let first = RouteSet::build(&config(), &keys, None, 0).unwrap();
        assert!(pool(&first).is_tls());
        // The file read again, unchanged: the same pool, idle connections and all.
        let again = RouteSet::build(&config(), &keys, Some(&first), 0).unwrap();
        assert!(Arc::ptr_eq(&pool(&first), &pool(&again)));
        // Another authority: new connections, verified against it.
        write_ca();
        let changed = RouteSet::build(&config(), &keys, Some(&again), 0).unwrap();
        assert!(!Arc::ptr_eq(&pool(&again), &pool(&changed)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let mut rc = RouteConfig::catch_all(backends(&[("a", "127.0.0.1:1")]));
        rc.prefix = "/api".into();
        let r = Route {
            engine: Engine::new(sticky_config(&rc, KeyRing::generate())),
            table: ArcSwap::from_pointee(Table::new()),
            config: rc,
        };
        assert!(r.matches(None, "/api"));
        assert!(r.matches(None, "/api/x"));
        assert!(!r.matches(None, "/apix"));
        assert!(!r.matches(None, "/"));
    }
}
