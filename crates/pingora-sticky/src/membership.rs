//! The core's backend table, kept in step with a pingora [`Backends`] view.
//!
//! pingora owns membership (discovery) and readiness (health checks, manual
//! enablement); the core's table owns what pingora has no notion of: stable
//! ids, draining, passive ejection, in-flight counts. A table is rebuilt only
//! when pingora publishes a new membership (a pointer compare per request),
//! carrying every staying backend's status over, so drain state and counters
//! survive discovery updates.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use pingora_load_balancing::{Backend, Backends};
use tower_sticky::{BackendTable, Readiness};

use crate::backend::BackendKey;

/// The table the engine decides over: core state per backend, pingora's
/// `Backend` as the payload.
pub(crate) type Table = BackendTable<BackendKey, Backend>;

/// One table, and the pingora membership it was built from.
#[derive(Debug)]
pub(crate) struct Snapshot {
    members: Arc<BTreeSet<Backend>>,
    pub(crate) table: Table,
}

/// How often, at most, the health of backends already taken out is read
/// again from pingora, so that they return once pingora finds them ready.
const RESYNC_MS: u64 = 100;

/// The table, rebuilt from pingora's membership on change.
#[derive(Debug)]
pub(crate) struct Membership {
    current: ArcSwap<Snapshot>,
    rebuild: Mutex<()>,
    last_resync_ms: AtomicU64,
}

impl Membership {
    pub(crate) fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot {
                members: Arc::new(BTreeSet::new()),
                table: Table::new(),
            }),
            rebuild: Mutex::new(()),
            last_resync_ms: AtomicU64::new(0),
        }
    }

    /// The latest table, as it is.
    pub(crate) fn peek(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The table for pingora's current membership.
    pub(crate) fn load(
        &self,
        backends: &Backends,
        now_ms: u64,
        grace_ms: Option<u64>,
    ) -> Arc<Snapshot> {
        let members = backends.get_backend();
        let snap = self.current.load_full();
        let snap = if Arc::ptr_eq(&members, &snap.members) {
            snap
        } else {
            self.rebuild(members, now_ms, grace_ms)
        };
        let last = self.last_resync_ms.load(Relaxed);
        if now_ms.saturating_sub(last) >= RESYNC_MS
            && self
                .last_resync_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_ok()
        {
            for b in snap.table.iter() {
                b.status().set_probe_healthy(backends.ready(b.value()));
            }
            if let Some(grace) = grace_ms {
                let removed = snap
                    .table
                    .iter()
                    .any(|b| b.status().state(now_ms) == tower_sticky::BackendState::Removed);
                if removed {
                    return self.purge(now_ms.saturating_sub(grace));
                }
            }
        }
        snap
    }

    fn rebuild(
        &self,
        members: Arc<BTreeSet<Backend>>,
        now_ms: u64,
        grace_ms: Option<u64>,
    ) -> Arc<Snapshot> {
        let _one_at_a_time = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current.load_full();
        if Arc::ptr_eq(&old.members, &members) {
            return old;
        }
        // A copy sharing every status: staying backends keep their state.
        let mut table: Table = old.table.map_values(|b| b.value().clone());
        // A table built at start-up has no load for newcomers to relieve: no
        // slow start then (as HAProxy skips `slowstart` at startup).
        let joined_ms = if old.table.is_empty() { 0 } else { now_ms };
        let mut listed = Vec::with_capacity(members.len());
        for b in members.iter() {
            let key = BackendKey::of(b);
            let id = key.id;
            match table.insert(key, b.clone(), joined_ms) {
                Ok(_) => listed.push(id),
                Err(e) => {
                    tracing::warn!(error = %e, backend = ?b.addr, "backend left out of the sticky table")
                }
            }
        }
        // Backends pingora no longer lists keep their sessions as removed
        // (served, no new sessions) for the removal grace period, if any.
        let gone: Vec<_> = table
            .iter()
            .map(|b| b.id())
            .filter(|id| !listed.contains(id))
            .collect();
        for id in gone {
            if grace_ms.is_some() {
                table.mark_removed(id, now_ms);
            } else {
                table.remove(id);
            }
        }
        if let Some(grace) = grace_ms {
            table.purge_removed(now_ms.saturating_sub(grace));
        }
        let snap = Arc::new(Snapshot { members, table });
        self.current.store(snap.clone());
        snap
    }

    fn purge(&self, cutoff_ms: u64) -> Arc<Snapshot> {
        let _one_at_a_time = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current.load_full();
        let mut table: Table = old.table.map_values(|b| b.value().clone());
        if table.purge_removed(cutoff_ms).is_empty() {
            return old;
        }
        let snap = Arc::new(Snapshot {
            members: old.members.clone(),
            table,
        });
        self.current.store(snap.clone());
        snap
    }
}

/// pingora's readiness (health checks and manual enablement) as the engine
/// sees it. A backend pingora reports not ready is marked down in the core's
/// status too, so that its sessions fail over as `unhealthy` (moved for good
/// under `Redistribute`), not as transient backpressure.
pub(crate) struct PingoraReady<'a> {
    pub(crate) table: &'a Table,
    pub(crate) backends: &'a Backends,
}

impl Readiness for PingoraReady<'_> {
    #[inline]
    fn is_ready(&self, slot: usize) -> bool {
        let Some(b) = self.table.get(slot) else {
            return false;
        };
        let ready = self.backends.ready(b.value());
        if !ready && b.status().probe_healthy() {
            b.status().set_probe_healthy(false);
        }
        ready
    }
}
