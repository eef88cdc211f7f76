//! The source wired into a running gateway: [`spawn`] applies each snapshot
//! to the route it feeds, and [`KubernetesFeed`] is what the admin side
//! sees of it (connection, last sync, and why a drain click is refused).

use std::sync::Arc;

use super::watch::{KubernetesSource, WatchStatus};
use crate::admin::StoreView;
use crate::config::KubePort;
use crate::gateway::Gateway;
use crate::state::{AdminState, IntentError, IntentFuture, SharedStore};

use super::PortSelector;

impl From<KubePort> for PortSelector {
    fn from(p: KubePort) -> Self {
        match p {
            KubePort::Only => Self::Only,
            KubePort::Name(n) => Self::Name(n),
            KubePort::Number(n) => Self::Number(n),
        }
    }
}

/// A [`KubernetesSource`] feeding a route of a running gateway, as the
/// admin API, the metrics and the dashboard see it (the gateway's
/// [`SharedStore`]).
///
/// Kubernetes owns the route's membership and drain: a pod drains while it
/// terminates, the same on every replica. A drain or activate through the
/// admin API would change one replica only (nothing the gateway can write
/// is watched by the others), so [`SharedStore::set_intent`] refuses it with
/// [`IntentError::External`], naming the `kubectl` command that does it for
/// the whole fleet.
#[derive(Debug)]
pub struct KubernetesFeed {
    route: String,
    namespace: String,
    service: String,
    status: Arc<WatchStatus>,
}

impl KubernetesFeed {
    /// How the watch is doing.
    pub fn watch_status(&self) -> &WatchStatus {
        &self.status
    }

    /// Why a drain or activate of `backend` is refused, and what to do.
    fn refusal(&self, backend: &str, state: AdminState) -> String {
        let how = match state {
            AdminState::Active => format!(
                "a pod is active while it is ready and not terminating; \
                 fix its readiness or scale the workload up (kubectl -n {} get pods)",
                self.namespace
            ),
            AdminState::Draining | AdminState::Disabled => format!(
                "drain a pod by stopping it: `kubectl -n {} delete pod {backend}` \
                 (it drains on every replica while it terminates; the preStop hook \
                 can wait on GET /backends/{backend}/drained), or by scaling its workload down",
                self.namespace
            ),
        };
        format!(
            "route {:?} takes its backends and their drain from Kubernetes \
             (the EndpointSlices of Service {}/{}), not from this API: {how}",
            self.route, self.namespace, self.service
        )
    }
}

impl SharedStore for KubernetesFeed {
    fn route(&self) -> &str {
        &self.route
    }

    fn set_intent(&self, backend: &str, state: AdminState) -> IntentFuture {
        let why = self.refusal(backend, state);
        Box::pin(async move { Err(IntentError::External(why)) })
    }

    fn status(&self, _gw: &Gateway) -> StoreView {
        let revision = self.status.revision();
        StoreView {
            engine: "kubernetes".into(),
            route: self.route.clone(),
            connected: self.status.is_connected(),
            stale: false,
            revision,
            snapshot_revision: revision,
            last_sync_age_seconds: self.status.last_sync_age().map(|d| d.as_secs_f64()),
            intent_revision: 0,
            replicas: Vec::new(),
            fleet_sessions: Default::default(),
            intent_refused: Some(format!(
                "drain and activate follow the pods of Service {}/{}: \
                 `kubectl -n {} delete pod NAME` drains one on every replica",
                self.namespace, self.service, self.namespace
            )),
        }
    }

    fn closed(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        // Nothing to withdraw: the watch only reads.
        Box::pin(std::future::ready(()))
    }
}

/// Runs `source` on its own task, feeding the route `route` of `gw`: each
/// snapshot is applied with [`crate::state::apply`] (an error is logged
/// and the route keeps its previous set); the task stops at the gateway's
/// shutdown. The feed becomes the gateway's shared store (admin status,
/// refused drains), unless another source already is one (logged). Works
/// with any client, so a test can feed a whole gateway from a mocked API
/// server; [`crate::run::start`] calls it with a client configured the
/// usual way.
pub fn spawn(gw: &Arc<Gateway>, route: &str, source: KubernetesSource) -> Arc<KubernetesFeed> {
    let feed = Arc::new(KubernetesFeed {
        route: route.to_owned(),
        namespace: source.namespace().to_owned(),
        service: source.service().to_owned(),
        status: source.status(),
    });
    if gw.store.set(feed.clone() as Arc<dyn SharedStore>).is_err() {
        tracing::error!(
            route,
            "another state source already feeds this gateway; the Kubernetes one is not shown in the admin API"
        );
    }
    let stop = gw.shutdown.triggered();
    let target = gw.clone();
    let route = route.to_owned();
    tokio::spawn(async move {
        let run = source.run(move |snap| {
            if let Err(e) = crate::state::apply(&target, &route, &snap) {
                tracing::error!(
                    route,
                    error = %e,
                    "cannot apply the EndpointSlices' backend set; the route keeps its previous one"
                );
            }
        });
        tokio::select! {
            () = run => {}
            () = stop => {}
        }
    });
    feed
}
