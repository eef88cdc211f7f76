//! Upgraded connections (WebSocket and other `Upgrade` protocols): once the
//! backend answers 101, both sides are taken over and bytes are copied both
//! ways until either side closes. The request was pinned like any other, so
//! the tunnel stays on the session's backend for its whole life.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::shutdown::Shutdown;

/// Spawns the tunnel between the client's and the backend's upgraded
/// connections. It counts as work in progress for graceful shutdown.
pub fn tunnel(
    shutdown: &Shutdown,
    client: OnUpgrade,
    backend: OnUpgrade,
    backend_name: std::sync::Arc<str>,
) {
    let guard = shutdown.enter();
    tokio::spawn(async move {
        let _guard = guard;
        let (client, backend) = tokio::join!(client, backend);
        let (client, backend) = match (client, backend) {
            (Ok(c), Ok(b)) => (c, b),
            (c, b) => {
                tracing::debug!(
                    client_ok = c.is_ok(),
                    backend_ok = b.is_ok(),
                    "upgrade did not complete"
                );
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => tracing::debug!(backend = %backend_name, up, down, "tunnel closed"),
            Err(e) => tracing::debug!(backend = %backend_name, error = %e, "tunnel ended"),
        }
    });
}
