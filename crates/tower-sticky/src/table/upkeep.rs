//! Keeping a backend set up to date, as pure code over tables: rebuilding a
//! table from the backends a configuration or discovery wants (carrying each
//! staying backend's state over), purging backends whose removal grace has
//! ended, and active health checking's streak rule. Front ends keep only
//! their own loops (a file watcher, a probe timer) and call these.

use std::collections::HashMap;
use std::time::Duration;

use super::{Backend, BackendState, BackendStatus, BackendTable, IdCollision};
use crate::{BackendId, StableId};

/// Rebuilds a table from the backends wanted now, keeping the state
/// (draining, ejected), counters and sessions of every backend that stays.
///
/// - A backend new to the set starts its slow start at `now_ms`; in a table
///   built afresh (no previous table: a process starting) every backend is
///   fully ramped, since there is no load for a newcomer to relieve (as
///   HAProxy skips `slowstart` at startup). Were they slow-started too, every
///   backend would ramp together, and one added within the window would get
///   the same share as the others.
/// - A backend that was removed (and is back) starts afresh.
/// - A backend no longer wanted stays, in state
///   [`Removed`](BackendState::Removed), for the removal grace (it serves
///   its pinned sessions, takes no new ones), or goes at once without one;
///   [`purged`] drops it once the grace is over.
///
/// ```
/// use tower_sticky::table::{upkeep::Rebuild, BackendTable};
/// let t1 = Rebuild::<&str, ()>::new(None, 1_000).keep("a", (), 1).unwrap().finish(None).unwrap();
/// t1.get(0).unwrap().status().drain();
/// let t2 = Rebuild::new(Some(&t1), 2_000)
///     .keep("a", (), 1).unwrap()
///     .keep("b", (), 1).unwrap()
///     .finish(None).unwrap();
/// assert!(t2.get(0).unwrap().status().is_draining(), "state carried over");
/// assert_eq!(t2.get(1).unwrap().status().added_ms(), 2_000, "b slow-starts");
/// ```
#[derive(Debug)]
pub struct Rebuild<'a, K, T> {
    prev: Option<&'a BackendTable<K, T>>,
    next: BackendTable<K, T>,
    now_ms: u64,
}

impl<'a, K: StableId + PartialEq, T> Rebuild<'a, K, T> {
    /// Starts a table to replace `prev` (`None` when there is none yet).
    pub fn new(prev: Option<&'a BackendTable<K, T>>, now_ms: u64) -> Self {
        Self {
            next: prev.map_or_else(BackendTable::new, |p| p.sharing_load()),
            prev,
            now_ms,
        }
    }

    /// The backend under `key` in the previous table, e.g. to reuse its
    /// payload (the gateway keeps a backend's idle connections when its
    /// address did not change).
    pub fn previous(&self, key: &K) -> Option<&'a Backend<K, T>> {
        self.prev.and_then(|p| p.get_by_id(key.stable_id()))
    }

    /// Wants the backend `key`, with this payload and placement weight.
    pub fn keep(mut self, key: K, value: T, weight: u32) -> Result<Self, IdCollision> {
        self.insert(key, value, weight)?;
        Ok(self)
    }

    /// [`Rebuild::keep`] for loops: wants the backend `key`.
    pub fn insert(&mut self, key: K, value: T, weight: u32) -> Result<usize, IdCollision> {
        let now = self.now_ms;
        let slot = match self.previous(&key) {
            Some(o) if o.status().state(now) != BackendState::Removed => self
                .next
                .insert_with_status(key, value, o.status().clone())?,
            _ => {
                // Epoch 0 is older than any slow-start window.
                let added = if self.prev.is_some() { now } else { 0 };
                self.next.insert(key, value, added)?
            }
        };
        if let Some(b) = self.next.get(slot) {
            b.status().set_weight(weight);
        }
        Ok(slot)
    }

    /// The table: the backends wanted and, with a removal grace, those no
    /// longer wanted, marked removed (at `now_ms`, unless they already were).
    pub fn finish(
        mut self,
        removal_grace: Option<Duration>,
    ) -> Result<BackendTable<K, T>, IdCollision>
    where
        K: Clone,
        T: Clone,
    {
        if let (Some(prev), Some(_)) = (self.prev, removal_grace) {
            for o in prev.iter() {
                if self.next.index_of(o.id()).is_some() {
                    continue;
                }
                prev.mark_removed(o.id(), self.now_ms);
                self.next.insert_with_status(
                    o.key().clone(),
                    o.value().clone(),
                    o.status().clone(),
                )?;
            }
        }
        Ok(self.next)
    }
}

/// What [`purged`] made: the table without the backends whose grace ended,
/// and those backends (to log, or to close their connections).
#[derive(Debug)]
pub struct Purged<K, T> {
    /// The table to install.
    pub table: BackendTable<K, T>,
    /// The backends dropped.
    pub gone: Vec<Backend<K, T>>,
}

/// When any backend of `table` was removed longer than `grace` ago: a copy
/// of the table without them, and the backends dropped. `None` when there is
/// nothing to purge, so that callers swapping tables (`ArcSwap`) only swap
/// when something changed.
pub fn purged<K: Clone, T: Clone>(
    table: &BackendTable<K, T>,
    grace: Duration,
    now_ms: u64,
) -> Option<Purged<K, T>> {
    let cutoff = now_ms.saturating_sub(grace.as_millis() as u64);
    if !table
        .iter()
        .any(|b| b.status().removed_ms().is_some_and(|t| t <= cutoff))
    {
        return None;
    }
    let mut next = table.map_values(|b| b.value().clone());
    let gone = next.purge_removed(cutoff);
    Some(Purged { table: next, gone })
}

/// Active health checking's rule: `healthy` successes in a row mark a
/// backend up, `unhealthy` failures in a row mark it down. One per probed
/// set; the front end owns the timer and the probe itself.
#[derive(Debug, Clone)]
pub struct HealthStreaks {
    healthy: u32,
    unhealthy: u32,
    streaks: HashMap<BackendId, (u32, u32)>,
}

/// A change of a backend's probe verdict, for the front end to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthChange {
    /// The backend passed `healthy` probes in a row and is up again.
    Up,
    /// The backend failed `unhealthy` probes in a row and is marked down.
    Down,
}

impl HealthStreaks {
    /// `healthy` successes up, `unhealthy` failures down (each at least 1).
    pub fn new(healthy: u32, unhealthy: u32) -> Self {
        Self {
            healthy: healthy.max(1),
            unhealthy: unhealthy.max(1),
            streaks: HashMap::new(),
        }
    }

    /// Records one probe of the backend `id` and applies the verdict to its
    /// status when a streak completes; returns the change, if any.
    pub fn record(
        &mut self,
        id: BackendId,
        status: &BackendStatus,
        ok: bool,
    ) -> Option<HealthChange> {
        let (up, down) = self.streaks.entry(id).or_default();
        if ok {
            *up += 1;
            *down = 0;
            if *up >= self.healthy && !status.probe_healthy() {
                status.set_probe_healthy(true);
                return Some(HealthChange::Up);
            }
        } else {
            *down += 1;
            *up = 0;
            if *down >= self.unhealthy && status.probe_healthy() {
                status.set_probe_healthy(false);
                return Some(HealthChange::Down);
            }
        }
        None
    }

    /// Forgets the streaks of backends no longer in `table`.
    pub fn retain<K, T>(&mut self, table: &BackendTable<K, T>) {
        self.streaks.retain(|id, _| table.index_of(*id).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebuild(
        prev: Option<&BackendTable<&'static str, u32>>,
        names: &[(&'static str, u32)],
        grace: Option<Duration>,
        now: u64,
    ) -> BackendTable<&'static str, u32> {
        let mut r = Rebuild::new(prev, now);
        for (n, v) in names {
            r.insert(*n, *v, 1).unwrap();
        }
        r.finish(grace).unwrap()
    }

    #[test]
    fn rebuild_keeps_state_slow_starts_only_newcomers_and_keeps_removed_for_the_grace() {
        let t1 = rebuild(None, &[("a", 1), ("b", 2)], None, 1_000_000);
        assert!(
            t1.iter().all(|b| b.status().added_ms() == 0),
            "at start: ramped"
        );
        t1.get_by_id("a".stable_id()).unwrap().status().drain();
        let t2 = rebuild(Some(&t1), &[("a", 9), ("c", 3)], None, 2_000_000);
        assert_eq!(t2.len(), 2, "b gone at once without a grace");
        let a = t2.get_by_id("a".stable_id()).unwrap();
        assert!(a.status().is_draining());
        assert_eq!((*a.value(), a.status().added_ms()), (9, 0));
        let c = t2.get_by_id("c".stable_id()).unwrap();
        assert_eq!(c.status().added_ms(), 2_000_000);

        let grace = Some(Duration::from_secs(60));
        let t3 = rebuild(Some(&t2), &[("c", 3)], grace, 3_000_000);
        assert_eq!(t3.len(), 2);
        let a = t3.get_by_id("a".stable_id()).unwrap().status();
        assert_eq!(a.state(3_000_000), BackendState::Removed);
        assert!(purged(&t3, Duration::from_secs(60), 3_059_000).is_none());
        let p = purged(&t3, Duration::from_secs(60), 3_060_000).unwrap();
        assert_eq!((p.table.len(), p.gone.len(), *p.gone[0].key()), (1, 1, "a"));

        // Back after its removal: a fresh start (and a slow one).
        let t5 = rebuild(Some(&t3), &[("a", 1), ("c", 3)], grace, 3_010_000);
        let a = t5.get_by_id("a".stable_id()).unwrap().status();
        assert_eq!(a.state(3_010_000), BackendState::Active);
        assert!(!a.is_draining());
        assert_eq!(a.added_ms(), 3_010_000);
    }

    #[test]
    fn health_streaks_need_n_up_and_m_down() {
        let t = rebuild(None, &[("a", 1)], None, 0);
        let (id, s) = (t.get(0).unwrap().id(), t.get(0).unwrap().status().clone());
        let mut h = HealthStreaks::new(2, 3);
        assert_eq!(h.record(id, &s, false), None);
        assert_eq!(h.record(id, &s, false), None);
        assert_eq!(h.record(id, &s, true), None, "a success breaks the streak");
        assert_eq!(h.record(id, &s, false), None);
        assert_eq!(h.record(id, &s, false), None);
        assert_eq!(h.record(id, &s, false), Some(HealthChange::Down));
        assert!(!s.probe_healthy());
        assert_eq!(h.record(id, &s, false), None, "already down");
        assert_eq!(h.record(id, &s, true), None);
        assert_eq!(h.record(id, &s, true), Some(HealthChange::Up));
        assert!(s.probe_healthy());
        h.retain(&BackendTable::<&str, u32>::new());
        assert!(h.streaks.is_empty());
    }
}
