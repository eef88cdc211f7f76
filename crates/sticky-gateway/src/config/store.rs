//! `[etcd]`: the shared state source that feeds one route's backends (see
//! [`crate::state`]). Read from the file, or from `--etcd`/`--etcd-prefix`
//! on the command line, which override the file's values.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::parse::parse_duration;
use super::{ConfigError, RouteConfig};

/// `[etcd]` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Key prefix, used as given (no leading slash needed).
    pub prefix: Option<String>,
    /// The route fed (default: the first route).
    pub route: Option<String>,
    /// Where the snapshot cache file is kept.
    pub state_dir: Option<PathBuf>,
    /// This replica's id under `PREFIX/replicas/`.
    pub replica_id: Option<String>,
    /// TTL of the replica's lease.
    pub lease_ttl: Option<String>,
    /// How often the replica's registration (applied revision, session
    /// sketches) is refreshed.
    pub publish_interval: Option<String>,
    /// Bound on every etcd request.
    pub request_timeout: Option<String>,
}

impl RawEtcd {
    /// `self` with every value `over` sets taken from `over`.
    pub fn overridden_by(mut self, over: RawEtcd) -> Self {
        if !over.endpoints.is_empty() {
            self.endpoints = over.endpoints;
        }
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            prefix,
            route,
            state_dir,
            replica_id,
            lease_ttl,
            publish_interval,
            request_timeout
        );
        self
    }
}

/// Checked `[etcd]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// Key prefix, used as given.
    pub prefix: String,
    /// The route whose backends etcd feeds.
    pub route: String,
    /// Directory of the snapshot cache file (`etcd-ROUTE.json`), if any.
    pub state_dir: Option<PathBuf>,
    /// This replica's id (default: host name and proxy port).
    pub replica_id: Option<String>,
    /// TTL of the replica's lease. Default 10 s.
    pub lease_ttl: Duration,
    /// Refresh period of the replica's registration. Default 2 s.
    pub publish_interval: Duration,
    /// Bound on every etcd request (and on an admin write). Default 2 s.
    pub request_timeout: Duration,
}

/// Default lease TTL of a replica's registration.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// Default refresh period of a replica's registration.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(2);
/// Default bound on one etcd request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks `[etcd]` against the routes it may feed.
pub fn validate_etcd(raw: RawEtcd, routes: &[RouteConfig]) -> Result<EtcdConfig, ConfigError> {
    if !cfg!(feature = "etcd") {
        return Err(ConfigError::new(
            "etcd",
            "this build has no etcd support (build sticky-gateway with the cargo feature `etcd`)",
        ));
    }
    if raw.endpoints.is_empty() {
        return Err(ConfigError::new(
            "etcd.endpoints",
            "at least one URL is required",
        ));
    }
    for e in &raw.endpoints {
        if e.is_empty() || e.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "etcd.endpoints",
                format!("invalid URL {e:?}"),
            ));
        }
    }
    let prefix = raw.prefix.unwrap_or_default();
    if prefix.is_empty() {
        return Err(ConfigError::new(
            "etcd.prefix",
            "a key prefix is required (e.g. \"sticky/prod\")",
        ));
    }
    let route = match raw.route {
        Some(r) if routes.iter().any(|x| x.name == r) => r,
        Some(r) => {
            let names: Vec<&str> = routes.iter().map(|x| x.name.as_str()).collect();
            return Err(ConfigError::new(
                "etcd.route",
                format!("no route named {r:?} (routes: {})", names.join(", ")),
            ));
        }
        None => match routes.first() {
            Some(r) => r.name.clone(),
            None => return Err(ConfigError::new("etcd.route", "there is no route to feed")),
        },
    };
    if let Some(id) = &raw.replica_id {
        if id.is_empty() || id.contains('/') || id.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "etcd.replica_id",
                format!("{id:?} must be non-empty, without spaces or '/'"),
            ));
        }
    }
    let dur = |field: &str, v: &Option<String>, d: Duration| -> Result<Duration, ConfigError> {
        match v {
            Some(s) => parse_duration(s).map_err(|e| ConfigError::new(field, e)),
            None => Ok(d),
        }
    };
    let lease_ttl = dur("etcd.lease_ttl", &raw.lease_ttl, LEASE_TTL)?;
    if lease_ttl < Duration::from_secs(2) {
        return Err(ConfigError::new("etcd.lease_ttl", "must be at least 2s"));
    }
    let publish_interval = dur(
        "etcd.publish_interval",
        &raw.publish_interval,
        PUBLISH_INTERVAL,
    )?;
    if publish_interval.is_zero() || publish_interval * 2 > lease_ttl {
        return Err(ConfigError::new(
            "etcd.publish_interval",
            "must be greater than zero and at most half of lease_ttl",
        ));
    }
    let request_timeout = dur(
        "etcd.request_timeout",
        &raw.request_timeout,
        REQUEST_TIMEOUT,
    )?;
    if request_timeout.is_zero() {
        return Err(ConfigError::new(
            "etcd.request_timeout",
            "must be greater than zero",
        ));
    }
    Ok(EtcdConfig {
        endpoints: raw.endpoints,
        prefix,
        route,
        state_dir: raw.state_dir,
        replica_id: raw.replica_id,
        lease_ttl,
        publish_interval,
        request_timeout,
    })
}

/// Every route has backends, except the one a state source feeds.
pub fn check_backends(routes: &[RouteConfig], fed: Option<&str>) -> Result<(), ConfigError> {
    for (i, r) in routes.iter().enumerate() {
        if r.backends.is_empty() && fed != Some(r.name.as_str()) {
            return Err(ConfigError::new(
                format!("routes[{i}].backends"),
                "at least one backend is required (unless [etcd] feeds this route)",
            ));
        }
    }
    Ok(())
}

impl EtcdConfig {
    /// Settings with defaults for `endpoints`, `prefix` and `route`.
    pub fn new(
        endpoints: Vec<String>,
        prefix: impl Into<String>,
        route: impl Into<String>,
    ) -> Self {
        Self {
            endpoints,
            prefix: prefix.into(),
            route: route.into(),
            state_dir: None,
            replica_id: None,
            lease_ttl: LEASE_TTL,
            publish_interval: PUBLISH_INTERVAL,
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// Back to the raw shape (for a reload that keeps command-line values).
    pub fn to_raw(&self) -> RawEtcd {
        let d = |d: Duration| Some(format!("{}ms", d.as_millis()));
        RawEtcd {
            endpoints: self.endpoints.clone(),
            prefix: Some(self.prefix.clone()),
            route: Some(self.route.clone()),
            state_dir: self.state_dir.clone(),
            replica_id: self.replica_id.clone(),
            lease_ttl: d(self.lease_ttl),
            publish_interval: d(self.publish_interval),
            request_timeout: d(self.request_timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::GatewayConfig;

    const FED: &str = r#"
[etcd]
endpoints = ["http://127.0.0.1:2379"]
prefix = "sticky/t"
route = "api"

[[routes]]
name = "api"
prefix = "/api"

[[routes]]
name = "web"
[[routes.backends]]
name = "a"
address = "127.0.0.1:9001"
"#;

    #[cfg(feature = "etcd")]
    #[test]
    fn the_fed_route_needs_no_backends_and_bad_values_name_their_field() {
        let c = GatewayConfig::from_toml(FED).unwrap();
        assert_eq!(c.fed_route(), Some("api"));
        let e = c.etcd.unwrap();
        assert_eq!(e.prefix, "sticky/t");
        assert_eq!(e.lease_ttl, super::LEASE_TTL);
        let bad =
            |from: &str, to: &str| GatewayConfig::from_toml(&FED.replace(from, to)).unwrap_err();
        assert_eq!(
            bad("route = \"api\"", "route = \"nope\"").field,
            "etcd.route"
        );
        assert_eq!(
            bad("prefix = \"sticky/t\"", "prefix = \"\"").field,
            "etcd.prefix"
        );
        assert_eq!(
            bad("endpoints = [\"http://127.0.0.1:2379\"]", "endpoints = []").field,
            "etcd.endpoints"
        );
        assert_eq!(
            bad("route = \"api\"", "route = \"api\"\nlease_ttl = \"1s\"").field,
            "etcd.lease_ttl"
        );
        assert_eq!(
            bad(
                "route = \"api\"",
                "route = \"api\"\npublish_interval = \"20s\""
            )
            .field,
            "etcd.publish_interval"
        );
        assert!(bad("route = \"api\"", "route = \"api\"\ncolour = 1")
            .to_string()
            .contains("unknown field"));
        // Only the fed route may lack backends.
        assert_eq!(
            bad("route = \"api\"", "route = \"web\"").field,
            "routes[0].backends"
        );
        // Without a route named, the first one is fed.
        let c = GatewayConfig::from_toml(&FED.replace("route = \"api\"\n", "")).unwrap();
        assert_eq!(c.fed_route(), Some("api"));
        // Command-line values override the file's, and stand in for a missing table.
        let over = super::RawEtcd {
            prefix: Some("other".into()),
            ..Default::default()
        };
        let c = GatewayConfig::from_toml_with_etcd(FED, Some(over)).unwrap();
        assert_eq!(c.etcd.as_ref().unwrap().prefix, "other");
        let no_table = FED
            .split("[[routes]]")
            .skip(1)
            .collect::<Vec<_>>()
            .join("[[routes]]");
        let no_table = format!("[[routes]]{no_table}");
        assert_eq!(
            GatewayConfig::from_toml(&no_table).unwrap_err().field,
            "routes[0].backends"
        );
        let raw = c.etcd.as_ref().unwrap().to_raw();
        let c2 = GatewayConfig::from_toml_with_etcd(&no_table, Some(raw)).unwrap();
        assert_eq!(c2.etcd, c.etcd, "a reload keeps the running etcd settings");
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn the_example_etcd_table_parses_once_uncommented() {
        let text = include_str!("../../gateway.example.toml");
        let mut out = String::new();
        let mut inside = false;
        for line in text.lines() {
            if line == "# [etcd]" {
                inside = true;
            } else if line.is_empty() {
                inside = false;
            }
            out.push_str(if inside { &line[2..] } else { line });
            out.push('\n');
        }
        let c = GatewayConfig::from_toml(&out).unwrap();
        let e = c.etcd.unwrap();
        assert_eq!(e.prefix, "sticky/prod");
        assert_eq!(e.replica_id.as_deref(), Some("gw-1"));
        assert_eq!(e.publish_interval, std::time::Duration::from_secs(2));
    }

    #[cfg(not(feature = "etcd"))]
    #[test]
    fn without_the_feature_an_etcd_table_is_refused() {
        let e = GatewayConfig::from_toml(FED).unwrap_err();
        assert_eq!(e.field, "etcd");
        assert!(e.reason.contains("feature"), "{e}");
    }
}
