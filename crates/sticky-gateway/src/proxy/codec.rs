//! HTTP/1.1 on the backend side, as plain functions over buffers: the
//! request head written, the response head parsed (with `httparse`, as hyper
//! does), and the framing of both bodies (RFC 9112 §6).
//!
//! The gateway speaks to its backends itself rather than through hyper's
//! client: hyper's `SendRequest` hands each request to a separate connection
//! task over channels, and the response body back over another, which cost
//! more proxy CPU per request than everything the gateway does on top
//! (BENCHMARKS.md). Here the request's own task writes the head, reads the
//! answer and streams the body, with no task or channel in between.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// The largest response head accepted from a backend.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields accepted in a response head (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// Why a backend's answer could not be used.
#[derive(Debug)]
pub enum ProtocolError {
    /// The head is not HTTP/1.x.
    Parse(httparse::Error),
    /// The head is larger than [`MAX_HEAD`].
    HeadTooLarge,
    /// A header name or value that `http` refuses.
    Header,
    /// `Content-Length` is not one number.
    ContentLength,
    /// A chunk-size line is malformed.
    ChunkSize,
    /// A chunk is not followed by CRLF.
    ChunkEnd,
    /// `101 Switching Protocols` to a request that did not ask for it.
    UnexpectedUpgrade,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::Parse(e) => write!(f, "malformed response head: {e}"),
            ProtocolError::HeadTooLarge => write!(f, "response head over {MAX_HEAD} bytes"),
            ProtocolError::Header => f.write_str("invalid response header"),
            ProtocolError::ContentLength => f.write_str("invalid Content-Length"),
            ProtocolError::ChunkSize => f.write_str("invalid chunk size"),
            ProtocolError::ChunkEnd => f.write_str("chunk not terminated by CRLF"),
            ProtocolError::UnexpectedUpgrade => f.write_str("101 without an upgrade request"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<ProtocolError> for std::io::Error {
    fn from(e: ProtocolError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// How a request body is sent to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    Empty,
    /// The client's `Content-Length`, forwarded as is.
    Length(u64),
    /// Chunked (the client sent chunked, or HTTP/2 without a length).
    Chunked,
}

impl RequestFraming {
    /// The framing of a request whose hop-by-hop headers are already removed.
    /// `body_ended` is whether the body is known to be empty.
    pub fn of(headers: &HeaderMap, body_ended: bool) -> Self {
        match headers.get(header::CONTENT_LENGTH) {
            // The server side (hyper) has already checked the number, and
            // accepts a list of equal ones ("5, 5").
            Some(v) => match content_length(v.as_bytes()) {
                Some(n) => RequestFraming::Length(n),
                None => RequestFraming::Chunked,
            },
            None if body_ended => RequestFraming::Empty,
            None => RequestFraming::Chunked,
        }
    }
}

/// A `Content-Length` value: digits only (no sign), or a comma-separated
/// list of equal numbers, as hyper accepts on the client side.
fn content_length(raw: &[u8]) -> Option<u64> {
    let mut n = None;
    for item in raw.split(|&b| b == b',') {
        let digits = item.trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
        if n.is_some_and(|n| n != v) {
            return None;
        }
        n = Some(v);
    }
    n
}

/// Writes a request head into `out` (cleared first). The target is the
/// URI's origin form; `host` is used only when the request has no `Host`.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    framing: RequestFraming,
    host: &str,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    match uri.path_and_query() {
        Some(pq) => out.extend_from_slice(pq.as_str().as_bytes()),
        None => match uri.authority() {
            // CONNECT's authority form.
            Some(a) if method == Method::CONNECT => out.extend_from_slice(a.as_str().as_bytes()),
            _ => out.push(b'/'),
        },
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == RequestFraming::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk of a chunked body to `out`.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    use std::io::Write;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and the trailer section to `out`.
pub fn encode_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

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
    /// Status, version and headers (`Transfer-Encoding` removed: the
    /// gateway re-frames the body for its client).
    pub parts: http::response::Parts,
    /// How the body is delimited.
    pub framing: ResponseFraming,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
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

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete,
/// read more. The head is taken out of `buf`; the body's first bytes stay.
/// Interim (1xx) answers other than `101` are consumed and skipped.
pub fn parse_response_head(
    buf: &mut BytesMut,
    method: &Method,
    upgrade: bool,
) -> Result<Option<ResponseHead>, ProtocolError> {
    loop {
        // Left uninitialised (httparse fills what it uses): clearing the
        // slots on every answer cost more than parsing the head.
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
        let head = buf.split_to(len).freeze();
        let status = StatusCode::from_u16(code)
            .map_err(|_| ProtocolError::Parse(httparse::Error::Status))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // 100 Continue, 103 Early Hints: the final answer follows.
            continue;
        }
        if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
            return Err(ProtocolError::UnexpectedUpgrade);
        }
        return build_head(&head, &indices[..count], status, version, method).map(Some);
    }
}

fn build_head(
    head: &Bytes,
    indices: &[Indices],
    status: StatusCode,
    version: u8,
    method: &Method,
) -> Result<ResponseHead, ProtocolError> {
    let mut headers = HeaderMap::with_capacity(indices.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_coded = false;
    let (mut says_close, mut says_keep_alive) = (false, false);
    for ix in indices {
        let (name, value) = (
            ix.name.0 as usize..ix.name.1 as usize,
            ix.value.0 as usize..ix.value.1 as usize,
        );
        let name = HeaderName::from_bytes(&head[name]).map_err(|_| ProtocolError::Header)?;
        let raw = &head[value.clone()];
        if name == header::TRANSFER_ENCODING {
            // Only the last coding decides; anything but chunked reads to close.
            transfer_coded = true;
            chunked = raw
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            continue;
        }
        if name == header::CONTENT_LENGTH {
            let n = content_length(raw).ok_or(ProtocolError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(ProtocolError::ContentLength);
            }
            length = Some(n);
        } else if name == header::CONNECTION {
            let mut names_others = false;
            for t in raw.split(|&b| b == b',') {
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
        let value =
            HeaderValue::from_maybe_shared(head.slice(value)).map_err(|_| ProtocolError::Header)?;
        headers.append(name, value);
    }
    let no_body = method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::SWITCHING_PROTOCOLS;
    let framing = if no_body {
        ResponseFraming::Empty
    } else if transfer_coded {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
        headers.remove(header::CONTENT_LENGTH);
        if chunked {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::Close
        }
    } else {
        match length {
            Some(n) => ResponseFraming::Length(n),
            None => ResponseFraming::Close,
        }
    };
    // HTTP/1.0 closes unless it asks to stay open.
    let close = says_close || (version == 0 && !says_keep_alive);
    let keep_alive = !close && framing != ResponseFraming::Close;
    let mut response = http::Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = Version::HTTP_11;
    *response.headers_mut() = headers;
    Ok(ResponseHead {
        parts: response.into_parts().0,
        framing,
        keep_alive,
    })
}

/// Where a chunked body's decoder stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk, in the trailer section.
    Trailers,
    /// The body is complete.
    Done,
}

/// What the chunked decoder made of the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields (possibly none): the body is complete.
    End(Option<HeaderMap>),
    /// Read more.
    NeedMore,
}

impl Chunked {
    /// Decodes as much of `buf` as forms the next piece of the body.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        loop {
            match *self {
                Chunked::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        let _ = buf.split_to(used);
                        *self = Chunked::Trailers;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        let _ = buf.split_to(used);
                        *self = Chunked::Data(size);
                    }
                    Ok(httparse::Status::Partial) if buf.len() > 1024 => {
                        return Err(ProtocolError::ChunkSize)
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                    Err(_) => return Err(ProtocolError::ChunkSize),
                },
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(n).freeze();
                    *self = if left == n as u64 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - n as u64)
                    };
                    return Ok(Decoded::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ProtocolError::ChunkEnd);
                    }
                    let _ = buf.split_to(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    let mut slots = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(buf, &mut slots) {
                        Ok(httparse::Status::Complete((used, fields))) => {
                            let trailers = if fields.is_empty() {
                                None
                            } else {
                                let mut map = HeaderMap::with_capacity(fields.len());
                                for f in fields.iter() {
                                    if let (Ok(n), Ok(v)) = (
                                        HeaderName::from_bytes(f.name.as_bytes()),
                                        HeaderValue::from_bytes(f.value),
                                    ) {
                                        map.append(n, v);
                                    }
                                }
                                Some(map)
                            };
                            let _ = buf.split_to(used);
                            *self = Chunked::Done;
                            return Ok(Decoded::End(trailers));
                        }
                        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                            return Err(ProtocolError::HeadTooLarge)
                        }
                        Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                        Err(e) => return Err(ProtocolError::Parse(e)),
                    }
                }
                Chunked::Done => return Ok(Decoded::End(None)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, method: Method) -> (Result<Option<ResponseHead>, ProtocolError>, BytesMut) {
        let mut buf = BytesMut::from(raw.as_bytes());
        let r = parse_response_head(&mut buf, &method, false);
        (r, buf)
    }

    #[test]
    fn request_head_is_origin_form_with_host() {
        let req = http::Request::post("http://example.com/a?b=1")
            .header("x-app", "1")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            req.method(),
            req.uri(),
            req.headers(),
            RequestFraming::Chunked,
            "10.0.0.1:80",
        );
        assert_eq!(
            out,
            b"POST /a?b=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-app: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn request_framing() {
        let mut h = HeaderMap::new();
        assert_eq!(RequestFraming::of(&h, true), RequestFraming::Empty);
        assert_eq!(RequestFraming::of(&h, false), RequestFraming::Chunked);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(RequestFraming::of(&h, false), RequestFraming::Length(12));
        // A list of equal lengths (hyper lets it through) is one length, not
        // a reason to add chunked framing beside it.
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5, 5"));
        assert_eq!(RequestFraming::of(&h, false), RequestFraming::Length(5));
    }

    #[test]
    fn chunks_encode() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello, world!!!!!");
        encode_chunk(&mut out, b"");
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("7"));
        encode_last_chunk(&mut out, Some(&t));
        assert_eq!(out, b"11\r\nhello, world!!!!!\r\n0\r\nx-sum: 7\r\n\r\n");
    }

    #[test]
    fn response_head_with_length_and_body_left_in_buffer() {
        let (r, buf) = head(
            "HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
            Method::GET,
        );
        let h = r.unwrap().unwrap();
        assert_eq!(h.parts.status, StatusCode::OK);
        assert_eq!(h.framing, ResponseFraming::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.parts.headers["server"], "t");
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn partial_head_asks_for_more_and_leaves_the_buffer() {
        let (r, buf) = head("HTTP/1.1 200 OK\r\nContent-Le", Method::GET);
        assert!(r.unwrap().is_none());
        assert_eq!(buf.len(), 27);
    }

    #[test]
    fn framing_rules() {
        let f = |raw: &str, m: Method| head(raw, m).0.unwrap().unwrap();
        let h = f(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, ResponseFraming::Chunked);
        assert!(!h.parts.headers.contains_key("content-length"));
        assert!(!h.parts.headers.contains_key("transfer-encoding"));
        let h = f(
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, ResponseFraming::Length(3));
        let h = f("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!(h.framing, ResponseFraming::Close);
        assert!(!h.keep_alive);
        let h = f("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::HEAD);
        assert_eq!(h.framing, ResponseFraming::Empty);
        assert_eq!(h.parts.headers["content-length"], "9");
        let h = f("HTTP/1.1 304 Not Modified\r\n\r\n", Method::GET);
        assert_eq!(h.framing, ResponseFraming::Empty);
        assert!(h.keep_alive);
        let h = f(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!h.keep_alive);
        let h = f("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET);
        assert!(!h.keep_alive);
        let h = f(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(h.keep_alive);
        assert!(
            !h.parts.headers.contains_key("connection"),
            "nothing left to strip"
        );
        let h = f(
            "HTTP/1.1 200 OK\r\nConnection: x-trace\r\nX-Trace: 1\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(h.keep_alive);
        assert_eq!(
            h.parts.headers["connection"], "x-trace",
            "kept for the hop-by-hop strip"
        );
    }

    #[test]
    fn interim_answers_are_skipped() {
        let (r, buf) = head(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            Method::POST,
        );
        assert_eq!(r.unwrap().unwrap().parts.status, StatusCode::CREATED);
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_heads_are_errors() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "SPAM\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(head(raw, Method::GET).0.is_err(), "{raw:?}");
        }
        let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
        assert!(matches!(
            head(&big, Method::GET).0,
            Err(ProtocolError::HeadTooLarge)
        ));
    }

    #[test]
    fn chunked_decodes_across_reads_with_trailers() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 11\r\n\r\nNEXT";
        // Feed the bytes in every possible split to prove partial input is safe.
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut dec = Chunked::Size;
            let mut body = Vec::new();
            let mut fed = false;
            let trailers = loop {
                match dec.decode(&mut buf).unwrap() {
                    Decoded::Data(d) => body.extend_from_slice(&d),
                    Decoded::End(t) => break t,
                    Decoded::NeedMore => {
                        assert!(!fed, "stalled with all bytes at cut {cut}");
                        buf.extend_from_slice(&wire[cut..]);
                        fed = true;
                    }
                }
            };
            if !fed {
                buf.extend_from_slice(&wire[cut..]);
            }
            assert_eq!(body, b"hello world");
            assert_eq!(trailers.unwrap()["x-sum"], "11");
            assert_eq!(&buf[..], b"NEXT", "what follows the body stays, cut {cut}");
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        assert!(Chunked::Size.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"1\r\naXX"[..]);
        let mut d = Chunked::Size;
        assert!(matches!(d.decode(&mut buf), Ok(Decoded::Data(_))));
        assert!(d.decode(&mut buf).is_err());
    }
}
