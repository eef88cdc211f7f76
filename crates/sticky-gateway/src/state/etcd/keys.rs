//! The key layout and its JSON values: the contract between operators (or
//! their tooling) and every replica. See the [module docs](super).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{AdminState, BackendEntry, Snapshot};

/// Keys under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The prefix with exactly one trailing `/`... unless it already had
    /// one: the prefix is used as given, never normalised further.
    base: String,
}

/// What a key under the prefix is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// `PREFIX/backends/NAME`.
    Backend(&'a str),
    /// `PREFIX/intent/NAME`.
    Intent(&'a str),
    /// `PREFIX/replicas/ID`.
    Replica(&'a str),
}

impl Layout {
    /// The layout under `prefix` (as given: `sticky/prod` and `/sticky/prod`
    /// are different prefixes; a trailing `/` is not doubled).
    pub fn new(prefix: &str) -> Self {
        let mut base = prefix.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        Self { base }
    }

    /// What the watch covers: every key of the layout.
    pub fn root(&self) -> &str {
        &self.base
    }

    /// `PREFIX/backends/NAME`.
    pub fn backend(&self, name: &str) -> String {
        format!("{}backends/{name}", self.base)
    }

    /// `PREFIX/intent/NAME`.
    pub fn intent(&self, name: &str) -> String {
        format!("{}intent/{name}", self.base)
    }

    /// `PREFIX/replicas/ID`.
    pub fn replica(&self, id: &str) -> String {
        format!("{}replicas/{id}", self.base)
    }

    /// Which key `key` is; `None` for keys outside the layout (ignored).
    pub fn classify<'a>(&self, key: &'a [u8]) -> Option<Key<'a>> {
        let rest = std::str::from_utf8(key.strip_prefix(self.base.as_bytes())?).ok()?;
        let (kind, name) = rest.split_once('/')?;
        if name.is_empty() || name.contains('/') {
            return None;
        }
        match kind {
            "backends" => Some(Key::Backend(name)),
            "intent" => Some(Key::Intent(name)),
            "replicas" => Some(Key::Replica(name)),
            _ => None,
        }
    }
}

/// `PREFIX/backends/NAME`'s value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendValue {
    /// `HOST:PORT`.
    pub address: String,
    /// Placement weight, default 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// `PREFIX/intent/NAME`'s value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentValue {
    /// `draining` or `disabled` (`active` is the key's absence, but is
    /// accepted too).
    pub state: String,
}

/// `PREFIX/replicas/ID`'s value, written by each replica under its lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// The replica's proxy address.
    pub address: String,
    /// Its sticky-gateway version.
    pub version: String,
    /// The store revision it had applied when it wrote this.
    pub applied_revision: u64,
    /// Per backend of the fed route: its session sketch (base64 of
    /// `SessionSummary::to_bytes`).
    #[serde(default)]
    pub sessions: BTreeMap<String, String>,
}

/// Reads a backend value, or says why it cannot be used.
pub fn parse_backend(value: &[u8]) -> Result<BackendValue, String> {
    let v: BackendValue = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    crate::config::check_address(&v.address)
        .map_err(|e| format!("address {:?}: {e}", v.address))?;
    if v.weight == 0 {
        return Err("weight must be at least 1".into());
    }
    Ok(v)
}

/// Reads an intent value, or says why it cannot be used.
pub fn parse_intent(value: &[u8]) -> Result<AdminState, String> {
    let v: IntentValue = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    AdminState::parse(&v.state).ok_or_else(|| {
        format!(
            "unknown state {:?}, expected draining, disabled or active",
            v.state
        )
    })
}

/// The JSON stored for `state` (`None`: delete the key, active).
pub fn intent_json(state: AdminState) -> Option<String> {
    (state != AdminState::Active).then(|| {
        serde_json::to_string(&IntentValue {
            state: state.as_str().to_owned(),
        })
        .expect("plain JSON")
    })
}

/// The parsed contents of the prefix: what the watch keeps up to date.
#[derive(Clone, Debug, Default)]
pub struct StoreState {
    /// The store revision these contents are at.
    pub revision: u64,
    /// Valid backend keys, by name.
    pub backends: BTreeMap<String, BackendValue>,
    /// Valid intent keys, by name.
    pub intents: BTreeMap<String, AdminState>,
    /// Replica registrations, by id.
    pub replicas: BTreeMap<String, ReplicaRecord>,
    /// The revision of the last change to an intent key.
    pub intent_revision: u64,
}

impl StoreState {
    /// Applies one key's new value (`None`: deleted) at `mod_revision`.
    /// Invalid values are logged and count as absent, so that one bad key
    /// never stops the others from applying.
    pub fn set(&mut self, layout: &Layout, key: &[u8], value: Option<&[u8]>, mod_revision: u64) {
        match layout.classify(key) {
            Some(Key::Backend(name)) => match value.map(parse_backend) {
                Some(Ok(v)) => {
                    self.backends.insert(name.to_owned(), v);
                }
                Some(Err(e)) => {
                    tracing::warn!(key = layout.backend(name), error = %e, "etcd: invalid backend value ignored");
                    self.backends.remove(name);
                }
                None => {
                    self.backends.remove(name);
                }
            },
            Some(Key::Intent(name)) => {
                self.intent_revision = self.intent_revision.max(mod_revision);
                match value.map(parse_intent) {
                    Some(Ok(s)) => {
                        self.intents.insert(name.to_owned(), s);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(key = layout.intent(name), error = %e, "etcd: invalid intent value ignored");
                        self.intents.remove(name);
                    }
                    None => {
                        self.intents.remove(name);
                    }
                }
            }
            Some(Key::Replica(id)) => match value.map(serde_json::from_slice::<ReplicaRecord>) {
                Some(Ok(r)) => {
                    self.replicas.insert(id.to_owned(), r);
                }
                Some(Err(_)) | None => {
                    self.replicas.remove(id);
                }
            },
            None => {}
        }
    }

    /// The backend set these contents describe, at `revision`.
    pub fn snapshot(&self, revision: u64) -> Snapshot {
        Snapshot {
            revision,
            backends: self
                .backends
                .iter()
                .map(|(name, v)| {
                    (
                        name.clone(),
                        BackendEntry {
                            address: v.address.clone(),
                            weight: v.weight,
                            state: self.intents.get(name).copied().unwrap_or_default(),
                        },
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_prefix_as_given_plus_the_layout() {
        let l = Layout::new("sticky/prod");
        assert_eq!(l.backend("b1"), "sticky/prod/backends/b1");
        assert_eq!(l.intent("b1"), "sticky/prod/intent/b1");
        assert_eq!(l.replica("r1"), "sticky/prod/replicas/r1");
        assert_eq!(
            Layout::new("sticky/prod/"),
            l,
            "a trailing slash is not doubled"
        );
        assert_eq!(
            l.classify(b"sticky/prod/backends/b1"),
            Some(Key::Backend("b1"))
        );
        assert_eq!(
            l.classify(b"sticky/prod/intent/b1"),
            Some(Key::Intent("b1"))
        );
        assert_eq!(
            l.classify(b"sticky/prod/replicas/r"),
            Some(Key::Replica("r"))
        );
        assert_eq!(
            l.classify(b"/sticky/prod/backends/b1"),
            None,
            "no normalising"
        );
        assert_eq!(l.classify(b"sticky/prod/backends/"), None);
        assert_eq!(l.classify(b"sticky/prod/backends/a/b"), None);
        assert_eq!(l.classify(b"sticky/prod/other/a"), None);
    }

    #[test]
    fn values_parse_and_bad_ones_count_as_absent() {
        let l = Layout::new("p");
        let mut s = StoreState::default();
        s.set(
            &l,
            b"p/backends/a",
            Some(br#"{"address":"127.0.0.1:1"}"#),
            2,
        );
        s.set(
            &l,
            b"p/backends/b",
            Some(br#"{"address":"127.0.0.1:2","weight":3}"#),
            3,
        );
        s.set(&l, b"p/backends/c", Some(br#"{"address":"nope"}"#), 4);
        s.set(&l, b"p/intent/a", Some(br#"{"state":"draining"}"#), 5);
        s.set(&l, b"p/intent/b", Some(br#"{"state":"sleepy"}"#), 6);
        let snap = s.snapshot(6);
        assert_eq!(snap.backends.len(), 2);
        assert_eq!(snap.backends["a"].state, AdminState::Draining);
        assert_eq!(snap.backends["a"].weight, 1);
        assert_eq!(snap.backends["b"].state, AdminState::Active);
        assert_eq!(snap.backends["b"].weight, 3);
        assert_eq!(s.intent_revision, 6);
        s.set(&l, b"p/intent/a", None, 7);
        assert_eq!(s.snapshot(7).backends["a"].state, AdminState::Active);
        assert_eq!(intent_json(AdminState::Active), None);
        assert_eq!(
            intent_json(AdminState::Disabled).as_deref(),
            Some(r#"{"state":"disabled"}"#)
        );
    }
}
