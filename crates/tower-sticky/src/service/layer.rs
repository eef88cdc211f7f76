use std::fmt;
use std::marker::PhantomData;

use tower_layer::Layer;

use super::{CountedInFlight, Sticky};
use crate::StickyConfig;

/// Applies session affinity over a `Discover` backend set.
///
/// `B` is the request body type, inferred from use; `L` the load measure
/// placement compares ([`CountedInFlight`] unless [`StickyLayer::with_load`]
/// says otherwise).
pub struct StickyLayer<B, L = CountedInFlight> {
    config: StickyConfig,
    load: L,
    _req: PhantomData<fn(B)>,
}

impl<B> StickyLayer<B> {
    /// A layer with this configuration.
    pub fn new(config: StickyConfig) -> Self {
        Self {
            config,
            load: CountedInFlight,
            _req: PhantomData,
        }
    }
}

impl<B, L> StickyLayer<B, L> {
    /// Compares backends by another load measure, e.g.
    /// [`ServiceLoad`](super::ServiceLoad) for backends that implement
    /// `tower::load::Load`.
    pub fn with_load<L2>(self, load: L2) -> StickyLayer<B, L2> {
        StickyLayer {
            config: self.config,
            load,
            _req: PhantomData,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StickyConfig {
        &self.config
    }
}

impl<B, L: Clone> Clone for StickyLayer<B, L> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            load: self.load.clone(),
            _req: PhantomData,
        }
    }
}

impl<B, L> fmt::Debug for StickyLayer<B, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StickyLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<D, B, L: Clone> Layer<D> for StickyLayer<B, L>
where
    D: tower::discover::Discover,
    D::Key: std::hash::Hash + Eq,
    D::Service: tower_service::Service<http::Request<B>>,
    <D::Service as tower_service::Service<http::Request<B>>>::Error: Into<super::error::BoxError>,
{
    type Service = Sticky<D, B, L>;

    fn layer(&self, discover: D) -> Self::Service {
        Sticky::new(discover, self.config.clone()).with_load(self.load.clone())
    }
}
