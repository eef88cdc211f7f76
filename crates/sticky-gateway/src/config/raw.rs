//! The file's shape as serde reads it: every field optional, unknown fields
//! denied. [`validate`](super::validate) turns it into checked settings.

use std::path::PathBuf;

use serde::Deserialize;

/// The file as written. Every field is optional except `routes`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address the proxy listens on.
    pub listen: Option<String>,
    /// Address of the admin API and dashboard.
    pub admin: Option<String>,
    /// Admin bearer tokens, one per line.
    pub admin_token_file: Option<PathBuf>,
    /// Admin reads (`GET`) need no token.
    pub admin_open_reads: Option<bool>,
    /// `GET /metrics` needs no token.
    pub admin_open_metrics: Option<bool>,
    /// TLS listeners and their certificates.
    #[serde(default)]
    pub tls_listeners: Vec<crate::tls::config::RawTlsListener>,
    /// The plain listener answers with redirects to HTTPS.
    pub redirect_to_https: Option<bool>,
    /// How often certificate and admin token files are checked for changes
    /// (`0s`: only on SIGHUP).
    pub file_watch_interval: Option<String>,
    /// Key file: one base64 key per line, the sealing key first.
    pub key_file: Option<PathBuf>,
    /// PEM certificates of the authorities `https://` backends are
    /// verified against (every route; a route may set its own).
    pub backend_ca_file: Option<PathBuf>,
    /// Worker threads.
    pub threads: Option<usize>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// One log line per request.
    pub access_log: Option<bool>,
    /// How often backend host names are resolved again.
    pub resolve_interval: Option<String>,
    /// Client- and backend-side timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Request limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Routes, matched by host and longest path prefix.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// The etcd state source feeding one route.
    pub etcd: Option<super::store::RawEtcd>,
    /// The Kubernetes state source (a Service's EndpointSlices) feeding one
    /// route.
    pub kubernetes: Option<super::store::RawKubernetes>,
}

/// `[timeouts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Dialling a backend.
    pub connect: Option<String>,
    /// Receiving a client's request head, from its first byte.
    pub header_read: Option<String>,
    /// A client connection with no traffic.
    pub idle: Option<String>,
    /// How long shutdown waits for in-flight requests and tunnels.
    pub shutdown_grace: Option<String>,
    /// How long a backend connection may sit idle in the pool.
    pub backend_idle: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request head in bytes (431 beyond).
    pub max_header_bytes: Option<usize>,
    /// Most header fields in a request (431 beyond).
    pub max_headers: Option<usize>,
    /// Idle connections kept per backend.
    pub max_idle_per_backend: Option<usize>,
}

/// `[[routes]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Route name (logs, admin).
    pub name: Option<String>,
    /// Host to match (no port); absent matches any host.
    pub host: Option<String>,
    /// Path prefix to match.
    pub prefix: Option<String>,
    /// `redistribute`, `temporary` or `strict`.
    pub failover: Option<String>,
    /// `least_loaded`, `round_robin`, `weighted` or `rendezvous`.
    pub placement: Option<String>,
    /// Bounded-load factor for hashing.
    pub hash_balance_factor: Option<f64>,
    /// Ramp-up window for new backends.
    pub slow_start: Option<String>,
    /// How long a backend removed from the file keeps its sessions.
    pub removal_grace: Option<String>,
    /// Attempts on other backends after a connect failure.
    pub retries: Option<u32>,
    /// Session persistence (GEP-1619).
    #[serde(default)]
    pub session_persistence: RawPersistence,
    /// Active health checks.
    pub health_check: Option<RawHealth>,
    /// Passive ejection.
    #[serde(default)]
    pub ejection: RawEjection,
    /// PEM certificates of the authorities this route's `https://`
    /// backends are verified against (instead of the file's).
    pub backend_ca_file: Option<PathBuf>,
    /// The backend pool.
    #[serde(default)]
    pub backends: Vec<RawBackend>,
}

/// `[routes.session_persistence]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPersistence {
    /// `cookie`, `header`, `client_addr` or `none`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Cookie or header name.
    pub session_name: Option<String>,
    /// Session ends this long after it began.
    pub absolute_timeout: Option<String>,
    /// Session ends after this long unused.
    pub idle_timeout: Option<String>,
    /// Least time between two idle refreshes of a token.
    pub refresh_interval: Option<String>,
    /// Remove our token before the backend sees the request.
    pub strip_token: Option<bool>,
    /// Peers whose X-Forwarded-For is believed (`client_addr`).
    pub trusted_proxies: Option<Vec<String>>,
    /// Cookie attributes (`cookie`).
    #[serde(default)]
    pub cookie_config: RawCookie,
}

/// `[routes.session_persistence.cookie_config]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCookie {
    /// `session` or `permanent`.
    pub lifetime_type: Option<String>,
    /// Max-Age of a permanent cookie.
    pub max_age: Option<String>,
    /// Path attribute.
    pub path: Option<String>,
    /// Domain attribute.
    pub domain: Option<String>,
    /// Secure attribute: true on every listener, false never; absent, on
    /// TLS listeners only.
    pub secure: Option<bool>,
    /// HttpOnly attribute.
    pub http_only: Option<bool>,
    /// `strict`, `lax` or `none`.
    pub same_site: Option<String>,
}

/// `[routes.health_check]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// Path probed with GET.
    pub path: Option<String>,
    /// Time between probes.
    pub interval: Option<String>,
    /// Time a probe may take.
    pub timeout: Option<String>,
    /// Successes in a row that mark a backend healthy.
    pub healthy_threshold: Option<u32>,
    /// Failures in a row that mark a backend unhealthy.
    pub unhealthy_threshold: Option<u32>,
}

/// `[routes.ejection]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEjection {
    /// Failures in a row that eject (0 disables).
    pub consecutive_failures: Option<u32>,
    /// How long an ejected backend stays out.
    pub cool_down: Option<String>,
}

/// `[[routes.backends]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// Stable name: sessions are pinned to it.
    pub name: Option<String>,
    /// `HOST:PORT`, or `https://HOST:PORT` for TLS to the backend.
    pub address: Option<String>,
    /// Weight for weighted placement.
    pub weight: Option<u32>,
}
