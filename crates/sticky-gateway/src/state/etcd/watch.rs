//! The list → watch → (compacted: relist | broken: re-watch) loop that
//! keeps a replica's route equal to the store's contents.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};

use super::keys::StoreState;
use super::{cache, EtcdSource};
use crate::gateway::Gateway;

/// How often the watch asks for a progress notification: keeps the applied
/// revision (and the last-sync age) fresh on an idle prefix, and shows a
/// hung server even where keepalive would not.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// A watch that has not answered for this long is treated as broken.
const SILENCE: Duration = Duration::from_secs(3);

/// Jittered exponential backoff, 100 ms → 5 s.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub(super) const FIRST: Duration = Duration::from_millis(100);
    pub(super) const MAX: Duration = Duration::from_secs(5);

    pub(super) fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Self {
            next: Self::FIRST,
            seed,
        }
    }

    pub(super) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The next wait: between half and all of the current step, so that
    /// replicas that lost etcd together do not come back in step.
    pub(super) fn next(&mut self) -> Duration {
        // xorshift64: enough to spread replicas apart.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let step = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let half = step / 2;
        half + Duration::from_micros(self.seed % (half.as_micros() as u64 + 1))
    }
}

/// Why a watch ended.
enum Ended {
    /// Cancelled, or its start revision was compacted: read the prefix again.
    Relist,
    /// Transport error, timeout, end of stream: watch again from where we are.
    Broken(String),
}

/// Runs until the gateway shuts down.
pub(super) async fn run(src: Arc<EtcdSource>, gw: Arc<Gateway>) {
    let stop = gw.shutdown.triggered();
    tokio::pin!(stop);
    let mut state = StoreState::default();
    let mut backoff = Backoff::new();
    let mut need_list = true;
    loop {
        if need_list {
            let listed = tokio::select! {
                _ = &mut stop => return,
                r = list(&src) => r,
            };
            match listed {
                Ok(s) => {
                    state = s;
                    need_list = false;
                    publish(&src, &gw, &state, "read");
                }
                Err(e) => {
                    src.mark_disconnected(&e);
                    let wait = backoff.next();
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            }
        }
        let ended = tokio::select! {
            _ = &mut stop => return,
            e = watch(&src, &gw, &mut state, &mut backoff) => e,
        };
        match ended {
            Ended::Relist => {
                tracing::info!(
                    revision = state.revision,
                    "etcd watch compacted or cancelled: reading the prefix again"
                );
                need_list = true;
            }
            Ended::Broken(e) => {
                src.mark_disconnected(&e);
                let wait = backoff.next();
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Reads the whole prefix at one revision.
async fn list(src: &EtcdSource) -> Result<StoreState, String> {
    let mut kv = src.client.kv_client();
    let read = kv.get(src.layout.root(), Some(GetOptions::new().with_prefix()));
    let resp = tokio::time::timeout(src.config.request_timeout, read)
        .await
        .map_err(|_| "read: no answer in time".to_string())?
        .map_err(|e| e.to_string())?;
    let mut state = StoreState {
        revision: resp.header().map_or(0, |h| h.revision()).max(0) as u64,
        ..Default::default()
    };
    for kv in resp.kvs() {
        state.set(
            &src.layout,
            kv.key(),
            Some(kv.value()),
            kv.mod_revision().max(0) as u64,
        );
    }
    Ok(state)
}

/// Applies `state` if its backend set changed, and advances the applied
/// revision (after the table is in place: read-your-writes waits on it).
fn publish(src: &EtcdSource, gw: &Gateway, state: &StoreState, how: &str) {
    if let Some(snap) = src.record(state) {
        match crate::state::apply(gw, &src.config.route, &snap) {
            Ok(()) => {
                tracing::info!(route = %src.config.route, revision = snap.revision, backends = snap.backends.len(), via = how, "etcd snapshot applied");
                if let Some(dir) = &src.config.state_dir {
                    let file = cache::path(dir, &src.config.route);
                    if let Err(e) = cache::write(&file, &snap) {
                        tracing::warn!(file = %file.display(), error = %e, "cannot write the etcd snapshot cache");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "etcd snapshot not applied"),
        }
    }
    src.mark_synced(gw.now_ms());
    src.applied.send_if_modified(|r| {
        let newer = state.revision > *r;
        if newer {
            *r = state.revision;
        }
        newer
    });
    // Only now that the revision is applied may the registration say so.
    if src
        .intent_changed
        .swap(false, std::sync::atomic::Ordering::Relaxed)
    {
        src.acknowledge.notify_one();
    }
}

/// Watches from `state.revision + 1`, applying each response as a unit.
async fn watch(
    src: &EtcdSource,
    gw: &Gateway,
    state: &mut StoreState,
    backoff: &mut Backoff,
) -> Ended {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(state.revision as i64 + 1)
        .with_progress_notify()
        .with_prev_key();
    let mut client = src.client.watch_client();
    let created = client.watch(src.layout.root(), Some(options));
    let stream = match tokio::time::timeout(src.config.request_timeout, created).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ended::Broken(e.to_string()),
        Err(_) => return Ended::Broken("watch: no answer in time".into()),
    };
    let (mut requests, mut responses) = stream.split();
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = tokio::time::Instant::now();
    loop {
        let msg = tokio::select! {
            _ = progress.tick() => {
                if heard.elapsed() > SILENCE {
                    return Ended::Broken("no answer from the watch".into());
                }
                if let Err(e) = requests.request_progress().await {
                    return Ended::Broken(e.to_string());
                }
                continue;
            }
            m = responses.message() => m,
        };
        let resp = match msg {
            Ok(Some(r)) => r,
            Ok(None) => return Ended::Broken("watch stream ended".into()),
            Err(e) => return Ended::Broken(e.to_string()),
        };
        heard = tokio::time::Instant::now();
        backoff.reset();
        if resp.compact_revision() != 0 || resp.canceled() {
            return Ended::Relist;
        }
        let header = resp.header().map_or(0, |h| h.revision()).max(0) as u64;
        if resp.events().is_empty() {
            // A progress notification: every change up to the header
            // revision has been delivered. (The created response's header
            // may be ahead of events still to come.)
            if !resp.created() {
                state.revision = state.revision.max(header);
            }
        } else {
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let rev = kv.mod_revision().max(0) as u64;
                match ev.event_type() {
                    EventType::Put => state.set(&src.layout, kv.key(), Some(kv.value()), rev),
                    EventType::Delete => state.set(&src.layout, kv.key(), None, rev),
                }
                state.revision = state.revision.max(rev);
            }
        }
        publish(src, gw, state, "watch");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_five_seconds_with_jitter_and_resets() {
        let mut b = Backoff::new();
        let first = b.next();
        assert!(
            first >= Backoff::FIRST / 2 && first <= Backoff::FIRST,
            "{first:?}"
        );
        let mut last = first;
        for _ in 0..20 {
            last = b.next();
            assert!(last <= Backoff::MAX);
        }
        assert!(last >= Backoff::MAX / 2, "{last:?}");
        b.reset();
        assert!(b.next() <= Backoff::FIRST);
    }
}
