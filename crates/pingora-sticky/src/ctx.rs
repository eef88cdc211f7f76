//! The per-request routing value a `ProxyHttp` keeps in its `CTX`.

use std::sync::Arc;

use tower_sticky::lifecycle::Decision;
use tower_sticky::{Outcome, Routed};

/// What the sticky helpers know about one request: the core's [`Routed`]
/// value (the opened token, the decision, the request counted in flight on
/// its backend) and the backend it went to. Make one with
/// [`StickyBalancer::new_ctx`](crate::StickyBalancer::new_ctx) and keep it
/// in your `ProxyHttp::CTX`.
#[derive(Debug, Default)]
pub struct StickyCtx {
    pub(crate) routed: Option<Routed>,
    pub(crate) backend: Option<Arc<str>>,
    /// `fail_to_connect` reported the current backend unreachable: the next
    /// `upstream_peer` decides again from the kept token.
    pub(crate) reroute: bool,
    pub(crate) status: Option<u16>,
}

impl StickyCtx {
    /// What was decided for the request (after a failover, the final
    /// decision; one outcome per request): `pinned`, `new`,
    /// `repinned(reason)`, `temporary(reason)` or `rejected(reason)`.
    /// `None` before `upstream_peer`.
    pub fn outcome(&self) -> Option<Outcome> {
        self.routed.as_ref().map(Routed::outcome)
    }

    /// The name of the backend the request went to (its
    /// [`BackendName`](crate::BackendName), or its address when it has none).
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// The core's decision, for logs that want more than the outcome (why a
    /// presented token was not trusted, the issued token).
    pub fn decision(&self) -> Option<&Decision> {
        self.routed.as_ref().map(Routed::decision)
    }

    /// The core's per-request value.
    pub fn routed(&self) -> Option<&Routed> {
        self.routed.as_ref()
    }

    /// How many backends this request found unreachable.
    pub fn unreachable_count(&self) -> u32 {
        self.routed.as_ref().map_or(0, Routed::unreachable_count)
    }
}
