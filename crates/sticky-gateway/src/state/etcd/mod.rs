//! etcd v3 as the shared state source (cargo feature `etcd`): every replica
//! watches one key prefix, applies the same backend set at the same
//! revision, and stores operator intent there, so that a drain clicked on
//! one replica's dashboard reaches all of them.
//!
//! # Key layout (the contract)
//!
//! The prefix is used as given (`--etcd-prefix sticky/prod`; no leading
//! slash needed, and none added: `/sticky/prod` is another prefix). Values
//! are JSON.
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | `PREFIX/backends/NAME` | `{"address": "HOST:PORT", "weight": 1}` (`weight` optional, default 1) | the operator, CI, a registrar |
//! | `PREFIX/intent/NAME` | `{"state": "draining"}` or `{"state": "disabled"}`; absent = active | the admin API of any replica (compare-and-set), or the operator |
//! | `PREFIX/replicas/ID` | `{"address", "version", "applied_revision", "sessions": {NAME: sketch}}` | each replica, under its lease |
//!
//! `NAME` is the stable id tokens carry: a backend keeps its sessions when
//! its address changes. A value that does not parse is logged and counts as
//! absent. `draining` keeps the backend's pinned sessions and gives it no
//! new ones; `disabled` takes it out of routing (its sessions fail over by
//! the route's policy, identically on every replica). A replica's
//! `sessions` map holds, per backend, its session sketch (base64 of
//! [`SessionSummary::to_bytes`](tower_sticky::table::SessionSummary::to_bytes)),
//! refreshed every `publish_interval`; the admin API merges the live
//! replicas' sketches into a fleet estimate.
//!
//! # Behaviour
//!
//! - Start: read the prefix at a revision R, apply it, watch from R+1 with
//!   progress notifications; each watch response is applied as one unit.
//!   A watch cancelled for compaction re-reads the prefix and applies it
//!   only if the backend set differs.
//! - A broken watch (etcd down, hung, partitioned from its leader) is
//!   re-created from the last applied revision with jittered backoff from
//!   100 ms to 5 s. HTTP/2 keepalive (1 s, 0.5 s timeout) and periodic
//!   progress requests detect a hung server; require-leader is on.
//! - etcd unreachable: the last snapshot keeps serving, indefinitely;
//!   admin drain/activate answer 503 "intent not stored"; metrics and
//!   dashboard show the store disconnected and the age of the last sync.
//! - With a state directory, the applied snapshot is cached in
//!   `DIR/etcd-ROUTE.json`; a replica that starts while etcd is down
//!   serves the cache, marked stale, until etcd answers.

mod cache;
mod intent;
pub mod keys;
mod replica;
mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine as _;
use etcd_client::{Client, ConnectOptions};
use tower_sticky::table::SessionSummary;

use crate::admin::{ReplicaView, StoreView};
use crate::config::EtcdConfig;
use crate::gateway::Gateway;
use crate::state::{AdminState, IntentFuture, SharedStore, Snapshot};
use keys::{Layout, StoreState};

/// A running etcd source: the watch loop's published state, and the
/// client the admin writes use.
pub struct EtcdSource {
    me: Weak<EtcdSource>,
    config: EtcdConfig,
    layout: Layout,
    replica_id: String,
    address: String,
    client: Client,
    /// The store revision this replica has applied (watch events and
    /// progress notifications).
    applied: tokio::sync::watch::Sender<u64>,
    connected: AtomicBool,
    stale: AtomicBool,
    /// When the store last answered (ms since the epoch; 0: never).
    last_sync_ms: AtomicU64,
    view: Mutex<View>,
    /// Set once the registration is withdrawn at shutdown.
    closed: tokio::sync::watch::Sender<bool>,
    /// Woken when an intent change has been applied: the registration is
    /// refreshed at once, so "acknowledged by N of M" does not wait for the
    /// next periodic refresh.
    acknowledge: tokio::sync::Notify,
    /// An intent change was recorded and not yet acknowledged.
    intent_changed: AtomicBool,
}

impl std::fmt::Debug for EtcdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSource")
            .field("endpoints", &self.config.endpoints)
            .field("prefix", &self.config.prefix)
            .field("route", &self.config.route)
            .field("replica_id", &self.replica_id)
            .field("applied", &self.applied_revision())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// What the watch loop shares with the admin side.
#[derive(Debug, Default)]
struct View {
    snapshot: Option<Snapshot>,
    replicas: std::collections::BTreeMap<String, keys::ReplicaRecord>,
    intent_revision: u64,
}

impl EtcdSource {
    /// This replica's id.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// The store revision this replica has applied.
    pub fn applied_revision(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Whether the watch is up now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    fn mark_synced(&self, now_ms: u64) {
        self.connected.store(true, Relaxed);
        self.stale.store(false, Relaxed);
        self.last_sync_ms.store(now_ms, Relaxed);
    }

    fn mark_disconnected(&self, why: &str) {
        if self.connected.swap(false, Relaxed) {
            tracing::warn!(error = why, "etcd unreachable: serving the last snapshot");
        }
    }

    /// Records the store's contents at `state.revision`; returns the new
    /// snapshot when the backend set changed (the caller applies it).
    fn record(&self, state: &StoreState) -> Option<Snapshot> {
        let mut v = self.view.lock().expect("etcd view");
        v.replicas = state.replicas.clone();
        if v.intent_revision != state.intent_revision {
            self.intent_changed.store(true, Relaxed);
        }
        v.intent_revision = state.intent_revision;
        let snap = state.snapshot(state.revision);
        let changed = v
            .snapshot
            .as_ref()
            .is_none_or(|old| old.backends != snap.backends);
        if changed {
            v.snapshot = Some(snap.clone());
            Some(snap)
        } else {
            None
        }
    }

    /// Whether the store's set has `backend`; `None` before any set was
    /// read (etcd unreachable since start, no cache).
    fn knows(&self, backend: &str) -> Option<bool> {
        self.view
            .lock()
            .expect("etcd view")
            .snapshot
            .as_ref()
            .map(|s| s.backends.contains_key(backend))
    }
}

/// The connect options every replica uses: keepalive so a hung server
/// breaks the watch, require-leader so a partitioned member does not serve
/// stale reads, and bounded requests.
fn connect_options(c: &EtcdConfig) -> ConnectOptions {
    ConnectOptions::new()
        .with_keep_alive(Duration::from_secs(1), Duration::from_millis(500))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true)
        .with_timeout(c.request_timeout)
        .with_connect_timeout(c.request_timeout)
}

/// The default replica id: the host name and the proxy port.
fn default_replica_id(address: std::net::SocketAddr) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "replica".into());
    format!("{host}-{}", address.port())
}

/// Starts feeding `config.route` from etcd: the snapshot cache first (if
/// any, marked stale), then the watch loop and this replica's registration,
/// all stopped by the gateway's shutdown. Waits up to the request timeout
/// for a first read of the prefix, so a replica that can reach etcd starts
/// with its state; one that cannot starts from the cache (or the route's
/// static backends) and keeps retrying.
pub async fn start(
    gw: Arc<Gateway>,
    config: EtcdConfig,
    address: std::net::SocketAddr,
) -> std::io::Result<Arc<EtcdSource>> {
    let client = Client::connect(&config.endpoints, Some(connect_options(&config)))
        .await
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("etcd.endpoints: {e}"),
            )
        })?;
    let replica_id = config
        .replica_id
        .clone()
        .unwrap_or_else(|| default_replica_id(address));
    let src = Arc::new_cyclic(|me| EtcdSource {
        me: me.clone(),
        layout: Layout::new(&config.prefix),
        replica_id,
        address: address.to_string(),
        client,
        applied: tokio::sync::watch::Sender::new(0),
        connected: AtomicBool::new(false),
        stale: AtomicBool::new(false),
        last_sync_ms: AtomicU64::new(0),
        view: Mutex::new(View::default()),
        closed: tokio::sync::watch::Sender::new(false),
        acknowledge: tokio::sync::Notify::new(),
        intent_changed: AtomicBool::new(false),
        config,
    });
    if let Some(dir) = &src.config.state_dir {
        let file = cache::path(dir, &src.config.route);
        match cache::read(&file) {
            Ok(Some(snap)) => {
                tracing::info!(file = %file.display(), revision = snap.revision, "starting from the etcd snapshot cache (stale until etcd answers)");
                crate::state::apply(&gw, &src.config.route, &snap)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                src.stale.store(true, Relaxed);
                src.view.lock().expect("etcd view").snapshot = Some(snap);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "etcd snapshot cache unreadable, ignored")
            }
        }
    }
    let _ = gw.store.set(src.clone() as Arc<dyn SharedStore>);
    let mut synced = src.applied.subscribe();
    tokio::spawn(watch::run(src.clone(), gw.clone()));
    tokio::spawn(replica::run(src.clone(), gw.clone()));
    let first = tokio::time::timeout(src.config.request_timeout, synced.wait_for(|r| *r > 0));
    if first.await.is_err() {
        tracing::warn!(
            "etcd not reachable at start: serving the cached or static backends, retrying"
        );
    }
    Ok(src)
}

impl SharedStore for EtcdSource {
    fn route(&self) -> &str {
        &self.config.route
    }

    fn closed(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let mut rx = self.closed.subscribe();
        let bound = self.config.request_timeout * 2;
        Box::pin(async move {
            let _ = tokio::time::timeout(bound, rx.wait_for(|c| *c)).await;
        })
    }

    fn set_intent(&self, backend: &str, state: AdminState) -> IntentFuture {
        Box::pin(intent::set(self.self_arc(), backend.to_owned(), state))
    }

    fn status(&self, gw: &Gateway) -> StoreView {
        let now = gw.now_ms();
        let last = self.last_sync_ms.load(Relaxed);
        let v = self.view.lock().expect("etcd view");
        let replicas: Vec<ReplicaView> = v
            .replicas
            .iter()
            .map(|(id, r)| ReplicaView {
                id: id.clone(),
                address: r.address.clone(),
                version: r.version.clone(),
                applied_revision: r.applied_revision,
                this: *id == self.replica_id,
            })
            .collect();
        // The fleet estimate: this replica's live sketches merged with
        // every other live replica's published ones.
        let mut fleet = std::collections::BTreeMap::new();
        let local = local_summaries(gw, &self.config.route, now);
        let b64 = base64::engine::general_purpose::STANDARD;
        for (name, mine) in local {
            let mut merged = mine;
            for (id, r) in &v.replicas {
                if *id == self.replica_id {
                    continue;
                }
                if let Some(s) = r
                    .sessions
                    .get(&name)
                    .and_then(|s| b64.decode(s).ok())
                    .and_then(|b| SessionSummary::from_bytes(&b))
                {
                    merged.merge(&s);
                }
            }
            fleet.insert(name, merged.estimate());
        }
        StoreView {
            engine: "etcd".into(),
            route: self.config.route.clone(),
            connected: self.is_connected(),
            stale: self.stale.load(Relaxed),
            revision: self.applied_revision(),
            snapshot_revision: v.snapshot.as_ref().map_or(0, |s| s.revision),
            last_sync_age_seconds: (last > 0).then(|| now.saturating_sub(last) as f64 / 1000.0),
            intent_revision: v.intent_revision,
            replicas,
            fleet_sessions: fleet,
            intent_refused: None,
        }
    }
}

impl EtcdSource {
    /// An owned handle on this source: it is only ever made inside an
    /// `Arc` (by [`start`]), which the gateway holds.
    fn self_arc(&self) -> Arc<EtcdSource> {
        self.me.upgrade().expect("EtcdSource lives in an Arc")
    }
}

/// This replica's session sketch of every backend of `route`, now.
fn local_summaries(gw: &Gateway, route: &str, now: u64) -> Vec<(String, SessionSummary)> {
    let routes = gw.routes_full();
    let Some(r) = routes.by_name(route) else {
        return Vec::new();
    };
    let window = r.engine.session_window();
    r.table
        .load()
        .iter()
        .map(|b| (b.key().clone(), b.status().session_summary(now, window)))
        .collect()
}
