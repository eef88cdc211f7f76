//! With sticky-proxy's client (the default), a request stays the caller's
//! until it is sent: when a backend cannot be reached, the request is
//! decided again from its kept token and goes where the failover policy
//! says, in the same exchange (a generic client consumes the request, so
//! with one the backend is only ejected and the request answered 502).

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use http::request::Parts;
use http::Response;
use sticky_proxy::{Backend, ResponseBody};
use tower_sticky::{Engine, Routed};

use crate::backends::Backends;

/// The sticky-proxy client, if that is what `service` is.
pub(super) fn as_proxy_client<S: 'static>(service: &S) -> Option<&Backend> {
    (service as &dyn Any).downcast_ref::<Backend>()
}

/// How a rerouting exchange ended.
// Made once per request and matched at once: boxing the answer would cost
// an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Sent {
    /// The backend answered.
    Answer(Response<ResponseBody>),
    /// Decided again, the request was refused (`Strict`, or no backend).
    Rejected,
    /// An error; [`sticky_proxy::Error::Connect`] when no backend could be
    /// reached.
    Failed(sticky_proxy::Error),
}

/// Sends the request, deciding again after each unreachable backend.
pub(super) async fn send<S: Clone + 'static>(
    engine: &Engine,
    backends: &Backends<S>,
    routed: &mut Routed,
    mut client: Backend,
    name: &mut Arc<str>,
    parts: &Parts,
    body: &mut Body,
) -> Sent {
    loop {
        let sent = match client.pool().acquire().await {
            Ok(conn) => client.send_on(conn, parts, Pin::new(&mut *body)).await,
            Err(e) => Err(sticky_proxy::Error::Connect(e)),
        };
        let e = match sent {
            Ok(res) => return Sent::Answer(res),
            Err(sticky_proxy::Error::Connect(e)) => e,
            Err(e) => return Sent::Failed(e),
        };
        client.pool().clear();
        tracing::warn!(backend = %name, error = %e, "backend unreachable, ejected");
        let table = backends.load();
        routed.unreachable(engine, &table);
        if routed.unreachable_count() as usize >= table.len() {
            return Sent::Failed(sticky_proxy::Error::Connect(e));
        }
        routed.reroute(engine, &table, |_| true);
        let Some(b) = routed.target().and_then(|i| table.get(i)) else {
            return Sent::Rejected;
        };
        let Some(next) = as_proxy_client(b.value().service()) else {
            return Sent::Failed(sticky_proxy::Error::Connect(e));
        };
        client = next.clone();
        *name = b.value().name().clone();
        routed.begin(engine, &table);
    }
}
