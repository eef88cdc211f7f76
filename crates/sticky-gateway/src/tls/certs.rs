//! Loading a certificate chain and its private key from PEM files, with
//! errors that name the file at fault.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::config::CertificateFiles;

/// Why a certificate or key file cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl LoadError {
    fn new(file: &Path, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

impl std::error::Error for LoadError {}

/// The cryptography every TLS listener uses: rustls' ring provider.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A loaded certificate: the chain with its signing key, and the DNS names
/// (lower case, wildcards as `*.example.com`) its leaf covers.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// The leaf's DNS subject alternative names.
    pub names: Vec<String>,
}

/// Reads `files`: the chain (leaf first) and a PKCS#8, PKCS#1 or SEC1 key
/// that must match the leaf.
pub fn load(files: &CertificateFiles) -> Result<LoadedCert, LoadError> {
    let (cert_path, key_path) = (files.cert.as_path(), files.key.as_path());
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| LoadError::new(p, format!("cannot read: {e}")));
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::new(cert_path, format!("invalid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(LoadError::new(
            cert_path,
            "no CERTIFICATE block found (expected a PEM certificate chain, leaf first)",
        ));
    }
    let names = {
        let leaf = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| {
            LoadError::new(
                cert_path,
                format!("the first certificate does not parse: {e}"),
            )
        })?;
        leaf.valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect()
    };
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY block found (expected a PKCS#8, PKCS#1 or SEC1 PEM key)".to_string()
            }
            e => format!("invalid PEM: {e}"),
        };
        LoadError::new(key_path, why)
    })?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => LoadError::new(
            key_path,
            format!("does not match the certificate in {}", cert_path.display()),
        ),
        e => LoadError::new(key_path, format!("unusable private key: {e}")),
    })?;
    Ok(LoadedCert {
        key: Arc::new(key),
        names,
    })
}
