//! The Kubernetes state source (cargo feature `kubernetes`): a route's
//! backends are the pods behind a Service, read from its EndpointSlices, and
//! a pod that Kubernetes is stopping drains instead of vanishing.
//!
//! Every replica of the gateway watches the same slices through the API
//! server, so replicas agree on membership and on which pods drain with no
//! store of their own; a replica that loses the API server keeps routing
//! with its last set and retries. Each new set comes out as a whole
//! [`Snapshot`](crate::state::Snapshot): the first once the initial list is
//! complete, then one per change to the set.
//!
//! - [`mapping`] is the rule book, plain code: which endpoint conditions make
//!   a backend active, draining or absent (KEP-1672's `ready`, `serving` and
//!   `terminating`), its name (the pod's), its address and port, and the
//!   snapshot's revision (a digest of the set).
//! - [`KubernetesSource`] is the watcher: kube-runtime's list+watch on the
//!   slices labelled `kubernetes.io/service-name=SERVICE`, relisting after a
//!   410 Gone and retrying errors with backoff.
//! - [`spawn`] wires a source into a running gateway: each snapshot is
//!   applied to the route it feeds, and [`KubernetesFeed`] shows the watch's
//!   state in the admin API and metrics (`store`, engine `kubernetes`).
//!
//! The gateway starts it from `[kubernetes]` in the file or the command
//! line's `--kube-service NAME [--kube-namespace NS] [--kube-port
//! NAME|NUMBER]` ([`crate::config::KubernetesConfig`]), with a client
//! configured the usual way ([`KubernetesSource::infer`]);
//! [`crate::run::start_with_kubernetes`] takes a source built on any client.
//!
//! Drain and activate belong to Kubernetes here: a pod drains while it
//! terminates, on every replica alike. The admin API's drain and activate on
//! the fed route answer 409 with the `kubectl` command to use instead,
//! since a drain kept by one replica alone would make the replicas disagree.
//!
//! ```no_run
//! # async fn wire() -> Result<(), sticky_gateway::config::ConfigError> {
//! use sticky_gateway::state::kubernetes::{KubernetesSource, PortSelector};
//!
//! let source = KubernetesSource::infer(Some("shop"), "web", "http".parse().unwrap()).await?;
//! tokio::spawn(source.run(|snapshot| {
//!     // Apply the whole set to the route's table.
//!     println!("revision {}: {} backends", snapshot.revision, snapshot.backends.len());
//! }));
//! # Ok(()) }
//! ```
//!
//! The gateway needs `get`, `list` and `watch` on `endpointslices` in the
//! `discovery.k8s.io` API group of that namespace; `deploy/kubernetes/` has
//! the manifests. No API server can run where this crate's tests run: the
//! mapping is tested as plain code and the watcher against a mocked API
//! server (kube's `tower-test` pattern), a 410 Gone relist included, not
//! against a real cluster.

mod feed;
pub mod mapping;
mod watch;

pub use feed::{spawn, KubernetesFeed};
pub use mapping::{endpoint_state, map_slices, Mapping, PortSelector};
pub use watch::{KubernetesSource, WatchStatus, SERVICE_NAME_LABEL};

#[cfg(test)]
mod manifests_tests;
