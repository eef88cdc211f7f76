//! The I/O half: kube-runtime's watcher on one Service's EndpointSlices,
//! turned into whole [`Snapshot`]s by [`map_slices`].
//!
//! kube-runtime does the list+watch protocol (paginated list, watch from its
//! resourceVersion, bookmarks, a relist after 410 Gone); this file only keeps
//! the Service's slices by name, swaps the whole set at each `InitDone` (so a
//! relist never shows half a list, and slices deleted while the watch was
//! down disappear), and publishes a snapshot when the mapped set changes.

use std::collections::BTreeMap;
use std::pin::pin;

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::mapping::{map_slices, PortSelector};
use crate::config::ConfigError;
use crate::state::Snapshot;

/// The label the EndpointSlice controller puts on every slice of a Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A route's backend set from the EndpointSlices of one Kubernetes Service:
/// the pods behind it, drained as they terminate. Build one with
/// [`KubernetesSource::new`], then [`run`](KubernetesSource::run) it on its
/// own task.
#[derive(Clone)]
pub struct KubernetesSource {
    api: Api<EndpointSlice>,
    service: String,
    port: PortSelector,
}

impl std::fmt::Debug for KubernetesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSource")
            .field("service", &self.service)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl KubernetesSource {
    /// Watches the slices of `service` in `namespace` (`None`: the client's
    /// default namespace, the pod's own when running in a cluster) through
    /// `client`. Fails if `service` cannot be a Service name, since it goes
    /// into a label selector.
    pub fn new(
        client: Client,
        namespace: Option<&str>,
        service: &str,
        port: PortSelector,
    ) -> Result<Self, ConfigError> {
        check_service_name(service)?;
        let api = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::default_namespaced(client),
        };
        Ok(Self {
            api,
            service: service.to_owned(),
            port,
        })
    }

    /// Like [`KubernetesSource::new`], with a client configured the usual
    /// way: the pod's service account in a cluster, else `KUBECONFIG` or
    /// `~/.kube/config`. Fails when neither is there.
    pub async fn infer(
        namespace: Option<&str>,
        service: &str,
        port: PortSelector,
    ) -> Result<Self, ConfigError> {
        let client = Client::try_default()
            .await
            .map_err(|e| ConfigError::new("kube_service", format!("no Kubernetes client: {e}")))?;
        Self::new(client, namespace, service, port)
    }

    /// The Service whose slices this source watches.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Watches forever, calling `on_snapshot` with each new backend set:
    /// first once the initial list is complete, then after each change that
    /// alters the set (a change that leaves it as it was calls nothing). A
    /// Service with no slices (no pods yet, or no such Service) gives an
    /// empty set, and a warning in the log.
    ///
    /// Errors (the API server unreachable, a watch broken, RBAC refusing the
    /// list) are logged and retried with kube-runtime's default backoff
    /// (0.8 s doubling to 30 s, jittered); meanwhile no snapshot is sent, so
    /// the gateway keeps routing with the last one.
    pub async fn run(self, on_snapshot: impl FnMut(Snapshot)) {
        self.run_with_backoff(DefaultBackoff::default(), on_snapshot)
            .await;
    }

    /// [`KubernetesSource::run`] with another backoff between retries
    /// (tests use a short one).
    pub(crate) async fn run_with_backoff(
        self,
        backoff: impl Backoff,
        mut on_snapshot: impl FnMut(Snapshot),
    ) {
        // The default list semantic is a quorum read (MostRecent), so a
        // relist never goes back in time behind a cache.
        let config =
            watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={}", self.service));
        let mut events = pin!(watcher::watcher(self.api, config).backoff(backoff));
        let mut slices = SliceSet::default();
        let mut last: Option<Snapshot> = None;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(
                        service = %self.service,
                        error = %e,
                        "EndpointSlice watch failed; keeping the last backend set, retrying"
                    );
                    continue;
                }
            };
            if !slices.apply(event) {
                continue;
            }
            let mapping = map_slices(slices.current(), &self.port);
            // Logged once per new set, not on every slice update.
            if last.as_ref() == Some(&mapping.snapshot) {
                continue;
            }
            if slices.is_empty() {
                tracing::warn!(
                    service = %self.service,
                    "no EndpointSlices: is the Service there, in this namespace, with a selector?"
                );
            }
            for why in &mapping.skipped {
                tracing::warn!(service = %self.service, "EndpointSlice data left out: {why}");
            }
            if mapping.all_draining_placeable {
                tracing::warn!(
                    service = %self.service,
                    "every endpoint is terminating; placing new sessions on them rather than refusing"
                );
            }
            tracing::info!(
                service = %self.service,
                revision = mapping.snapshot.revision,
                backends = mapping.snapshot.backends.len(),
                "new backend set from EndpointSlices"
            );
            last = Some(mapping.snapshot.clone());
            on_snapshot(mapping.snapshot);
        }
    }
}

/// A Service name is a DNS-1035 label: it goes into a label selector as is,
/// so anything else (a comma, an `=`) would select other slices.
fn check_service_name(name: &str) -> Result<(), ConfigError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase()
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "kube_service",
            format!("{name:?} is not a Service name (a DNS-1035 label: a-z, 0-9, '-')"),
        ))
    }
}

/// The Service's slices by name, with the list being received during a
/// (re)list kept apart until it is complete.
#[derive(Debug, Default)]
struct SliceSet {
    current: BTreeMap<String, EndpointSlice>,
    /// `Some` between `Init` and `InitDone`.
    relisting: Option<BTreeMap<String, EndpointSlice>>,
    /// A complete list has been seen: only then is there a set to publish.
    listed: bool,
}

impl SliceSet {
    /// Takes one watcher event; true when the current set may have changed
    /// and is complete.
    fn apply(&mut self, event: Event<EndpointSlice>) -> bool {
        match event {
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            Event::InitApply(slice) => {
                if let Some(name) = slice_name(&slice) {
                    self.relisting
                        .get_or_insert_with(BTreeMap::new)
                        .insert(name, slice);
                }
                false
            }
            Event::InitDone => {
                self.current = self.relisting.take().unwrap_or_default();
                self.listed = true;
                true
            }
            Event::Apply(slice) => {
                if let Some(name) = slice_name(&slice) {
                    self.current.insert(name, slice);
                }
                self.listed
            }
            Event::Delete(slice) => {
                if let Some(name) = slice_name(&slice) {
                    self.current.remove(&name);
                }
                self.listed
            }
        }
    }

    fn current(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.current.values()
    }

    fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

fn slice_name(slice: &EndpointSlice) -> Option<String> {
    let name = slice.metadata.name.clone().filter(|n| !n.is_empty());
    if name.is_none() {
        tracing::warn!("an EndpointSlice without a name was ignored");
    }
    name
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
