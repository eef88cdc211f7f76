use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::discover::{Change, Discover};
use tower::ready_cache::ReadyCache;
use tower_service::Service;

use super::error::{self, BoxError};
use super::{CountedInFlight, LoadSource, ResponseFuture};
use crate::table::BackendTable;
use crate::{Engine, Readiness, StableId, Stats, StickyConfig};

/// Session-affinity routing over a `Discover` backend set. See the
/// [module docs](crate::service).
pub struct Sticky<D, B, L = CountedInFlight>
where
    D: Discover,
    D::Key: Hash,
    D::Service: Service<Request<B>>,
{
    discover: D,
    services: ReadyCache<D::Key, D::Service, Request<B>>,
    table: BackendTable<D::Key>,
    engine: Engine,
    /// Backends marked removed and waiting out their grace period.
    removed_pending: usize,
    load: L,
}

impl<D, B> Sticky<D, B>
where
    D: Discover,
    D::Key: Hash + Eq,
    D::Service: Service<Request<B>>,
    <D::Service as Service<Request<B>>>::Error: Into<BoxError>,
{
    /// Routes over the backends `discover` yields.
    pub fn new(discover: D, config: StickyConfig) -> Self {
        Self {
            discover,
            services: ReadyCache::default(),
            table: BackendTable::default(),
            engine: Engine::new(config),
            removed_pending: 0,
            load: CountedInFlight,
        }
    }

    /// A [`StickyLayer`](super::StickyLayer) with this configuration, the
    /// same as [`StickyLayer::new`](super::StickyLayer::new), named here as
    /// tower-http names its layers (`Trace::layer`, `AddExtension::layer`).
    ///
    /// Nothing in the configuration says which discovery type the layer
    /// will wrap, so the call names it (as `Trace::layer` needs its service
    /// named); where it is not at hand, `StickyLayer::new` infers it from use.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use tower::{discover::ServiceList, service_fn, util::BoxCloneService, Layer, ServiceExt};
    /// use tower_sticky::{Sticky, StickyConfig, token::KeyRing};
    ///
    /// type Backend = BoxCloneService<Request<String>, Response<String>, Infallible>;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let backend = |name: &'static str| -> Backend {
    ///     BoxCloneService::new(service_fn(move |_req: Request<String>| async move {
    ///         Ok::<_, Infallible>(Response::new(format!("hello from {name}")))
    ///     }))
    /// };
    /// let layer = Sticky::<ServiceList<Vec<Backend>>, String>::layer(StickyConfig::new(
    ///     KeyRing::generate(),
    /// ));
    /// let sticky = layer.layer(ServiceList::new(vec![backend("a"), backend("b")]));
    /// let res = sticky.oneshot(Request::new(String::new())).await.unwrap();
    /// assert!(res.headers().contains_key("set-cookie"));
    /// # }
    /// ```
    pub fn layer(config: StickyConfig) -> super::StickyLayer<B> {
        super::StickyLayer::new(config)
    }
}

impl<D, B, L> Sticky<D, B, L>
where
    D: Discover,
    D::Key: Hash + Eq,
    D::Service: Service<Request<B>>,
    <D::Service as Service<Request<B>>>::Error: Into<BoxError>,
{
    /// Compares backends by another load measure when placing new sessions.
    pub fn with_load<L2>(self, load: L2) -> Sticky<D, B, L2> {
        Sticky {
            discover: self.discover,
            services: self.services,
            table: self.table,
            engine: self.engine,
            removed_pending: self.removed_pending,
            load,
        }
    }

    /// The discovery stream.
    pub fn get_ref(&self) -> &D {
        &self.discover
    }

    /// The discovery stream, mutably.
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.discover
    }

    /// The discovery stream, the service taken apart (its backend services
    /// and table dropped).
    pub fn into_inner(self) -> D {
        self.discover
    }

    /// The decision engine (configuration and counters).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The backend table: states and counters of every backend.
    pub fn table(&self) -> &BackendTable<D::Key> {
        &self.table
    }

    /// A snapshot of every counter and backend state.
    pub fn stats(&self) -> Stats<D::Key>
    where
        D::Key: Clone,
    {
        self.engine.stats(&self.table)
    }
}

impl<D, B, L> Sticky<D, B, L>
where
    D: Discover + Unpin,
    D::Key: StableId + Hash + Eq + Clone,
    D::Service: Service<Request<B>>,
    <D::Service as Service<Request<B>>>::Error: Into<BoxError>,
    D::Error: Into<BoxError>,
{
    /// Stops giving the backend new sessions; its pinned sessions stay.
    pub fn drain(&self, key: &D::Key) -> bool {
        self.table
            .get_by_id(key.stable_id())
            .map(|b| b.status().drain())
            .is_some()
    }

    /// Returns a drained backend to service.
    pub fn activate(&self, key: &D::Key) -> bool {
        self.table
            .get_by_id(key.stable_id())
            .map(|b| b.status().activate())
            .is_some()
    }

    fn update_from_discover(&mut self, cx: &mut Context<'_>) -> Result<(), error::Discover> {
        let now = self.engine.config().clock_ref().now_ms();
        let grace = self.engine.config().removal_grace_period();
        while let Poll::Ready(change) = Pin::new(&mut self.discover).poll_discover(cx) {
            match change {
                None => break,
                Some(Err(e)) => return Err(error::Discover(e.into())),
                Some(Ok(Change::Insert(key, svc))) => {
                    match self.table.upsert(key.clone(), (), now) {
                        Ok((_, was_removed)) => {
                            self.removed_pending -= usize::from(was_removed);
                            self.services.push(key, svc);
                        }
                        Err(collision) => tracing::error!(%collision, "backend not added"),
                    }
                }
                Some(Ok(Change::Remove(key))) => {
                    let id = key.stable_id();
                    if grace.is_none() {
                        self.table.remove(id);
                        self.services.evict(&key);
                    } else if self.table.mark_removed(id, now) {
                        self.removed_pending += 1;
                    }
                }
            }
        }
        if self.removed_pending > 0 {
            let cutoff = now.saturating_sub(grace.map_or(0, |g| g.as_millis() as u64));
            for gone in self.table.purge_removed(cutoff) {
                self.removed_pending -= 1;
                self.services.evict(gone.key());
            }
        }
        Ok(())
    }
}

/// Readiness and load as the keyed ready cache knows them.
struct Probe<'a, K, S, Req, L>
where
    K: Hash + Eq,
    S: Service<Req>,
{
    table: &'a BackendTable<K>,
    services: &'a ReadyCache<K, S, Req>,
    load: &'a L,
}

impl<K, S, Req, L> Probe<'_, K, S, Req, L>
where
    K: Hash + Eq,
    S: Service<Req>,
{
    fn ready_service(&self, slot: usize) -> Option<&S> {
        let key = self.table.get(slot)?.key();
        self.services.get_ready(key).map(|(_, _, s)| s)
    }
}

impl<K, S, Req, L> Readiness for Probe<'_, K, S, Req, L>
where
    K: Hash + Eq,
    S: Service<Req>,
    L: LoadSource<S>,
{
    fn is_ready(&self, slot: usize) -> bool {
        self.ready_service(slot).is_some()
    }

    fn compare_load(&self, a: usize, b: usize) -> Option<std::cmp::Ordering> {
        self.load
            .compare(self.ready_service(a)?, self.ready_service(b)?)
    }
}

impl<D, B, L, ResBody> Service<Request<B>> for Sticky<D, B, L>
where
    D: Discover + Unpin,
    D::Key: StableId + Hash + Eq + Clone,
    D::Service: Service<Request<B>, Response = Response<ResBody>>,
    <D::Service as Service<Request<B>>>::Error: Into<BoxError>,
    D::Error: Into<BoxError>,
    ResBody: http_body::Body + Default,
    L: LoadSource<D::Service>,
{
    type Response = Response<super::InFlightBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<<D::Service as Service<Request<B>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.update_from_discover(cx)?;
        loop {
            match self.services.poll_pending(cx) {
                Poll::Ready(Ok(())) | Poll::Pending => break,
                Poll::Ready(Err(failed)) => {
                    // A backend whose readiness failed is gone for good:
                    // its sessions fail over as for a removed backend.
                    let error: BoxError = failed.1;
                    tracing::debug!(%error, "backend failed");
                    self.table.remove(failed.0.stable_id());
                }
            }
        }
        if self.services.ready_len() > 0
            || self.engine.config().failover_policy() == crate::FailoverPolicy::Strict
                && !self.table.is_empty()
        {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let probe = Probe {
            table: &self.table,
            services: &self.services,
            load: &self.load,
        };
        let mut routed = self.engine.decide(&self.table, &parts, probe);
        let outcome = routed.outcome();
        let span = tracing::debug_span!("sticky", %outcome, backend = tracing::field::Empty);
        let Some(slot) = routed.target() else {
            return ResponseFuture::reject(routed, span);
        };
        if let Some(id) = routed.backend() {
            span.record("backend", tracing::field::display(id));
        }
        routed.prepare_request(&self.engine, &mut parts.headers);
        parts.extensions.insert(outcome);
        routed.begin(&self.engine, &self.table);
        let key = self.table.get(slot).expect("decided slot exists").key();
        let future = {
            let _e = span.enter();
            self.services
                .call_ready(key, Request::from_parts(parts, body))
        };
        let engine = routed.issued_token().map(|_| self.engine.clone());
        ResponseFuture::backend(future, routed, engine, span)
    }
}

impl<D, B, L> fmt::Debug for Sticky<D, B, L>
where
    D: Discover + fmt::Debug,
    D::Key: fmt::Debug + Hash + Eq,
    D::Service: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sticky")
            .field("discover", &self.discover)
            .field("table", &self.table)
            .field("engine", &self.engine)
            .finish()
    }
}
