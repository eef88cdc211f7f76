//! Choosing a certificate by the name the client asked for (SNI), from a
//! set that can be swapped whole while handshakes read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::{self, LoadError, LoadedCert};
use super::config::CertificateFiles;

/// One listener's certificates: a default, and others by the names their
/// leaf covers. Exact names win over wildcards; among certificates after
/// the default, the first listed for a name wins.
#[derive(Debug)]
pub struct SniCerts {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniCerts {
    /// Builds the set from loaded certificates, the default first.
    ///
    /// # Panics
    /// When `certs` is empty (configuration checks forbid it).
    pub fn new(certs: Vec<LoadedCert>) -> Self {
        let mut it = certs.into_iter();
        let default = it.next().expect("at least one certificate").key;
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for c in it {
            for n in c.names {
                match n.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(n),
                }
                .or_insert_with(|| c.key.clone());
            }
        }
        Self {
            default,
            exact,
            wildcard,
        }
    }

    /// Loads every file of `files`, the default first.
    pub fn load(files: &[CertificateFiles]) -> Result<Self, LoadError> {
        let loaded = files.iter().map(certs::load).collect::<Result<_, _>>()?;
        Ok(Self::new(loaded))
    }

    /// The certificate for `server_name` (the default when none covers it).
    pub fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(k) = self.exact.get(name) {
            return k;
        }
        // A wildcard covers exactly one label.
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return k;
            }
        }
        &self.default
    }
}

/// Modification time and length of each file, to notice a change.
type Fingerprint = Vec<Option<(SystemTime, u64)>>;

fn fingerprint(files: &[CertificateFiles]) -> Fingerprint {
    files
        .iter()
        .flat_map(|f| [&f.cert, &f.key])
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// A listener's live certificates, read by every handshake without a lock
/// and replaced whole by [`CertStore::reload`]. Connections already
/// established keep the certificate they were made with.
#[derive(Debug)]
pub struct CertStore {
    files: Vec<CertificateFiles>,
    current: ArcSwap<SniCerts>,
    seen: Mutex<Fingerprint>,
}

impl CertStore {
    /// Loads `files` (the default first); an error names the file at fault.
    pub fn load(files: Vec<CertificateFiles>) -> Result<Self, LoadError> {
        let seen = fingerprint(&files);
        let current = SniCerts::load(&files)?;
        Ok(Self {
            files,
            current: ArcSwap::from_pointee(current),
            seen: Mutex::new(seen),
        })
    }

    /// Reads the files again. On error the certificates in use stay and
    /// the error names the file at fault.
    pub fn reload(&self) -> Result<(), LoadError> {
        let seen = fingerprint(&self.files);
        let result = SniCerts::load(&self.files);
        // A failed load is not retried until the files change again.
        *self.seen.lock().unwrap() = seen;
        self.current.store(Arc::new(result?));
        Ok(())
    }

    /// Whether a file's modification time or length changed since the last
    /// load.
    pub fn changed_on_disk(&self) -> bool {
        *self.seen.lock().unwrap() != fingerprint(&self.files)
    }

    /// The files, default first.
    pub fn files(&self) -> &[CertificateFiles] {
        &self.files
    }

    /// The certificate now served for `server_name`.
    pub fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        self.current.load().pick(server_name).clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}
