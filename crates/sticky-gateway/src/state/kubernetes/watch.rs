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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
///
/// A clone shares its [`WatchStatus`] with the original.
#[derive(Clone)]
pub struct KubernetesSource {
    api: Api<EndpointSlice>,
    namespace: String,
    service: String,
    port: PortSelector,
    status: Arc<WatchStatus>,
}

impl std::fmt::Debug for KubernetesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSource")
            .field("namespace", &self.namespace)
            .field("service", &self.service)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// How a [`KubernetesSource`]'s watch is doing, for the admin API and the
/// metrics: shared, updated by [`KubernetesSource::run`] as it goes.
#[derive(Debug)]
pub struct WatchStatus {
    connected: AtomicBool,
    /// When the API server last answered (a list, a watch, a change).
    last_sync: Mutex<Option<Instant>>,
    /// The revision of the last snapshot published.
    revision: AtomicU64,
    /// Snapshots published so far.
    published: tokio::sync::watch::Sender<u64>,
}

impl Default for WatchStatus {
    fn default() -> Self {
        Self {
            connected: AtomicBool::new(false),
            last_sync: Mutex::new(None),
            revision: AtomicU64::new(0),
            published: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl WatchStatus {
    /// Whether the watch is up: the API server's last answer was a success
    /// (a list, a watch started, a change), not an error (false before the
    /// first answer).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    /// Time since the API server last answered: a list, a watch started
    /// (again), or a change (`None`: never, since start). The API server
    /// ends each watch after a few minutes and it is started again, so on a
    /// quiet Service this stays under about five minutes while connected.
    pub fn last_sync_age(&self) -> Option<Duration> {
        self.last_sync
            .lock()
            .ok()
            .and_then(|t| t.map(|t| t.elapsed()))
    }

    /// The revision (a digest of the set) of the last snapshot published; 0
    /// before the first.
    pub fn revision(&self) -> u64 {
        self.revision.load(Relaxed)
    }

    /// Snapshots published so far.
    pub fn snapshots(&self) -> u64 {
        *self.published.borrow()
    }

    /// Waits until a first snapshot was published, for at most `bound`;
    /// whether one was.
    pub async fn wait_for_snapshot(&self, bound: Duration) -> bool {
        let mut rx = self.published.subscribe();
        tokio::time::timeout(bound, rx.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn synced(&self) {
        self.connected.store(true, Relaxed);
        if let Ok(mut t) = self.last_sync.lock() {
            *t = Some(Instant::now());
        }
    }

    fn failed(&self) {
        self.connected.store(false, Relaxed);
    }

    fn published(&self, revision: u64) {
        self.revision.store(revision, Relaxed);
        self.published.send_modify(|n| *n += 1);
    }
}

impl KubernetesSource {
    /// Watches the slices of `service` in `namespace` (`None`: the client's
    /// default namespace, the pod's own when running in a cluster) through
    /// `client`. Fails if `service` cannot be a Service name, since it goes
    /// into a label selector. Call it within a Tokio runtime, as for
    /// [`Client::new`]: the client's request queue runs on it.
    pub fn new(
        client: Client,
        namespace: Option<&str>,
        service: &str,
        port: PortSelector,
    ) -> Result<Self, ConfigError> {
        check_service_name(service)?;
        let namespace = namespace.unwrap_or(client.default_namespace()).to_owned();
        let status = Arc::<WatchStatus>::default();
        // The watcher reports errors, but not a watch that starts again
        // after one: the client's own answers tell when it is back.
        let default_ns = client.default_namespace().to_owned();
        let observed = Client::new(
            Observed {
                client,
                status: status.clone(),
            },
            default_ns,
        );
        let api = Api::namespaced(observed, &namespace);
        Ok(Self {
            api,
            namespace,
            service: service.to_owned(),
            port,
            status,
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
        let client = Client::try_default().await.map_err(|e| {
            ConfigError::new(
                "kubernetes",
                format!("no Kubernetes client (neither in a cluster nor a kubeconfig): {e}"),
            )
        })?;
        Self::new(client, namespace, service, port)
    }

    /// The Service whose slices this source watches.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The Service's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// How the watch is doing (shared with every clone of this source).
    pub fn status(&self) -> Arc<WatchStatus> {
        self.status.clone()
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
                Ok(event) => {
                    // `Init` is the watcher's own step before it lists: no
                    // word from the API server yet.
                    if !matches!(event, Event::Init) {
                        self.status.synced();
                    }
                    event
                }
                Err(e) => {
                    self.status.failed();
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
            let revision = mapping.snapshot.revision;
            on_snapshot(mapping.snapshot);
            self.status.published(revision);
        }
    }
}

/// A client that notes each answer of the API server in a [`WatchStatus`]:
/// a success (a list, or a watch that starts) means connected, anything
/// else (an error status, no answer) disconnected.
#[derive(Clone)]
struct Observed {
    client: Client,
    status: Arc<WatchStatus>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower_service::Service<http::Request<kube::client::Body>> for Observed {
    type Response = http::Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // The inner client queues requests itself.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let client = self.client.clone();
        let status = self.status.clone();
        Box::pin(async move {
            let answer = client.send(req).await;
            match &answer {
                Ok(r) if r.status().is_success() => status.synced(),
                _ => status.failed(),
            }
            answer
        })
    }
}

/// A Service name is a DNS-1035 label: it goes into a label selector as is,
/// so anything else (a comma, an `=`) would select other slices.
fn check_service_name(name: &str) -> Result<(), ConfigError> {
    if crate::config::store::is_dns1035_label(name) {
        Ok(())
    } else {
        Err(ConfigError::new(
            "kubernetes.service",
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
