//! What the layer decided for a request, and why.
//!
//! The [`Outcome`] is put in the request's extensions (so the backend service
//! can read it), in the response's extensions (so an outer layer or access log
//! can), and recorded on the `sticky` tracing span.

use std::fmt;

/// What the layer did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The request carried a valid token and went to its pinned backend
    /// (or, for hashed affinity, to its key's first-choice backend).
    Pinned,
    /// No usable token: a backend was chosen by the placement policy and a
    /// token is issued with the response.
    New,
    /// The pinned backend could not take the request; the session moved to
    /// another backend and the token was re-issued.
    Repinned(Reason),
    /// The pinned backend could not take the request; it was served elsewhere
    /// without changing the token, and returns home once the backend is back.
    Temporary(Reason),
    /// The layer answered by itself (503) without calling any backend.
    Rejected(Reason),
}

impl Outcome {
    /// The outcome's kind as a short name: `pinned`, `new`, `repinned`,
    /// `temporary` or `rejected`.
    pub const fn kind(self) -> &'static str {
        match self {
            Outcome::Pinned => "pinned",
            Outcome::New => "new",
            Outcome::Repinned(_) => "repinned",
            Outcome::Temporary(_) => "temporary",
            Outcome::Rejected(_) => "rejected",
        }
    }

    /// The reason, for the outcomes that have one.
    pub const fn reason(self) -> Option<Reason> {
        match self {
            Outcome::Pinned | Outcome::New => None,
            Outcome::Repinned(r) | Outcome::Temporary(r) | Outcome::Rejected(r) => Some(r),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(r) => write!(f, "{}({})", self.kind(), r),
            None => f.write_str(self.kind()),
        }
    }
}

/// Why a request did not simply go to its pinned backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The pinned backend is no longer in the backend set.
    Removed,
    /// The pinned backend is ejected by passive health checking (or marked
    /// down by an active check).
    Unhealthy,
    /// The pinned backend exists but its service is not ready (backpressure).
    /// Transient, so the session is never re-pinned for it.
    NotReady,
    /// Hashed affinity: the key's first choice is above the bounded-load cap.
    Overloaded,
    /// No backend at all can take the request.
    NoBackend,
}

impl Reason {
    /// Every reason, in a fixed order (the index used by counters).
    pub const ALL: [Reason; 5] = [
        Reason::Removed,
        Reason::Unhealthy,
        Reason::NotReady,
        Reason::Overloaded,
        Reason::NoBackend,
    ];

    /// A short snake_case name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Removed => "backend_removed",
            Reason::Unhealthy => "unhealthy",
            Reason::NotReady => "not_ready",
            Reason::Overloaded => "overloaded",
            Reason::NoBackend => "no_backend",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
