//! The gateway's configuration: the TOML file's schema, its validation, and
//! the checked settings the rest of the gateway runs on.
//!
//! The file is read in two steps. Serde reads the raw shape ([`raw`]:
//! unknown fields are denied, so a typo is an error, not a silently ignored
//! setting); then [`validate`] checks every value and names the field that
//! is wrong, as in `routes[0].backends[1].address: invalid socket address
//! "x"`, producing the checked model ([`GatewayConfig`] and the types beside
//! it). Every default lives in [`defaults`]; the text forms shared with the
//! command line (durations, addresses, `--backend`) are parsed by [`parse`].
//! Field names follow Gateway API `sessionPersistence` (GEP-1619) where it
//! has them. `gateway.example.toml` beside this crate documents every field.

pub mod defaults;
mod model;
pub mod parse;
pub mod raw;
pub mod store;
mod validate;

pub use model::*;
pub use parse::{
    check_address, check_token_name, parse_backend_flag, parse_duration, parse_failover,
};
pub use raw::RawConfig;
pub use store::{EtcdConfig, KubePort, KubernetesConfig, RawEtcd, RawKubernetes};
pub use validate::validate;

/// State source settings given outside the file (the command line, or the
/// running values a reload keeps), each overriding its table's fields.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// `--etcd`, `--etcd-prefix`, ...: over `[etcd]`.
    pub etcd: Option<RawEtcd>,
    /// `--kube-service`, `--kube-namespace`, `--kube-port`: over
    /// `[kubernetes]`.
    pub kubernetes: Option<RawKubernetes>,
}

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

impl GatewayConfig {
    /// Reads and checks a TOML file's text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_etcd(text, None)
    }

    /// [`GatewayConfig::from_toml`], with `[etcd]` values from the command
    /// line overriding (or standing in for) the file's.
    pub fn from_toml_with_etcd(text: &str, etcd: Option<RawEtcd>) -> Result<Self, ConfigError> {
        Self::from_toml_with(
            text,
            Sources {
                etcd,
                kubernetes: None,
            },
        )
    }

    /// [`GatewayConfig::from_toml`], with state source values from the
    /// command line overriding (or standing in for) the file's tables.
    pub fn from_toml_with(text: &str, over: Sources) -> Result<Self, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            ConfigError::new("", format!("invalid TOML: {msg}\n{e}"))
        })?;
        if let Some(over) = over.etcd {
            raw.etcd = Some(raw.etcd.take().unwrap_or_default().overridden_by(over));
        }
        if let Some(over) = over.kubernetes {
            raw.kubernetes = Some(
                raw.kubernetes
                    .take()
                    .unwrap_or_default()
                    .overridden_by(over),
            );
        }
        validate(raw)
    }

    /// Reads and checks a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::from_file_with_etcd(path, None)
    }

    /// [`GatewayConfig::from_file`] with command-line `[etcd]` values.
    pub fn from_file_with_etcd(
        path: &std::path::Path,
        etcd: Option<RawEtcd>,
    ) -> Result<Self, ConfigError> {
        Self::from_file_with(
            path,
            Sources {
                etcd,
                kubernetes: None,
            },
        )
    }

    /// [`GatewayConfig::from_file`] with command-line state source values.
    pub fn from_file_with(path: &std::path::Path, over: Sources) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml_with(&text, over).map_err(|mut e| {
            e.reason = format!("{} (in {})", e.reason, path.display());
            e
        })
    }
}

/// Worker threads by default: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MINIMAL: &str = r#"
[[routes]]
[[routes.backends]]
name = "a"
address = "127.0.0.1:9001"
"#;

    #[test]
    fn minimal_file_takes_defaults() {
        let c = GatewayConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:8080".parse().unwrap()));
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
    fn settings_that_would_silently_break_stickiness_are_refused() {
        let route = |extra: &str| MINIMAL.replace("[[routes]]", &format!("[[routes]]\n{extra}"));
        for idle in ["0s", "0ms", "500ms"] {
            let e = GatewayConfig::from_toml(&route(&format!(
                "[routes.session_persistence]\nidle_timeout = \"{idle}\""
            )))
            .unwrap_err();
            assert_eq!(
                e.field, "routes[0].session_persistence.idle_timeout",
                "{idle}"
            );
        }
        let ok = GatewayConfig::from_toml(&route(
            "[routes.session_persistence]\nidle_timeout = \"1s\"",
        ));
        assert!(ok.is_ok());
        for which in ["healthy_threshold", "unhealthy_threshold"] {
            let e =
                GatewayConfig::from_toml(&route(&format!("[routes.health_check]\n{which} = 0")))
                    .unwrap_err();
            assert_eq!(e.field, format!("routes[0].health_check.{which}"));
            assert!(e.to_string().contains("at least 1"), "{e}");
        }
        let twice = |a: &str, b: &str| {
            format!(
                "[[routes]]\nname = \"one\"\n{a}\n[[routes.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n\
                 [[routes]]\nname = \"two\"\n{b}\n[[routes.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n"
            )
        };
        let e =
            GatewayConfig::from_toml(&twice("prefix = \"/api\"", "prefix = \"/api\"")).unwrap_err();
        assert_eq!(e.field, "routes[1].prefix");
        assert!(e.to_string().contains("\"one\""), "{e}");
        let e = GatewayConfig::from_toml(&twice(
            "host = \"App.test\"\nprefix = \"/\"",
            "host = \"app.test\"",
        ))
        .unwrap_err();
        assert_eq!(e.field, "routes[1].prefix");
        // Another host, or another prefix, is another route.
        assert!(GatewayConfig::from_toml(&twice("host = \"a.test\"", "host = \"b.test\"")).is_ok());
        assert!(GatewayConfig::from_toml(&twice("prefix = \"/a\"", "")).is_ok());
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
        assert!(check_address("https://app-1.internal:8443").is_ok());
        assert!(check_address("https://[::1]:8443").is_ok());
        assert!(check_address("http://app:80").is_ok());
        let e = check_address("https://app").unwrap_err();
        assert!(e.contains("https://HOST:PORT"), "{e}");
        assert!(parse_backend_flag("a=https://localhost:8443").is_ok());
    }

    #[test]
    fn https_backends_need_a_ca_file() {
        let https = MINIMAL.replace("127.0.0.1:9001", "https://localhost:9001");
        let e = GatewayConfig::from_toml(&https).unwrap_err();
        assert_eq!(e.field, "routes[0].backends[0].address");
        assert!(e.reason.contains("backend_ca_file"), "{e}");
        let e = GatewayConfig::from_toml(&format!(
            "backend_ca_file = \"/nonexistent/ca.pem\"\n{https}"
        ))
        .unwrap_err();
        assert_eq!(e.field, "backend_ca_file");
        let e = GatewayConfig::from_toml(&https.replace(
            "[[routes]]",
            "[[routes]]\nbackend_ca_file = \"/nonexistent/ca.pem\"",
        ))
        .unwrap_err();
        assert_eq!(e.field, "routes[0].backend_ca_file");
    }

    #[test]
    fn tls_listeners_admin_tokens_and_redirects() {
        let tls = "[[tls_listeners]]\nlisten = \"127.0.0.1:8443\"\n[[tls_listeners.certificates]]\ncert = \"a.pem\"\nkey = \"a.key\"\n";
        // TLS listeners alone: no plain listener is implied.
        let c = GatewayConfig::from_toml(&format!("{tls}{MINIMAL}")).unwrap();
        assert_eq!(c.listen, None);
        assert_eq!(
            c.tls_listeners[0].certificates[0].key,
            std::path::PathBuf::from("a.key")
        );
        let c =
            GatewayConfig::from_toml(&format!("redirect_to_https = true\n{tls}{MINIMAL}")).unwrap();
        let e = crate::tls::config::check_redirect(&c).unwrap_err();
        assert_eq!(e.field, "redirect_to_https");
        let c = GatewayConfig::from_toml(&format!(
            "listen = \"127.0.0.1:8080\"\nredirect_to_https = true\n{tls}{MINIMAL}"
        ))
        .unwrap();
        assert!(c.redirect_to_https && c.listen.is_some());
        let e =
            GatewayConfig::from_toml(&format!("admin = \"0.0.0.0:9900\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.field, "admin");
        let c = GatewayConfig::from_toml(&format!(
            "admin = \"0.0.0.0:9900\"\nadmin_token_file = \"t\"\nadmin_open_metrics = true\n{MINIMAL}"
        ))
        .unwrap();
        assert!(c.admin_auth.open_metrics && !c.admin_auth.open_reads);
        // Secure: absent means on TLS listeners only.
        let Persistence::Cookie(k) = &c.routes[0].persistence else {
            panic!()
        };
        assert!(!k.secure && k.secure_on_tls);
        let c = GatewayConfig::from_toml(&MINIMAL.replace(
            "[[routes.backends]]",
            "[routes.session_persistence.cookie_config]\nsecure = false\n[[routes.backends]]",
        ))
        .unwrap();
        let Persistence::Cookie(k) = &c.routes[0].persistence else {
            panic!()
        };
        assert!(!k.secure && !k.secure_on_tls);
    }
}
