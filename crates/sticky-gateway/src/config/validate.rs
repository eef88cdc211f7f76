//! Checking a raw file: every value, naming the field that is wrong.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tower_sticky::{CookieLifetime, Ejection, SameSite};

use super::defaults;
use super::parse::{check_address, check_token_name, parse_duration, parse_failover};
use super::raw::{RawConfig, RawRoute};
use crate::tls::backends::BackendCa;

use super::{
    default_threads, BackendConfig, ConfigError, CookieSettings, GatewayConfig, HealthCheck,
    Limits, LogFormat, Persistence, PlacementKind, RouteConfig, Timeouts,
};

fn dur(field: &str, v: &Option<String>) -> Result<Option<Duration>, ConfigError> {
    v.as_deref()
        .map(|s| parse_duration(s).map_err(|e| ConfigError::new(field, e)))
        .transpose()
}

pub(super) fn one_of<T: Copy>(
    field: &str,
    v: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
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
    let tls_listeners = crate::tls::config::validate_listeners(raw.tls_listeners)?;
    // Without TLS listeners a plain one is implied; with them, only if named.
    let listen = match raw.listen.as_deref() {
        Some(l) => Some(sock("listen", l)?),
        None if tls_listeners.is_empty() => Some(sock("listen", defaults::LISTEN)?),
        None => None,
    };
    // Checked once the command line has had its say (`--listen` may add the
    // plain listener): `crate::tls::config::check_redirect`.
    let redirect_to_https = raw.redirect_to_https.unwrap_or(false);
    let admin = raw.admin.as_deref().map(|a| sock("admin", a)).transpose()?;
    let admin_auth = crate::admin::auth::AdminAuthConfig {
        token_file: raw.admin_token_file,
        open_reads: raw.admin_open_reads.unwrap_or(false),
        open_metrics: raw.admin_open_metrics.unwrap_or(false),
    };
    crate::admin::auth::check_bind(admin, &admin_auth)?;
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
    let backend_ca = raw
        .backend_ca_file
        .as_deref()
        .map(|f| BackendCa::load("backend_ca_file", f))
        .transpose()?;
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let at = format!("routes[{i}]");
        let own_ca = r
            .backend_ca_file
            .as_deref()
            .map(|f| BackendCa::load(&format!("{at}.backend_ca_file"), f))
            .transpose()?;
        let mut route = validate_route(&at, r)?;
        route.backend_ca = own_ca.or_else(|| backend_ca.clone());
        crate::tls::backends::check_route(&at, &route, "backend_ca_file")?;
        if routes.iter().any(|o: &RouteConfig| o.name == route.name) {
            return Err(ConfigError::new(
                format!("routes[{i}].name"),
                format!("duplicate route name {:?}", route.name),
            ));
        }
        // The second of two routes with one host and prefix would never match.
        if let Some(o) = routes
            .iter()
            .find(|o: &&RouteConfig| o.host == route.host && o.prefix == route.prefix)
        {
            let host = route.host.as_deref().unwrap_or("any host");
            return Err(ConfigError::new(
                format!("routes[{i}].prefix"),
                format!(
                    "route {:?} has the same host ({host}) and prefix ({:?}) as route {:?}",
                    route.name, route.prefix, o.name
                ),
            ));
        }
        routes.push(route);
    }
    if raw.etcd.is_some() && raw.kubernetes.is_some() {
        return Err(ConfigError::new(
            "kubernetes",
            "cannot be used with [etcd] (--etcd): one state source feeds a gateway",
        ));
    }
    let etcd = raw
        .etcd
        .map(|e| super::store::validate_etcd(e, &routes))
        .transpose()?;
    let kubernetes = raw
        .kubernetes
        .map(|k| super::store::validate_kubernetes(k, &routes))
        .transpose()?;
    let fed = etcd
        .as_ref()
        .map(|e| e.route.as_str())
        .or(kubernetes.as_ref().map(|k| k.route.as_str()));
    super::store::check_backends(&routes, fed)?;
    Ok(GatewayConfig {
        listen,
        tls_listeners,
        redirect_to_https,
        file_watch_interval: dur("file_watch_interval", &raw.file_watch_interval)?
            .unwrap_or(super::defaults::FILE_WATCH_INTERVAL),
        admin,
        admin_auth,
        key_file: raw.key_file,
        threads,
        log_format,
        access_log: raw.access_log.unwrap_or(true),
        resolve_interval: dur("resolve_interval", &raw.resolve_interval)?
            .unwrap_or(defaults::RESOLVE_INTERVAL),
        timeouts,
        limits,
        routes,
        etcd,
        kubernetes,
    })
}

fn validate_route(at: &str, r: RawRoute) -> Result<RouteConfig, ConfigError> {
    let f = |name: &str| format!("{at}.{name}");
    let prefix = r.prefix.unwrap_or_else(|| defaults::PREFIX.into());
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
    let hash_balance_factor = r
        .hash_balance_factor
        .unwrap_or(defaults::HASH_BALANCE_FACTOR);
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
            let name = p
                .session_name
                .clone()
                .unwrap_or_else(|| defaults::COOKIE_NAME.into());
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
                path: c.path.unwrap_or_else(|| defaults::COOKIE_PATH.into()),
                domain: c.domain,
                secure: c.secure.unwrap_or(false),
                secure_on_tls: c.secure != Some(false),
                http_only: c.http_only.unwrap_or(true),
                same_site,
                lifetime,
            })
        }
        "header" => {
            let name = p
                .session_name
                .clone()
                .unwrap_or_else(|| defaults::HEADER_NAME.into());
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
            let path = h.path.unwrap_or_else(|| defaults::HEALTH_PATH.into());
            if !path.starts_with('/') {
                return Err(ConfigError::new(
                    hf("path"),
                    format!("{path:?} must start with '/'"),
                ));
            }
            let interval = dur(&hf("interval"), &h.interval)?.unwrap_or(defaults::HEALTH_INTERVAL);
            if interval.is_zero() {
                return Err(ConfigError::new(
                    hf("interval"),
                    "must be greater than zero",
                ));
            }
            Some(HealthCheck {
                path,
                interval,
                timeout: dur(&hf("timeout"), &h.timeout)?.unwrap_or(defaults::HEALTH_TIMEOUT),
                healthy_threshold: at_least_one(
                    &hf("healthy_threshold"),
                    h.healthy_threshold,
                    defaults::HEALTHY_THRESHOLD,
                )?,
                unhealthy_threshold: at_least_one(
                    &hf("unhealthy_threshold"),
                    h.unhealthy_threshold,
                    defaults::UNHEALTHY_THRESHOLD,
                )?,
            })
        }
    };
    let cool_down = dur(&f("ejection.cool_down"), &r.ejection.cool_down)?
        .unwrap_or(defaults::EJECTION_COOL_DOWN);
    let ejection = match r
        .ejection
        .consecutive_failures
        .unwrap_or(defaults::EJECTION_FAILURES)
    {
        0 => Ejection::disabled(),
        n => Ejection::after(n, cool_down),
    };
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
        retries: r.retries.unwrap_or(defaults::RETRIES),
        persistence,
        absolute_timeout: dur(&sp("absolute_timeout"), &p.absolute_timeout)?,
        idle_timeout: idle_timeout(&sp("idle_timeout"), &p.idle_timeout)?,
        refresh_interval: dur(&sp("refresh_interval"), &p.refresh_interval)?,
        strip_token: p.strip_token.unwrap_or(true),
        health_check,
        ejection,
        backend_ca: None,
        backends,
    })
}

/// A probe streak: at least one probe decides (0 would flip a backend's
/// health on no evidence at all).
fn at_least_one(field: &str, v: Option<u32>, default: u32) -> Result<u32, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(ConfigError::new(field, "must be at least 1")),
        n => Ok(n),
    }
}

/// The idle timeout: tokens count whole seconds, so anything under a
/// second (`"0s"` included) would end every session at once.
fn idle_timeout(field: &str, v: &Option<String>) -> Result<Option<Duration>, ConfigError> {
    let d = dur(field, v)?;
    if d.is_some_and(|d| d < Duration::from_secs(1)) {
        return Err(ConfigError::new(
            field,
            "must be at least 1s (every session would idle-expire at once); leave it out for no idle timeout",
        ));
    }
    Ok(d)
}
