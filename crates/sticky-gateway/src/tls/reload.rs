//! Reloading certificates (and the admin token file) on SIGHUP and when
//! their files change on disk.
//!
//! Files are polled for a changed modification time or length every
//! `file_watch_interval` (default
//! [`FILE_WATCH_INTERVAL`](crate::config::defaults::FILE_WATCH_INTERVAL)) rather than watched through inotify: a handful of
//! `stat` calls a few times a minute, and it sees a renamed-over file
//! (how certificate managers usually write) the same as one edited in
//! place. A failed load keeps what is in use, is logged, and is not
//! retried until the files change again or SIGHUP comes.

use std::sync::Arc;
use std::time::Duration;

use super::sni::CertStore;
use crate::admin::auth::AdminAuth;

/// What is reloaded: each listener's certificates and the admin tokens.
#[derive(Debug, Clone, Default)]
pub struct Reloadable {
    /// Every TLS listener's certificates.
    pub certs: Vec<Arc<CertStore>>,
    /// The admin tokens, when read from a file.
    pub admin: Option<Arc<AdminAuth>>,
}

impl Reloadable {
    /// Whether there is anything to reload.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty() && !self.admin.as_ref().is_some_and(|a| a.has_file())
    }

    /// Reloads everything (`all`), or only what changed on disk.
    pub fn reload(&self, all: bool, why: &str) {
        for s in &self.certs {
            if !all && !s.changed_on_disk() {
                continue;
            }
            match s.reload() {
                Ok(()) => {
                    let files: Vec<String> = s
                        .files()
                        .iter()
                        .map(|f| f.cert.display().to_string())
                        .collect();
                    tracing::info!(certificates = ?files, "{why}: certificates reloaded");
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "{why}: certificate reload failed, keeping the certificates in use"
                ),
            }
        }
        if let Some(a) = &self.admin {
            if a.has_file() && (all || a.changed_on_disk()) {
                match a.reload() {
                    Ok(n) => tracing::info!(tokens = n, "{why}: admin tokens reloaded"),
                    Err(e) => tracing::error!(
                        error = %e,
                        "{why}: admin token reload failed, keeping the tokens in use"
                    ),
                }
            }
        }
    }
}

/// Reloads on SIGHUP, and what changed every `watch` (never when zero),
/// until `stop` completes.
pub fn spawn(
    what: Reloadable,
    watch: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if what.is_empty() {
        return;
    }
    tokio::spawn(async move {
        tokio::pin!(stop);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
            .ok();
        // Zero: a period so long it never comes.
        let period = if watch.is_zero() {
            Duration::from_secs(86_400 * 365)
        } else {
            watch
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            tokio::select! {
                _ = &mut stop => return,
                _ = hangup => what.reload(true, "SIGHUP"),
                _ = tick.tick() => what.reload(false, "file changed"),
            }
        }
    });
}
