//! Answers the layers give by themselves: short plain text, never a panic.

use axum::body::Body;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use tower_sticky::{Outcome, Reason, Routed};

use crate::Affinity;

/// A short plain-text answer.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The engine refused the request (`Strict` failover, no backend): 503,
/// with the decision in the response extensions.
pub(crate) fn rejected(routed: &Routed) -> Response<Body> {
    let text = match routed.outcome() {
        Outcome::Rejected(Reason::NoBackend) => "no backend available\n",
        _ => "the session's backend is unavailable\n",
    };
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, text);
    r.extensions_mut()
        .insert(Affinity::new(*routed.decision(), None));
    r
}

/// The backend took the request (or may have) and gave no answer: 502.
pub(crate) fn bad_gateway(text: &'static str, affinity: Affinity) -> Response<Body> {
    let mut r = plain(StatusCode::BAD_GATEWAY, text);
    r.extensions_mut().insert(affinity);
    r
}
