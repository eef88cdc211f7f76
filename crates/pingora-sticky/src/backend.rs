//! Stable backend identities for pingora's [`Backend`]s.
//!
//! A sealed token names its backend by a stable id, derived the same way in
//! every process: from the backend's name when it has one (a [`BackendName`]
//! in `Backend.ext`, from configuration), else from its address text. Never from pingora's in-process hash key, which is
//! `DefaultHasher` output and may differ between builds.
//!
//! A backend named `b1` has the id sticky-gateway gives its backend `b1`, so a
//! token issued by one routes identically on the other.

use std::future::Future;
use std::sync::Arc;

use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::{discovery, Backend, Backends, LoadBalancer};
use tower_sticky::{BackendId, StableId};

/// A backend's stable name, stored in [`Backend::ext`]. Sessions are pinned
/// to the name, so a backend keeps its sessions when its address changes.
///
/// ```
/// use pingora_load_balancing::Backend;
/// use pingora_sticky::BackendName;
///
/// let mut b = Backend::new("127.0.0.1:9001").unwrap();
/// b.ext.insert(BackendName::new("b1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendName(Arc<str>);

impl BackendName {
    /// A name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A pingora [`Backend`] at `addr`, named `name` (weight 1).
pub fn named_backend(name: &str, addr: &str) -> pingora_core::Result<Backend> {
    let mut b = Backend::new(addr)?;
    b.ext.insert(BackendName::new(name));
    Ok(b)
}

/// A [`LoadBalancer`] over a fixed set of backends, with its membership
/// already loaded (pingora's `Static` discovery answers at once), so the
/// first request finds them. Add a health check and run it as a background
/// service as with any pingora load balancer.
pub fn static_load_balancer<S>(backends: impl IntoIterator<Item = Backend>) -> LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let discovery = discovery::Static::new(backends.into_iter().collect());
    let lb = LoadBalancer::from_backends(Backends::new(discovery));
    {
        let mut update = std::pin::pin!(lb.update());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // Static discovery never waits and never fails.
        let _ = update.as_mut().poll(&mut cx);
    }
    lb
}

/// How a backend is known in the core's table: its stable id and the name
/// (or address) it was derived from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BackendKey {
    pub(crate) id: BackendId,
    pub(crate) name: Arc<str>,
}

impl StableId for BackendKey {
    fn stable_id(&self) -> BackendId {
        self.id
    }
}

impl BackendKey {
    /// The key of `backend`: its [`BackendName`], else its address text.
    pub(crate) fn of(backend: &Backend) -> Self {
        let name: Arc<str> = match backend.ext.get::<BackendName>() {
            Some(n) => n.0.clone(),
            None => addr_text(&backend.addr).into(),
        };
        Self {
            id: name.stable_id(),
            name,
        }
    }
}

/// The canonical text of an address ("127.0.0.1:9001", "[::1]:80", a socket path).
pub(crate) fn addr_text(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::Inet(a) => a.to_string(),
        #[cfg(unix)]
        SocketAddr::Unix(a) => format!("{a:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_the_gateways_ids_and_addresses_are_the_fallback() {
        let b = named_backend("b1", "127.0.0.1:9001").unwrap();
        assert_eq!(BackendKey::of(&b).id, "b1".stable_id());
        let plain = Backend::new("127.0.0.1:9002").unwrap();
        assert_eq!(BackendKey::of(&plain).id, "127.0.0.1:9002".stable_id());
        // The name, not the address: a moved backend keeps its sessions.
        let moved = named_backend("b1", "127.0.0.1:9009").unwrap();
        assert_eq!(BackendKey::of(&moved), BackendKey::of(&b));
    }
}
