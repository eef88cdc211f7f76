//! Typed errors. A caller's first question about a failed exchange is
//! whether the request may have reached the backend: only a request that
//! certainly did not ([`Error::is_unsent`]) may be sent to another backend.

use std::fmt;
use std::io;

/// Why a backend's bytes could not be read as an HTTP/1 answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The head is not HTTP/1.x.
    Parse(httparse::Error),
    /// The head (or a trailer section) is larger than the limit.
    HeadTooLarge,
    /// A header name or value that `http` refuses.
    Header,
    /// `Content-Length` is not one number.
    ContentLength,
    /// A transfer coding other than `chunked`: the body cannot be decoded,
    /// and passing it on undecoded would corrupt it silently.
    TransferCoding,
    /// A chunk-size line is malformed (no digit, bad byte, overflow, LF in
    /// an extension, extensions over their limit).
    ChunkSize,
    /// A chunk is not followed by CRLF.
    ChunkEnd,
    /// More trailer fields or bytes than allowed.
    TooManyTrailers,
    /// `101 Switching Protocols` to a request that did not ask for it.
    UnexpectedUpgrade,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Parse(e) => write!(f, "malformed response head: {e}"),
            ProtocolError::HeadTooLarge => f.write_str("response head too large"),
            ProtocolError::Header => f.write_str("invalid response header"),
            ProtocolError::ContentLength => f.write_str("invalid Content-Length"),
            ProtocolError::TransferCoding => f.write_str("unsupported transfer coding"),
            ProtocolError::ChunkSize => f.write_str("invalid chunk size line"),
            ProtocolError::ChunkEnd => f.write_str("chunk not terminated by CRLF"),
            ProtocolError::TooManyTrailers => f.write_str("trailer section too large"),
            ProtocolError::UnexpectedUpgrade => f.write_str("101 without an upgrade request"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Why a request cannot be sent as it is: the front should answer the
/// client itself (400, or 501 for [`RequestError::TransferCoding`]) and
/// never forward it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// `Content-Length` is not one non-negative number (RFC 9110 §8.6).
    ContentLength,
    /// More than one `Host` field (RFC 9112 §3.2).
    DuplicateHost,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1): re-framing
    /// would hand the backend coded bytes with nothing naming the coding.
    TransferCoding,
    /// `CONNECT`: a 2xx answer turns the backend connection into a tunnel
    /// (RFC 9110 §9.3.6); the client only opens one when asked to
    /// ([`Backend::allow_connect`](crate::Backend::allow_connect)).
    Connect,
}

impl RequestError {
    /// The status a front answers the client with.
    pub fn status(self) -> http::StatusCode {
        match self {
            RequestError::TransferCoding | RequestError::Connect => {
                http::StatusCode::NOT_IMPLEMENTED
            }
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::ContentLength => "invalid Content-Length in request",
            RequestError::DuplicateHost => "more than one Host in request",
            RequestError::TransferCoding => "unsupported transfer coding in request",
            RequestError::Connect => "CONNECT is not forwarded",
        })
    }
}

impl std::error::Error for RequestError {}

/// Why a new backend connection could not be opened. Nothing was sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The host name does not resolve (yet).
    Unresolved,
    /// The connection was refused or failed.
    Io(io::Error),
    /// The connect timeout passed.
    Timeout,
    /// The TLS handshake failed: most often the backend's certificate was
    /// not verified (unknown issuer, wrong name, expired), which the error
    /// names. Never silently accepted: the backend counts as unreachable.
    Tls(io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Unresolved => f.write_str("address not resolved"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Io(e) | ConnectError::Tls(e) => Some(e),
            _ => None,
        }
    }
}

/// Why an exchange with a backend failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The request is not fit to forward; nothing was sent.
    Request(RequestError),
    /// No connection could be had; nothing was sent.
    Connect(ConnectError),
    /// The request body failed mid-stream; the backend got part of it.
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// The backend's answer broke HTTP/1; the request was sent.
    Protocol(ProtocolError),
    /// An I/O error after the request (or part of it) was written.
    Io(io::Error),
}

impl Error {
    /// Whether the request certainly never reached the backend, so that it
    /// may be sent to another one without being replayed.
    pub fn is_unsent(&self) -> bool {
        matches!(self, Error::Request(_) | Error::Connect(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Request(e) => e.fmt(f),
            Error::Connect(e) => e.fmt(f),
            Error::Body(e) => write!(f, "request body failed: {e}"),
            Error::Protocol(e) => write!(f, "backend broke HTTP/1: {e}"),
            Error::Io(e) => write!(f, "backend exchange failed: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Request(e) => Some(e),
            Error::Connect(e) => Some(e),
            Error::Body(e) => Some(&**e),
            Error::Protocol(e) => Some(e),
            Error::Io(e) => Some(e),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        // The codec's errors travel through io::Error on the read path.
        if e.get_ref().is_some_and(|i| i.is::<ProtocolError>()) {
            if let Ok(p) = e.into_inner().unwrap().downcast::<ProtocolError>() {
                return Error::Protocol(*p);
            }
            unreachable!("checked above");
        }
        Error::Io(e)
    }
}
