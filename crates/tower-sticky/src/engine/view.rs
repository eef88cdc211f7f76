//! The backend table as placement and failover see it at one instant: the
//! table, the time, and what the caller knows of each backend's readiness.

use crate::placement::Candidates;
use crate::table::BackendTable;
use crate::BackendId;

/// What a caller knows about its backends beyond the table: whether each
/// one's service can take a request now and, where services measure their own
/// load (`tower::load::Load`), how two compare.
///
/// Any `Fn(usize) -> bool` is a `Readiness` that reports no load of its own,
/// so placement uses the in-flight counts the engine keeps. Adapters with no
/// backpressure of their own (the gateway, pingora) pass `|_| true`.
pub trait Readiness {
    /// Whether the backend in `slot` can take a request now.
    fn is_ready(&self, slot: usize) -> bool;

    /// How the service-reported loads of two backends compare, if the
    /// services report one.
    fn compare_load(&self, a: usize, b: usize) -> Option<std::cmp::Ordering> {
        let _ = (a, b);
        None
    }
}

impl<F: Fn(usize) -> bool> Readiness for F {
    #[inline]
    fn is_ready(&self, slot: usize) -> bool {
        self(slot)
    }
}

/// A caller's readiness, minus the slots this request already found
/// unreachable: deciding again never picks one of them.
pub(crate) struct Excluding<R> {
    pub(crate) ready: R,
    pub(crate) slots: [Option<usize>; crate::lifecycle::MAX_TRIED],
}

impl<R: Readiness> Readiness for Excluding<R> {
    #[inline]
    fn is_ready(&self, slot: usize) -> bool {
        !self.slots.contains(&Some(slot)) && self.ready.is_ready(slot)
    }

    fn compare_load(&self, a: usize, b: usize) -> Option<std::cmp::Ordering> {
        self.ready.compare_load(a, b)
    }
}

/// The table as placement and failover see it at one instant.
pub(crate) struct View<'a, K, T, R> {
    pub(crate) table: &'a BackendTable<K, T>,
    pub(crate) now_ms: u64,
    pub(crate) ready: R,
    pub(crate) slow_start_ms: u64,
    pub(crate) grace_ms: u64,
    /// The session window (ms) the per-backend session estimates cover.
    pub(crate) window_ms: u64,
}

impl<K, T, R> View<'_, K, T, R> {
    /// The stable id of the backend in `slot`.
    #[inline]
    pub(crate) fn id_at(&self, slot: Option<usize>) -> Option<BackendId> {
        slot.and_then(|i| self.table.get(i)).map(|b| b.id())
    }
}

impl<K, T, R: Readiness> Candidates for View<'_, K, T, R> {
    fn len(&self) -> usize {
        self.table.len()
    }
    fn id(&self, i: usize) -> BackendId {
        self.table
            .get(i)
            .map(|b| b.id())
            .unwrap_or(BackendId::from_u64(0))
    }
    #[inline]
    fn eligible(&self, i: usize) -> bool {
        self.table
            .get(i)
            .is_some_and(|b| b.status().takes_new(self.now_ms))
            && self.ready.is_ready(i)
    }
    #[inline]
    fn can_serve(&self, i: usize) -> bool {
        self.table.get(i).is_some_and(|b| {
            let s = b.status();
            !s.is_unhealthy(self.now_ms)
                && s.removed_ms()
                    .is_none_or(|t| self.now_ms < t + self.grace_ms)
        }) && self.ready.is_ready(i)
    }
    fn in_flight(&self, i: usize) -> usize {
        self.table.get(i).map_or(0, |b| b.status().in_flight())
    }
    #[inline]
    fn sessions(&self, i: usize) -> u64 {
        self.table.get(i).map_or(0, |b| {
            b.status().sessions.active(self.now_ms, self.window_ms)
        })
    }
    fn total_in_flight(&self) -> usize {
        self.table.total_in_flight()
    }
    fn weight(&self, i: usize) -> u32 {
        self.table.get(i).map_or(1, |b| b.status().weight())
    }
    fn max_weight(&self) -> u32 {
        self.table.max_weight()
    }
    fn compare_load(&self, a: usize, b: usize) -> Option<std::cmp::Ordering> {
        self.ready.compare_load(a, b)
    }
    fn ramp(&self, i: usize) -> f64 {
        if self.slow_start_ms == 0 {
            return 1.0;
        }
        let age = self.table.get(i).map_or(u64::MAX, |b| {
            self.now_ms.saturating_sub(b.status().added_ms())
        });
        if age >= self.slow_start_ms {
            1.0
        } else {
            (age as f64 / self.slow_start_ms as f64).max(0.1)
        }
    }
}
