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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::future::Future;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use pingora_load_balancing::discovery::ServiceDiscovery;
    use pingora_load_balancing::{Backend, Backends};
    use tower_sticky::{BackendState, StableId};

    use super::Membership;
    use crate::named_backend;

    /// Discovery whose answer the test sets.
    #[derive(Clone, Default)]
    struct Scripted(Arc<Mutex<BTreeSet<Backend>>>);

    #[async_trait]
    impl ServiceDiscovery for Scripted {
        async fn discover(&self) -> pingora_core::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
            Ok((self.0.lock().unwrap().clone(), HashMap::new()))
        }
    }

    fn set(d: &Scripted, backends: &Backends, names: &[&str]) {
        // pingora tells backends apart by address (`ext` is ignored), so
        // each name has its own: b1 on 9001, b2 on 9002, ...
        *d.0.lock().unwrap() = names
            .iter()
            .map(|n| {
                named_backend(
                    n,
                    &format!("127.0.0.1:{}", 9000 + n[1..].parse::<u16>().unwrap()),
                )
                .unwrap()
            })
            .collect();
        let mut update = std::pin::pin!(backends.update(|_| {}));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(update.as_mut().poll(&mut cx).is_ready());
    }

    fn state(m: &Membership, name: &str, now: u64) -> Option<BackendState> {
        let snap = m.peek();
        snap.table
            .get_by_id(name.stable_id())
            .map(|b| b.status().state(now))
    }

    #[test]
    fn staying_backends_keep_their_state_across_membership_changes() {
        let d = Scripted::default();
        let backends = Backends::new(Box::new(d.clone()));
        let m = Membership::new();
        set(&d, &backends, &["b1", "b2"]);
        let snap = m.load(&backends, 1_000, None);
        assert_eq!(snap.table.len(), 2);
        snap.table
            .get_by_id("b1".stable_id())
            .unwrap()
            .status()
            .drain();
        // Same membership: the same table, not a rebuild.
        assert!(Arc::ptr_eq(&snap, &m.load(&backends, 1_001, None)));
        set(&d, &backends, &["b1", "b3"]);
        let snap = m.load(&backends, 2_000, None);
        assert_eq!(snap.table.len(), 2);
        assert_eq!(state(&m, "b1", 2_000), Some(BackendState::Draining));
        assert_eq!(state(&m, "b2", 2_000), None, "no grace: gone at once");
        assert_eq!(state(&m, "b3", 2_000), Some(BackendState::Active));
    }

    #[test]
    fn a_removed_backend_keeps_its_sessions_for_the_grace_period() {
        let d = Scripted::default();
        let backends = Backends::new(Box::new(d.clone()));
        let m = Membership::new();
        set(&d, &backends, &["b1", "b2"]);
        m.load(&backends, 1_000, Some(5_000));
        set(&d, &backends, &["b1"]);
        m.load(&backends, 2_000, Some(5_000));
        assert_eq!(state(&m, "b2", 2_000), Some(BackendState::Removed));
        // Listed again within the grace period: back in service.
        set(&d, &backends, &["b1", "b2"]);
        m.load(&backends, 3_000, Some(5_000));
        assert_eq!(state(&m, "b2", 3_000), Some(BackendState::Active));
        // Removed again, and the grace period runs out.
        set(&d, &backends, &["b1"]);
        m.load(&backends, 4_000, Some(5_000));
        m.load(&backends, 9_500, Some(5_000));
        assert_eq!(state(&m, "b2", 9_500), None, "purged after its grace");
    }
}
