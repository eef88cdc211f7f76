//! With sticky-proxy's client (the default), a request stays the caller's
//! until it is sent: when a backend cannot be reached, the request is
//! decided again from its kept token and goes where the failover policy
//! says, in the same exchange, as sticky-gateway does.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use http::Response;
use sticky_proxy::Backend;

use super::service::{Exchange, Shared, NONE_LEFT};
use crate::answer::bad_gateway;
use crate::relay::{self, Origin};
use crate::Affinity;

/// The sticky-proxy client, if that is what `service` is.
pub(super) fn as_proxy_client<S: 'static>(service: &S) -> Option<&Backend> {
    (service as &dyn Any).downcast_ref::<Backend>()
}

/// Sends the request, deciding again after each unreachable backend: a
/// connection taken from the pool first, then the request sent on it.
///
/// An `async` block over the arguments rather than an `async fn`, whose
/// future would hold them twice (as given, and moved into locals).
// Not an `async fn`: see above.
#[allow(clippy::manual_async_fn)]
pub(super) fn send<S: Clone + 'static>(
    shared: Arc<Shared<S>>,
    mut x: Exchange,
    mut client: Backend,
    mut body: Body,
) -> impl Future<Output = Response<Body>> {
    async move {
        let engine = &shared.engine;
        loop {
            let sent = match client.pool().acquire().await {
                Ok(conn) => client.send_on(conn, &x.parts, Pin::new(&mut body)).await,
                Err(e) => Err(sticky_proxy::Error::Connect(e)),
            };
            let e = match sent {
                Ok(res) => {
                    let from = Origin::Remote(x.client_upgrade);
                    return relay::respond(engine, x.routed, res, x.name, from);
                }
                Err(sticky_proxy::Error::Connect(e)) => e,
                Err(e) => {
                    return relay::failed(engine, &shared.backends.load(), x.routed, x.name, &e)
                }
            };
            // Nothing was sent: the request is decided again.
            client.pool().clear();
            let table = shared.backends.load();
            let next = relay::reroute(engine, &table, &mut x.routed, &x.name, &e, NONE_LEFT, |m| {
                (as_proxy_client(m.service()).cloned(), m.name().clone())
            });
            (client, x.name) = match next {
                Ok((Some(client), name)) => (client, name),
                // One client type for the whole set: never another one.
                Ok((None, name)) => {
                    let affinity = Affinity::new(*x.routed.decision(), Some(name));
                    return bad_gateway(NONE_LEFT, affinity);
                }
                Err(answer) => return answer,
            };
        }
    }
}
