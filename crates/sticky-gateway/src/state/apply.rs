//! Applying a [`Snapshot`] to a route: the one place where any state source
//! (etcd, Kubernetes) turns "the backends wanted now" into the route's
//! table, the way a file reload does.
//!
//! - A backend that stays keeps its status, counters and every session
//!   (the core's [`Rebuild`]); its idle connections stay when its address is
//!   unchanged.
//! - [`AdminState::Active`] → active, [`AdminState::Draining`] → draining
//!   (pinned sessions stay, no new ones).
//! - [`AdminState::Disabled`] → left out of the table, with no removal
//!   grace: the backend is not routed at all, and its sessions fail over by
//!   the route's failover policy (with `redistribute`, to the same backend on
//!   every replica, since the choice is a function of the session and the
//!   set). A backend missing from the snapshot is removed with the route's
//!   `removal_grace`, as a file reload removes it.
//! - The table is swapped whole ([`arc_swap`]): requests in progress finish
//!   on the table they started with; nothing on the request path waits.

use std::sync::Arc;

use tower_sticky::table::upkeep::Rebuild;
use tower_sticky::StableId;

use super::{AdminState, Snapshot};
use crate::gateway::Gateway;
use crate::proxy::pool::{Pool, PoolSettings};

/// Applies `snap` to the route called `route_name`: its table becomes the
/// snapshot's backends, weights and states: staying backends keep status,
/// counters and sessions; `draining` keeps pinned sessions and takes no new
/// ones; `disabled` is left out of the table (no removal grace), so its
/// sessions fail over by the route's policy, alike on every replica; a
/// backend missing from the snapshot goes with the route's `removal_grace`.
/// The snapshot is remembered, so a configuration reload re-applies it to
/// the rebuilt route. An unknown route or a backend name whose id collides
/// with another's is an error, and the table is left as it was.
pub fn apply(gw: &Gateway, route_name: &str, snap: &Snapshot) -> Result<(), String> {
    apply_table(gw, route_name, snap)?;
    gw.fed
        .lock()
        .expect("fed snapshots")
        .insert(route_name.to_owned(), snap.clone());
    Ok(())
}

/// Applies again the last snapshot of every fed route (after a reload
/// rebuilt the routes).
pub(crate) fn reapply(gw: &Gateway) {
    let fed: Vec<(String, Snapshot)> = gw
        .fed
        .lock()
        .expect("fed snapshots")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (route, snap) in fed {
        if let Err(e) = apply_table(gw, &route, &snap) {
            tracing::error!(route, error = %e, "cannot re-apply the store's snapshot");
        }
    }
}

fn apply_table(gw: &Gateway, route_name: &str, snap: &Snapshot) -> Result<(), String> {
    let routes = gw.routes_full();
    let route = routes
        .by_name(route_name)
        .ok_or_else(|| format!("no route named {route_name:?}"))?;
    let config = gw.config();
    let settings = PoolSettings {
        connect_timeout: config.timeouts.connect,
        max_idle: config.limits.max_idle_per_backend,
        idle_timeout: config.timeouts.backend_idle,
    };
    let now = gw.now_ms();
    let prev = route.table.load_full();
    // A first snapshot into an empty table is a start, not a scale-up:
    // nothing to slow-start against.
    let mut rebuild = Rebuild::new((!prev.is_empty()).then_some(&*prev), now);
    let mut unresolved = Vec::new();
    for (name, e) in &snap.backends {
        if e.state == AdminState::Disabled {
            continue;
        }
        let value = match rebuild.previous(name) {
            Some(o) if o.value().address() == e.address => o.value().clone(),
            _ => {
                let p = Arc::new(Pool::new(name, &e.address, settings));
                if p.needs_resolving() {
                    unresolved.push(p.clone());
                }
                p
            }
        };
        rebuild
            .insert(name.clone(), value, e.weight.max(1))
            .map_err(|err| format!("backend {name:?}: {err}"))?;
    }
    let mut table = rebuild
        .finish(route.config.removal_grace)
        .map_err(|e| format!("backend table: {e}"))?;
    for (name, e) in &snap.backends {
        match e.state {
            // Kept through a removal grace only if it was routed before.
            AdminState::Disabled => {
                table.remove(name.stable_id());
            }
            AdminState::Draining => {
                if let Some(b) = table.get_by_id(name.stable_id()) {
                    b.status().drain();
                }
            }
            AdminState::Active => {
                if let Some(b) = table.get_by_id(name.stable_id()) {
                    b.status().activate();
                }
            }
        }
    }
    route.table.store(Arc::new(table));
    if !unresolved.is_empty() {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            for p in unresolved {
                rt.spawn(async move { p.resolve().await });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, GatewayConfig, RouteConfig};
    use crate::state::BackendEntry;
    use tower_sticky::token::KeyRing;

    fn entry(address: &str, state: AdminState) -> BackendEntry {
        BackendEntry {
            address: address.into(),
            weight: 1,
            state,
        }
    }

    #[test]
    fn a_snapshot_keeps_staying_backends_and_maps_each_state() {
        let rc = RouteConfig::catch_all(vec![BackendConfig {
            name: "a".into(),
            address: "127.0.0.1:1".into(),
            weight: 1,
        }]);
        let config = GatewayConfig::new("127.0.0.1:0".parse().unwrap(), vec![rc]);
        let gw = Gateway::new(config, &KeyRing::generate(), None).unwrap();
        let route = gw.routes_full().iter().next().unwrap().config.name.clone();
        let table = || gw.routes_full().by_name(&route).unwrap().table.load_full();
        let a_before = table().get_by_id("a".stable_id()).unwrap().status().clone();
        let mut snap = Snapshot::default();
        snap.backends
            .insert("a".into(), entry("127.0.0.1:1", AdminState::Draining));
        snap.backends
            .insert("b".into(), entry("127.0.0.1:2", AdminState::Active));
        snap.backends
            .insert("c".into(), entry("127.0.0.1:3", AdminState::Disabled));
        apply(&gw, &route, &snap).unwrap();
        let t = table();
        let a = t.get_by_id("a".stable_id()).unwrap();
        assert!(Arc::ptr_eq(a.status(), &a_before), "a keeps its status");
        assert!(a.status().is_draining());
        assert!(!t.get_by_id("b".stable_id()).unwrap().status().is_draining());
        assert!(
            t.get_by_id("c".stable_id()).is_none(),
            "disabled: not routed"
        );
        snap.backends
            .insert("a".into(), entry("127.0.0.1:1", AdminState::Active));
        apply(&gw, &route, &snap).unwrap();
        assert!(!table()
            .get_by_id("a".stable_id())
            .unwrap()
            .status()
            .is_draining());
        assert!(apply(&gw, "nope", &snap).is_err());
    }

    #[test]
    fn a_reload_keeps_the_backends_of_a_fed_route() {
        let mut config = GatewayConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![RouteConfig::catch_all(Vec::new())],
        );
        config.etcd = Some(crate::config::EtcdConfig::new(
            vec!["http://127.0.0.1:1".into()],
            "p",
            "default",
        ));
        reload_keeps_the_fed_backends(config);
    }

    #[test]
    fn a_reload_keeps_the_pods_of_a_kubernetes_fed_route() {
        let mut config = GatewayConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![RouteConfig::catch_all(Vec::new())],
        );
        config.kubernetes = Some(crate::config::KubernetesConfig::new("web", "default"));
        assert_eq!(config.fed_route(), Some("default"));
        reload_keeps_the_fed_backends(config);
    }

    fn reload_keeps_the_fed_backends(config: GatewayConfig) {
        let keys = KeyRing::generate();
        let gw = Gateway::new(config.clone(), &keys, None).unwrap();
        let mut snap = Snapshot::default();
        snap.backends
            .insert("a".into(), entry("127.0.0.1:1", AdminState::Draining));
        apply(&gw, "default", &snap).unwrap();
        // What a SIGHUP does: build from the file (no backends), install.
        let routes = gw.build_routes(&config, &keys).unwrap();
        gw.install(routes, config, &keys);
        reapply(&gw);
        let t = gw
            .routes_full()
            .by_name("default")
            .unwrap()
            .table
            .load_full();
        assert_eq!(t.len(), 1, "the store's backend stays");
        assert!(t.get_by_id("a".stable_id()).unwrap().status().is_draining());
    }
}
