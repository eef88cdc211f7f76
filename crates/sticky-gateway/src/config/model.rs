//! The checked settings the gateway runs on, with their defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tower_sticky::{CookieLifetime, Ejection, FailoverPolicy, SameSite};

use super::default_threads;
use super::defaults;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole gateway's checked settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Plain-HTTP listener, if any.
    pub listen: Option<SocketAddr>,
    /// TLS listeners.
    pub tls_listeners: Vec<crate::tls::TlsListenerConfig>,
    /// The plain listener redirects every request to the first TLS
    /// listener instead of proxying it.
    pub redirect_to_https: bool,
    /// How often certificate and admin token files are checked for
    /// changes; zero checks only on SIGHUP. Default 2 s.
    pub file_watch_interval: Duration,
    /// Admin listener, if any.
    pub admin: Option<SocketAddr>,
    /// Who may call the admin API.
    pub admin_auth: crate::admin::auth::AdminAuthConfig,
    /// Key file, if any (else a generated key).
    pub key_file: Option<PathBuf>,
    /// Worker threads.
    pub threads: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Access log on or off.
    pub access_log: bool,
    /// Re-resolution period of backend host names.
    pub resolve_interval: Duration,
    /// Client- and backend-side timeouts.
    pub timeouts: Timeouts,
    /// Request size limits and the idle connections kept per backend.
    pub limits: Limits,
    /// Routes, most specific first once built (host routes, then longer
    /// prefixes).
    pub routes: Vec<RouteConfig>,
    /// The etcd state source feeding one route's backends, if any.
    pub etcd: Option<super::store::EtcdConfig>,
    /// The Kubernetes state source (a Service's EndpointSlices) feeding one
    /// route's backends, if any. Never set together with `etcd`.
    pub kubernetes: Option<super::store::KubernetesConfig>,
}

/// Checked `[timeouts]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Dialling a backend. Default 2 s.
    pub connect: Duration,
    /// Receiving a request head, from its first byte. Default 10 s.
    pub header_read: Duration,
    /// Connection without traffic. Default 60 s.
    pub idle: Duration,
    /// Graceful shutdown bound. Default 10 s.
    pub shutdown_grace: Duration,
    /// A pooled backend connection idle longer is closed, not reused.
    /// Default 4 s (see [`defaults::BACKEND_IDLE_TIMEOUT`]).
    pub backend_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: defaults::CONNECT_TIMEOUT,
            header_read: defaults::HEADER_READ_TIMEOUT,
            idle: defaults::IDLE_TIMEOUT,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            backend_idle: defaults::BACKEND_IDLE_TIMEOUT,
        }
    }
}

/// Checked `[limits]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head in bytes. Default 64 KiB.
    pub max_header_bytes: usize,
    /// Most header fields. Default 100.
    pub max_headers: usize,
    /// Idle connections kept per backend. Default 1024.
    pub max_idle_per_backend: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            max_headers: defaults::MAX_HEADERS,
            max_idle_per_backend: defaults::MAX_IDLE_PER_BACKEND,
        }
    }
}

/// How new sessions are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlacementKind {
    /// Least-loaded of two random choices.
    #[default]
    LeastLoaded,
    /// Round robin.
    RoundRobin,
    /// Weighted random.
    Weighted,
    /// Rendezvous hashing with bounded loads.
    Rendezvous,
}

/// Where affinity comes from on a route.
#[derive(Clone, Debug, PartialEq)]
pub enum Persistence {
    /// Our sealed cookie.
    Cookie(CookieSettings),
    /// Our sealed token in a header.
    Header(String),
    /// The client address.
    ClientAddr(Vec<IpAddr>),
    /// No stickiness: every request placed by the placement policy.
    None,
}

/// Cookie attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct CookieSettings {
    /// The cookie's name; tokens are sealed with it bound in, so a token
    /// cannot be replayed under another route's cookie.
    pub name: String,
    /// `Path`: where the browser sends the cookie back.
    pub path: String,
    /// `Domain`, to share the session across subdomains; host-only if unset.
    pub domain: Option<String>,
    /// `Secure` on every listener (`cookie_config.secure = true`; forced by
    /// `SameSite=None`).
    pub secure: bool,
    /// `Secure` on TLS listeners: true unless `cookie_config.secure = false`.
    pub secure_on_tls: bool,
    /// `HttpOnly`: out of reach of page scripts.
    pub http_only: bool,
    /// `SameSite`: which cross-site requests carry the cookie.
    pub same_site: SameSite,
    /// A browser-session cookie, or one kept for a `Max-Age`.
    pub lifetime: CookieLifetime,
}

impl CookieSettings {
    /// Defaults for a cookie called `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            path: defaults::COOKIE_PATH.into(),
            domain: None,
            secure: false,
            secure_on_tls: true,
            http_only: true,
            same_site: SameSite::Lax,
            lifetime: CookieLifetime::Session,
        }
    }
}

/// Active health checking of one route's backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path probed with GET; 2xx and 3xx are healthy.
    pub path: String,
    /// Time between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Successes in a row that mark healthy.
    pub healthy_threshold: u32,
    /// Failures in a row that mark unhealthy.
    pub unhealthy_threshold: u32,
}

/// One backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    /// Stable name (its id derives from it).
    pub name: String,
    /// `HOST:PORT`, or `https://HOST:PORT` for TLS to the backend.
    pub address: String,
    /// Placement weight.
    pub weight: u32,
}

/// One route.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// The route's name in logs, metrics and the admin API; a reload keeps
    /// the state of backends of the route with the same name.
    pub name: String,
    /// Host to match, lower case, no port.
    pub host: Option<String>,
    /// Path prefix.
    pub prefix: String,
    /// Failover policy.
    pub failover: FailoverPolicy,
    /// How new sessions are placed.
    pub placement: PlacementKind,
    /// Bounded-load factor.
    pub hash_balance_factor: f64,
    /// Slow start window.
    pub slow_start: Option<Duration>,
    /// How long a backend gone from the file stays in state `removed`,
    /// serving its pinned sessions but no new ones, before it is dropped.
    pub removal_grace: Option<Duration>,
    /// Retries after connect failures.
    pub retries: u32,
    /// Session persistence.
    pub persistence: Persistence,
    /// Session absolute timeout.
    pub absolute_timeout: Option<Duration>,
    /// Session idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Token refresh interval.
    pub refresh_interval: Option<Duration>,
    /// Strip our token from requests.
    pub strip_token: bool,
    /// Active health checks.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection.
    pub ejection: Ejection,
    /// The authorities the route's `https://` backends are verified
    /// against (the route's `backend_ca_file`, else the file's).
    pub backend_ca: Option<crate::tls::backends::BackendCa>,
    /// The backends the route balances over, named so that sessions
    /// survive address changes.
    pub backends: Vec<BackendConfig>,
}

impl RouteConfig {
    /// The route the command line describes: `/`, cookie persistence.
    pub fn catch_all(backends: Vec<BackendConfig>) -> Self {
        Self {
            name: defaults::ROUTE_NAME.into(),
            host: None,
            prefix: defaults::PREFIX.into(),
            failover: FailoverPolicy::Redistribute,
            placement: PlacementKind::LeastLoaded,
            hash_balance_factor: defaults::HASH_BALANCE_FACTOR,
            slow_start: None,
            removal_grace: None,
            retries: defaults::RETRIES,
            persistence: Persistence::Cookie(CookieSettings::named(defaults::COOKIE_NAME)),
            absolute_timeout: None,
            idle_timeout: None,
            refresh_interval: None,
            strip_token: true,
            health_check: None,
            ejection: Ejection::default(),
            backend_ca: None,
            backends,
        }
    }
}

impl GatewayConfig {
    /// The route a state source feeds (its backends come from the store,
    /// not from this configuration), if any.
    pub fn fed_route(&self) -> Option<&str> {
        self.etcd
            .as_ref()
            .map(|e| e.route.as_str())
            .or(self.kubernetes.as_ref().map(|k| k.route.as_str()))
    }

    /// Settings with defaults for everything but the listener and routes.
    pub fn new(listen: SocketAddr, routes: Vec<RouteConfig>) -> Self {
        Self {
            listen: Some(listen),
            tls_listeners: Vec::new(),
            redirect_to_https: false,
            file_watch_interval: super::defaults::FILE_WATCH_INTERVAL,
            admin: None,
            admin_auth: Default::default(),
            key_file: None,
            threads: default_threads(),
            log_format: LogFormat::Text,
            access_log: true,
            resolve_interval: defaults::RESOLVE_INTERVAL,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            routes,
            etcd: None,
            kubernetes: None,
        }
    }
}
