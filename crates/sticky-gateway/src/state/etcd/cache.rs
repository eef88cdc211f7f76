//! The local snapshot cache: the last applied snapshot, written atomically
//! (a temporary file renamed over the old one) each time the applied
//! snapshot changes, so that a replica can start while etcd is unreachable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{AdminState, BackendEntry, Snapshot};

/// The file's shape.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    revision: u64,
    backends: BTreeMap<String, CachedBackend>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedBackend {
    address: String,
    weight: u32,
    state: String,
}

/// The cache file of `route` in `dir`: `etcd-ROUTE.json` (the route name
/// made file-safe).
pub fn path(dir: &Path, route: &str) -> PathBuf {
    let safe: String = route
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("etcd-{safe}.json"))
}

/// Writes `snap` to `file` atomically.
pub fn write(file: &Path, snap: &Snapshot) -> std::io::Result<()> {
    let body = CacheFile {
        revision: snap.revision,
        backends: snap
            .backends
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    CachedBackend {
                        address: v.address.clone(),
                        weight: v.weight,
                        state: v.state.as_str().to_owned(),
                    },
                )
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&body).map_err(std::io::Error::other)?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("json.tmp");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file)
}

/// Reads a cache file; `Ok(None)` when there is none.
pub fn read(file: &Path) -> std::io::Result<Option<Snapshot>> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let c: CacheFile = serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let backends = c
        .backends
        .into_iter()
        .map(|(k, v)| {
            let state = AdminState::parse(&v.state).unwrap_or_default();
            (
                k,
                BackendEntry {
                    address: v.address,
                    weight: v.weight.max(1),
                    state,
                },
            )
        })
        .collect();
    Ok(Some(Snapshot {
        revision: c.revision,
        backends,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_survives_the_file() {
        let dir = std::env::temp_dir().join(format!("sticky-cache-test-{}", std::process::id()));
        let f = path(&dir, "api/v1");
        assert!(f.ends_with("etcd-api_v1.json"));
        assert_eq!(read(&f).unwrap(), None);
        let mut snap = Snapshot {
            revision: 42,
            ..Default::default()
        };
        snap.backends.insert(
            "a".into(),
            BackendEntry {
                address: "127.0.0.1:1".into(),
                weight: 2,
                state: AdminState::Draining,
            },
        );
        write(&f, &snap).unwrap();
        assert_eq!(read(&f).unwrap(), Some(snap));
        let _ = std::fs::remove_dir_all(dir);
    }
}
