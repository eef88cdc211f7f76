//! TLS test clients: rustls over loopback, trusting a test authority or
//! accepting any certificate (to see which one the gateway chose).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sticky_gateway::tls::certs::provider;
use sticky_gateway::tls::throwaway::Issued;
use sticky_gateway::tls::CertificateFiles;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{in_process_gateway, Backend, Reply};
use std::time::Duration;
use sticky_gateway::tls::throwaway::Authority;
use sticky_gateway::tls::TlsListenerConfig;

/// Writes a certificate and key as `TAG.pem` and `TAG.key` in `dir`.
pub fn write_files(dir: &Path, tag: &str, c: &Issued) -> CertificateFiles {
    let files = CertificateFiles {
        cert: dir.join(format!("{tag}.pem")),
        key: dir.join(format!("{tag}.key")),
    };
    std::fs::write(&files.cert, &c.cert_pem).unwrap();
    std::fs::write(&files.key, &c.key_pem).unwrap();
    files
}

fn alpn(c: &mut ClientConfig, protocols: &[&str]) {
    c.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
}

/// A client trusting only `ca_der`, offering `protocols` by ALPN.
pub fn trusting(ca_der: &[u8], protocols: &[&str]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    alpn(&mut c, protocols);
    Arc::new(c)
}

/// Accepts any certificate (the handshake's signature is still checked).
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client that accepts any certificate, offering `http/1.1`.
pub fn any_cert() -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    alpn(&mut c, &["http/1.1"]);
    Arc::new(c)
}

/// A TLS connection to `addr`, asking for `name` (SNI; none for an IP).
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// The leaf certificate the server sent.
pub fn leaf(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The protocol ALPN chose.
pub fn negotiated(s: &TlsStream<TcpStream>) -> Option<String> {
    s.get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// An HTTP/1.1 client on `s`.
pub async fn http1(
    s: TlsStream<TcpStream>,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// An HTTP/2 client on `s`.
pub async fn http2(
    s: TlsStream<TcpStream>,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// `GET path` (with `cookie`), the answer collected, and its HTTP version.
pub fn get_request(authority: &str, path: &str, cookie: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::get(format!("https://{authority}{path}"));
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Full::default()).unwrap()
}

/// Collects a response into a [`Reply`], with its version.
pub async fn collect(r: http::Response<hyper::body::Incoming>) -> (Reply, http::Version) {
    let version = r.version();
    let (parts, body) = r.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        },
        version,
    )
}

pub fn ca() -> Authority {
    Authority::new("sticky test CA").unwrap()
}

pub fn listener(certificates: Vec<CertificateFiles>) -> TlsListenerConfig {
    TlsListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        certificates,
        resumption: true,
    }
}

/// An in-process gateway over `backends` with a plain listener and one TLS
/// listener serving `certificates`.
pub async fn tls_gateway(
    backends: &[&Backend],
    certificates: Vec<CertificateFiles>,
) -> sticky_gateway::run::Running {
    in_process_gateway(backends, |c| {
        c.tls_listeners = vec![listener(certificates)];
        c.file_watch_interval = Duration::from_millis(100);
    })
    .await
}
