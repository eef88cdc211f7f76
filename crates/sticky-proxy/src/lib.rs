//! A lean HTTP/1.1 client for reverse proxies: one [`Backend`] per backend
//! address, a tower `Service<http::Request<B>>` over any
//! [`http_body::Body`], with its connection [`Pool`], strict framing, and
//! upgrades handed to the caller as a tunnel to drive.
//!
//! Built for the sticky gateway's hot path (the request's own task writes
//! the request and reads the answer; no connection task, no channel) and
//! hardened where hand-written proxies go wrong: request smuggling and pool
//! poisoning, where one user's request or answer is mixed with another's.
//!
//! # What the client promises
//! - **One framing.** A request is sent with exactly one of
//!   `Content-Length` or `Transfer-Encoding: chunked`, chosen here; an
//!   unparsable `Content-Length`, a second `Host`, a transfer coding other
//!   than chunked are refused ([`RequestError`]) before anything is sent.
//!   A body that yields more or fewer bytes than it announced ends the
//!   exchange with an error and the connection is dropped.
//! - **No reuse after doubt.** A connection goes back to the pool only
//!   after an answer whose end is certain and that the backend keeps
//!   alive: never after `CONNECT` or `101`, a close-delimited body, an
//!   HTTP/1.0 or `Content-Length` + `Transfer-Encoding` answer, bytes past
//!   the answer, a body not read to its end, or a request body not sent
//!   whole. Idle connections expire ([`PoolSettings::idle_timeout`]).
//! - **Early answers.** The answer is read while the body is written: a
//!   `413` sent before the upload ends is forwarded, not lost.
//! - **Strict decoding**, matching hyper: chunk-size lines, extensions and
//!   trailers as hyper's decoder takes them; trailer fields that frame,
//!   route or authenticate are dropped in both directions.
//! - **Typed errors** that say whether the request may have been sent
//!   ([`Error::is_unsent`]): only an unsent request is safe to send to
//!   another backend.
//!
//! # TLS to backends
//! With the `tls` cargo feature, a [`Pool`] may speak TLS to its backend
//! (`Pool::with_tls`, see the `tls` module): rustls with the ring provider,
//! certificates verified against the roots the caller trusts, SNI the
//! backend's host name, ALPN `http/1.1`. Connections are a
//! [`BackendStream`], an enum of plain TCP and TLS, so a plain backend's
//! path pays one branch and no allocation for it.
//!
//! # Where it differs from hyper's client
//! The differential harness (`tests/differential.rs`) feeds the same
//! backend bytes to this client and to `hyper::client::conn::http1` and
//! checks they agree on status, headers, body and reuse, except:
//! - a transfer coding other than `chunked` (`gzip, chunked`, `gzip`) is an
//!   error here; hyper decodes the chunked layer (or reads to close) and
//!   hands over coded bytes. A proxy re-frames the body, so passing them on
//!   would deliver a corrupted body with nothing naming the coding.
//! - an HTTP/1.0 answer with `Transfer-Encoding` is read (and its
//!   connection closed) here; hyper refuses it. Either is safe; the issue
//!   that asked for this preferred delivering the answer.
//! - an answer with both `Content-Length` and `Transfer-Encoding` closes
//!   the connection here (RFC 9112 §6.3); hyper may keep it.
//! - trailer fields that may not be trailers (framing, routing,
//!   authentication, hop-by-hop) are dropped here; hyper passes them.
//! - `Connection` naming only `close`/`keep-alive` is consumed here (it is
//!   hop-by-hop and the front would strip it); hyper leaves it in the map.
//! - a `Content-Length` that is not a number on a HEAD, 204 or 304 answer
//!   is dropped here (passed on, the client's side would refuse it).
//! - when no final head can be read, one client may report the broken
//!   head at once where the other waits for more bytes (that could not
//!   mend it); neither delivers an answer.
//! - `Content-Length` is compared through the body bytes, not as a field:
//!   this client drops it when a transfer coding frames the body.
//!
//! The harness runs 2 × 2,048 generated cases plus every split point of
//! two fixed answers, in about 12 s (`cargo test -p sticky-proxy --test
//! differential`).
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), sticky_proxy::Error> {
//! use std::sync::Arc;
//! use http_body_util::Empty;
//! use sticky_proxy::{Backend, Pool, PoolSettings};
//! use tower_service::Service;
//!
//! let pool = Arc::new(Pool::new("app-1", "127.0.0.1:3000", PoolSettings::default()));
//! let mut backend = Backend::new(pool);
//! let req = http::Request::get("/health").header("host", "app.test")
//!     .body(Empty::<bytes::Bytes>::new()).unwrap();
//! let resp = backend.call(req).await?;
//! assert!(resp.status().is_success());
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod body;
pub mod codec;
mod conn;
mod error;
mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod hop;
pub mod pool;
mod service;
mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub mod trailers;
pub mod upgrade;

pub use body::{Recycle, ResponseBody};
pub use conn::Connection;
pub use error::{ConnectError, Error, ProtocolError, RequestError};
pub use hop::HopByHop;
pub use pool::{Pool, PoolSettings};
pub use service::{send_over, Backend, InterimResponses};
pub use stream::BackendStream;
pub use upgrade::{tunnel, Upgraded};
