//! The request side of HTTP/1.1: how a body is framed, and the head, chunks
//! and trailer section written for it.
//!
//! The framing is chosen here, never copied from the caller's headers: the
//! head carries exactly one of `Content-Length` or `Transfer-Encoding:
//! chunked` (RFC 9112 §6.2), whatever the request's header map says.

use std::io::Write;

use http::header::{self, HeaderMap};
use http::{Method, Version};

use crate::error::RequestError;
use crate::trailers;

/// How a request body is sent to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes, announced with `Content-Length`.
    Length(u64),
    /// Chunked (the client sent chunked, or HTTP/2 without a length).
    Chunked,
}

impl RequestFraming {
    /// The framing of a request. `body_ended` is whether the body is known
    /// to be empty. A `Content-Length` that is not one number is refused
    /// (RFC 9110 §8.6): re-framing it as chunked would leave two framings.
    pub fn of(headers: &HeaderMap, body_ended: bool) -> Result<Self, RequestError> {
        let mut length = None;
        for v in headers.get_all(header::CONTENT_LENGTH) {
            let n = content_length(v.as_bytes()).ok_or(RequestError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(RequestError::ContentLength);
            }
            length = Some(n);
        }
        Ok(match length {
            Some(n) => RequestFraming::Length(n),
            None if body_ended => RequestFraming::Empty,
            None => RequestFraming::Chunked,
        })
    }
}

/// A `Content-Length` value: digits only (no sign), or a comma-separated
/// list of equal numbers, as hyper accepts.
pub(crate) fn content_length(raw: &[u8]) -> Option<u64> {
    let mut n = None;
    for item in raw.split(|&b| b == b',') {
        let digits = item.trim_ascii();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v = digits
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        if n.is_some_and(|n| n != v) {
            return None;
        }
        n = Some(v);
    }
    n
}

/// Whether every `Transfer-Encoding` value names only `chunked`, the one
/// coding this client decodes and re-frames.
pub(crate) fn only_chunked(headers: &HeaderMap) -> bool {
    headers.get_all(header::TRANSFER_ENCODING).iter().all(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .all(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
    })
}

/// What [`encode_request_head`] found while writing a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// How the body follows the head.
    pub framing: RequestFraming,
    /// Whether the request asks to switch protocols (it carries `Upgrade`,
    /// or is `CONNECT`): only then is a `101` (or a 2xx to `CONNECT`) a
    /// tunnel.
    pub upgrade: bool,
}

/// Writes a request head into `out` (cleared first): the origin-form target
/// (authority-form for CONNECT), one `Host` (the URI's authority for an
/// HTTP/2 request, RFC 9113 §8.3.1; else the request's own `Host`; else
/// `host`), HTTP/2 cookie crumbs joined with "; " (RFC 9113 §8.2.3), the
/// other fields except framing ones, and one framing header, chosen here
/// (as [`RequestFraming::of`] would, in the same walk over the fields).
///
/// Fails, with `out` unusable, on a second `Host` or a `Content-Length`
/// that is not one number.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &http::Uri,
    version: Version,
    headers: &HeaderMap,
    body_ended: bool,
    host: &str,
) -> Result<Encoded, RequestError> {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    match uri.path_and_query() {
        Some(pq) if method != Method::CONNECT => {
            // An absolute-form target with no path (`http://a.test?x=1`)
            // has a query but an empty path: origin-form needs the `/`
            // (RFC 9112 §3.2.1). Found by the request_framing fuzz target.
            let pq = pq.as_str();
            if !pq.starts_with('/') && pq != "*" {
                out.push(b'/');
            }
            out.extend_from_slice(pq.as_bytes())
        }
        _ => match uri.authority() {
            Some(a) if method == Method::CONNECT => out.extend_from_slice(a.as_str().as_bytes()),
            _ => out.push(b'/'),
        },
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let h2 = version == Version::HTTP_2 || version == Version::HTTP_3;
    let authority = uri.authority().filter(|_| h2);
    match authority {
        Some(a) => put_field(out, "host", a.as_str().as_bytes()),
        None if !headers.contains_key(header::HOST) => put_field(out, "host", host.as_bytes()),
        None => {}
    }
    let mut hosts = 0u32;
    let mut cookies = 0u32;
    let mut length: Option<u64> = None;
    let mut upgrade = *method == Method::CONNECT;
    for (name, value) in headers {
        if *name == header::HOST {
            hosts += 1;
            if hosts > 1 {
                return Err(RequestError::DuplicateHost);
            }
            if authority.is_some() {
                continue;
            }
        } else if *name == header::CONTENT_LENGTH {
            let n = content_length(value.as_bytes()).ok_or(RequestError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(RequestError::ContentLength);
            }
            length = Some(n);
            continue;
        } else if *name == header::TRANSFER_ENCODING {
            continue;
        } else if *name == header::UPGRADE {
            upgrade = true;
        } else if h2 && *name == header::COOKIE {
            cookies += 1;
            continue;
        }
        put_field(out, name.as_str(), value.as_bytes());
    }
    if cookies > 0 {
        out.extend_from_slice(b"cookie: ");
        for (i, v) in headers.get_all(header::COOKIE).iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    let framing = match length {
        Some(n) => RequestFraming::Length(n),
        None if body_ended => RequestFraming::Empty,
        None => RequestFraming::Chunked,
    };
    match framing {
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    Ok(Encoded { framing, upgrade })
}

fn put_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk's size line to `out` (the data and its CRLF follow).
pub fn encode_chunk_size(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "{len:x}\r\n");
}

/// Appends one whole chunk of a chunked body to `out`.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    encode_chunk_size(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and the trailer section to `out`, without the
/// fields a trailer may not carry ([`trailers::is_forbidden`]).
pub fn encode_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        if trailers::is_forbidden(name) {
            continue;
        }
        put_field(out, name.as_str(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}
