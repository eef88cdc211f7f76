//! The value every state source produces: a route's whole backend set at one
//! revision. Two replicas holding equal snapshots route every token alike,
//! since placement and the deterministic failover are pure functions of the
//! set; that is why sources publish whole snapshots, never deltas.

use std::collections::BTreeMap;

/// What an operator (or the orchestrator) intends for a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AdminState {
    /// Takes pinned sessions and new ones.
    #[default]
    Active,
    /// Keeps its pinned sessions, takes no new ones.
    Draining,
    /// Not routed at all: its sessions fail over by the deterministic rule.
    Disabled,
}

impl AdminState {
    /// The name used in stores, JSON and the admin API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Disabled => "disabled",
        }
    }

    /// Parses [`AdminState::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "draining" => Some(Self::Draining),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// One backend of a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendEntry {
    /// `HOST:PORT`.
    pub address: String,
    /// Placement weight (at least 1).
    pub weight: u32,
    /// Operator intent.
    pub state: AdminState,
}

/// A route's backend set at one store revision. Keyed by backend name, the
/// stable id tokens carry; ordered, so equal sets compare and serialise
/// identically on every replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The store's revision this set was read at (0 for sources without
    /// one, such as the file).
    pub revision: u64,
    /// Backend name → entry.
    pub backends: BTreeMap<String, BackendEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_state_names_round_trip() {
        for s in [
            AdminState::Active,
            AdminState::Draining,
            AdminState::Disabled,
        ] {
            assert_eq!(AdminState::parse(s.as_str()), Some(s));
        }
        assert_eq!(AdminState::parse("Draining"), None, "names are exact");
    }
}
