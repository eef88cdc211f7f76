//! Starting and stopping a whole gateway: listeners, admin API, health
//! checks, upkeep, and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tower_sticky::token::KeyRing;

use crate::admin;
use crate::admin_view::GatewayView;
use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::server::{self, ServerSettings};
use crate::{health, reload};

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    /// Shared state.
    pub gateway: Arc<Gateway>,
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Where the admin API listens, if anywhere.
    pub admin_addr: Option<SocketAddr>,
    server: tokio::task::JoinHandle<()>,
    grace: Duration,
}

/// Binds the listeners and starts everything. SIGHUP reloads only when
/// `config_path` is set (the command-line form has no file).
pub async fn start(
    config: GatewayConfig,
    keys: KeyRing,
    config_path: Option<PathBuf>,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let admin_listener = match config.admin {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let settings = ServerSettings::of(&config);
    let grace = config.timeouts.shutdown_grace;
    let gw = Gateway::new(config, &keys, config_path.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    reload::resolve_all(&gw).await;
    health::restart(&gw);
    reload::spawn_upkeep(gw.clone());
    if config_path.is_some() {
        reload::spawn_on_sighup(gw.clone());
    }
    if let Some(l) = admin_listener {
        let view: Arc<dyn admin::AdminView> = Arc::new(GatewayView(gw.clone()));
        let stop = gw.shutdown.triggered();
        let latency = gw.latency.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve(l, view, latency, stop).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    let server = tokio::spawn(server::serve(listener, gw.clone(), settings));
    tracing::info!(%addr, admin = ?admin_addr, "sticky-gateway listening");
    Ok(Running {
        gateway: gw,
        addr,
        admin_addr,
        server,
        grace,
    })
}

impl Running {
    /// Stops accepting, lets in-flight requests and tunnels finish for up
    /// to the configured grace, then returns.
    pub async fn shutdown(self) {
        self.gateway.shutdown.trigger();
        let _ = self.server.await;
        let left = self.gateway.shutdown.drained(self.grace).await;
        if left > 0 {
            tracing::warn!(
                left,
                "shutdown grace over, closing the remaining connections"
            );
        } else {
            tracing::info!("all connections finished");
        }
    }

    /// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn until_signal(self) {
        crate::shutdown::signal().await;
        self.shutdown().await;
    }
}
