use std::fmt;
use std::marker::PhantomData;

use tower_layer::Layer;

use super::Sticky;
use crate::StickyConfig;

/// Applies session affinity over a `Discover` backend set.
///
/// `B` is the request body type, inferred from use.
pub struct StickyLayer<B> {
    config: StickyConfig,
    _req: PhantomData<fn(B)>,
}

impl<B> StickyLayer<B> {
    /// A layer with this configuration.
    pub fn new(config: StickyConfig) -> Self {
        Self {
            config,
            _req: PhantomData,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StickyConfig {
        &self.config
    }
}

impl<B> Clone for StickyLayer<B> {
    fn clone(&self) -> Self {
        Self::new(self.config.clone())
    }
}

impl<B> fmt::Debug for StickyLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StickyLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<D, B> Layer<D> for StickyLayer<B>
where
    D: tower::discover::Discover,
    D::Key: std::hash::Hash + Eq,
    D::Service: tower_service::Service<http::Request<B>>,
    <D::Service as tower_service::Service<http::Request<B>>>::Error: Into<super::error::BoxError>,
{
    type Service = Sticky<D, B>;

    fn layer(&self, discover: D) -> Self::Service {
        Sticky::new(discover, self.config.clone())
    }
}
