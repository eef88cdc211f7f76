//! What a backend client's error says about the request.

use http::StatusCode;

/// How an exchange failed, as far as the front is concerned.
pub(crate) enum Failure {
    /// No connection could be had: nothing was sent, the backend is
    /// unreachable.
    Unreachable,
    /// The client refused the request before sending it (not fit to
    /// forward): answered with this status, the backend is not to blame.
    Refused(StatusCode),
    /// The request may have reached the backend.
    MaybeSent,
}

/// Classifies an error, found through a boxed error too: sticky-proxy's
/// typed errors say whether anything was sent; any other error may have
/// sent the request.
pub(crate) fn classify(e: &(dyn std::error::Error + 'static)) -> Failure {
    match e.downcast_ref::<sticky_proxy::Error>() {
        Some(sticky_proxy::Error::Connect(_)) => Failure::Unreachable,
        Some(sticky_proxy::Error::Request(r)) => Failure::Refused(r.status()),
        Some(_) => Failure::MaybeSent,
        None if e.downcast_ref::<sticky_proxy::ConnectError>().is_some() => Failure::Unreachable,
        None => Failure::MaybeSent,
    }
}
