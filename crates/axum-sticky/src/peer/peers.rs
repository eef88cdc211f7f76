//! [`Peers`]: where a replica learns of the others (a fixed list, DNS names
//! resolved again and again, or a watch channel), and the table built from
//! them with this replica always in slot 0.

use std::sync::Arc;
use std::time::Duration;

use sticky_proxy::{Backend, Pool, PoolSettings};
use tokio::sync::watch;
use tower_sticky::placement::{Candidates, PlacementPolicy};
use tower_sticky::table::upkeep::Rebuild;
use tower_sticky::table::BackendTable;
use tower_sticky::BackendId;

/// A replica as the table holds it: its name and, for a peer, the client
/// that reaches it (`None` is this replica).
#[derive(Clone, Debug)]
pub(crate) struct Link {
    pub(crate) name: Arc<str>,
    pub(crate) client: Option<Backend>,
}

pub(crate) type PeerTable = BackendTable<String, Link>;

/// The other replicas of a peer-mode app: `(name, "HOST:PORT")` pairs.
/// Names must be the same on every replica (they are what tokens name).
///
/// ```
/// use std::time::Duration;
/// use axum_sticky::Peers;
///
/// let fixed = Peers::fixed([("app-2", "10.0.0.2:3000"), ("app-3", "10.0.0.3:3000")]);
/// // Kubernetes StatefulSet pods: names resolved again every 5 s.
/// let dns = Peers::dns([("app-2", "app-2.app:3000")], Duration::from_secs(5));
/// // Or from anything that knows: a watch channel.
/// let (tx, rx) = tokio::sync::watch::channel(vec![("app-2".to_string(), "10.0.0.2:3000".to_string())]);
/// let watched = Peers::watch(rx);
/// # let _ = (fixed, dns, watched, tx);
/// ```
#[derive(Debug)]
pub struct Peers {
    pub(crate) list: Vec<(String, String)>,
    pub(crate) watch: Option<watch::Receiver<Vec<(String, String)>>>,
    pub(crate) resolve_every: Option<Duration>,
    pub(crate) settings: PoolSettings,
}

impl Peers {
    /// A fixed list of `(name, "HOST:PORT")`.
    pub fn fixed<N: Into<String>, A: Into<String>>(list: impl IntoIterator<Item = (N, A)>) -> Self {
        Self {
            list: list
                .into_iter()
                .map(|(n, a)| (n.into(), a.into()))
                .collect(),
            watch: None,
            resolve_every: None,
            settings: PoolSettings::default(),
        }
    }

    /// A fixed list whose host names are resolved again every `every`
    /// (pods come back with new addresses).
    pub fn dns<N: Into<String>, A: Into<String>>(
        list: impl IntoIterator<Item = (N, A)>,
        every: Duration,
    ) -> Self {
        Self {
            resolve_every: Some(every),
            ..Self::fixed(list)
        }
    }

    /// The list a watch channel holds, followed as it changes (a peer that
    /// stays keeps its state and connections).
    pub fn watch(mut rx: watch::Receiver<Vec<(String, String)>>) -> Self {
        let list = rx.borrow_and_update().clone();
        Self {
            watch: Some(rx),
            ..Self::fixed(list)
        }
    }

    /// The peer links' connection pool settings.
    pub fn pool_settings(mut self, settings: PoolSettings) -> Self {
        self.settings = settings;
        self
    }
}

impl<N: Into<String>, A: Into<String>, const K: usize> From<[(N, A); K]> for Peers {
    fn from(list: [(N, A); K]) -> Self {
        Self::fixed(list)
    }
}

impl<N: Into<String>, A: Into<String>> From<Vec<(N, A)>> for Peers {
    fn from(list: Vec<(N, A)>) -> Self {
        Self::fixed(list)
    }
}

/// The table for `me` and `peers`, carrying over what `prev` knew (state,
/// counters, and a peer's pool when its address is unchanged).
pub(crate) fn build(
    prev: Option<&PeerTable>,
    me: &Arc<str>,
    peers: &[(String, String)],
    settings: PoolSettings,
    now_ms: u64,
) -> PeerTable {
    let mut next = Rebuild::new(prev, now_ms);
    // Slot 0, always: `LocalFirst` places new sessions there in O(1).
    let _ = next.insert(
        me.to_string(),
        Link {
            name: me.clone(),
            client: None,
        },
        1,
    );
    for (name, addr) in peers {
        if **name == **me {
            continue;
        }
        let reuse = next
            .previous(name)
            .and_then(|b| b.value().client.clone())
            .filter(|c| c.pool().address() == addr);
        let client =
            reuse.unwrap_or_else(|| Backend::new(Arc::new(Pool::new(name, addr, settings))));
        let link = Link {
            name: name.as_str().into(),
            client: Some(client),
        };
        if let Err(e) = next.insert(name.clone(), link, 1) {
            tracing::error!(peer = %name, error = %e, "peer left out");
        }
    }
    next.finish(None).unwrap_or_default()
}

/// Places every new session on this replica (slot 0): behind a round-robin
/// balancer, a new user's first replica keeps them, and nothing is
/// forwarded. Falls back (to the deterministic choice) only if this
/// replica could not take it.
#[derive(Debug)]
pub(crate) struct LocalFirst(pub(crate) BackendId);

impl PlacementPolicy for LocalFirst {
    fn place(&self, cands: &dyn Candidates, _seed: u64) -> Option<usize> {
        (!cands.is_empty() && cands.id(0) == self.0 && cands.eligible(0)).then_some(0)
    }
}
