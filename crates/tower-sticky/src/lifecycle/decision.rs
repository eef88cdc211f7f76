//! What the engine decided for one request, as a small `Copy` value.

use crate::token::{InvalidToken, Token};
use crate::{BackendId, Outcome, Reason};

/// What the engine decided for one request: the backend, the outcome, the
/// token to issue. Part of a [`Routed`](super::Routed) request; `Copy`, so an
/// access log or a response extension can keep it after the request is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub(crate) target: Option<usize>,
    pub(crate) backend: Option<BackendId>,
    pub(crate) outcome: Outcome,
    pub(crate) issue: Option<Token>,
    pub(crate) invalid: Option<InvalidToken>,
    pub(crate) strip: bool,
    pub(crate) reject_error: bool,
}

impl Decision {
    /// A rejection with nothing else decided: the base other decisions are
    /// built from with struct update syntax.
    pub(crate) const EMPTY: Decision = Decision {
        target: None,
        backend: None,
        outcome: Outcome::Rejected(Reason::NoBackend),
        issue: None,
        invalid: None,
        strip: false,
        reject_error: false,
    };

    /// The decision another replica made for a request it forwarded here
    /// (axum-sticky's peer mode): served by `backend`, this replica, at
    /// table slot `target`, with the outcome the forwarding replica
    /// decided and counted. It issues no token and strips nothing: the
    /// forwarding replica removed our token before sending and tags the
    /// response itself, so [`issued_token`](Decision::issued_token) is
    /// `None` here even when the client gets a new one. Taking it from an
    /// authenticated marker instead of deciding again from the token saves
    /// the owner a second decision and counts the request once, where it
    /// was decided.
    pub fn relayed(target: usize, backend: BackendId, outcome: Outcome) -> Self {
        Decision {
            target: Some(target),
            backend: Some(backend),
            outcome,
            ..Decision::EMPTY
        }
    }

    /// The table slot to send the request to; `None` when rejected. Valid
    /// only for the table the decision was made on (slots move when
    /// backends are removed), so adapters look the backend up at once.
    pub fn target(&self) -> Option<usize> {
        self.target
    }

    /// The stable id of the chosen backend.
    pub fn backend(&self) -> Option<BackendId> {
        self.backend
    }

    /// What happened: `pinned | new | repinned(reason) | temporary(reason) |
    /// rejected(reason)`, for logs, metrics and the response extensions.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Why a presented token was not trusted, if one was presented and wasn't.
    pub fn invalid_token(&self) -> Option<InvalidToken> {
        self.invalid
    }

    /// The token the response will carry, when one is issued or refreshed.
    pub fn issued_token(&self) -> Option<&Token> {
        self.issue.as_ref()
    }

    /// Whether the engine refused the request: answer 503 without calling
    /// any backend.
    pub fn is_rejected(&self) -> bool {
        self.target.is_none()
    }

    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn reject_as_error(&self) -> bool {
        self.reject_error
    }
}
