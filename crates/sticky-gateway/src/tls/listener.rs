//! A TLS listener: the rustls server configuration and the accept loop that
//! hands each decrypted stream to the shared connection handling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::certs::provider;
use super::config::TlsListenerConfig;
use super::sni::CertStore;
use crate::gateway::Gateway;
use crate::proxy::service::ConnInfo;
use crate::server::{self, ServerSettings};

/// TLS 1.2 sessions kept for resumption by session id (clients without
/// ticket support); about 100 bytes each.
const SESSION_CACHE: usize = 16 * 1024;

/// The rustls configuration of a listener: certificates from `store`
/// (chosen by SNI), ALPN `h2` then `http/1.1`, TLS 1.2 and 1.3 with rustls'
/// default suites, resumption by `tickets` and a session cache (none at
/// all without `tickets`: every handshake is a full one).
pub fn server_config(
    store: Arc<CertStore>,
    tickets: Option<Arc<dyn ProducesTickets>>,
) -> Arc<ServerConfig> {
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(store);
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    match tickets {
        Some(t) => {
            c.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
            c.ticketer = t;
        }
        None => {
            c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            c.send_tls13_tickets = 0;
        }
    }
    Arc::new(c)
}

/// A bound TLS listener with its live certificates.
pub struct TlsListener {
    /// The socket.
    pub listener: TcpListener,
    /// Its certificates (reloadable).
    pub store: Arc<CertStore>,
    /// Where it listens.
    pub addr: SocketAddr,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("addr", &self.addr)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Loads a listener's certificates, then binds it. A certificate or key
/// that cannot be used is an [`std::io::ErrorKind::InvalidInput`] error
/// naming the file; nothing is bound then.
pub async fn bind(
    config: &TlsListenerConfig,
    tickets: Arc<dyn ProducesTickets>,
) -> std::io::Result<TlsListener> {
    let store = CertStore::load(config.certificates.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let store = Arc::new(store);
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    Ok(TlsListener {
        listener,
        acceptor: TlsAcceptor::from(server_config(
            store.clone(),
            config.resumption.then_some(tickets),
        )),
        store,
        addr,
    })
}

/// Accepts TLS connections until shutdown. Each handshake runs in the
/// connection's own task, bounded by the header-read timeout; then the
/// connection is served as a plain one is (HTTP/1.1, or HTTP/2 when ALPN
/// chose `h2`).
pub async fn serve(tls: TlsListener, gw: Arc<Gateway>, settings: ServerSettings) {
    let builder = Arc::new(server::builder(&settings));
    let stop = gw.shutdown.triggered();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            r = tls.listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (gw, builder, acceptor) = (gw.clone(), builder.clone(), tls.acceptor.clone());
        tokio::spawn(async move {
            let _work = gw.shutdown.enter();
            let handshake =
                tokio::time::timeout(settings.header_read_timeout, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not done within the header-read timeout");
                    return;
                }
            };
            {
                let c = stream.get_ref().1;
                tracing::debug!(
                    %peer,
                    version = ?c.protocol_version(),
                    alpn = ?c.alpn_protocol().map(String::from_utf8_lossy),
                    sni = ?c.server_name(),
                    resumed = c.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
                    "TLS handshake done"
                );
            }
            server::serve_connection(stream, ConnInfo::over_tls(peer), gw, builder, settings).await;
        });
    }
}
