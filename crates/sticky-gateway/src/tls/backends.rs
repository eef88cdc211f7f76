//! TLS to backends: `https://HOST:PORT` backend addresses, verified against
//! the authorities of a CA file, with SNI the backend's host name.
//!
//! ```toml
//! backend_ca_file = "/etc/sticky/backend-ca.pem"   # every route
//!
//! [[routes]]
//! backend_ca_file = "/etc/sticky/app-ca.pem"       # this route only
//! [[routes.backends]]
//! name = "app-1"
//! address = "https://app-1.internal:8443"
//! ```
//!
//! On the command line: `--backend app-1=https://app-1.internal:8443
//! --backend-ca ca.pem`.
//!
//! The CA file is required for `https://` backends: the gateway carries no
//! bundle of public roots (none is in its dependency tree, and backends
//! behind a gateway are most often signed by a private authority), and it
//! never accepts a certificate it cannot verify; there is no switch that
//! turns verification off. A backend whose certificate does not verify
//! counts as unreachable (its requests go elsewhere per the failover
//! policy, and it is ejected), with the reason in the log line.
//!
//! The file is read when the configuration is checked, at start and on
//! every reload: an unreadable file or one without a PEM certificate exits
//! with status 2 at start (or keeps the running configuration on reload),
//! naming the field.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sticky_proxy::tls::{client_config, host_of, BackendTls};
use sticky_proxy::{Pool, PoolSettings};

use crate::config::{ConfigError, RouteConfig};

/// The scheme prefix of a TLS backend's address.
pub const HTTPS: &str = "https://";
/// The scheme prefix of a plain backend's address (the default).
pub const HTTP: &str = "http://";

/// A backend address taken apart: whether it is `https://`, and its
/// `HOST:PORT`.
pub fn split_scheme(address: &str) -> (bool, &str) {
    if let Some(rest) = address.strip_prefix(HTTPS) {
        (true, rest)
    } else {
        (false, address.strip_prefix(HTTP).unwrap_or(address))
    }
}

/// The authorities a route's `https://` backends are verified against, and
/// the client configuration made from them (shared by the route's pools,
/// with its TLS session cache).
#[derive(Clone, Debug)]
pub struct BackendCa {
    /// The CA file, as configured.
    pub file: PathBuf,
    roots: Arc<[CertificateDer<'static>]>,
    client: Arc<ClientConfig>,
}

impl PartialEq for BackendCa {
    /// The same file with the same certificates: pools made with either
    /// may be kept across a reload.
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.roots == other.roots
    }
}

impl BackendCa {
    /// Reads the PEM certificates of `file`; `field` names the setting in
    /// errors.
    pub fn load(field: &str, file: &Path) -> Result<Self, ConfigError> {
        let err = |why: String| ConfigError::new(field, format!("{}: {why}", file.display()));
        let pem = std::fs::read(file).map_err(|e| err(format!("cannot read: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("invalid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(err(
                "no CERTIFICATE block found (expected the PEM certificates of the authorities that sign the backends)".into(),
            ));
        }
        let mut store = RootCertStore::empty();
        for (i, c) in certs.iter().enumerate() {
            store
                .add(c.clone())
                .map_err(|e| err(format!("certificate {} is not usable: {e}", i + 1)))?;
        }
        Ok(Self {
            file: file.to_path_buf(),
            roots: certs.into(),
            client: Arc::new(client_config(store)),
        })
    }

    /// The client configuration pools of this route share.
    pub fn client(&self) -> &Arc<ClientConfig> {
        &self.client
    }
}

/// Checks one backend address's TLS side: an `https://` address needs a
/// CA (`ca`, else the error says which setting to add) and a host that a
/// certificate can name.
pub fn check_backend(
    field: &str,
    address: &str,
    ca: Option<&BackendCa>,
    ca_setting: &str,
) -> Result<(), ConfigError> {
    let (tls, hostport) = split_scheme(address);
    if !tls {
        return Ok(());
    }
    if ca.is_none() {
        return Err(ConfigError::new(
            field,
            format!(
                "{address:?} is an https backend: set {ca_setting} to the PEM file of the authority that signs its certificate"
            ),
        ));
    }
    match rustls_pki_types::ServerName::try_from(host_of(hostport)) {
        Ok(_) => Ok(()),
        Err(_) => Err(ConfigError::new(
            field,
            format!(
                "{address:?}: the host is neither a DNS name nor an IP address, so no certificate can name it"
            ),
        )),
    }
}

/// Checks every backend of a route (see [`check_backend`]).
pub fn check_route(at: &str, route: &RouteConfig, ca_setting: &str) -> Result<(), ConfigError> {
    for (j, b) in route.backends.iter().enumerate() {
        let field = format!("{at}.backends[{j}].address");
        check_backend(&field, &b.address, route.backend_ca.as_ref(), ca_setting)?;
    }
    Ok(())
}

/// The CA of `--backend-ca`, checked against the `--backend` flags of
/// `route` (an `https://` backend needs one).
pub fn from_flag(
    file: Option<&Path>,
    route: &RouteConfig,
) -> Result<Option<BackendCa>, ConfigError> {
    let ca = file
        .map(|f| BackendCa::load("--backend-ca", f))
        .transpose()?;
    for b in &route.backends {
        check_backend("--backend", &b.address, ca.as_ref(), "--backend-ca FILE")?;
    }
    Ok(ca)
}

/// The pool for backend `name` at `address` (`HOST:PORT` or
/// `https://HOST:PORT`), speaking TLS with `ca` for an `https://` one.
pub fn pool(
    name: &str,
    address: &str,
    settings: PoolSettings,
    ca: Option<&BackendCa>,
) -> Result<Pool, String> {
    let (tls, hostport) = split_scheme(address);
    let pool = Pool::new(name, hostport, settings);
    if !tls {
        return Ok(pool);
    }
    let ca = ca.ok_or_else(|| format!("{address:?} is an https backend but no CA file is set"))?;
    let tls = BackendTls::new(ca.client.clone(), host_of(hostport)).map_err(|e| e.to_string())?;
    Ok(pool.with_tls(tls))
}

/// Whether `pool` already is the pool [`pool`] would make for `address`
/// and `ca` (same target, same transport, same authorities), so that a
/// reload keeps it with its idle connections.
pub fn is_same(pool: &Pool, address: &str, ca: Option<&BackendCa>) -> bool {
    let (tls, hostport) = split_scheme(address);
    if pool.address() != hostport {
        return false;
    }
    match (pool.tls(), tls.then_some(ca).flatten()) {
        (None, None) => !tls,
        (Some(t), Some(ca)) => Arc::ptr_eq(t.config(), &ca.client),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;

    fn settings() -> PoolSettings {
        PoolSettings::default()
    }

    fn ca_file(dir: &Path) -> PathBuf {
        let ca = crate::tls::throwaway::Authority::new("backend CA").unwrap();
        let f = dir.join("ca.pem");
        std::fs::write(&f, &ca.cert_pem).unwrap();
        f
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sticky-btls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn schemes() {
        assert_eq!(split_scheme("https://a.test:443"), (true, "a.test:443"));
        assert_eq!(split_scheme("http://a.test:80"), (false, "a.test:80"));
        assert_eq!(split_scheme("a.test:80"), (false, "a.test:80"));
    }

    #[test]
    fn ca_files_and_https_backends_are_checked_naming_the_field() {
        let dir = scratch("check");
        let e = BackendCa::load("backend_ca_file", &dir.join("missing.pem")).unwrap_err();
        assert_eq!(e.field, "backend_ca_file");
        assert!(e.reason.contains("cannot read"), "{e}");
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let e = BackendCa::load("routes[0].backend_ca_file", &bad).unwrap_err();
        assert_eq!(e.field, "routes[0].backend_ca_file");
        assert!(e.reason.contains("no CERTIFICATE"), "{e}");
        let ca = BackendCa::load("backend_ca_file", &ca_file(&dir)).unwrap();

        let mut route = RouteConfig::catch_all(vec![BackendConfig {
            name: "a".into(),
            address: "https://localhost:8443".into(),
            weight: 1,
        }]);
        let e = check_route("routes[0]", &route, "backend_ca_file").unwrap_err();
        assert_eq!(e.field, "routes[0].backends[0].address");
        assert!(e.reason.contains("backend_ca_file"), "{e}");
        route.backend_ca = Some(ca.clone());
        assert!(check_route("routes[0]", &route, "backend_ca_file").is_ok());
        let e = check_backend("f", "https://a..b:443", Some(&ca), "x").unwrap_err();
        assert!(e.reason.contains("neither a DNS name"), "{e}");
        assert!(check_backend("f", "https://[::1]:443", Some(&ca), "x").is_ok());

        let p = pool("a", "https://localhost:8443", settings(), Some(&ca)).unwrap();
        assert!(p.is_tls() && p.address() == "localhost:8443");
        assert!(is_same(&p, "https://localhost:8443", Some(&ca)));
        assert!(!is_same(&p, "localhost:8443", Some(&ca)), "scheme changed");
        let other = BackendCa::load("backend_ca_file", &ca_file(&dir)).unwrap();
        assert!(!is_same(&p, "https://localhost:8443", Some(&other)));
        let plain = pool("a", "127.0.0.1:1", settings(), Some(&ca)).unwrap();
        assert!(!plain.is_tls() && is_same(&plain, "127.0.0.1:1", Some(&ca)));
        let _ = std::fs::remove_dir_all(dir);
    }
}
