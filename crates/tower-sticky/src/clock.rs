//! Wall-clock time for token expiry, ejection cool-downs and slow start.
//!
//! Tokens carry wall-clock seconds so that every replica judges expiry alike.
//! Tests swap in a [`Clock::manual`] clock to move time by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the layer reads the time from. Milliseconds since the UNIX epoch.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicU64>>);

impl Clock {
    /// The system clock (the default).
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that only moves when told to, starting at `start_ms`
    /// milliseconds after the UNIX epoch. Clones share the same time.
    pub fn manual(start_ms: u64) -> Self {
        Self(Some(Arc::new(AtomicU64::new(start_ms))))
    }

    /// Moves a manual clock forward. No effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.0 {
            t.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Now, in milliseconds since the UNIX epoch.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            Some(t) => t.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }
}
