//! [`Affinity`]: what the layer decided for a request, for handlers (an
//! extractor) and middleware (request and response extensions).

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use http::StatusCode;
use tower_sticky::{Decision, Outcome};

/// What the sticky layer decided for one request: the [`Decision`] (its
/// [`Outcome`], the backend's stable id, whether a token is issued) and the
/// name of the backend or replica that serves it.
///
/// Put in the request's extensions before the backend (or, in peer mode,
/// the local handler) sees it, and in the response's extensions for outer
/// middleware and access logs. As an extractor:
///
/// ```
/// use axum_sticky::Affinity;
///
/// async fn whoami(affinity: Affinity) -> String {
///     format!("{} on {}", affinity.outcome(), affinity.backend().unwrap_or("-"))
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(whoami));
/// ```
#[derive(Clone, Debug)]
pub struct Affinity {
    decision: Decision,
    backend: Option<Arc<str>>,
}

impl Affinity {
    pub(crate) fn new(decision: Decision, backend: Option<Arc<str>>) -> Self {
        Self { decision, backend }
    }

    /// The engine's decision.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// What happened: `pinned`, `new`, `repinned(reason)`,
    /// `temporary(reason)` or `rejected(reason)`.
    pub fn outcome(&self) -> Outcome {
        self.decision.outcome()
    }

    /// The name of the backend (gateway shape) or replica (peer mode) that
    /// serves the request; `None` when it was rejected.
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Affinity {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Affinity>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no affinity decision: the sticky layer is not in front of this handler\n",
        ))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Affinity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Affinity>().cloned())
    }
}
