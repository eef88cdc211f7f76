//! TLS to backends (feature `tls`): `https://` backends are dialled over
//! TCP, then a rustls handshake verifies the backend's certificate against
//! the roots the caller trusts, with the backend's host name as SNI.
//!
//! ```no_run
//! # fn demo(ca_pem: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sticky_proxy::tls::{client_config, BackendTls};
//! use sticky_proxy::{Pool, PoolSettings};
//! use rustls::pki_types::{CertificateDer, pem::PemObject};
//!
//! let mut roots = rustls::RootCertStore::empty();
//! for cert in CertificateDer::pem_slice_iter(ca_pem) {
//!     roots.add(cert?)?;
//! }
//! let config = Arc::new(client_config(roots));
//! let tls = BackendTls::new(config, "app-1.internal")?;
//! let pool = Pool::new("app-1", "app-1.internal:8443", PoolSettings::default()).with_tls(tls);
//! # Ok(()) }
//! ```
//!
//! What the handshake promises:
//! - **Verified, never silently accepted.** The chain must lead to one of
//!   the trusted roots and name the backend (its DNS name, or for an IP
//!   address its IP subject alternative name); otherwise the dial fails
//!   with [`ConnectError::Tls`](crate::ConnectError::Tls), which says why.
//!   Nothing was sent, so a front may send the request elsewhere.
//! - **SNI is the backend's host name**; an IP address sends none (RFC
//!   6066 §3 allows only host names) and is verified against IP SANs.
//! - **ALPN offers `http/1.1` only**: this client speaks nothing else.
//! - **Pooled like plain connections**: a TLS connection goes back to the
//!   pool after a clean exchange and carries the next request without a
//!   new handshake; new connections resume sessions (rustls' in-memory
//!   cache, kept in the shared client configuration).

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::stream::BackendStream;

/// The rustls this crate builds on, for callers that make their own
/// [`ClientConfig`] (its version must match).
pub use rustls;

/// The ALPN protocol offered to backends: HTTP/1.1, the one this client
/// speaks.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A client configuration for backends: rustls' ring provider with its safe
/// defaults (TLS 1.2 and 1.3, forward-secret AEAD suites), certificates
/// verified against `roots`, no client certificate, ALPN `http/1.1`.
pub fn client_config(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config
}

/// The host part of `HOST:PORT` (`[v6]:PORT` without its brackets).
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A host that cannot be a TLS server name (neither a DNS name nor an IP
/// address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHost(pub String);

impl std::fmt::Display for InvalidHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is neither a DNS name nor an IP address, so no certificate can name it",
            self.0
        )
    }
}

impl std::error::Error for InvalidHost {}

/// How a pool speaks TLS to its backend: the client configuration (trusted
/// roots, session cache) and the name the certificate must carry. `Clone`
/// is two `Arc` clones.
#[derive(Clone)]
pub struct BackendTls {
    connector: TlsConnector,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BackendTls {
    /// TLS with `config` to the backend called `host` (a DNS name, sent as
    /// SNI, or an IP address, sent as none; see [`host_of`] to take it from
    /// an address).
    pub fn new(config: Arc<ClientConfig>, host: &str) -> Result<Self, InvalidHost> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| InvalidHost(host.into()))?;
        Ok(Self {
            connector: TlsConnector::from(config.clone()),
            config,
            name,
        })
    }

    /// The name the backend's certificate must carry.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.name
    }

    /// The client configuration (shared by every pool it was given to).
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The handshake over a connected socket.
    pub(crate) async fn handshake(&self, tcp: TcpStream) -> std::io::Result<BackendStream> {
        let s = self.connector.connect(self.name.clone(), tcp).await?;
        Ok(s.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("localhost:8443"), "localhost");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("10.0.0.1:443"), "10.0.0.1");
        let config = Arc::new(client_config(RootCertStore::empty()));
        let ip = BackendTls::new(config.clone(), "::1").unwrap();
        assert!(matches!(ip.server_name(), ServerName::IpAddress(_)));
        let dns = BackendTls::new(config.clone(), "app-1.internal").unwrap();
        assert!(matches!(dns.server_name(), ServerName::DnsName(_)));
        assert!(BackendTls::new(config, "bad host").is_err());
    }
}
