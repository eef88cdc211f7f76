//! TLS to a backend over loopback (feature `tls`), with an authority and a
//! certificate made by rcgen: pooled reuse over one handshake, SNI,
//! refusal of an unknown authority, and no reuse of a connection whose TLS
//! layer holds bytes past the answer.
//!
//! `cargo test -p sticky-proxy --features tls --test tls`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sticky_proxy::tls::{client_config, BackendTls};
use sticky_proxy::{Backend, ConnectError, Error, Pool, PoolSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

const LIMIT: Duration = Duration::from_secs(20);

struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }

    /// A leaf for `name` and its key.
    fn issue(&self, name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let params = CertificateParams::new(vec![name.to_string()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        (cert.der().clone(), key.into())
    }
}

/// What the backend answers to each request.
#[derive(Clone, Copy)]
enum Answer {
    /// `200 ok`, kept alive.
    Ok,
    /// An answer exactly as long as the client's first read, and 100 bytes
    /// more in the same TLS record: they wait, decrypted, in the client's
    /// TLS layer, not in its socket.
    OverlongRecord,
}

struct TlsServer {
    addr: SocketAddr,
    handshakes: Arc<AtomicU64>,
    sni: Arc<Mutex<Vec<Option<String>>>>,
}

async fn serve(
    leaf: (CertificateDer<'static>, PrivateKeyDer<'static>),
    answer: Answer,
) -> TlsServer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.0], leaf.1)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = TlsServer {
        addr: l.local_addr().unwrap(),
        handshakes: Arc::default(),
        sni: Arc::default(),
    };
    let (handshakes, sni) = (server.handshakes.clone(), server.sni.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, handshakes, sni) = (acceptor.clone(), handshakes.clone(), sni.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                handshakes.fetch_add(1, Ordering::Relaxed);
                sni.lock()
                    .unwrap()
                    .push(s.get_ref().1.server_name().map(str::to_owned));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while let Ok(1) = s.read(&mut byte).await {
                    head.push(byte[0]);
                    if !head.ends_with(b"\r\n\r\n") {
                        continue;
                    }
                    head.clear();
                    let out = match answer {
                        Answer::Ok => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                        Answer::OverlongRecord => {
                            // The client reads into 8 KiB of fresh buffer.
                            let head = |n: usize| {
                                format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n")
                            };
                            let n = 8192 - head(8000).len();
                            let mut out = head(n).into_bytes();
                            out.resize(8192, b'x');
                            out.extend_from_slice(&[b'!'; 100]);
                            out
                        }
                    };
                    if s.write_all(&out).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    server
}

async fn pool_to(server: &TlsServer, roots: rustls::RootCertStore) -> Arc<Pool> {
    let tls = BackendTls::new(Arc::new(client_config(roots)), "localhost").unwrap();
    let address = format!("localhost:{}", server.addr.port());
    let pool = Pool::new("b", &address, PoolSettings::default()).with_tls(tls);
    pool.resolve().await;
    Arc::new(pool)
}

fn get() -> http::Request<Empty<bytes::Bytes>> {
    http::Request::get("/")
        .header("host", "app.test")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn requests_share_one_verified_tls_connection_with_the_host_as_sni() {
    tokio::time::timeout(LIMIT, async {
        let ca = Authority::new("test CA");
        let server = serve(ca.issue("localhost"), Answer::Ok).await;
        let pool = pool_to(&server, ca.roots()).await;
        assert!(pool.is_tls());
        let mut backend = Backend::new(pool.clone());
        for _ in 0..3 {
            let r = backend.call(get()).await.unwrap();
            assert_eq!(r.status(), 200);
            let body = r.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(server.handshakes.load(Ordering::Relaxed), 1);
        assert_eq!(pool.idle_len(), 1);
        assert_eq!(
            server.sni.lock().unwrap().as_slice(),
            [Some("localhost".to_string())]
        );
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn a_certificate_from_an_unknown_authority_is_an_unsent_connect_error() {
    tokio::time::timeout(LIMIT, async {
        let (ca, stranger) = (Authority::new("test CA"), Authority::new("someone else"));
        let server = serve(stranger.issue("localhost"), Answer::Ok).await;
        let pool = pool_to(&server, ca.roots()).await;
        let e = Backend::new(pool).call(get()).await.unwrap_err();
        assert!(e.is_unsent(), "{e}");
        assert!(matches!(e, Error::Connect(ConnectError::Tls(_))), "{e:?}");
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        assert_eq!(server.handshakes.load(Ordering::Relaxed), 0);
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn bytes_past_the_answer_held_in_the_tls_layer_keep_the_connection_out_of_the_pool() {
    tokio::time::timeout(LIMIT, async {
        let ca = Authority::new("test CA");
        let server = serve(ca.issue("localhost"), Answer::OverlongRecord).await;
        let pool = pool_to(&server, ca.roots()).await;
        let r = Backend::new(pool.clone()).call(get()).await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert!(body.iter().all(|&b| b == b'x'), "the answer's own bytes");
        // Whether it went back to the pool or not, it must never be taken
        // for another request: its next answer would begin with "!!!".
        assert!(pool.take().is_none());
    })
    .await
    .expect("bounded");
}
