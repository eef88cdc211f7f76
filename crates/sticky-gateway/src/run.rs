//! Starting and stopping a whole gateway: listeners (plain and TLS), admin
//! API, health checks, upkeep, and graceful shutdown.

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
use crate::tls::{self, CertStore};
use crate::{health, reload};

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    /// Shared state.
    pub gateway: Arc<Gateway>,
    /// Where the proxy listens: the plain listener, or the first TLS
    /// listener when there is no plain one.
    pub addr: SocketAddr,
    /// Where each TLS listener listens, in configuration order.
    pub tls_addrs: Vec<SocketAddr>,
    /// Each TLS listener's certificates, in configuration order.
    pub certs: Vec<Arc<CertStore>>,
    /// Where the admin API listens, if anywhere.
    pub admin_addr: Option<SocketAddr>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
}

/// Binds the listeners and starts everything. SIGHUP reloads the routes
/// only when `config_path` is set (the command-line form has no file);
/// certificates and admin tokens reload on SIGHUP and when their files
/// change, either way. A configuration that cannot start (a certificate,
/// key or token file that cannot be used, an open admin listener beyond
/// loopback) is an [`std::io::ErrorKind::InvalidInput`] error naming the
/// file or field.
pub async fn start(
    config: GatewayConfig,
    keys: KeyRing,
    config_path: Option<PathBuf>,
) -> std::io::Result<Running> {
    start_inner(config, keys, config_path, None).await
}

/// [`start`] with the Kubernetes source already built, on a client of the
/// caller's choosing (a mocked API server in tests, a client configured
/// otherwise than [`KubernetesSource::infer`](crate::state::kubernetes::KubernetesSource::infer)
/// does): it feeds `config.kubernetes`'s route, which must be set.
#[cfg(feature = "kubernetes")]
pub async fn start_with_kubernetes(
    config: GatewayConfig,
    keys: KeyRing,
    config_path: Option<PathBuf>,
    source: crate::state::kubernetes::KubernetesSource,
) -> std::io::Result<Running> {
    if config.kubernetes.is_none() {
        return Err(invalid(
            "kubernetes: a Kubernetes source was given, but no [kubernetes] settings name its route",
        ));
    }
    start_inner(config, keys, config_path, Some(source)).await
}

/// A Kubernetes source built by the caller, if any.
#[cfg(feature = "kubernetes")]
type GivenKubeSource = Option<crate::state::kubernetes::KubernetesSource>;
#[cfg(not(feature = "kubernetes"))]
type GivenKubeSource = Option<std::convert::Infallible>;

/// How long start-up waits for the Kubernetes source's first list before
/// listening anyway (with no backends on the fed route until it is in).
#[cfg(feature = "kubernetes")]
const KUBE_FIRST_LIST: Duration = Duration::from_secs(5);

async fn start_inner(
    config: GatewayConfig,
    keys: KeyRing,
    config_path: Option<PathBuf>,
    kube_source: GivenKubeSource,
) -> std::io::Result<Running> {
    admin::auth::check_bind(config.admin, &config.admin_auth).map_err(invalid)?;
    tls::config::check_redirect(&config).map_err(invalid)?;
    let admin_auth =
        Arc::new(admin::auth::AdminAuth::from_config(&config.admin_auth).map_err(invalid)?);
    if config.listen.is_none() && config.tls_listeners.is_empty() {
        return Err(invalid("no listener: set listen or a TLS listener"));
    }
    let tickets = rustls::crypto::ring::Ticketer::new().map_err(std::io::Error::other)?;
    let mut tls = Vec::with_capacity(config.tls_listeners.len());
    for l in &config.tls_listeners {
        tls.push(tls::bind(l, tickets.clone()).await?);
    }
    let listener = match config.listen {
        Some(l) => Some(TcpListener::bind(l).await?),
        None => None,
    };
    let tls_addrs: Vec<SocketAddr> = tls.iter().map(|t| t.addr).collect();
    let certs: Vec<Arc<CertStore>> = tls.iter().map(|t| t.store.clone()).collect();
    let addr = match &listener {
        Some(l) => l.local_addr()?,
        None => tls_addrs[0],
    };
    let admin_listener = match config.admin {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let settings = ServerSettings::of(&config);
    let redirect_to_https = config.redirect_to_https;
    let watch = config.file_watch_interval;
    let grace = config.timeouts.shutdown_grace;
    let etcd = config.etcd.clone();
    let kubernetes = config.kubernetes.clone();
    if etcd.is_some() && kubernetes.is_some() {
        return Err(invalid(
            "kubernetes: cannot be used with etcd: one state source feeds a gateway",
        ));
    }
    let gw = Gateway::new(config, &keys, config_path.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if let Some(e) = etcd {
        start_etcd(&gw, e, addr).await?;
    }
    if let Some(k) = kubernetes {
        start_kubernetes(&gw, k, kube_source).await?;
    }
    reload::resolve_all(&gw).await;
    health::restart(&gw);
    reload::spawn_upkeep(gw.clone());
    if config_path.is_some() {
        reload::spawn_on_sighup(gw.clone());
    }
    tls::reload::spawn(
        tls::reload::Reloadable {
            certs: certs.clone(),
            admin: Some(admin_auth.clone()),
        },
        watch,
        gw.shutdown.triggered(),
    );
    if let Some(l) = admin_listener {
        let view: Arc<dyn admin::AdminView> = Arc::new(GatewayView(gw.clone()));
        let stop = gw.shutdown.triggered();
        let latency = gw.latency.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve_with_auth(l, view, latency, admin_auth, stop).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    let mut servers = Vec::with_capacity(1 + tls.len());
    if let Some(l) = listener {
        servers.push(if redirect_to_https {
            tokio::spawn(tls::serve_redirect(
                l,
                tls_addrs[0].port(),
                gw.clone(),
                settings,
            ))
        } else {
            tokio::spawn(server::serve(l, gw.clone(), settings))
        });
    }
    for t in tls {
        servers.push(tokio::spawn(tls::serve(t, gw.clone(), settings)));
    }
    tracing::info!(%addr, tls = ?tls_addrs, admin = ?admin_addr, "sticky-gateway listening");
    Ok(Running {
        gateway: gw,
        addr,
        tls_addrs,
        certs,
        admin_addr,
        servers,
        grace,
    })
}

/// Starts the etcd source feeding its route (see [`crate::state::etcd`]).
#[cfg(feature = "etcd")]
async fn start_etcd(
    gw: &Arc<Gateway>,
    config: crate::config::EtcdConfig,
    addr: SocketAddr,
) -> std::io::Result<()> {
    crate::state::etcd::start(gw.clone(), config, addr)
        .await
        .map(|_| ())
}

#[cfg(not(feature = "etcd"))]
async fn start_etcd(
    _gw: &Arc<Gateway>,
    _config: crate::config::EtcdConfig,
    _addr: SocketAddr,
) -> std::io::Result<()> {
    Err(invalid(
        "etcd: this build has no etcd support (cargo feature `etcd`)",
    ))
}

/// Starts the Kubernetes source feeding its route (see
/// [`crate::state::kubernetes`]): the given one, else one with a client
/// configured the usual way (in a cluster, or a kubeconfig). Waits a bounded
/// time for the first list, so a gateway that can reach the API server
/// starts with its backends.
#[cfg(feature = "kubernetes")]
async fn start_kubernetes(
    gw: &Arc<Gateway>,
    config: crate::config::KubernetesConfig,
    source: GivenKubeSource,
) -> std::io::Result<()> {
    use crate::state::kubernetes::{self, KubernetesSource};
    let source = match source {
        Some(s) => s,
        None => KubernetesSource::infer(
            config.namespace.as_deref(),
            &config.service,
            config.port.clone().into(),
        )
        .await
        .map_err(invalid)?,
    };
    tracing::info!(
        route = config.route,
        namespace = source.namespace(),
        service = source.service(),
        "backends from the Service's EndpointSlices"
    );
    let feed = kubernetes::spawn(gw, &config.route, source);
    if !feed.watch_status().wait_for_snapshot(KUBE_FIRST_LIST).await {
        tracing::warn!(
            route = config.route,
            "no EndpointSlice list from the API server yet: the route has no backends until it comes, retrying"
        );
    }
    Ok(())
}

#[cfg(not(feature = "kubernetes"))]
async fn start_kubernetes(
    _gw: &Arc<Gateway>,
    _config: crate::config::KubernetesConfig,
    _source: GivenKubeSource,
) -> std::io::Result<()> {
    Err(invalid(
        "kubernetes: this build has no Kubernetes support (cargo feature `kubernetes`)",
    ))
}

impl Running {
    /// Stops accepting, lets in-flight requests and tunnels finish for up
    /// to the configured grace, then returns.
    pub async fn shutdown(self) {
        self.gateway.shutdown.trigger();
        for s in self.servers {
            let _ = s.await;
        }
        let left = self.gateway.shutdown.drained(self.grace).await;
        if let Some(store) = self.gateway.store() {
            store.closed().await;
        }
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
