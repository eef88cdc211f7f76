//! The command line.
//!
//! ```text
//! sticky-gateway demo [--tls]
//! sticky-gateway --listen ADDR --backend NAME=HOST:PORT [--backend ...] [--admin ADDR]
//!                [--key-file PATH] [--cookie-name NAME] [--failover redistribute|temporary|strict]
//!                [--tls-listen ADDR --tls-cert FILE --tls-key FILE [--tls-cert FILE --tls-key FILE ...]]
//!                [--redirect-to-https] [--admin-token-file FILE]
//! sticky-gateway --config FILE.toml
//! sticky-gateway [--config FILE.toml | --listen ADDR [--backend ...]]
//!                --etcd URL[,URL...] --etcd-prefix PREFIX [--state-dir DIR] [--replica-id ID]
//! sticky-gateway [--config FILE.toml | --listen ADDR [--backend ...]]
//!                --kube-service NAME [--kube-namespace NS] [--kube-port NAME|NUMBER]
//! sticky-gateway keygen
//! ```
//! Bad flags exit with status 2 (clap's usage error), and so does a bad
//! config file, with a message naming the field.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tower_sticky::FailoverPolicy;

use crate::config::{
    self, BackendConfig, ConfigError, CookieSettings, GatewayConfig, LogFormat, Persistence,
    RouteConfig,
};

/// sticky-gateway: a reverse proxy with sealed-cookie session affinity.
#[derive(Debug, Parser)]
#[command(
    name = "sticky-gateway",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// `demo` or `keygen`; without one, run a gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Gateway settings.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start three demo backends (a stateful login + cart app), the gateway
    /// on 127.0.0.1:8080 and the admin dashboard on 127.0.0.1:9900.
    Demo(DemoArgs),
    /// Print a new random key as one line of text, for a key file.
    Keygen,
}

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Gateway listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin listener.
    #[arg(long, default_value = "127.0.0.1:9900")]
    pub admin: SocketAddr,
    /// Also serve HTTPS, with a throwaway certificate made at start.
    #[arg(long)]
    pub tls: bool,
    /// HTTPS listener of `--tls`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub tls_listen: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Failover policy names on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailoverArg {
    /// Re-pin to another backend and re-issue the cookie.
    Redistribute,
    /// Serve elsewhere, keep the cookie, return when the backend is back.
    Temporary,
    /// Answer 503.
    Strict,
}

impl From<FailoverArg> for FailoverPolicy {
    fn from(f: FailoverArg) -> Self {
        match f {
            FailoverArg::Redistribute => FailoverPolicy::Redistribute,
            FailoverArg::Temporary => FailoverPolicy::Temporary,
            FailoverArg::Strict => FailoverPolicy::Strict,
        }
    }
}

/// Options of a gateway run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A TOML config file (routes, cookie attributes, timeouts, health checks...).
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Address to listen on for plain HTTP (overrides the file's `listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address to listen on for HTTPS (replaces the file's `[[tls_listeners]]`).
    #[arg(long, value_name = "ADDR", requires = "tls_certs")]
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for --tls-listen; repeat for SNI: the first is
    /// the default, each further one is served to the names it covers.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_listen")]
    pub tls_certs: Vec<PathBuf>,
    /// PEM private key of the --tls-cert in the same position.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_listen")]
    pub tls_keys: Vec<PathBuf>,
    /// Answer every plain-HTTP request with a redirect to HTTPS.
    #[arg(long, requires = "tls_listen")]
    pub redirect_to_https: bool,
    /// Admin bearer tokens, one per line: required for admin calls.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// A backend, NAME=HOST:PORT (NAME=https://HOST:PORT for TLS to it); repeat for each. Sessions are pinned to the NAME.
    #[arg(long = "backend", value_name = "NAME=HOST:PORT", value_parser = config::parse_backend_flag, conflicts_with = "config")]
    pub backends: Vec<BackendConfig>,
    /// PEM certificates of the authorities https:// backends are verified against.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub backend_ca: Option<PathBuf>,
    /// Admin API and dashboard address.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Key file: one base64 key per line, the sealing key first.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Name of the affinity cookie.
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    pub cookie_name: Option<String>,
    /// What to do when a session's backend is down.
    #[arg(long, value_enum, conflicts_with = "config")]
    pub failover: Option<FailoverArg>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Do not write an access-log line per request.
    #[arg(long)]
    pub no_access_log: bool,
    /// etcd client URLs (comma-separated): etcd feeds the backends of the
    /// command line's route, or with --config of the first route (or of the
    /// file's `[etcd] route`). See the README's "Several replicas".
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Key prefix in etcd, used as given: `PREFIX/backends/NAME`,
    /// `PREFIX/intent/NAME`, `PREFIX/replicas/ID`.
    #[arg(long, value_name = "PREFIX")]
    pub etcd_prefix: Option<String>,
    /// Directory for the etcd snapshot cache, so a replica can start while
    /// etcd is unreachable.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// This replica's id under `PREFIX/replicas/` (default: host name and port).
    #[arg(long, value_name = "ID")]
    pub replica_id: Option<String>,
    /// Feed the route's backends from this Kubernetes Service's
    /// EndpointSlices: its ready pods, drained as they terminate (the
    /// command line's route, or with --config the first route or the file's
    /// `[kubernetes] route`). Needs the cargo feature `kubernetes`.
    #[arg(long, value_name = "NAME")]
    pub kube_service: Option<String>,
    /// The Service's namespace (default: the gateway pod's own, from its
    /// service account).
    #[arg(long, value_name = "NS")]
    pub kube_namespace: Option<String>,
    /// The pods' port, by the Service port's name or the pod's port number
    /// (default: the only TCP port).
    #[arg(long, value_name = "NAME|NUMBER")]
    pub kube_port: Option<String>,
}

impl RunArgs {
    /// The `[etcd]` values given on the command line, if any.
    fn etcd_override(&self) -> Option<config::RawEtcd> {
        if self.etcd.is_empty()
            && self.etcd_prefix.is_none()
            && self.state_dir.is_none()
            && self.replica_id.is_none()
        {
            return None;
        }
        Some(config::RawEtcd {
            endpoints: self.etcd.clone(),
            prefix: self.etcd_prefix.clone(),
            state_dir: self.state_dir.clone(),
            replica_id: self.replica_id.clone(),
            ..Default::default()
        })
    }

    /// The `[kubernetes]` values given on the command line, if any.
    fn kubernetes_override(&self) -> Option<config::RawKubernetes> {
        if self.kube_service.is_none() && self.kube_namespace.is_none() && self.kube_port.is_none()
        {
            return None;
        }
        Some(config::RawKubernetes {
            service: self.kube_service.clone(),
            namespace: self.kube_namespace.clone(),
            port: self.kube_port.clone().map(config::store::PortValue::Text),
            route: None,
        })
    }
}

/// What to do, once the command line is read.
#[derive(Debug)]
pub enum Action {
    /// Run a gateway.
    Run {
        /// Settings.
        config: Box<GatewayConfig>,
        /// The file, for reloads.
        path: Option<PathBuf>,
    },
    /// Run the demo.
    Demo(DemoArgs),
    /// Print a key.
    Keygen,
}

/// A usage or configuration error: printed, then exit status 2.
#[derive(Debug)]
pub enum CliError {
    /// A clap error (it prints itself).
    Usage(clap::Error),
    /// A configuration error naming the field.
    Config(ConfigError),
}

impl Cli {
    /// Turns parsed flags into an action.
    pub fn action(self) -> Result<Action, CliError> {
        match self.command {
            Some(Command::Demo(d)) => return Ok(Action::Demo(d)),
            Some(Command::Keygen) => return Ok(Action::Keygen),
            None => {}
        }
        let a = self.run;
        let etcd = a.etcd_override();
        let kubernetes = a.kubernetes_override();
        let (mut config, path) = match &a.config {
            Some(p) => (
                GatewayConfig::from_file_with(p, config::Sources { etcd, kubernetes })
                    .map_err(CliError::Config)?,
                Some(p.clone()),
            ),
            None => {
                let usage = |msg: &str| {
                    use clap::CommandFactory;
                    CliError::Usage(
                        Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, msg),
                    )
                };
                if a.listen.is_none() && a.tls_listen.is_none() {
                    return Err(usage(
                        "--listen ADDR or --tls-listen ADDR is required (or --config FILE.toml)",
                    ));
                }
                if a.backends.is_empty() && etcd.is_none() && kubernetes.is_none() {
                    return Err(usage(
                        "at least one --backend NAME=HOST:PORT is required (or --config FILE.toml)",
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                for b in &a.backends {
                    if !seen.insert(b.name.as_str()) {
                        return Err(CliError::Config(ConfigError::new(
                            "--backend",
                            format!("duplicate backend name {:?}", b.name),
                        )));
                    }
                }
                let mut route = RouteConfig::catch_all(a.backends.clone());
                route.backend_ca = crate::tls::backends::from_flag(a.backend_ca.as_deref(), &route)
                    .map_err(CliError::Config)?;
                if let Some(f) = a.failover {
                    route.failover = f.into();
                }
                if let Some(name) = &a.cookie_name {
                    config::check_token_name("--cookie-name", name).map_err(CliError::Config)?;
                    route.persistence = Persistence::Cookie(CookieSettings::named(name.clone()));
                }
                let mut c =
                    GatewayConfig::new("127.0.0.1:0".parse().expect("an address"), vec![route]);
                c.listen = a.listen;
                if etcd.is_some() && kubernetes.is_some() {
                    return Err(CliError::Config(ConfigError::new(
                        "kubernetes",
                        "cannot be used with [etcd] (--etcd): one state source feeds a gateway",
                    )));
                }
                if let Some(e) = etcd {
                    c.etcd =
                        Some(config::store::validate_etcd(e, &c.routes).map_err(CliError::Config)?);
                }
                if let Some(k) = kubernetes {
                    c.kubernetes = Some(
                        config::store::validate_kubernetes(k, &c.routes)
                            .map_err(CliError::Config)?,
                    );
                }
                config::store::check_backends(&c.routes, c.fed_route()).map_err(|_| {
                    CliError::Config(ConfigError::new(
                        "--backend",
                        "at least one --backend NAME=HOST:PORT is required (or --etcd, or --kube-service)",
                    ))
                })?;
                (c, None)
            }
        };
        if let Some(l) = a.listen {
            config.listen = Some(l);
        }
        if let Some(l) = a.tls_listen {
            let tls = crate::tls::config::from_flags(l, &a.tls_certs, &a.tls_keys)
                .map_err(CliError::Config)?;
            config.tls_listeners = vec![tls];
        }
        if a.redirect_to_https {
            config.redirect_to_https = true;
        }
        crate::tls::config::check_redirect(&config).map_err(CliError::Config)?;
        if a.admin_token_file.is_some() {
            config.admin_auth.token_file = a.admin_token_file;
        }
        if a.admin.is_some() {
            config.admin = a.admin;
        }
        crate::admin::auth::check_bind(config.admin, &config.admin_auth)
            .map_err(CliError::Config)?;
        if a.key_file.is_some() {
            config.key_file = a.key_file;
        }
        if let Some(t) = a.threads {
            config.threads = t.into();
        }
        if let Some(f) = a.log_format {
            config.log_format = f;
        }
        if a.no_access_log {
            config.access_log = false;
        }
        Ok(Action::Run {
            config: Box::new(config),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(args: &[&str]) -> Result<Action, CliError> {
        let mut all = vec!["sticky-gateway"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map_err(CliError::Usage)?.action()
    }

    fn config_error(r: Result<Action, CliError>) -> ConfigError {
        match r {
            Err(CliError::Config(e)) => e,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn etcd_flags_feed_the_command_line_route_which_needs_no_backend() {
        let Action::Run { config, .. } = action(&[
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            "http://127.0.0.1:2379,http://127.0.0.1:2380",
            "--etcd-prefix",
            "sticky/prod",
        ])
        .unwrap() else {
            panic!()
        };
        let e = config.etcd.as_ref().unwrap();
        assert_eq!(e.endpoints.len(), 2);
        assert_eq!(e.prefix, "sticky/prod");
        assert_eq!(e.route, config.routes[0].name);
        assert!(config.routes[0].backends.is_empty());
        let e = config_error(action(&["--listen", "127.0.0.1:0", "--etcd", "http://x:1"]));
        assert_eq!(e.field, "etcd.prefix");
        let e = config_error(action(&[
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            "http://x:1",
            "--etcd-prefix",
            "p",
            "--replica-id",
            "a/b",
        ]));
        assert_eq!(e.field, "etcd.replica_id");
    }

    #[cfg(feature = "kubernetes")]
    #[test]
    fn kube_flags_feed_the_command_line_route_which_needs_no_backend() {
        let Action::Run { config, .. } = action(&[
            "--listen",
            "127.0.0.1:0",
            "--kube-service",
            "web",
            "--kube-namespace",
            "shop",
            "--kube-port",
            "8080",
        ])
        .unwrap() else {
            panic!()
        };
        let k = config.kubernetes.as_ref().unwrap();
        assert_eq!(k.service, "web");
        assert_eq!(k.namespace.as_deref(), Some("shop"));
        assert_eq!(k.port, config::KubePort::Number(8080));
        assert_eq!(k.route, config.routes[0].name);
        assert_eq!(config.fed_route(), Some(k.route.as_str()));
        assert!(config.routes[0].backends.is_empty());
        let e = config_error(action(&[
            "--listen",
            "127.0.0.1:0",
            "--kube-service",
            "Web",
        ]));
        assert_eq!(e.field, "kubernetes.service");
        let e = config_error(action(&[
            "--listen",
            "127.0.0.1:0",
            "--kube-service",
            "web",
            "--kube-port",
            "0",
        ]));
        assert_eq!(e.field, "kubernetes.port");
        // A port without a Service: no Service named anywhere.
        let e = config_error(action(&["--listen", "127.0.0.1:0", "--kube-port", "http"]));
        assert_eq!(e.field, "kubernetes.service");
    }

    #[cfg(not(feature = "kubernetes"))]
    #[test]
    fn without_the_feature_kube_flags_are_refused_by_name() {
        let e = config_error(action(&[
            "--listen",
            "127.0.0.1:0",
            "--kube-service",
            "web",
        ]));
        assert_eq!(e.field, "kubernetes");
        assert!(e.reason.contains("feature"), "{e}");
    }

    #[test]
    fn etcd_and_kube_flags_together_are_refused() {
        let e = config_error(action(&[
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            "http://x:1",
            "--etcd-prefix",
            "p",
            "--kube-service",
            "web",
        ]));
        assert_eq!(e.field, "kubernetes");
    }

    #[test]
    fn without_etcd_a_backend_is_still_required() {
        assert!(matches!(
            action(&["--listen", "127.0.0.1:0"]),
            Err(CliError::Usage(_))
        ));
    }
}
