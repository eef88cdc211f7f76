//! The client for one backend: a cheap `Clone` handle over its [`Pool`],
//! usable as a tower [`Service`] or called directly ([`Backend::send`]) by a
//! front that wants no boxed future on its hot path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HeaderMap;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tower_service::Service;

use crate::body::{Recycle, ResponseBody};
use crate::codec::request::{encode_request_head, Encoded, RequestFraming};
use crate::conn::Connection;
use crate::error::{Error, RequestError};
use crate::exchange::{exchange, Failed};
use crate::pool::Pool;

/// Interim answers (`103 Early Hints` and other 1xx but `100` and `101`)
/// the backend sent before its final answer, in order, put in the final
/// response's extensions when there were any. A front forwards them if its
/// server side can: hyper's server (1.x) has no way to send a 1xx other
/// than `100 Continue`, so the gateway and axum fronts cannot, and drop
/// them; a front on another server can.
#[derive(Clone, Debug, Default)]
pub struct InterimResponses(pub Vec<(StatusCode, HeaderMap)>);

/// The HTTP/1.1 client for one backend address.
///
/// `Clone` is an `Arc` clone: every clone shares the backend's pool. Each
/// call writes the request and reads the answer in the caller's task; the
/// response body streams from the connection and gives it back to the pool
/// when it ends cleanly.
///
/// Before a request is sent, its hop-by-hop fields should be stripped
/// ([`HopByHop::strip_request`](crate::HopByHop::strip_request)): the
/// client frames the body itself (never both `Content-Length` and
/// `Transfer-Encoding`), but forwards other fields as they are.
#[derive(Clone, Debug)]
pub struct Backend {
    pool: Arc<Pool>,
    allow_connect: bool,
}

impl Backend {
    /// A client over `pool`'s connections.
    pub fn new(pool: Arc<Pool>) -> Self {
        Self {
            pool,
            allow_connect: false,
        }
    }

    /// Whether `CONNECT` is forwarded (off by default: a 2xx answer makes
    /// the backend connection a tunnel to wherever the client asked, which
    /// a reverse proxy rarely means to offer). Even when allowed, the
    /// connection is never pooled afterwards.
    pub fn allow_connect(mut self, allow: bool) -> Self {
        self.allow_connect = allow;
        self
    }

    /// The backend's pool.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Sends one request and reads its answer's head. The caller keeps the
    /// head and body, so that on an error for which
    /// [`Error::is_unsent`] holds it can send them elsewhere unchanged.
    ///
    /// A pooled connection that fails before any answer byte arrived and
    /// before any body byte was taken (the backend closed it as the request
    /// arrived) is replaced by a fresh one, once.
    pub async fn send<B>(
        &self,
        parts: &Parts,
        body: Pin<&mut B>,
    ) -> Result<Response<ResponseBody>, Error>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Refused before a connection is even taken.
        connect_allowed(parts, self.allow_connect)?;
        RequestFraming::of(&parts.headers, body.is_end_stream()).map_err(Error::Request)?;
        let conn = self.pool.acquire().await.map_err(Error::Connect)?;
        self.send_on(conn, parts, body).await
    }

    /// [`Backend::send`] on a connection the caller took from the pool
    /// ([`Pool::acquire`]) first: a front that edits the request only once
    /// a backend is certainly reachable (the gateway strips its affinity
    /// cookie then, and decides again with it on a connect failure) does
    /// so between the two steps.
    pub async fn send_on(
        &self,
        mut conn: Connection,
        parts: &Parts,
        mut body: Pin<&mut impl Body<Error = impl Into<Box<dyn std::error::Error + Send + Sync>>>>,
    ) -> Result<Response<ResponseBody>, Error> {
        let encoded = match connect_allowed(parts, self.allow_connect)
            .and_then(|()| encode(&mut conn, parts, body.is_end_stream(), self.pool.address()))
        {
            Ok(e) => e,
            Err(e) => {
                // Nothing was written on it: still fit for another request.
                self.pool.put(conn);
                return Err(e);
            }
        };
        let (framing, upgrade) = (encoded.framing, encoded.upgrade);
        let pool: Arc<dyn Recycle<_>> = self.pool.clone();
        match exchange(&mut conn, parts, framing, upgrade, body.as_mut()).await {
            Ok(x) => Ok(respond(conn, Some(pool), x)),
            Err(Failed {
                retryable: true, ..
            }) => {
                let mut conn = self.pool.dial().await.map_err(Error::Connect)?;
                encode(&mut conn, parts, body.is_end_stream(), self.pool.address())?;
                match exchange(&mut conn, parts, framing, upgrade, body).await {
                    Ok(x) => Ok(respond(conn, Some(pool), x)),
                    Err(f) => Err(f.error),
                }
            }
            Err(f) => Err(f.error),
        }
    }
}

/// Sends one request over a stream the caller opened (no pool): the
/// differential harness and tests use it over in-memory pipes. The
/// response body keeps the connection; ask it
/// [`into_reusable`](ResponseBody::into_reusable) at the end.
pub async fn send_over<T, B>(
    mut conn: Connection<T>,
    parts: &Parts,
    body: B,
    host: &str,
) -> Result<Response<ResponseBody<T>>, Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let encoded = encode(&mut conn, parts, body.is_end_stream(), host)?;
    match exchange(
        &mut conn,
        parts,
        encoded.framing,
        encoded.upgrade,
        body.as_mut(),
    )
    .await
    {
        Ok(x) => Ok(respond(conn, None, x)),
        Err(f) => Err(f.error),
    }
}

fn connect_allowed(parts: &Parts, allow_connect: bool) -> Result<(), Error> {
    if parts.method == Method::CONNECT && !allow_connect {
        return Err(Error::Request(RequestError::Connect));
    }
    Ok(())
}

fn encode<T>(
    conn: &mut Connection<T>,
    parts: &Parts,
    body_ended: bool,
    host: &str,
) -> Result<Encoded, Error> {
    encode_request_head(
        &mut conn.inner.out,
        &parts.method,
        &parts.uri,
        parts.version,
        &parts.headers,
        body_ended,
        host,
    )
    .map_err(Error::Request)
}

fn respond<T>(
    conn: Connection<T>,
    pool: Option<Arc<dyn Recycle<T>>>,
    x: crate::exchange::Exchanged,
) -> Response<ResponseBody<T>> {
    let head = x.head;
    let body = ResponseBody::new(conn, pool, head.framing, head.keep_alive, head.tunnel);
    let mut response = Response::from_parts(head.parts, body);
    if !x.interim.is_empty() {
        let interim = x
            .interim
            .into_iter()
            .map(|p| (p.status, p.headers))
            .collect();
        response.extensions_mut().insert(InterimResponses(interim));
    }
    response
}

impl<B> Service<Request<B>> for Backend
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>> + Send>>;

    /// Always ready: the pool dials on demand.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = std::pin::pin!(body);
            this.send(&parts, body).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolSettings;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connection whose backend end was reset (closed with unread state
    /// discarded), marked as having carried an exchange before.
    async fn reset_connection(reused: bool) -> Connection {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
        let server = s.unwrap().0;
        // A zero linger resets instead of closing (and never blocks, which
        // is what the deprecation warns of).
        #[allow(deprecated)]
        server.set_linger(Some(Duration::ZERO)).unwrap();
        drop(server);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut conn = Connection::new(c.unwrap().into());
        if reused {
            conn.finish_exchange();
        }
        conn
    }

    fn backend(address: std::net::SocketAddr) -> Backend {
        let settings = PoolSettings {
            connect_timeout: Duration::from_secs(2),
            max_idle: 4,
            idle_timeout: Duration::from_secs(4),
        };
        Backend::new(Arc::new(Pool::new("b", &address.to_string(), settings)))
    }

    fn head() -> Parts {
        Request::get("/x")
            .header("host", "app.test")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn closed_port() -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    async fn send(b: &Backend, conn: Connection) -> Result<Response<ResponseBody>, Error> {
        let body = std::pin::pin!(http_body_util::Empty::<bytes::Bytes>::new());
        b.send_on(conn, &head(), body).await
    }

    #[tokio::test]
    async fn a_head_refused_by_a_reused_connection_goes_on_a_fresh_one_or_is_unsent() {
        // The fresh connection is made and carries the head.
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = backend(live.local_addr().unwrap());
        let conn = reset_connection(true).await;
        let server = tokio::spawn(async move {
            let (mut s, _) = live.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"GET /x HTTP/1.1\r\n"));
            tokio::io::AsyncWriteExt::write_all(&mut s, b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            s
        });
        let sent = send(&b, conn).await;
        assert_eq!(sent.expect("sent on a fresh connection").status(), 204);
        drop(server.await.unwrap());

        // No fresh connection to be had: nothing was sent, so the caller may
        // send the request to another backend.
        let gone = backend(closed_port());
        let conn = reset_connection(true).await;
        let sent = send(&gone, conn).await;
        assert!(matches!(sent, Err(Error::Connect(_))));
        assert!(sent.unwrap_err().is_unsent());

        // A connection new for this request failing is an I/O error, not retried.
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = backend(live.local_addr().unwrap());
        let conn = reset_connection(false).await;
        let sent = send(&b, conn).await;
        assert!(matches!(sent, Err(Error::Io(_))), "{sent:?}");
        assert!(!sent.unwrap_err().is_unsent());
    }
}
