//! Active health checks: each backend of a route with a `health_check` is
//! probed with `GET path` every interval on a fresh connection (TLS for an
//! `https://` backend), sent and read by the same client as proxied
//! requests; after `unhealthy_threshold` failures in a row it is marked
//! down (its sessions fail over as for an ejected backend), after
//! `healthy_threshold` successes in a row it is marked up again. Beside
//! this, the core's passive ejection works on live traffic.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, USER_AGENT};
use http::{HeaderValue, Request};
use sticky_proxy::Pool;

use tower_sticky::table::upkeep::{HealthChange, HealthStreaks};

use crate::config::HealthCheck;
use crate::gateway::Gateway;

/// Probes once on a fresh connection from `pool` (TLS for an `https://`
/// backend, verified as for traffic), through the same client and request
/// codec as proxied requests: 2xx and 3xx are healthy. The connection is
/// closed afterwards, never pooled: a probe checks that a new connection
/// can be made. A failure says why, for the log line that marks the
/// backend down.
pub async fn probe(pool: &Pool, path: &str, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let conn = pool.dial().await.map_err(|e| e.to_string())?;
        let (parts, ()) = Request::get(path)
            .header(
                USER_AGENT,
                HeaderValue::from_static("sticky-gateway-health"),
            )
            .header(CONNECTION, HeaderValue::from_static("close"))
            .body(())
            .map_err(|e| format!("invalid probe path {path:?}: {e}"))?
            .into_parts();
        let empty = http_body_util::Empty::<bytes::Bytes>::new();
        // No pool given: the answer's connection goes when its body does.
        let response = sticky_proxy::send_over(conn, &parts, empty, pool.address())
            .await
            .map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            200..=399 => Ok(()),
            s => Err(format!("answered {s}")),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Spawns the probing loop of route `route`; it ends when the route is gone.
pub fn spawn(gw: Arc<Gateway>, route: String, hc: HealthCheck) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The streak rule is the core's; this loop only probes.
        let mut streaks = HealthStreaks::new(hc.healthy_threshold, hc.unhealthy_threshold);
        let mut tick = tokio::time::interval(hc.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let routes = gw.routes_full();
            let Some(r) = routes.by_name(&route) else {
                return;
            };
            let table = r.table.load_full();
            let mut probes = tokio::task::JoinSet::new();
            for b in table.iter() {
                let pool = b.value().clone();
                let status = b.status().clone();
                let path = hc.path.clone();
                let timeout = hc.timeout;
                let id = b.id();
                probes.spawn(async move {
                    let result = probe(&pool, &path, timeout).await;
                    (id, pool.name().clone(), status, result)
                });
            }
            while let Some(Ok((id, name, status, result))) = probes.join_next().await {
                match streaks.record(id, &status, result.is_ok()) {
                    Some(HealthChange::Up) => {
                        tracing::info!(route = %route, backend = %name, "health check passed, backend up")
                    }
                    Some(HealthChange::Down) => {
                        let error = result.err().unwrap_or_default();
                        tracing::warn!(route = %route, backend = %name, %error, "health check failed, backend down")
                    }
                    _ => {}
                }
            }
            streaks.retain(&table);
        }
    })
}

/// Starts a probing loop for every route with a health check, replacing
/// those of the previous routes.
pub fn restart(gw: &Arc<Gateway>) {
    let mut tasks = gw.tasks.lock().unwrap();
    for t in tasks.drain(..) {
        t.abort();
    }
    for r in gw.routes_full().iter() {
        if let Some(hc) = &r.config.health_check {
            tasks.push(spawn(gw.clone(), r.config.name.clone(), hc.clone()));
        }
    }
}
