//! Upgraded connections (WebSocket): the client's side comes from hyper's
//! `OnUpgrade` in the request extensions, the backend's from the
//! sticky-proxy client (or a hyper client's `OnUpgrade`); the tunnel copies
//! bytes both ways on its own task until either side closes.

use std::any::Any;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The backend's side of a switched connection.
pub(crate) enum BackendSide {
    /// From the sticky-proxy client.
    Proxy(sticky_proxy::Upgraded),
    /// From a hyper client (or anything that puts `OnUpgrade` in the
    /// response extensions).
    Hyper(OnUpgrade),
}

/// The backend's side of a `101` response, whatever client produced it.
/// The body is consumed (a `101` has none).
pub(crate) fn backend_side<B: 'static>(
    head: &mut http::response::Parts,
    body: B,
) -> Option<BackendSide> {
    let mut body = Some(body);
    let any: &mut dyn Any = &mut body;
    if let Some(b) = any.downcast_mut::<Option<sticky_proxy::ResponseBody>>() {
        return b
            .take()
            .and_then(|b| b.into_upgraded())
            .map(BackendSide::Proxy);
    }
    head.extensions
        .remove::<OnUpgrade>()
        .map(BackendSide::Hyper)
}

/// Spawns the tunnel between the client's upgrade and the backend's.
pub(crate) fn spawn(client: OnUpgrade, backend: BackendSide, name: std::sync::Arc<str>) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(c) => TokioIo::new(c),
            Err(e) => {
                tracing::debug!(backend = %name, error = %e, "client upgrade failed");
                return;
            }
        };
        let result = match backend {
            BackendSide::Proxy(b) => sticky_proxy::tunnel(client, b).await,
            BackendSide::Hyper(on) => match on.await {
                Ok(b) => {
                    let mut client = client;
                    let mut b = TokioIo::new(b);
                    tokio::io::copy_bidirectional(&mut client, &mut b).await
                }
                Err(e) => {
                    tracing::debug!(backend = %name, error = %e, "backend upgrade failed");
                    return;
                }
            },
        };
        if let Err(e) = result {
            tracing::debug!(backend = %name, error = %e, "tunnel closed with an error");
        }
    });
}
