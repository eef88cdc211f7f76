//! Throwaway certificates for `demo --tls` and tests: a private certificate
//! authority made on the spot, and server certificates it signs.
//!
//! ```
//! use sticky_gateway::tls::throwaway::Authority;
//!
//! let ca = Authority::new("sticky demo CA").unwrap();
//! let site = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
//! assert!(site.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! // Clients trust `ca.cert_pem`; the gateway serves `site`.
//! ```

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A certificate authority that lives as long as this value.
pub struct Authority {
    /// Its certificate, for clients to trust.
    pub cert_pem: String,
    /// The same, DER-encoded.
    pub cert_der: Vec<u8>,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A server certificate and its key.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The certificate, DER-encoded.
    pub cert_der: Vec<u8>,
}

impl Authority {
    /// A new authority called `name`, with a fresh P-256 key.
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            cert,
            key,
        })
    }

    /// A server certificate for `names` (DNS names, `*.` wildcards or IP
    /// addresses), signed by this authority.
    pub fn issue(&self, names: &[&str]) -> Result<Issued, rcgen::Error> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }
}
