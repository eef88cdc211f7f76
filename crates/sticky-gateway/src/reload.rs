//! Reloading the config file on SIGHUP, and the gateway's periodic upkeep:
//! re-resolving backend host names and purging backends whose removal
//! grace has ended.
//!
//! A reload rebuilds every route's table from the file. Backends are keyed
//! by name, so a backend that stays keeps its state (draining, ejected),
//! counters and every session; one that goes keeps serving its sessions for
//! the route's `removal_grace`, if set. The key file is read again, so key
//! rotation is: put a new key first, reload. A bad file is logged and the
//! running configuration stays. Backends new under a host name are resolved
//! before the new routes take traffic, so they are reachable at once rather
//! than after the next periodic resolution.

use std::sync::Arc;
use std::time::Duration;

use tower_sticky::table::upkeep::purged;

use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::routes::RouteSet;
use crate::{health, keyfile};

/// How often the upkeep runs (purging removed backends past their grace,
/// re-resolving host names when `resolve_interval` has passed).
pub const UPKEEP_TICK: Duration = Duration::from_secs(1);

/// The longest a reload waits for the resolver: a backend still unresolved
/// then is retried at the next periodic resolution.
const RESOLVE_ON_RELOAD: Duration = Duration::from_secs(5);

/// Reads the config file again and applies it.
pub async fn reload(gw: &Arc<Gateway>) -> Result<(), String> {
    let Some(path) = gw.config_path.clone() else {
        return Err("no config file to reload (started from the command line)".into());
    };
    // A route a state source (etcd, Kubernetes) feeds stays fed: its
    // settings (from the file or the command line) take effect on restart
    // only, and its backends are the source's, not the file's.
    let running = gw.config();
    let over = crate::config::Sources {
        etcd: running.etcd.as_ref().map(|e| e.to_raw()),
        kubernetes: running.kubernetes.as_ref().map(|k| k.to_raw()),
    };
    let mut config = GatewayConfig::from_file_with(&path, over).map_err(|e| e.to_string())?;
    if running.kubernetes.is_some() {
        config.kubernetes = running.kubernetes.clone();
    }
    let keys = match &config.key_file {
        Some(p) => keyfile::load(p)?,
        // A generated key must outlive reloads, or every session would be lost.
        None => gw.keys(),
    };
    let old = gw.config();
    if old.listen != config.listen
        || old.admin != config.admin
        || old.threads != config.threads
        || old.tls_listeners != config.tls_listeners
        || old.redirect_to_https != config.redirect_to_https
        || old.admin_auth != config.admin_auth
    {
        tracing::warn!(
            "listeners, admin settings and threads take effect on restart only \
             (certificate and token files reload in place)"
        );
    }
    let routes = gw.build_routes(&config, &keys)?;
    if tokio::time::timeout(RESOLVE_ON_RELOAD, resolve_unresolved(&routes))
        .await
        .is_err()
    {
        tracing::warn!("reload: host names still unresolved, retried at the next resolution");
    }
    gw.install(routes, config, &keys);
    // A snapshot applied while the new routes were being built would be
    // lost on the old ones: the store's last word goes on the new ones.
    crate::state::reapply(gw);
    health::restart(gw);
    Ok(())
}

/// Reloads on every SIGHUP until the gateway shuts down.
pub fn spawn_on_sighup(gw: Arc<Gateway>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloads disabled");
            return;
        };
        while hup.recv().await.is_some() {
            match reload(&gw).await {
                Ok(()) => tracing::info!("SIGHUP: configuration reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: reload failed, keeping the running configuration")
                }
            }
        }
    });
}

/// Resolves every backend host name now.
pub async fn resolve_all(gw: &Gateway) {
    let routes = gw.routes_full();
    for r in routes.iter() {
        let table = r.table.load_full();
        for b in table.iter() {
            b.value().resolve().await;
        }
    }
}

/// Resolves the host names of `routes` that have no address yet (backends
/// new in a reload), concurrently.
async fn resolve_unresolved(routes: &RouteSet) {
    let mut pending = tokio::task::JoinSet::new();
    for r in routes.iter() {
        for b in r.table.load().iter() {
            let pool = b.value().clone();
            if pool.needs_resolving() && pool.target().is_none() {
                pending.spawn(async move { pool.resolve().await });
            }
        }
    }
    while pending.join_next().await.is_some() {}
}

/// Periodic upkeep, every [`UPKEEP_TICK`]: purge of removed backends past
/// their grace, and re-resolution of host names once `resolve_interval` has
/// passed since the last one (the start resolves them first).
pub fn spawn_upkeep(gw: Arc<Gateway>) {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(start + UPKEEP_TICK, UPKEEP_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_resolve = start;
        loop {
            let now = tick.tick().await;
            if now.duration_since(last_resolve) >= gw.config().resolve_interval {
                last_resolve = now;
                resolve_all(&gw).await;
            }
            purge_removed(&gw);
        }
    });
}

/// Drops backends whose removal grace has ended.
pub fn purge_removed(gw: &Gateway) {
    let now = gw.now_ms();
    for r in gw.routes_full().iter() {
        let Some(grace) = r.config.removal_grace else {
            continue;
        };
        let Some(p) = purged(&r.table.load(), grace, now) else {
            continue;
        };
        for b in &p.gone {
            tracing::info!(route = %r.config.name, backend = %b.key(), "removal grace over, backend dropped");
        }
        r.table.store(Arc::new(p.table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, RouteConfig};
    use crate::proxy::pool::Pool;
    use tower_sticky::token::KeyRing;

    fn gateway(address: &str, resolve_interval: Duration) -> Arc<Gateway> {
        let backend = BackendConfig {
            name: "a".into(),
            address: address.into(),
            weight: 1,
        };
        let mut config = GatewayConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![RouteConfig::catch_all(vec![backend])],
        );
        config.resolve_interval = resolve_interval;
        Gateway::new(config, &KeyRing::generate(), None).unwrap()
    }

    fn pool(gw: &Gateway) -> Arc<Pool> {
        let routes = gw.routes_full();
        let table = routes.iter().next().unwrap().table.load_full();
        let pool = table.iter().next().unwrap().value().clone();
        pool
    }

    /// Lets the upkeep task run (and the resolver, on its blocking thread)
    /// without moving the paused clock: bounded by wall time.
    async fn settle_until(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn upkeep_resolves_host_names_once_resolve_interval_has_passed() {
        // `localhost` always resolves to loopback; the port needs no listener.
        let gw = gateway("localhost:4321", Duration::from_secs(30));
        let p = pool(&gw);
        assert!(p.needs_resolving());
        assert_eq!(p.target(), None, "a host name waits for the resolver");
        spawn_upkeep(gw.clone());
        let tick = || async {
            tokio::time::advance(UPKEEP_TICK).await;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        };
        tick().await;
        // 29 s of upkeep ticks: too early to resolve again.
        for _ in 1..29 {
            tick().await;
        }
        assert_eq!(p.target(), None, "resolved before resolve_interval");
        // The tick at 30 s re-resolves (one more allows for the task having
        // started a tick late), and the pool dials the new address.
        tick().await;
        tick().await;
        settle_until("resolved at resolve_interval", || p.target().is_some()).await;
        let target = p.target().unwrap();
        assert!(target.ip().is_loopback(), "{target}");
        assert_eq!(target.port(), 4321);
    }

    #[tokio::test]
    async fn a_reload_resolves_backends_new_under_a_host_name_before_installing_them() {
        let gw = gateway("127.0.0.1:1", Duration::from_secs(3600));
        let mut next = (*gw.config()).clone();
        next.routes[0].backends[0].address = "localhost:4322".into();
        let routes = gw.build_routes(&next, &gw.keys()).unwrap();
        resolve_unresolved(&routes).await;
        gw.install(routes, next, &gw.keys());
        let target = pool(&gw).target().expect("resolved before taking traffic");
        assert!(target.ip().is_loopback(), "{target}");
        assert_eq!(target.port(), 4322);
    }
}
