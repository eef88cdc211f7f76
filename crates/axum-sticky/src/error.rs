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
/// typed errors say whether anything was sent; another client's error is
/// "unreachable" when its chain of sources holds a refused connection
/// (nothing can have been sent on a connection that never opened), and
/// may have sent the request otherwise.
pub(crate) fn classify(e: &(dyn std::error::Error + 'static)) -> Failure {
    let mut cause = Some(e);
    while let Some(e) = cause {
        match e.downcast_ref::<sticky_proxy::Error>() {
            Some(sticky_proxy::Error::Connect(_)) => return Failure::Unreachable,
            Some(sticky_proxy::Error::Request(r)) => return Failure::Refused(r.status()),
            Some(_) => return Failure::MaybeSent,
            None => {}
        }
        if e.is::<sticky_proxy::ConnectError>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return Failure::Unreachable;
        }
        cause = e.source();
    }
    Failure::MaybeSent
}
