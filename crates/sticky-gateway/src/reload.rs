//! Reloading the config file on SIGHUP, and the gateway's periodic upkeep:
//! re-resolving backend host names and purging backends whose removal
//! grace has ended.
//!
//! A reload rebuilds every route's table from the file. Backends are keyed
//! by name, so a backend that stays keeps its state (draining, ejected),
//! counters and every session; one that goes keeps serving its sessions for
//! the route's `removal_grace`, if set. The key file is read again, so key
//! rotation is: put a new key first, reload. A bad file is logged and the
//! running configuration stays.

use std::sync::Arc;
use std::time::Duration;

use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::{health, keyfile};

/// Reads the config file again and applies it.
pub fn reload(gw: &Arc<Gateway>) -> Result<(), String> {
    let Some(path) = gw.config_path.clone() else {
        return Err("no config file to reload (started from the command line)".into());
    };
    let config = GatewayConfig::from_file(&path).map_err(|e| e.to_string())?;
    let keys = match &config.key_file {
        Some(p) => keyfile::load(p)?,
        // A generated key must outlive reloads, or every session would be lost.
        None => gw.keys(),
    };
    let old = gw.config();
    if old.listen != config.listen || old.admin != config.admin || old.threads != config.threads {
        tracing::warn!("listen, admin and threads take effect on restart only");
    }
    gw.apply(config, &keys)?;
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
            match reload(&gw) {
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

/// Periodic upkeep: re-resolution every `resolve_interval`, purge of
/// removed backends past their grace every second.
pub fn spawn_upkeep(gw: Arc<Gateway>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut since_resolve = Duration::ZERO;
        loop {
            tick.tick().await;
            since_resolve += Duration::from_secs(1);
            if since_resolve >= gw.config().resolve_interval {
                since_resolve = Duration::ZERO;
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
        let table = r.table.load();
        if !table
            .iter()
            .any(|b| b.status().state(now) == tower_sticky::BackendState::Removed)
        {
            continue;
        }
        let mut next = table.map_values(|b| b.value().clone());
        drop(table);
        let gone = next.purge_removed(now.saturating_sub(grace.as_millis() as u64));
        if !gone.is_empty() {
            for b in &gone {
                tracing::info!(route = %r.config.name, backend = %b.key(), "removal grace over, backend dropped");
            }
            r.table.store(Arc::new(next));
        }
    }
}
