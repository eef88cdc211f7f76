//! The backend table: the set of backends, keyed by stable id.
//!
//! Lookups by [`BackendId`] are O(1) (a hash map from id to slot); placement
//! iterates slots. Removing a backend swaps the last slot into its place, so
//! slot indices are only valid for one decision, never stored in a token.
//! Each entry carries a shared [`BackendStatus`] (atomics) and an optional
//! payload `T` (the gateway keeps its connection pool there).

pub(crate) mod sessions;
mod status;
pub mod upkeep;

pub use sessions::SessionSummary;
use status::TableLoad;
pub use status::{BackendState, BackendStatus, InFlight};

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::{BackendId, StableId};

/// One backend in a [`BackendTable`].
#[derive(Debug)]
pub struct Backend<K, T = ()> {
    key: K,
    id: BackendId,
    status: Arc<BackendStatus>,
    value: T,
}

impl<K, T> Backend<K, T> {
    /// The key the backend was discovered under.
    pub fn key(&self) -> &K {
        &self.key
    }
    /// The stable id tokens name it by.
    pub fn id(&self) -> BackendId {
        self.id
    }
    /// Its live state and counters.
    pub fn status(&self) -> &Arc<BackendStatus> {
        &self.status
    }
    /// The payload stored with it.
    pub fn value(&self) -> &T {
        &self.value
    }
}

/// Error from [`BackendTable::insert`]: two different keys hash to one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdCollision(pub BackendId);

impl std::fmt::Display for IdCollision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "two backend keys share the stable id {}", self.0)
    }
}

impl std::error::Error for IdCollision {}

/// Ids are already well mixed, so the map hashes them as they are.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The set of backends a layer routes over.
#[derive(Debug)]
pub struct BackendTable<K, T = ()> {
    entries: Vec<Backend<K, T>>,
    by_id: HashMap<BackendId, usize, BuildHasherDefault<IdHasher>>,
    shared: Arc<TableLoad>,
}

impl<K, T> Default for BackendTable<K, T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            by_id: HashMap::default(),
            shared: Arc::default(),
        }
    }
}

impl<K: StableId + PartialEq, T> BackendTable<K, T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a backend that joined at `now_ms` (slow start counts from
    /// then), or replaces the payload of the backend already under this key,
    /// keeping its state and counters (and ending a removal grace period).
    /// Returns its slot.
    pub fn insert(&mut self, key: K, value: T, now_ms: u64) -> Result<usize, IdCollision> {
        self.upsert(key, value, now_ms).map(|(slot, _)| slot)
    }

    /// [`BackendTable::insert`], also saying whether the backend was marked
    /// removed (and is now back).
    pub(crate) fn upsert(
        &mut self,
        key: K,
        value: T,
        now_ms: u64,
    ) -> Result<(usize, bool), IdCollision> {
        let id = key.stable_id();
        if let Some(&i) = self.by_id.get(&id) {
            let e = &mut self.entries[i];
            if e.key != key {
                return Err(IdCollision(id));
            }
            e.value = value;
            // Rediscovered within its grace period: back in service.
            return Ok((i, e.status.clear_removed()));
        }
        let status = Arc::new(BackendStatus::new(now_ms, 1, self.shared.clone()));
        Ok((self.push(key, id, value, status), false))
    }

    fn push(&mut self, key: K, id: BackendId, value: T, status: Arc<BackendStatus>) -> usize {
        self.entries.push(Backend {
            key,
            id,
            status,
            value,
        });
        let i = self.entries.len() - 1;
        self.by_id.insert(id, i);
        i
    }

    /// Inserts a backend keeping an existing status (state and counters),
    /// e.g. when rebuilding a table on a configuration reload.
    pub fn insert_with_status(
        &mut self,
        key: K,
        value: T,
        status: Arc<BackendStatus>,
    ) -> Result<usize, IdCollision> {
        let id = key.stable_id();
        if self.by_id.contains_key(&id) {
            return Err(IdCollision(id));
        }
        Ok(self.push(key, id, value, status))
    }
}

impl<K, T> BackendTable<K, T> {
    /// An empty table that shares this one's in-flight total, to be filled with
    /// [`BackendTable::insert_with_status`] when rebuilding the set (a reload):
    /// statuses moved over keep counting against the same total.
    pub fn sharing_load<U>(&self) -> BackendTable<K, U> {
        BackendTable {
            entries: Vec::new(),
            by_id: HashMap::default(),
            shared: self.shared.clone(),
        }
    }

    /// Removes a backend at once. Its in-flight requests finish normally.
    pub fn remove(&mut self, id: BackendId) -> Option<Backend<K, T>> {
        let i = self.by_id.remove(&id)?;
        let removed = self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.by_id.insert(moved.id, i);
        }
        Some(removed)
    }

    /// Marks a backend as removed by discovery at `now_ms`, keeping it as
    /// draining for a grace period; [`BackendTable::purge_removed`] drops it
    /// later. False when there is no such backend or it already was marked.
    pub fn mark_removed(&self, id: BackendId, now_ms: u64) -> bool {
        self.get_by_id(id)
            .is_some_and(|b| b.status.mark_removed(now_ms))
    }

    /// Drops backends marked removed at or before `cutoff_ms`, returning them.
    pub fn purge_removed(&mut self, cutoff_ms: u64) -> Vec<Backend<K, T>> {
        let ids: Vec<BackendId> = self
            .entries
            .iter()
            .filter(|b| b.status.removed_ms().is_some_and(|t| t <= cutoff_ms))
            .map(|b| b.id)
            .collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The slot of the backend with this id.
    #[inline]
    pub fn index_of(&self, id: BackendId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// The backend with this id.
    pub fn get_by_id(&self, id: BackendId) -> Option<&Backend<K, T>> {
        self.index_of(id).map(|i| &self.entries[i])
    }

    /// The backend in slot `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Backend<K, T>> {
        self.entries.get(i)
    }

    /// Number of backends (removed-in-grace included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All backends, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Backend<K, T>> {
        self.entries.iter()
    }

    /// An upper bound of the backends' weights (the largest weight ever set).
    pub fn max_weight(&self) -> u32 {
        self.shared.max_weight.load(Relaxed).max(1)
    }

    /// Requests in flight over all backends.
    pub fn total_in_flight(&self) -> usize {
        self.shared.in_flight.load(Relaxed)
    }

    /// A table with the same backends, states and counters and new payloads.
    pub fn map_values<U>(&self, mut f: impl FnMut(&Backend<K, T>) -> U) -> BackendTable<K, U>
    where
        K: Clone,
    {
        BackendTable {
            entries: self
                .entries
                .iter()
                .map(|b| Backend {
                    key: b.key.clone(),
                    id: b.id,
                    status: b.status.clone(),
                    value: f(b),
                })
                .collect(),
            by_id: self.by_id.clone(),
            shared: self.shared.clone(),
        }
    }
}
