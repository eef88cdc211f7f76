//! [`Backends`]: the backend set of the gateway shape, from a static list,
//! a watch channel or a tower `Discover`, read lock-free per request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use sticky_proxy::{Pool, PoolSettings};
use tokio::sync::watch;
use tower::discover::{Change, Discover};
use tower_sticky::table::upkeep::Rebuild;
use tower_sticky::table::BackendTable;
use tower_sticky::Clock;

/// The default per-backend client: sticky-proxy's HTTP/1 client.
pub type HttpBackend = sticky_proxy::Backend;

/// One backend: its name and its client.
#[derive(Clone, Debug)]
pub struct Member<S> {
    name: Arc<str>,
    service: S,
}

impl<S> Member<S> {
    /// The backend's name (what its stable id, and so the token, is made of).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its client.
    pub fn service(&self) -> &S {
        &self.service
    }
}

/// The table a [`StickyProxy`](crate::StickyProxy) routes over.
pub type Table<S> = BackendTable<String, Member<S>>;

/// A backend set: named clients, one tower `Service` each, shared by every
/// clone and swapped whole when the set changes. Backends are named by a
/// stable string (a pod name, `HOST:PORT`): tokens carry its stable id, so
/// every gateway replica that names a backend the same way routes its
/// sessions the same way. A backend that stays across a change keeps its
/// state (health, draining, counters).
pub struct Backends<S> {
    table: Arc<ArcSwap<Table<S>>>,
    clock: Clock,
}

impl<S> Clone for Backends<S> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<S> fmt::Debug for Backends<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.table.load();
        f.debug_list()
            .entries(t.iter().map(|b| b.key().as_str()))
            .finish()
    }
}

impl<S: Clone + Send + Sync + 'static> Backends<S> {
    /// A fixed set of `(name, client)` pairs. A name given twice keeps its
    /// last client.
    pub fn new<N: Into<String>>(list: impl IntoIterator<Item = (N, S)>) -> Self {
        let this = Self {
            table: Arc::new(ArcSwap::from_pointee(BackendTable::new())),
            clock: Clock::system(),
        };
        this.replace(list);
        this
    }

    /// A set that follows a watch channel: every value sent replaces the
    /// set (backends that stay keep their state). Needs a tokio runtime: the
    /// update loop is a task, ending when the sender is dropped.
    pub fn from_watch(mut rx: watch::Receiver<Vec<(String, S)>>) -> Self {
        let this = Self::new(rx.borrow_and_update().clone());
        let set = this.clone();
        spawn("watch", async move {
            while rx.changed().await.is_ok() {
                let list = rx.borrow_and_update().clone();
                set.replace(list);
            }
        });
        this
    }

    /// A set fed by a tower `Discover` (keys are the backends' names).
    /// Needs a tokio runtime: the update loop is a task, ending when the
    /// stream ends or fails.
    pub fn from_discover<D>(discover: D) -> Self
    where
        D: Discover<Key = String, Service = S> + Send + Unpin + 'static,
        D::Error: fmt::Display,
    {
        let this = Self::new(Vec::<(String, S)>::new());
        let set = this.clone();
        spawn("discover", async move {
            let mut discover = discover;
            loop {
                let change = futures_util::future::poll_fn(|cx| {
                    std::pin::Pin::new(&mut discover).poll_discover(cx)
                })
                .await;
                match change {
                    Some(Ok(Change::Insert(name, svc))) => set.insert(name, svc),
                    Some(Ok(Change::Remove(name))) => set.remove(&name),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "backend discovery failed; keeping the last set");
                        return;
                    }
                    None => return,
                }
            }
        });
        this
    }

    /// Replaces the whole set.
    pub fn replace<N: Into<String>>(&self, list: impl IntoIterator<Item = (N, S)>) {
        let prev = self.table.load();
        let mut next = Rebuild::new(Some(&prev), self.clock.now_ms());
        for (name, service) in list {
            let name = name.into();
            let member = Member {
                name: name.as_str().into(),
                service,
            };
            if let Err(e) = next.insert(name, member, 1) {
                tracing::error!(error = %e, "backend left out");
            }
        }
        match next.finish(None) {
            Ok(t) => self.table.store(Arc::new(t)),
            Err(e) => tracing::error!(error = %e, "backend set not changed"),
        }
    }

    /// Adds (or replaces the client of) one backend.
    pub fn insert(&self, name: String, service: S) {
        let prev = self.table.load();
        let mut list: Vec<(String, S)> = prev
            .iter()
            .filter(|b| *b.key() != name)
            .map(|b| (b.key().clone(), b.value().service.clone()))
            .collect();
        list.push((name, service));
        self.replace(list);
    }

    /// Removes one backend; its sessions fail over as the policy says.
    pub fn remove(&self, name: &str) {
        let prev = self.table.load();
        let list: Vec<(String, S)> = prev
            .iter()
            .filter(|b| b.key() != name)
            .map(|b| (b.key().clone(), b.value().service.clone()))
            .collect();
        self.replace(list);
    }
}

impl<S> Backends<S> {
    /// The table as it is now.
    pub fn load(&self) -> Guard<Arc<Table<S>>> {
        self.table.load()
    }

    /// The number of backends.
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Backends<HttpBackend> {
    /// HTTP/1 backends at `HOST:PORT` addresses, with sticky-proxy's client
    /// and default pool settings: the usual gateway.
    pub fn http<N: Into<String>, A: AsRef<str>>(list: impl IntoIterator<Item = (N, A)>) -> Self {
        Self::http_with(list, PoolSettings::default())
    }

    /// [`Backends::http`] with these pool settings. Host names (rather
    /// than IP literals) are resolved at once and again every 5 s, on a task
    /// (so inside a tokio runtime).
    pub fn http_with<N: Into<String>, A: AsRef<str>>(
        list: impl IntoIterator<Item = (N, A)>,
        settings: PoolSettings,
    ) -> Self {
        let this = Self::new(list.into_iter().map(|(n, a)| {
            let n: String = n.into();
            let pool = Pool::new(&n, a.as_ref(), settings);
            (n, HttpBackend::new(Arc::new(pool)))
        }));
        let names = this
            .load()
            .iter()
            .any(|b| b.value().service().pool().needs_resolving());
        if names {
            let weak = Arc::downgrade(&this.table);
            spawn("dns", async move {
                loop {
                    let Some(table) = weak.upgrade().map(|t| t.load_full()) else {
                        return;
                    };
                    for b in table.iter() {
                        b.value().service().pool().resolve().await;
                    }
                    drop(table);
                    tokio::time::sleep(DEFAULT_RESOLVE_EVERY).await;
                }
            });
        }
        this
    }
}

/// Spawns an upkeep loop, or says why it cannot run.
pub(crate) fn spawn(
    what: &'static str,
    fut: impl std::future::Future<Output = ()> + Send + 'static,
) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(fut);
        }
        Err(_) => tracing::error!(
            source = what,
            "no tokio runtime: the backend set will not follow its source"
        ),
    }
}

/// How often DNS names are resolved again by default.
pub(crate) const DEFAULT_RESOLVE_EVERY: Duration = Duration::from_secs(5);
