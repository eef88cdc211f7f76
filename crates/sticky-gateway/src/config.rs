//! The gateway's configuration: the TOML file's schema, its validation, and
//! the checked settings the rest of the gateway runs on.
//!
//! The file is read in two steps. Serde reads the raw shape (unknown fields
//! are denied, so a typo is an error, not a silently ignored setting); then
//! [`validate`] checks every value and names the field that is wrong, as in
//! `routes[0].backends[1].address: invalid socket address "x"`. Field names
//! follow Gateway API `sessionPersistence` (GEP-1619) where it has them.
//! `gateway.example.toml` beside this crate documents every field.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tower_sticky::{CookieLifetime, Ejection, FailoverPolicy, SameSite};

/// A configuration error naming the field and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field, as a path: `routes[0].backends[1].address`.
    pub field: String,
    /// Why the value is not accepted.
    pub reason: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------
// Raw shape, as written in the file.

/// The file as written. Every field is optional except `routes`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address the proxy listens on.
    pub listen: Option<String>,
    /// Address of the admin API and dashboard.
    pub admin: Option<String>,
    /// Key file: one base64 key per line, the sealing key first.
    pub key_file: Option<PathBuf>,
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
    /// Secure attribute.
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
    /// `HOST:PORT`.
    pub address: Option<String>,
    /// Weight for weighted placement.
    pub weight: Option<u32>,
}

// ---------------------------------------------------------------------------
// Checked settings.

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
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Admin listener, if any.
    pub admin: Option<SocketAddr>,
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
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Limits.
    pub limits: Limits,
    /// Routes.
    pub routes: Vec<RouteConfig>,
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
    /// Default 4 s: below common backends' keep-alive timeouts (Node.js and
    /// Apache 5 s), so the backend is not closing it as a request arrives.
    pub backend_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            backend_idle: Duration::from_secs(4),
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
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_idle_per_backend: 1024,
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
    /// Name.
    pub name: String,
    /// Path.
    pub path: String,
    /// Domain.
    pub domain: Option<String>,
    /// Secure.
    pub secure: bool,
    /// HttpOnly.
    pub http_only: bool,
    /// SameSite.
    pub same_site: SameSite,
    /// Lifetime.
    pub lifetime: CookieLifetime,
}

impl CookieSettings {
    /// Defaults for a cookie called `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            path: "/".into(),
            domain: None,
            secure: false,
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
    /// `HOST:PORT`.
    pub address: String,
    /// Placement weight.
    pub weight: u32,
}

/// One route.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// Name.
    pub name: String,
    /// Host to match, lower case, no port.
    pub host: Option<String>,
    /// Path prefix.
    pub prefix: String,
    /// Failover policy.
    pub failover: FailoverPolicy,
    /// Placement.
    pub placement: PlacementKind,
    /// Bounded-load factor.
    pub hash_balance_factor: f64,
    /// Slow start window.
    pub slow_start: Option<Duration>,
    /// Removal grace.
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
    /// Backends.
    pub backends: Vec<BackendConfig>,
}

impl RouteConfig {
    /// The route the command line describes: `/`, cookie persistence.
    pub fn catch_all(backends: Vec<BackendConfig>) -> Self {
        Self {
            name: "default".into(),
            host: None,
            prefix: "/".into(),
            failover: FailoverPolicy::Redistribute,
            placement: PlacementKind::LeastLoaded,
            hash_balance_factor: 1.25,
            slow_start: None,
            removal_grace: None,
            retries: 2,
            persistence: Persistence::Cookie(CookieSettings::named("sticky")),
            absolute_timeout: None,
            idle_timeout: None,
            refresh_interval: None,
            strip_token: true,
            health_check: None,
            ejection: Ejection::default(),
            backends,
        }
    }
}

impl GatewayConfig {
    /// Settings with defaults for everything but the listener and routes.
    pub fn new(listen: SocketAddr, routes: Vec<RouteConfig>) -> Self {
        Self {
            listen,
            admin: None,
            key_file: None,
            threads: default_threads(),
            log_format: LogFormat::Text,
            access_log: true,
            resolve_interval: Duration::from_secs(30),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            routes,
        }
    }

    /// Reads and checks a TOML file's text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            ConfigError::new("", format!("invalid TOML: {msg}\n{e}"))
        })?;
        validate(raw)
    }

    /// Reads and checks a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|mut e| {
            e.reason = format!("{} (in {})", e.reason, path.display());
            e
        })
    }
}

/// Worker threads by default: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---------------------------------------------------------------------------
// Validation.

/// Parses `250ms`, `10s`, `5m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!(
            "invalid duration {text:?}, expected e.g. \"500ms\", \"10s\", \"5m\", \"2h\", \"1d\""
        )
    })?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "invalid duration {text:?}, expected a unit of ms, s, m, h or d"
            ))
        }
    };
    Ok(Duration::from_millis(n.saturating_mul(ms)))
}

/// Checks `HOST:PORT` (host a name or an IP literal, `[v6]` in brackets).
pub fn check_address(text: &str) -> Result<(), String> {
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || format!("invalid socket address {text:?}, expected HOST:PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let ok_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok_host {
        Ok(())
    } else {
        Err(bad())
    }
}

fn dur(field: &str, v: &Option<String>) -> Result<Option<Duration>, ConfigError> {
    v.as_deref()
        .map(|s| parse_duration(s).map_err(|e| ConfigError::new(field, e)))
        .transpose()
}

fn one_of<T: Copy>(field: &str, v: &str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
    choices
        .iter()
        .find(|(k, _)| *k == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
            ConfigError::new(
                field,
                format!("unknown value {v:?}, expected one of {}", names.join(", ")),
            )
        })
}

/// Parses a failover policy name.
pub fn parse_failover(field: &str, v: &str) -> Result<FailoverPolicy, ConfigError> {
    one_of(
        field,
        v,
        &[
            ("redistribute", FailoverPolicy::Redistribute),
            ("temporary", FailoverPolicy::Temporary),
            ("strict", FailoverPolicy::Strict),
        ],
    )
}

fn sock(field: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| {
        ConfigError::new(
            field,
            format!("invalid socket address {v:?}, expected IP:PORT"),
        )
    })
}

/// Checks a raw file and produces settings, naming the first wrong field.
pub fn validate(raw: RawConfig) -> Result<GatewayConfig, ConfigError> {
    let listen = sock("listen", raw.listen.as_deref().unwrap_or("127.0.0.1:8080"))?;
    let admin = raw.admin.as_deref().map(|a| sock("admin", a)).transpose()?;
    let threads = raw.threads.unwrap_or_else(default_threads);
    if threads == 0 || threads > 1024 {
        return Err(ConfigError::new("threads", "must be between 1 and 1024"));
    }
    let log_format = one_of(
        "log_format",
        raw.log_format.as_deref().unwrap_or("text"),
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    )?;
    let d = Timeouts::default();
    let t = &raw.timeouts;
    let timeouts = Timeouts {
        connect: dur("timeouts.connect", &t.connect)?.unwrap_or(d.connect),
        header_read: dur("timeouts.header_read", &t.header_read)?.unwrap_or(d.header_read),
        idle: dur("timeouts.idle", &t.idle)?.unwrap_or(d.idle),
        shutdown_grace: dur("timeouts.shutdown_grace", &t.shutdown_grace)?
            .unwrap_or(d.shutdown_grace),
        backend_idle: dur("timeouts.backend_idle", &t.backend_idle)?.unwrap_or(d.backend_idle),
    };
    for (f, v) in [
        ("timeouts.connect", timeouts.connect),
        ("timeouts.header_read", timeouts.header_read),
        ("timeouts.idle", timeouts.idle),
        ("timeouts.backend_idle", timeouts.backend_idle),
    ] {
        if v.is_zero() {
            return Err(ConfigError::new(f, "must be greater than zero"));
        }
    }
    let dl = Limits::default();
    let limits = Limits {
        max_header_bytes: raw.limits.max_header_bytes.unwrap_or(dl.max_header_bytes),
        max_headers: raw.limits.max_headers.unwrap_or(dl.max_headers),
        max_idle_per_backend: raw
            .limits
            .max_idle_per_backend
            .unwrap_or(dl.max_idle_per_backend),
    };
    if limits.max_header_bytes < 8192 {
        return Err(ConfigError::new(
            "limits.max_header_bytes",
            format!("{} is below the minimum of 8192", limits.max_header_bytes),
        ));
    }
    if limits.max_headers == 0 {
        return Err(ConfigError::new("limits.max_headers", "must be at least 1"));
    }
    if raw.routes.is_empty() {
        return Err(ConfigError::new(
            "routes",
            "at least one [[routes]] entry is required",
        ));
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let route = validate_route(&format!("routes[{i}]"), r)?;
        if routes.iter().any(|o: &RouteConfig| o.name == route.name) {
            return Err(ConfigError::new(
                format!("routes[{i}].name"),
                format!("duplicate route name {:?}", route.name),
            ));
        }
        routes.push(route);
    }
    Ok(GatewayConfig {
        listen,
        admin,
        key_file: raw.key_file,
        threads,
        log_format,
        access_log: raw.access_log.unwrap_or(true),
        resolve_interval: dur("resolve_interval", &raw.resolve_interval)?
            .unwrap_or(Duration::from_secs(30)),
        timeouts,
        limits,
        routes,
    })
}

fn validate_route(at: &str, r: RawRoute) -> Result<RouteConfig, ConfigError> {
    let f = |name: &str| format!("{at}.{name}");
    let prefix = r.prefix.unwrap_or_else(|| "/".into());
    if !prefix.starts_with('/') {
        return Err(ConfigError::new(
            f("prefix"),
            format!("{prefix:?} must start with '/'"),
        ));
    }
    let name = r.name.unwrap_or_else(|| prefix.clone());
    let failover = parse_failover(
        &f("failover"),
        r.failover.as_deref().unwrap_or("redistribute"),
    )?;
    let placement = one_of(
        &f("placement"),
        r.placement.as_deref().unwrap_or("least_loaded"),
        &[
            ("least_loaded", PlacementKind::LeastLoaded),
            ("round_robin", PlacementKind::RoundRobin),
            ("weighted", PlacementKind::Weighted),
            ("rendezvous", PlacementKind::Rendezvous),
        ],
    )?;
    let hash_balance_factor = r.hash_balance_factor.unwrap_or(1.25);
    if !(hash_balance_factor.is_finite() && hash_balance_factor >= 1.0) {
        return Err(ConfigError::new(
            f("hash_balance_factor"),
            "must be a number of at least 1.0",
        ));
    }
    let p = r.session_persistence;
    let sp = |name: &str| format!("{at}.session_persistence.{name}");
    let kind = p.kind.as_deref().unwrap_or("cookie");
    let persistence = match kind {
        "cookie" => {
            let c = p.cookie_config;
            let cc = |name: &str| format!("{at}.session_persistence.cookie_config.{name}");
            let name = p.session_name.clone().unwrap_or_else(|| "sticky".into());
            check_token_name(&sp("session_name"), &name)?;
            let max_age = dur(&cc("max_age"), &c.max_age)?;
            let lifetime = match c.lifetime_type.as_deref().unwrap_or("session") {
                "session" => {
                    if max_age.is_some() {
                        return Err(ConfigError::new(
                            cc("max_age"),
                            "only allowed with lifetime_type = \"permanent\"",
                        ));
                    }
                    CookieLifetime::Session
                }
                "permanent" => CookieLifetime::Permanent(max_age.ok_or_else(|| {
                    ConfigError::new(cc("max_age"), "required with lifetime_type = \"permanent\"")
                })?),
                other => {
                    return Err(ConfigError::new(
                        cc("lifetime_type"),
                        format!("unknown value {other:?}, expected one of session, permanent"),
                    ))
                }
            };
            let same_site = one_of(
                &cc("same_site"),
                c.same_site.as_deref().unwrap_or("lax"),
                &[
                    ("strict", SameSite::Strict),
                    ("lax", SameSite::Lax),
                    ("none", SameSite::None),
                ],
            )?;
            Persistence::Cookie(CookieSettings {
                name,
                path: c.path.unwrap_or_else(|| "/".into()),
                domain: c.domain,
                secure: c.secure.unwrap_or(false),
                http_only: c.http_only.unwrap_or(true),
                same_site,
                lifetime,
            })
        }
        "header" => {
            let name = p.session_name.clone().unwrap_or_else(|| "x-sticky".into());
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::new(
                    sp("session_name"),
                    format!("invalid header name {name:?}"),
                ));
            }
            Persistence::Header(name.to_ascii_lowercase())
        }
        "client_addr" => {
            let mut ips = Vec::new();
            for (j, t) in p.trusted_proxies.unwrap_or_default().iter().enumerate() {
                ips.push(t.parse::<IpAddr>().map_err(|_| {
                    ConfigError::new(
                        format!("{}[{j}]", sp("trusted_proxies")),
                        format!("invalid IP address {t:?}"),
                    )
                })?);
            }
            Persistence::ClientAddr(ips)
        }
        "none" => Persistence::None,
        other => {
            return Err(ConfigError::new(
                sp("type"),
                format!(
                    "unknown value {other:?}, expected one of cookie, header, client_addr, none"
                ),
            ))
        }
    };
    let health_check = match r.health_check {
        None => None,
        Some(h) => {
            let hf = |name: &str| format!("{at}.health_check.{name}");
            let path = h.path.unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                return Err(ConfigError::new(
                    hf("path"),
                    format!("{path:?} must start with '/'"),
                ));
            }
            let interval = dur(&hf("interval"), &h.interval)?.unwrap_or(Duration::from_secs(5));
            if interval.is_zero() {
                return Err(ConfigError::new(
                    hf("interval"),
                    "must be greater than zero",
                ));
            }
            Some(HealthCheck {
                path,
                interval,
                timeout: dur(&hf("timeout"), &h.timeout)?.unwrap_or(Duration::from_secs(2)),
                healthy_threshold: h.healthy_threshold.unwrap_or(2).max(1),
                unhealthy_threshold: h.unhealthy_threshold.unwrap_or(3).max(1),
            })
        }
    };
    let cool_down =
        dur(&f("ejection.cool_down"), &r.ejection.cool_down)?.unwrap_or(Duration::from_secs(10));
    let ejection = match r.ejection.consecutive_failures.unwrap_or(5) {
        0 => Ejection::disabled(),
        n => Ejection::after(n, cool_down),
    };
    if r.backends.is_empty() {
        return Err(ConfigError::new(
            f("backends"),
            "at least one backend is required",
        ));
    }
    let mut backends: Vec<BackendConfig> = Vec::with_capacity(r.backends.len());
    for (j, b) in r.backends.into_iter().enumerate() {
        let bf = |name: &str| format!("{at}.backends[{j}].{name}");
        let name = b.name.ok_or_else(|| {
            ConfigError::new(bf("name"), "missing (sessions are pinned to the name)")
        })?;
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(ConfigError::new(
                bf("name"),
                format!("{name:?} must be non-empty, without spaces or '/'"),
            ));
        }
        if backends.iter().any(|o| o.name == name) {
            return Err(ConfigError::new(
                bf("name"),
                format!("duplicate backend name {name:?}"),
            ));
        }
        let address = b
            .address
            .ok_or_else(|| ConfigError::new(bf("address"), "missing"))?;
        check_address(&address).map_err(|e| ConfigError::new(bf("address"), e))?;
        let weight = b.weight.unwrap_or(1);
        if weight == 0 {
            return Err(ConfigError::new(bf("weight"), "must be at least 1"));
        }
        backends.push(BackendConfig {
            name,
            address,
            weight,
        });
    }
    Ok(RouteConfig {
        name,
        host: r.host.map(|h| h.to_ascii_lowercase()),
        prefix,
        failover,
        placement,
        hash_balance_factor,
        slow_start: dur(&f("slow_start"), &r.slow_start)?,
        removal_grace: dur(&f("removal_grace"), &r.removal_grace)?,
        retries: r.retries.unwrap_or(2),
        persistence,
        absolute_timeout: dur(&sp("absolute_timeout"), &p.absolute_timeout)?,
        idle_timeout: dur(&sp("idle_timeout"), &p.idle_timeout)?,
        refresh_interval: dur(&sp("refresh_interval"), &p.refresh_interval)?,
        strip_token: p.strip_token.unwrap_or(true),
        health_check,
        ejection,
        backends,
    })
}

/// Checks a cookie name (an RFC 6265 token).
pub fn check_token_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("invalid cookie name {name:?}"),
        ))
    }
}

/// Parses one `--backend NAME=HOST:PORT`.
pub fn parse_backend_flag(v: &str) -> Result<BackendConfig, String> {
    let (name, address) = v
        .split_once('=')
        .ok_or_else(|| format!("{v:?} is not NAME=HOST:PORT"))?;
    if name.is_empty() {
        return Err(format!("{v:?} has an empty NAME"));
    }
    check_address(address)?;
    Ok(BackendConfig {
        name: name.into(),
        address: address.into(),
        weight: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[routes]]
[[routes.backends]]
name = "a"
address = "127.0.0.1:9001"
"#;

    #[test]
    fn minimal_file_takes_defaults() {
        let c = GatewayConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.routes[0].prefix, "/");
        assert!(
            matches!(c.routes[0].persistence, Persistence::Cookie(ref k) if k.name == "sticky")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let bad = MINIMAL.to_string() + "[[routes.backends]]\nname = \"b\"\naddress = \"x\"\n";
        let e = GatewayConfig::from_toml(&bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "routes[0].backends[1].address: invalid socket address \"x\", expected HOST:PORT"
        );
        let e = GatewayConfig::from_toml(
            &MINIMAL.replace("[[routes]]", "[[routes]]\nfailover = \"sometimes\""),
        )
        .unwrap_err();
        assert_eq!(e.field, "routes[0].failover");
        let e = GatewayConfig::from_toml(&MINIMAL.replace("[[routes]]", "[[routes]]\ncolour = 1"))
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        let e = GatewayConfig::from_toml(&MINIMAL.replace(
            "[[routes]]",
            "[timeouts]\nconnect = \"2 parsecs\"\n[[routes]]",
        ))
        .unwrap_err();
        assert_eq!(e.field, "timeouts.connect");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn addresses() {
        assert!(check_address("127.0.0.1:80").is_ok());
        assert!(check_address("[::1]:80").is_ok());
        assert!(check_address("app-1.internal:8080").is_ok());
        assert!(check_address("app:99999").is_err());
        assert!(check_address("x").is_err());
        assert!(parse_backend_flag("a=127.0.0.1:1").is_ok());
        assert!(parse_backend_flag("127.0.0.1:1").is_err());
    }
}
