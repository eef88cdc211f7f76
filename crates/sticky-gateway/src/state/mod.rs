//! Where a route's backend set comes from when replicas must agree: a
//! *state source* yields whole [`Snapshot`]s (membership, weights and
//! operator intent at one revision), and the gateway applies each one to a
//! route's table as a unit with [`apply`].
//!
//! The TOML file (reloaded on SIGHUP) is the default source and needs no
//! store. Engine-backed sources live in submodules behind cargo features, so
//! the default build carries none of their dependencies:
//! `state::etcd` (feature `etcd`) and `state::kubernetes` (feature
//! `kubernetes`).
//!
//! A source shared by replicas also stores operator intent: the admin API's
//! drain and activate go through [`SharedStore::set_intent`], so a drain
//! clicked on one replica reaches every replica, and never only one. A
//! source whose intent belongs to an orchestrator (Kubernetes: a pod drains
//! while it terminates) refuses them instead ([`IntentError::External`]),
//! saying what to do there: never a change on one replica only.

mod apply;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
mod snapshot;

use std::future::Future;
use std::pin::Pin;

pub use apply::apply;
pub(crate) use apply::reapply;
pub use snapshot::{AdminState, BackendEntry, Snapshot};

use crate::admin::StoreView;
use crate::gateway::Gateway;

/// Why operator intent was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntentError {
    /// No backend of that name in the route the store feeds.
    UnknownBackend,
    /// The store is unreachable (or did not answer in time): nothing was
    /// changed anywhere, not even locally.
    Unavailable(String),
    /// Another writer kept changing the same key; try again.
    Conflict,
    /// Stored at this revision (every replica will apply it), but this
    /// replica's own watch had not applied it within the request timeout.
    NotApplied(u64),
    /// The route's intent is not the gateway's to store: it follows an
    /// orchestrator (Kubernetes drains a pod while it terminates). The
    /// message says what to do there instead. Nothing was changed.
    External(String),
}

impl std::fmt::Display for IntentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownBackend => f.write_str("unknown backend"),
            Self::Unavailable(why) => write!(f, "intent not stored: {why}"),
            Self::Conflict => f.write_str("intent not stored: concurrent changes, try again"),
            Self::External(why) => write!(f, "intent not stored: {why}"),
            Self::NotApplied(rev) => write!(
                f,
                "intent stored at revision {rev}, not yet applied by this replica (its watch is behind)"
            ),
        }
    }
}

impl std::error::Error for IntentError {}

/// What [`SharedStore::set_intent`] returns: the store revision of the
/// write, once this replica has applied it.
pub type IntentFuture = Pin<Box<dyn Future<Output = Result<u64, IntentError>> + Send + 'static>>;

/// A store shared by replicas, as the admin side uses it.
pub trait SharedStore: Send + Sync + std::fmt::Debug + 'static {
    /// The route whose backends the store feeds.
    fn route(&self) -> &str;
    /// Stores operator intent for `backend` (compare-and-set), and resolves
    /// once this replica's own view has applied the write (read your
    /// writes), with the write's revision. Never changes anything locally
    /// when the store cannot be written.
    fn set_intent(&self, backend: &str, state: AdminState) -> IntentFuture;
    /// Connection state, revision and the fleet's view, for the admin API,
    /// metrics and the dashboard.
    fn status(&self, gw: &Gateway) -> StoreView;
    /// Resolves once the source has let go of the store after the
    /// gateway's shutdown (a replica's registration withdrawn), or after a
    /// bound if the store does not answer.
    fn closed(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}
