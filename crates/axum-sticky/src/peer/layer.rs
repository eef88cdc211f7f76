//! [`PeerLayer`]: peer mode for an axum app, in one layer.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tower_layer::Layer;
use tower_sticky::placement::Placement;
use tower_sticky::{Engine, StableId, Stats, StickyConfig};

use super::hop::HopMarker;
use super::peers::{self, LocalFirst, PeerTable, Peers};
use super::{Peer, Shared};
use crate::backends::{spawn, DEFAULT_RESOLVE_EVERY};

/// Peer mode: this replica, named `name`, serves its own sessions and
/// forwards each request for a session another replica owns to that
/// replica, once. See the [module docs](crate::peer).
///
/// Building it with a DNS or watch [`Peers`] source starts an upkeep task:
/// call it inside a tokio runtime.
#[derive(Clone, Debug)]
pub struct PeerLayer {
    shared: Arc<Shared>,
}

impl PeerLayer {
    /// Peer mode for replica `name` among `peers` (the others; this
    /// replica's own name in the list is skipped). New sessions are placed
    /// on this replica whatever `config`'s placement says.
    pub fn new(config: StickyConfig, name: impl Into<String>, peers: impl Into<Peers>) -> Self {
        let name: Arc<str> = name.into().into();
        let me_id = name.to_string().stable_id();
        let peers = peers.into();
        let clock = config.clock_ref().clone();
        let hop = HopMarker::new(config.keys().clone(), clock.clone());
        let engine = Engine::new(config.placement(Placement::custom(LocalFirst(me_id))));
        let table = peers::build(None, &name, &peers.list, peers.settings, clock.now_ms());
        let shared = Arc::new(Shared {
            engine,
            me: name,
            me_id,
            table: ArcSwap::from_pointee(table),
            hop,
        });
        start_upkeep(&shared, peers);
        Self { shared }
    }

    /// This replica's name.
    pub fn name(&self) -> &str {
        &self.shared.me
    }

    /// The engine (counters, configuration).
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// A snapshot of the counters and of every replica's state (health,
    /// ejections) as this replica sees them.
    pub fn stats(&self) -> Stats<String> {
        self.shared.engine.stats(&self.shared.table.load())
    }
}

impl<S> Layer<S> for PeerLayer {
    type Service = Peer<S>;

    fn layer(&self, inner: S) -> Peer<S> {
        Peer::new(inner, self.shared.clone())
    }
}

fn start_upkeep(shared: &Arc<Shared>, peers: Peers) {
    let settings = peers.settings;
    if let Some(mut rx) = peers.watch {
        let weak = Arc::downgrade(shared);
        spawn("watch", async move {
            while rx.changed().await.is_ok() {
                let Some(s) = weak.upgrade() else { return };
                let list = rx.borrow_and_update().clone();
                let now = s.engine.config().clock_ref().now_ms();
                let next = peers::build(Some(&s.table.load()), &s.me, &list, settings, now);
                s.table.store(Arc::new(next));
            }
        });
    }
    let names = peers
        .list
        .iter()
        .any(|(_, a)| a.parse::<std::net::SocketAddr>().is_err());
    if names || peers.resolve_every.is_some() {
        let every = peers.resolve_every.unwrap_or(DEFAULT_RESOLVE_EVERY);
        let weak = Arc::downgrade(shared);
        spawn("dns", async move {
            loop {
                let Some(s) = weak.upgrade() else { return };
                let table: Arc<PeerTable> = s.table.load_full();
                drop(s);
                for b in table.iter() {
                    if let Some(c) = &b.value().client {
                        c.pool().resolve().await;
                    }
                }
                drop(table);
                tokio::time::sleep(every).await;
            }
        });
    }
}
