//! Upgraded connections (WebSocket and other `Upgrade` protocols): once the
//! backend answers 101, both sides are taken over and bytes are copied both
//! ways until either side closes. The request was pinned like any other, so
//! the tunnel stays on the session's backend for its whole life.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sticky_proxy::Upgraded;

use crate::shutdown::Shutdown;

/// Spawns the tunnel between the client's and the backend's upgraded
/// connections. It counts as work in progress for graceful shutdown.
pub fn tunnel(
    shutdown: &Shutdown,
    client: OnUpgrade,
    backend: Upgraded,
    backend_name: std::sync::Arc<str>,
) {
    let guard = shutdown.enter();
    tokio::spawn(async move {
        let _guard = guard;
        let client = match client.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "client upgrade did not complete");
                return;
            }
        };
        // Bytes the backend sent right after its 101 go first (`Upgraded`
        // reads them before the stream).
        match sticky_proxy::tunnel(TokioIo::new(client), backend).await {
            Ok((up, down)) => tracing::debug!(backend = %backend_name, up, down, "tunnel closed"),
            Err(e) => tracing::debug!(backend = %backend_name, error = %e, "tunnel ended"),
        }
    });
}
