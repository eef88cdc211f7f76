//! A backend's connection pool: idle HTTP/1.1 connections ready to reuse,
//! and the dialler that opens new ones.
//!
//! Lean on purpose (the proxy's cost per request is decided here): a
//! `Mutex<Vec<Connection>>` held only for a push or a pop, never across an
//! await; a connection goes back to the pool when its response body ends
//! (see [`ResponseBody`](crate::ResponseBody)), and the idle set is large
//! enough to cover peak concurrency (an idle pool smaller than the number of
//! concurrent requests makes every request beyond it dial).
//!
//! With the `tls` feature a pool may speak TLS to its backend
//! (`Pool::with_tls`): a new connection is dialled, then handshaken, and
//! pooled like a plain one afterwards.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::conn::Connection;
pub use crate::error::ConnectError;
use crate::stream::BackendStream;

/// Pool settings shared by every backend of a gateway.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// Dial timeout.
    pub connect_timeout: Duration,
    /// Idle connections kept.
    pub max_idle: usize,
    /// How long a connection may sit idle before it is closed instead of
    /// reused. Kept below common backends' keep-alive timeouts (nginx 75 s,
    /// Node.js 5 s, Apache 5 s, Go 90 s...: 4 s by default), so that the
    /// backend is not closing the connection just as a request arrives on
    /// it.
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            max_idle: 256,
            idle_timeout: Duration::from_secs(4),
        }
    }
}

/// One backend's address and connections.
#[derive(Debug)]
pub struct Pool {
    name: Arc<str>,
    address: String,
    resolved: Mutex<Vec<SocketAddr>>,
    idle: Mutex<Vec<(Connection, Instant)>>,
    settings: PoolSettings,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::BackendTls>,
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
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The same pool speaking TLS to its backend: each new connection is
    /// handshaken with `tls` before it carries a request, and a handshake
    /// that fails (an unverified certificate above all) is a
    /// [`ConnectError::Tls`].
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: crate::tls::BackendTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How the pool speaks TLS, if it does.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&crate::tls::BackendTls> {
        self.tls.as_ref()
    }

    /// Whether connections to the backend are TLS.
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        {
            self.tls.is_some()
        }
        #[cfg(not(feature = "tls"))]
        {
            false
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
    /// A connection idle longer than the idle timeout is closed, not used.
    pub fn take(&self) -> Option<Connection> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap();
        while let Some((mut c, since)) = idle.pop() {
            if now.saturating_duration_since(since) < self.settings.idle_timeout
                && c.is_idle_usable()
            {
                return Some(c);
            }
        }
        None
    }

    /// Returns a connection whose exchange completed.
    pub fn put(&self, conn: Connection) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < self.settings.max_idle {
            idle.push((conn, now));
        }
    }

    /// The pool's settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
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

    /// Opens a new connection (and, for a TLS backend, handshakes within
    /// the connect timeout).
    pub async fn dial(&self) -> Result<Connection, ConnectError> {
        let tcp = self.connect().await?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return match tokio::time::timeout(self.settings.connect_timeout, tls.handshake(tcp))
                .await
            {
                Ok(Ok(stream)) => Ok(Connection::new(stream)),
                Ok(Err(e)) => Err(ConnectError::Tls(e)),
                Err(_) => Err(ConnectError::Timeout),
            };
        }
        Ok(Connection::new(BackendStream::Plain(tcp)))
    }

    /// An idle pooled connection, or a new one.
    pub async fn acquire(&self) -> Result<Connection, ConnectError> {
        match self.take() {
            Some(c) => Ok(c),
            None => self.dial().await,
        }
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
                idle_timeout: Duration::from_secs(4),
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
