//! The response side of HTTP/1.1: the head parsed (with `httparse`, as
//! hyper does) and the body's framing decided (RFC 9112 §6.3), with the
//! rules that decide whether the connection may carry another request.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use super::request::content_length;
use crate::error::ProtocolError;

/// The largest response head accepted from a backend.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields accepted in a response head (hyper's default).
pub const MAX_HEADERS: usize = 100;
/// Interim (1xx) heads kept for the caller per answer; more are skipped.
pub const MAX_INTERIM: usize = 8;

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the backend closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status and headers (`Transfer-Encoding` removed, and
    /// `Content-Length` when a transfer coding frames the body: the front
    /// re-frames the body for its client). The version is always
    /// HTTP/1.1: the front answers in its own.
    pub parts: http::response::Parts,
    /// How the body is delimited.
    pub framing: ResponseFraming,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
    /// Whether the connection is now a tunnel: `101` to an upgrade, or a
    /// 2xx to `CONNECT` (RFC 9110 §9.3.6). Never pooled.
    pub tunnel: bool,
}

/// One head read from a backend: an interim answer, or the final one.
#[derive(Debug)]
pub enum Parsed {
    /// A 1xx other than `101` (`100 Continue`, `103 Early Hints`): the
    /// final answer follows on the same connection.
    Interim(http::response::Parts),
    /// The final answer.
    Final(ResponseHead),
}

/// Where a header's name and value lie in the head (a head is at most
/// [`MAX_HEAD`] bytes, so `u32` offsets keep the array small to clear).
#[derive(Clone, Copy, Default)]
struct Indices {
    name: (u32, u32),
    value: (u32, u32),
}

fn range_in(outer: &[u8], inner: &[u8]) -> (u32, u32) {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    (start as u32, (start + inner.len()) as u32)
}

/// Parses one response head at the start of `buf`. `Ok(None)`: incomplete,
/// read more. The head is taken out of `buf`; what follows it stays.
/// `method` is the request's; `upgrade` whether it asked to switch
/// protocols (a `101` to any other request is an error).
pub fn parse_response_head(
    buf: &mut BytesMut,
    method: &Method,
    upgrade: bool,
) -> Result<Option<Parsed>, ProtocolError> {
    // Left uninitialised (httparse fills what it uses): clearing the slots
    // on every answer cost more than parsing the head.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut indices = [Indices::default(); MAX_HEADERS];
    let (len, code, version, count) = {
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, buf, &mut slots);
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(ProtocolError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ProtocolError::HeadTooLarge),
            Err(e) => return Err(ProtocolError::Parse(e)),
        };
        for (slot, h) in indices.iter_mut().zip(res.headers.iter()) {
            *slot = Indices {
                name: range_in(buf, h.name.as_bytes()),
                value: range_in(buf, h.value),
            };
        }
        let code = res.code.unwrap_or(0);
        let version = res.version.unwrap_or(1);
        (len, code, version, res.headers.len())
    };
    if len > MAX_HEAD {
        return Err(ProtocolError::HeadTooLarge);
    }
    let head = buf.split_to(len).freeze();
    let status =
        StatusCode::from_u16(code).map_err(|_| ProtocolError::Parse(httparse::Error::Status))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        let mut headers = HeaderMap::with_capacity(count);
        for ix in &indices[..count] {
            let (name, value) = field(&head, ix)?;
            headers.append(name, value);
        }
        return Ok(Some(Parsed::Interim(parts(status, headers))));
    }
    if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(ProtocolError::UnexpectedUpgrade);
    }
    build_head(&head, &indices[..count], status, version, method).map(|h| Some(Parsed::Final(h)))
}

#[inline(always)]
fn field(head: &Bytes, ix: &Indices) -> Result<(HeaderName, HeaderValue), ProtocolError> {
    let name = &head[ix.name.0 as usize..ix.name.1 as usize];
    let name = HeaderName::from_bytes(name).map_err(|_| ProtocolError::Header)?;
    let value = head.slice(ix.value.0 as usize..ix.value.1 as usize);
    let value = HeaderValue::from_maybe_shared(value).map_err(|_| ProtocolError::Header)?;
    Ok((name, value))
}

fn parts(status: StatusCode, headers: HeaderMap) -> http::response::Parts {
    let mut response = http::Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = Version::HTTP_11;
    *response.headers_mut() = headers;
    response.into_parts().0
}

fn build_head(
    head: &Bytes,
    indices: &[Indices],
    status: StatusCode,
    version: u8,
    method: &Method,
) -> Result<ResponseHead, ProtocolError> {
    let tunnel = status == StatusCode::SWITCHING_PROTOCOLS
        || (*method == Method::CONNECT && status.is_success());
    // No body whatever the head says (RFC 9112 §6.3 rules 1 and 2): a
    // Content-Length here describes another answer, so it is not checked
    // (as hyper does not).
    let no_body = tunnel
        || *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut headers = HeaderMap::with_capacity(indices.len());
    let mut length: Option<u64> = None;
    let mut has_length = false;
    let mut transfer_coded = false;
    let mut only_chunked = true;
    let (mut says_close, mut says_keep_alive) = (false, false);
    for ix in indices {
        let (name, value) = field(head, ix)?;
        if name == header::TRANSFER_ENCODING {
            transfer_coded = true;
            let mut last_chunked = false;
            for t in value.as_bytes().split(|&b| b == b',') {
                last_chunked = t.trim_ascii().eq_ignore_ascii_case(b"chunked");
                only_chunked &= last_chunked;
            }
            only_chunked &= last_chunked;
            continue;
        }
        if name == header::CONTENT_LENGTH {
            has_length = true;
            if no_body && content_length(value.as_bytes()).is_none() {
                // Passed on, it would make the client's side refuse it.
                continue;
            }
            if !no_body {
                match content_length(value.as_bytes()) {
                    Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                    _ if transfer_coded => {}
                    _ => length = Some(u64::MAX),
                }
            }
        } else if name == header::CONNECTION {
            let mut names_others = false;
            for t in value.as_bytes().split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    says_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    says_keep_alive = true;
                } else {
                    names_others = true;
                }
            }
            if !names_others {
                // Hop-by-hop and naming nothing else to strip: not kept only
                // to be removed again (most backends send `keep-alive`).
                continue;
            }
        }
        headers.append(name, value);
    }
    let framing = if no_body {
        ResponseFraming::Empty
    } else if transfer_coded {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 rule 3).
        // Only chunked is decoded; a body in any other coding would reach
        // the client as coded bytes with nothing naming the coding.
        if !only_chunked {
            return Err(ProtocolError::TransferCoding);
        }
        headers.remove(header::CONTENT_LENGTH);
        ResponseFraming::Chunked
    } else {
        match length {
            Some(u64::MAX) => return Err(ProtocolError::ContentLength),
            Some(n) => ResponseFraming::Length(n),
            None => ResponseFraming::Close,
        }
    };
    // HTTP/1.0 closes unless it asks to stay open; a 1.0 answer with a
    // transfer coding, or one with both framings, is closed after use
    // whatever it asks (RFC 9112 §6.1, §6.3 rule 3): whoever built it may
    // disagree with us on where the next answer starts.
    let close = says_close
        || (version == 0 && !says_keep_alive)
        || (transfer_coded && (version == 0 || has_length));
    let keep_alive = !close && !tunnel && framing != ResponseFraming::Close;
    Ok(ResponseHead {
        parts: parts(status, headers),
        framing,
        keep_alive,
        tunnel,
    })
}
