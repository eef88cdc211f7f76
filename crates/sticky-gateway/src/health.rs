//! Active health checks: each backend of a route with a `health_check` is
//! probed with `GET path` every interval on a fresh connection; after
//! `unhealthy_threshold` failures in a row it is marked down (its sessions
//! fail over as for an ejected backend), after `healthy_threshold`
//! successes in a row it is marked up again. Beside this, the core's passive
//! ejection works on live traffic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tower_sticky::table::upkeep::{HealthChange, HealthStreaks};

use crate::config::HealthCheck;
use crate::gateway::Gateway;

/// Probes once: 2xx and 3xx are healthy.
pub async fn probe(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sticky-gateway-health\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = [0u8; 32];
        let mut n = 0;
        while n < 12 {
            let k = s.read(&mut buf[n..]).await?;
            if k == 0 {
                break;
            }
            n += k;
        }
        Ok::<_, std::io::Error>(status_of(&buf[..n]))
    };
    matches!(
        tokio::time::timeout(timeout, attempt).await,
        Ok(Ok(Some(200..=399)))
    )
}

fn status_of(head: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(head.get(..12)?).ok()?;
    s.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
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
                    let ok = match pool.target() {
                        Some(addr) => probe(addr, pool.address(), &path, timeout).await,
                        None => false,
                    };
                    (id, pool.name().clone(), status, ok)
                });
            }
            while let Some(Ok((id, name, status, ok))) = probes.join_next().await {
                match streaks.record(id, &status, ok) {
                    Some(HealthChange::Up) => {
                        tracing::info!(route = %route, backend = %name, "health check passed, backend up")
                    }
                    Some(HealthChange::Down) => {
                        tracing::warn!(route = %route, backend = %name, "health check failed, backend down")
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

#[cfg(test)]
mod tests {
    #[test]
    fn status_line() {
        assert_eq!(super::status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(super::status_of(b"HTTP/1.0 503 x"), Some(503));
        assert_eq!(super::status_of(b"garbage"), None);
    }
}
