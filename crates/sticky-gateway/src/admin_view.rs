//! The gateway as the admin API sees it: [`AdminView`] over the live routes.

use std::sync::Arc;

use crate::admin::{AdminView, BackendView, RouteView, StoreView};
use crate::gateway::Gateway;
use crate::state::{AdminState, IntentFuture};

/// [`AdminView`] over a running [`Gateway`].
#[derive(Clone, Debug)]
pub struct GatewayView(pub Arc<Gateway>);

impl GatewayView {
    /// Applies `f` to the status of every backend named `id` (in any route).
    fn each_named(&self, id: &str, f: impl Fn(&tower_sticky::table::BackendStatus)) -> bool {
        let mut found = false;
        for r in self.0.routes().iter() {
            let table = r.table.load();
            for b in table.iter().filter(|b| b.key() == id) {
                f(b.status());
                found = true;
            }
        }
        found
    }
}

impl AdminView for GatewayView {
    fn backends(&self) -> Vec<BackendView> {
        let mut out = Vec::new();
        for r in self.0.routes().iter() {
            let table = r.table.load();
            let stats = r.engine.stats(&table);
            // The snapshot lists the table's backends in its order.
            for (b, s) in table.iter().zip(stats.backends()) {
                let health = match (&r.config.health_check, b.status().probe_healthy()) {
                    (None, _) => "unknown",
                    (Some(_), true) => "healthy",
                    (Some(_), false) => "unhealthy",
                };
                out.push(BackendView::from_stats(
                    r.config.name.clone(),
                    b.key().clone(),
                    // As configured: the scheme says the backend is TLS.
                    if b.value().is_tls() {
                        format!("{}{}", crate::tls::backends::HTTPS, b.value().address())
                    } else {
                        b.value().address().to_string()
                    },
                    health,
                    s,
                ));
            }
        }
        out
    }

    fn routes(&self) -> Vec<RouteView> {
        let reasons = |rs: &[(tower_sticky::Reason, u64)]| {
            rs.iter()
                .map(|(r, n)| (r.as_str().to_string(), *n))
                .collect()
        };
        self.0
            .routes()
            .iter()
            .map(|r| {
                let st = r.engine.stats(&r.table.load());
                RouteView {
                    name: r.config.name.clone(),
                    prefix: r.config.prefix.clone(),
                    pinned: st.pinned(),
                    new: st.new_sessions(),
                    repinned: reasons(st.repinned()),
                    temporary: reasons(st.temporary()),
                    rejected: reasons(st.rejected()),
                    invalid_tokens: st
                        .invalid_tokens()
                        .iter()
                        .map(|(r, n)| (r.as_str().to_string(), *n))
                        .collect(),
                }
            })
            .collect()
    }

    fn drain(&self, id: &str) -> bool {
        let ok = self.each_named(id, |s| s.drain());
        if ok {
            tracing::info!(backend = id, "backend draining");
        }
        ok
    }

    fn activate(&self, id: &str) -> bool {
        let ok = self.each_named(id, |s| s.activate());
        if ok {
            tracing::info!(backend = id, "backend active");
        }
        ok
    }

    fn set_intent(&self, id: &str, state: AdminState) -> Option<IntentFuture> {
        let store = self.0.store()?;
        let route = store.route();
        // The store owns the backends of the route it feeds, disabled ones
        // (in its snapshot, not in the table) included.
        let in_table = self
            .0
            .routes()
            .by_name(route)
            .is_some_and(|r| r.table.load().iter().any(|b| b.key() == id));
        let in_snapshot = self
            .0
            .fed
            .lock()
            .expect("fed snapshots")
            .get(route)
            .is_some_and(|s| s.backends.contains_key(id));
        (in_table || in_snapshot).then(|| store.set_intent(id, state))
    }

    fn store(&self) -> Option<StoreView> {
        self.0.store().map(|s| s.status(&self.0))
    }
}
