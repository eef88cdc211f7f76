//! A backend's connection pool: idle HTTP/1.1 connections ready to reuse,
//! and the dialler that opens new ones.
//!
//! Lean on purpose (the proxy's cost per request is decided here): a
//! `Mutex<Vec<BackendConn>>` held only for a push or a pop, never across an
//! await; a connection goes back to the pool when its response body ends
//! (see [`BackendBody`](super::body::BackendBody)), and the idle set is large
//! enough to cover peak concurrency (an idle pool smaller than the number of
//! concurrent requests makes every request beyond it dial).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use super::conn::BackendConn;

/// Why a new backend connection could not be opened. Nothing was sent.
#[derive(Debug)]
pub enum ConnectError {
    /// The host name does not resolve (yet).
    Unresolved,
    /// The connection was refused or failed.
    Io(std::io::Error),
    /// The connect timeout passed.
    Timeout,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unresolved => f.write_str("address not resolved"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
            ConnectError::Timeout => f.write_str("connect timed out"),
        }
    }
}

/// Pool settings shared by every backend of a gateway.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// Dial timeout.
    pub connect_timeout: Duration,
    /// Idle connections kept.
    pub max_idle: usize,
}

/// One backend's address and connections.
#[derive(Debug)]
pub struct Pool {
    name: Arc<str>,
    address: String,
    resolved: Mutex<Vec<SocketAddr>>,
    idle: Mutex<Vec<BackendConn>>,
    settings: PoolSettings,
}

impl Pool {
    /// A pool for backend `name` at `address` (`HOST:PORT`). IP literals are
    /// resolved at once; names by [`Pool::resolve`].
    pub fn new(name: &str, address: &str, settings: PoolSettings) -> Self {
        let resolved = address
            .parse::<SocketAddr>()
            .map(|a| vec![a])
            .unwrap_or_default();
        Self {
            name: name.into(),
            address: address.into(),
            resolved: Mutex::new(resolved),
            idle: Mutex::new(Vec::new()),
            settings,
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The configured `HOST:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the address is a host name (and so is re-resolved).
    pub fn needs_resolving(&self) -> bool {
        self.address.parse::<SocketAddr>().is_err()
    }

    /// Resolves the host name again; keeps the old addresses on failure.
    pub async fn resolve(&self) {
        if !self.needs_resolving() {
            return;
        }
        match tokio::net::lookup_host(self.address.as_str()).await {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if !addrs.is_empty() {
                    let mut cur = self.resolved.lock().unwrap();
                    if *cur != addrs {
                        tracing::info!(backend = %self.name, address = %self.address, ?addrs, "backend address resolved");
                        *cur = addrs;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(backend = %self.name, address = %self.address, error = %e, "cannot resolve backend")
            }
        }
    }

    /// The address dialled now (the first resolved one).
    pub fn target(&self) -> Option<SocketAddr> {
        self.resolved.lock().unwrap().first().copied()
    }

    /// Takes an idle connection that is still open, if any (the most
    /// recently used first: the likeliest to be alive and warm).
    pub fn take(&self) -> Option<BackendConn> {
        let mut idle = self.idle.lock().unwrap();
        while let Some(c) = idle.pop() {
            if c.is_idle_usable() {
                return Some(c);
            }
        }
        None
    }

    /// Returns a connection whose exchange completed.
    pub fn put(&self, conn: BackendConn) {
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < self.settings.max_idle {
            idle.push(conn);
        }
    }

    /// Idle connections now.
    pub fn idle_len(&self) -> usize {
        self.idle.lock().unwrap().len()
    }

    /// Drops every idle connection (the backend went away).
    pub fn clear(&self) {
        self.idle.lock().unwrap().clear();
    }

    /// Dials the backend: each resolved address in turn (a name that
    /// resolves to `::1` and `127.0.0.1` reaches a backend listening on
    /// either), the first that answers wins.
    async fn connect(&self) -> Result<TcpStream, ConnectError> {
        let addrs: Vec<SocketAddr> = self.resolved.lock().unwrap().clone();
        let mut last = ConnectError::Unresolved;
        for addr in addrs {
            match tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(addr))
                .await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = ConnectError::Io(e),
                Err(_) => last = ConnectError::Timeout,
            }
        }
        Err(last)
    }

    /// Opens a new connection.
    pub async fn dial(&self) -> Result<BackendConn, ConnectError> {
        self.connect().await.map(BackendConn::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dials_every_resolved_address_in_turn() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let closed_addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let pool = Pool::new(
            "b",
            "backend.test:80",
            PoolSettings {
                connect_timeout: Duration::from_secs(2),
                max_idle: 4,
            },
        );
        assert!(matches!(
            pool.connect().await,
            Err(ConnectError::Unresolved)
        ));
        *pool.resolved.lock().unwrap() = vec![closed_addr, live_addr];
        let stream = pool.connect().await.expect("the second address answers");
        assert_eq!(stream.peer_addr().unwrap(), live_addr);
        *pool.resolved.lock().unwrap() = vec![closed_addr];
        assert!(matches!(pool.connect().await, Err(ConnectError::Io(_))));
    }
}
