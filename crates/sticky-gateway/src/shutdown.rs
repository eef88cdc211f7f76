//! Graceful shutdown: one signal to stop accepting, and a count of the work
//! still running (connections, tunnels) to wait for, up to a bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// The shutdown switch and the count of work in progress.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    active: Arc<Active>,
}

#[derive(Debug, Default)]
struct Active {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts one piece of work (a connection, a tunnel) while alive.
#[derive(Debug)]
pub struct WorkGuard(Arc<Active>);

impl Drop for WorkGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A switch that is off.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
            active: Arc::default(),
        }
    }

    /// Starts shutting down: listeners stop accepting, connections close
    /// once their current request is answered.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once shutdown has started.
    pub fn triggered(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }

    /// Counts a piece of work until the guard drops.
    pub fn enter(&self) -> WorkGuard {
        self.active.count.fetch_add(1, Ordering::AcqRel);
        WorkGuard(self.active.clone())
    }

    /// Work in progress now.
    pub fn active(&self) -> usize {
        self.active.count.load(Ordering::Acquire)
    }

    /// Waits until no work is in progress, or `bound` passes. Returns the
    /// work left unfinished.
    pub async fn drained(&self, bound: Duration) -> usize {
        let wait = async {
            loop {
                let idle = self.active.idle.notified();
                if self.active() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(bound, wait).await;
        self.active()
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
