//! The state sources that feed one route's backends (see [`crate::state`]):
//! `[etcd]` (read from the file, or from `--etcd`/`--etcd-prefix` on the
//! command line) and `[kubernetes]` (or `--kube-service`, `--kube-namespace`,
//! `--kube-port`). Command-line values override the file's. A gateway has at
//! most one of them.

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
    let route = fed_route("etcd.route", raw.route, routes)?;
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
                "at least one backend is required (unless [etcd] or [kubernetes] feeds this route)",
            ));
        }
    }
    Ok(())
}

/// The route a state source feeds: the one named in `field`, else the
/// first.
fn fed_route(
    field: &str,
    named: Option<String>,
    routes: &[RouteConfig],
) -> Result<String, ConfigError> {
    match named {
        Some(r) if routes.iter().any(|x| x.name == r) => Ok(r),
        Some(r) => {
            let names: Vec<&str> = routes.iter().map(|x| x.name.as_str()).collect();
            Err(ConfigError::new(
                field,
                format!("no route named {r:?} (routes: {})", names.join(", ")),
            ))
        }
        None => match routes.first() {
            Some(r) => Ok(r.name.clone()),
            None => Err(ConfigError::new(field, "there is no route to feed")),
        },
    }
}

/// `[kubernetes]` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubernetes {
    /// The Service whose EndpointSlices feed the route.
    pub service: Option<String>,
    /// The Service's namespace (default: the gateway pod's own).
    pub namespace: Option<String>,
    /// The pods' port: the Service port's name, or the pod's port number.
    pub port: Option<PortValue>,
    /// The route fed (default: the first route).
    pub route: Option<String>,
}

/// `port` in `[kubernetes]`: a name (`"http"`) or a number (`8080`, or
/// `"8080"` as on the command line).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PortValue {
    /// A TOML integer.
    Number(i64),
    /// A TOML string: a number in text, or a port name.
    Text(String),
}

impl RawKubernetes {
    /// `self` with every value `over` sets taken from `over`.
    pub fn overridden_by(mut self, over: RawKubernetes) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(service, namespace, port, route);
        self
    }
}

/// Which port of the Service's EndpointSlices the gateway connects to
/// (`[kubernetes] port`, `--kube-port`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KubePort {
    /// The slices' only TCP port (the default).
    #[default]
    Only,
    /// The port with this name (the Service port's name).
    Name(String),
    /// The port with this number (the pod's port, the Service's
    /// `targetPort`).
    Number(u16),
}

impl std::fmt::Display for KubePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Only => f.write_str("the only TCP port"),
            Self::Name(n) => f.write_str(n),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

/// Checked `[kubernetes]` settings: the Service whose EndpointSlices feed
/// [`KubernetesConfig::route`] (see `crate::state::kubernetes`, cargo
/// feature `kubernetes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// The Service's name.
    pub service: String,
    /// Its namespace; `None`: the client's default (the gateway pod's own
    /// in a cluster).
    pub namespace: Option<String>,
    /// The pods' port.
    pub port: KubePort,
    /// The route whose backends the Service's pods are.
    pub route: String,
}

impl KubernetesConfig {
    /// Settings for `service` feeding `route`, in the default namespace, on
    /// the only TCP port.
    pub fn new(service: impl Into<String>, route: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            namespace: None,
            port: KubePort::Only,
            route: route.into(),
        }
    }

    /// Back to the raw shape (for a reload that keeps the running values).
    pub fn to_raw(&self) -> RawKubernetes {
        RawKubernetes {
            service: Some(self.service.clone()),
            namespace: self.namespace.clone(),
            port: match &self.port {
                KubePort::Only => None,
                KubePort::Name(n) => Some(PortValue::Text(n.clone())),
                KubePort::Number(n) => Some(PortValue::Number((*n).into())),
            },
            route: Some(self.route.clone()),
        }
    }
}

/// Whether `name` is a DNS-1035 label (a Service name): 1 to 63 of a-z, 0-9
/// and '-', starting with a letter, not ending with '-'. It goes into a
/// label selector as is, so anything else (a comma, an `=`) would select
/// other slices.
pub fn is_dns1035_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase()
        && !name.ends_with('-')
}

/// Whether `name` is a DNS-1123 label (a namespace name): 1 to 63 of a-z,
/// 0-9 and '-', starting and ending with a letter or digit.
fn is_dns1123_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Parses a port as `--kube-port` and `[kubernetes] port` take it: a
/// number in 1..=65535, or a port name (an IANA service name: 1 to 15 of
/// a-z, 0-9 and '-', with a letter).
pub fn parse_kube_port(v: &PortValue) -> Result<KubePort, String> {
    let text = match v {
        PortValue::Number(n) => {
            return u16::try_from(*n)
                .ok()
                .filter(|n| *n > 0)
                .map(KubePort::Number)
                .ok_or_else(|| format!("port {n} is not in 1..=65535"));
        }
        PortValue::Text(t) => t.as_str(),
    };
    if text.is_empty() {
        return Err("empty port: give a port name or number".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("port {text:?} is not in 1..=65535")),
            Ok(n) => Ok(KubePort::Number(n)),
        };
    }
    let ok = text.len() <= 15
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && text.bytes().any(|b| b.is_ascii_lowercase())
        && !text.starts_with('-')
        && !text.ends_with('-');
    if ok {
        Ok(KubePort::Name(text.to_owned()))
    } else {
        Err(format!(
            "{text:?} is neither a port number nor a port name (1 to 15 of a-z, 0-9, '-')"
        ))
    }
}

/// Checks `[kubernetes]` against the routes it may feed.
pub fn validate_kubernetes(
    raw: RawKubernetes,
    routes: &[RouteConfig],
) -> Result<KubernetesConfig, ConfigError> {
    if !cfg!(feature = "kubernetes") {
        return Err(ConfigError::new(
            "kubernetes",
            "this build has no Kubernetes support (build sticky-gateway with the cargo feature `kubernetes`)",
        ));
    }
    let service = match raw.service {
        Some(s) if is_dns1035_label(&s) => s,
        Some(s) => {
            return Err(ConfigError::new(
                "kubernetes.service",
                format!("{s:?} is not a Service name (a DNS-1035 label: a-z, 0-9, '-', starting with a letter)"),
            ))
        }
        None => {
            return Err(ConfigError::new(
                "kubernetes.service",
                "the Service whose EndpointSlices feed the route is required (or --kube-service)",
            ))
        }
    };
    let namespace = match raw.namespace {
        Some(ns) if is_dns1123_label(&ns) => Some(ns),
        Some(ns) => {
            return Err(ConfigError::new(
                "kubernetes.namespace",
                format!("{ns:?} is not a namespace name (a DNS-1123 label: a-z, 0-9, '-')"),
            ))
        }
        None => None,
    };
    let port = match &raw.port {
        Some(p) => parse_kube_port(p).map_err(|e| ConfigError::new("kubernetes.port", e))?,
        None => KubePort::Only,
    };
    let route = fed_route("kubernetes.route", raw.route, routes)?;
    Ok(KubernetesConfig {
        service,
        namespace,
        port,
        route,
    })
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

    const KUBE: &str = r#"
[kubernetes]
service = "web"
namespace = "shop"
port = "http"
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

    #[cfg(feature = "kubernetes")]
    #[test]
    fn the_kubernetes_table_feeds_its_route_and_bad_values_name_their_field() {
        use super::{KubePort, PortValue, RawKubernetes};
        let c = GatewayConfig::from_toml(KUBE).unwrap();
        assert_eq!(c.fed_route(), Some("api"));
        let k = c.kubernetes.clone().unwrap();
        assert_eq!(k.service, "web");
        assert_eq!(k.namespace.as_deref(), Some("shop"));
        assert_eq!(k.port, KubePort::Name("http".into()));
        let bad =
            |from: &str, to: &str| GatewayConfig::from_toml(&KUBE.replace(from, to)).unwrap_err();
        assert_eq!(
            bad("service = \"web\"", "service = \"Web,x=y\"").field,
            "kubernetes.service"
        );
        assert_eq!(bad("service = \"web\"\n", "").field, "kubernetes.service");
        assert_eq!(
            bad("namespace = \"shop\"", "namespace = \"-shop\"").field,
            "kubernetes.namespace"
        );
        for port in [
            "0",
            "70000",
            "\"\"",
            "\"0\"",
            "\"a_b\"",
            "\"much-too-long-name\"",
        ] {
            assert_eq!(
                bad("port = \"http\"", &format!("port = {port}")).field,
                "kubernetes.port",
                "{port}"
            );
        }
        assert_eq!(
            bad("route = \"api\"", "route = \"nope\"").field,
            "kubernetes.route"
        );
        assert!(bad("route = \"api\"", "route = \"api\"\ncolour = 1")
            .to_string()
            .contains("unknown field"));
        assert_eq!(
            bad("route = \"api\"", "route = \"web\"").field,
            "routes[0].backends",
            "only the fed route may lack backends"
        );
        // A number, in TOML or as text, is the pod's port.
        let n = GatewayConfig::from_toml(&KUBE.replace("port = \"http\"", "port = 8080")).unwrap();
        assert_eq!(n.kubernetes.unwrap().port, KubePort::Number(8080));
        // Without a port, the only one; without a route, the first.
        let d = GatewayConfig::from_toml(
            &KUBE
                .replace("port = \"http\"\n", "")
                .replace("route = \"api\"\n", ""),
        )
        .unwrap();
        let dk = d.kubernetes.as_ref().unwrap();
        assert_eq!(
            (dk.port.clone(), dk.route.as_str()),
            (KubePort::Only, "api")
        );
        // Command-line values override the file's...
        let over = RawKubernetes {
            port: Some(PortValue::Text("9090".into())),
            ..Default::default()
        };
        let o = GatewayConfig::from_toml_with(
            KUBE,
            crate::config::Sources {
                etcd: None,
                kubernetes: Some(over),
            },
        )
        .unwrap();
        assert_eq!(o.kubernetes.as_ref().unwrap().port, KubePort::Number(9090));
        assert_eq!(o.kubernetes.as_ref().unwrap().service, "web");
        // ...and a reload keeps the running ones.
        let raw = k.to_raw();
        let again = GatewayConfig::from_toml_with(
            KUBE,
            crate::config::Sources {
                etcd: None,
                kubernetes: Some(raw),
            },
        )
        .unwrap();
        assert_eq!(again.kubernetes, c.kubernetes);
    }

    #[test]
    fn etcd_and_kubernetes_together_are_refused() {
        let both = KUBE.replace(
            "[kubernetes]",
            "[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"p\"\n\n[kubernetes]",
        );
        let e = GatewayConfig::from_toml(&both).unwrap_err();
        assert_eq!(e.field, "kubernetes");
        assert!(e.reason.contains("etcd"), "{e}");
    }

    #[cfg(feature = "kubernetes")]
    #[test]
    fn the_example_kubernetes_table_parses_once_uncommented() {
        let text = include_str!("../../gateway.example.toml");
        let mut out = String::new();
        let mut inside = false;
        for line in text.lines() {
            if line == "# [kubernetes]" {
                inside = true;
            } else if line.is_empty() {
                inside = false;
            }
            out.push_str(if inside { &line[2..] } else { line });
            out.push('\n');
        }
        let c = GatewayConfig::from_toml(&out).unwrap();
        let k = c.kubernetes.unwrap();
        assert_eq!(k.service, "web");
        assert_eq!(k.port, super::KubePort::Name("http".into()));
    }

    #[cfg(not(feature = "kubernetes"))]
    #[test]
    fn without_the_feature_a_kubernetes_table_is_refused() {
        let e = GatewayConfig::from_toml(KUBE).unwrap_err();
        assert_eq!(e.field, "kubernetes");
        assert!(e.reason.contains("feature"), "{e}");
    }

    #[cfg(not(feature = "etcd"))]
    #[test]
    fn without_the_feature_an_etcd_table_is_refused() {
        let e = GatewayConfig::from_toml(FED).unwrap_err();
        assert_eq!(e.field, "etcd");
        assert!(e.reason.contains("feature"), "{e}");
    }
}
