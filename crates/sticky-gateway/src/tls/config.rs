//! The TLS part of the configuration: listeners and their certificates, in
//! the file (`[[tls_listeners]]`) and on the command line (`--tls-listen`,
//! `--tls-cert`, `--tls-key`).
//!
//! ```toml
//! [[tls_listeners]]
//! listen = "0.0.0.0:443"
//! # The first certificate is the default; each further one is served to
//! # the names (subject alternative names) it covers.
//! [[tls_listeners.certificates]]
//! cert = "/etc/sticky/example.com.pem"
//! key = "/etc/sticky/example.com.key"
//! [[tls_listeners.certificates]]
//! cert = "/etc/sticky/api.example.net.pem"
//! key = "/etc/sticky/api.example.net.key"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[[tls_listeners]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsListener {
    /// `IP:PORT`.
    pub listen: Option<String>,
    /// Certificate chains and keys, the default first.
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    /// Session resumption (tickets and a session cache). Default true.
    pub resumption: Option<bool>,
}

/// `[[tls_listeners.certificates]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// PEM file: the certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// A certificate chain and its key, as two PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// One checked TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListenerConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its certificates: the first is served when no other covers the
    /// name the client asked for (or it asked for none).
    pub certificates: Vec<CertificateFiles>,
    /// Sessions may resume (stateless tickets, and a session cache for
    /// TLS 1.2); false makes every handshake a full one.
    pub resumption: bool,
}

/// Checks the `[[tls_listeners]]` tables, naming the first wrong field.
pub fn validate_listeners(raw: Vec<RawTlsListener>) -> Result<Vec<TlsListenerConfig>, ConfigError> {
    let mut out: Vec<TlsListenerConfig> = Vec::with_capacity(raw.len());
    for (i, l) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("tls_listeners[{i}].{f}");
        let text = l
            .listen
            .ok_or_else(|| ConfigError::new(at("listen"), "missing"))?;
        let listen: SocketAddr = text.parse().map_err(|_| {
            ConfigError::new(
                at("listen"),
                format!("invalid socket address {text:?}, expected IP:PORT"),
            )
        })?;
        if out.iter().any(|o| o.listen == listen) {
            return Err(ConfigError::new(
                at("listen"),
                format!("{listen} is listed twice"),
            ));
        }
        if l.certificates.is_empty() {
            return Err(ConfigError::new(
                at("certificates"),
                "at least one certificate (cert and key) is required",
            ));
        }
        let mut certificates = Vec::with_capacity(l.certificates.len());
        for (j, c) in l.certificates.into_iter().enumerate() {
            let cf = |f: &str| format!("tls_listeners[{i}].certificates[{j}].{f}");
            certificates.push(CertificateFiles {
                cert: c
                    .cert
                    .ok_or_else(|| ConfigError::new(cf("cert"), "missing"))?,
                key: c
                    .key
                    .ok_or_else(|| ConfigError::new(cf("key"), "missing"))?,
            });
        }
        out.push(TlsListenerConfig {
            listen,
            certificates,
            resumption: l.resumption.unwrap_or(true),
        });
    }
    Ok(out)
}

/// Checks that `redirect_to_https` has a plain listener to redirect from
/// and a TLS listener to redirect to.
pub fn check_redirect(c: &crate::config::GatewayConfig) -> Result<(), ConfigError> {
    if c.redirect_to_https && (c.listen.is_none() || c.tls_listeners.is_empty()) {
        return Err(ConfigError::new(
            "redirect_to_https",
            "needs both a plain listener (listen, --listen) and a TLS listener \
             ([[tls_listeners]], --tls-listen) to redirect to",
        ));
    }
    Ok(())
}

/// The listener that `--tls-listen ADDR --tls-cert FILE --tls-key FILE
/// [--tls-cert FILE --tls-key FILE ...]` describes: certificates and keys
/// are paired in the order given.
pub fn from_flags(
    listen: SocketAddr,
    certs: &[PathBuf],
    keys: &[PathBuf],
) -> Result<TlsListenerConfig, ConfigError> {
    if certs.is_empty() {
        return Err(ConfigError::new(
            "--tls-cert",
            "--tls-listen needs at least one --tls-cert FILE with its --tls-key FILE",
        ));
    }
    if certs.len() != keys.len() {
        return Err(ConfigError::new(
            "--tls-key",
            format!(
                "{} --tls-cert but {} --tls-key: give one key per certificate, in the same order",
                certs.len(),
                keys.len()
            ),
        ));
    }
    Ok(TlsListenerConfig {
        listen,
        resumption: true,
        certificates: certs
            .iter()
            .zip(keys)
            .map(|(c, k)| CertificateFiles {
                cert: c.clone(),
                key: k.clone(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_pair_certificates_with_keys_in_order() {
        let l = from_flags(
            "127.0.0.1:8443".parse().unwrap(),
            &["a.pem".into(), "b.pem".into()],
            &["a.key".into(), "b.key".into()],
        )
        .unwrap();
        assert_eq!(l.certificates[1].cert, PathBuf::from("b.pem"));
        assert_eq!(l.certificates[1].key, PathBuf::from("b.key"));
        let e = from_flags("127.0.0.1:8443".parse().unwrap(), &["a.pem".into()], &[]).unwrap_err();
        assert_eq!(e.field, "--tls-key");
        let e = from_flags("127.0.0.1:8443".parse().unwrap(), &[], &[]).unwrap_err();
        assert_eq!(e.field, "--tls-cert");
    }

    #[test]
    fn file_errors_name_the_field() {
        let e = validate_listeners(vec![RawTlsListener {
            listen: Some("127.0.0.1:443".into()),
            certificates: vec![RawCertificate {
                cert: Some("a.pem".into()),
                key: None,
            }],
            resumption: None,
        }])
        .unwrap_err();
        assert_eq!(e.field, "tls_listeners[0].certificates[0].key");
        let e = validate_listeners(vec![RawTlsListener {
            listen: Some("nowhere".into()),
            certificates: vec![],
            resumption: None,
        }])
        .unwrap_err();
        assert_eq!(e.field, "tls_listeners[0].listen");
    }
}
