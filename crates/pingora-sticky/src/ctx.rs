//! The per-request routing value a `ProxyHttp` keeps in its `CTX`.

use std::sync::Arc;

use tower_sticky::table::InFlight;
use tower_sticky::{Decision, Outcome};

/// What the sticky helpers know about one request: the engine's decision,
/// the request counted in flight on its backend, and how the attempts went.
/// Make one with [`StickyBalancer::new_ctx`](crate::StickyBalancer::new_ctx)
/// and keep it in your `ProxyHttp::CTX`.
#[derive(Debug, Default)]
pub struct StickyCtx {
    pub(crate) decision: Option<Decision>,
    pub(crate) in_flight: Option<InFlight>,
    pub(crate) backend: Option<Arc<str>>,
    pub(crate) attempts: u32,
    pub(crate) status: Option<u16>,
}

impl StickyCtx {
    /// What was decided for the request (after a failover, the last
    /// decision): `pinned`, `new`, `repinned(reason)`, `temporary(reason)` or
    /// `rejected(reason)`. `None` before `upstream_peer`.
    pub fn outcome(&self) -> Option<Outcome> {
        self.decision.map(|d| d.outcome())
    }

    /// The name of the backend the request went to (its [`BackendName`](crate::BackendName),
    /// or its address when it has none).
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// The engine's decision, for logs that want more than the outcome
    /// (why a presented token was not trusted, the issued token).
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// How many backends were tried (more than one after a connect failure).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}
