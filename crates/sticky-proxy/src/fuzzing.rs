//! Entry points for fuzz targets: whole backend answers and request heads
//! processed from bytes, in memory, with no I/O. Not a stable API.

use bytes::BytesMut;
use http::{HeaderMap, Method};

use crate::codec::chunked::{Chunked, Decoded};
use crate::codec::request::{encode_request_head, RequestFraming};
use crate::codec::response::{parse_response_head, Parsed, ResponseFraming};
use crate::error::ProtocolError;

/// What [`parse_response`] made of a backend's bytes.
#[derive(Debug)]
pub struct ParsedResponse {
    /// The final head's status.
    pub status: http::StatusCode,
    /// The final head's fields.
    pub headers: HeaderMap,
    /// The decoded body (for a close-delimited body: every byte left).
    pub body: Vec<u8>,
    /// The trailer fields, if any.
    pub trailers: Option<HeaderMap>,
    /// Whether the connection could carry another request.
    pub reusable: bool,
}

/// Parses one answer (interim heads skipped) to a request with `method`,
/// and decodes its body from the same bytes, as if the backend then closed
/// the connection. `Ok(None)`: the bytes end before the answer does.
pub fn parse_response(
    bytes: &[u8],
    method: &Method,
    upgrade: bool,
) -> Result<Option<ParsedResponse>, ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    let head = loop {
        match parse_response_head(&mut buf, method, upgrade)? {
            Some(Parsed::Interim(_)) => continue,
            Some(Parsed::Final(h)) => break h,
            None => return Ok(None),
        }
    };
    let mut body = Vec::new();
    let mut trailers = None;
    let complete = match head.framing {
        _ if head.tunnel => true,
        ResponseFraming::Empty => true,
        ResponseFraming::Length(n) => {
            if (buf.len() as u64) < n {
                return Ok(None);
            }
            body.extend_from_slice(&buf.split_to(n as usize));
            true
        }
        ResponseFraming::Close => {
            body.extend_from_slice(&buf.split());
            false
        }
        ResponseFraming::Chunked => {
            let mut dec = Chunked::new();
            loop {
                match dec.decode(&mut buf)? {
                    Decoded::Data(d) => body.extend_from_slice(&d),
                    Decoded::End(t) => {
                        trailers = t;
                        break true;
                    }
                    Decoded::NeedMore => return Ok(None),
                }
            }
        }
    };
    Ok(Some(ParsedResponse {
        status: head.parts.status,
        headers: head.parts.headers,
        body,
        trailers,
        reusable: complete && head.keep_alive && buf.is_empty(),
    }))
}

/// Decodes a chunked body from `bytes` fed in pieces of `step` bytes (at
/// least 1): the decoder must give the same answer however the bytes are
/// split. Returns the body and whether the decoder reached the end.
pub fn decode_chunked(bytes: &[u8], step: usize) -> Result<(Vec<u8>, bool), ProtocolError> {
    let mut dec = Chunked::new();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::End(_) => return Ok((body, true)),
                Decoded::NeedMore => break,
            }
        }
    }
    Ok((body, false))
}

/// Frames and encodes a request head from an arbitrary header map, as the
/// client would send it; `Err` when the client refuses it. The fuzz
/// target checks the bytes: one framing header at most, one `Host`.
pub fn encode_request(
    method: &Method,
    uri: &http::Uri,
    version: http::Version,
    headers: &HeaderMap,
    body_ended: bool,
) -> Result<Vec<u8>, crate::RequestError> {
    // The two ways of choosing the framing must agree.
    let framing = RequestFraming::of(headers, body_ended)?;
    let mut out = Vec::new();
    let encoded = encode_request_head(
        &mut out,
        method,
        uri,
        version,
        headers,
        body_ended,
        "backend.test",
    )?;
    assert_eq!(framing, encoded.framing, "framing chosen two ways");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_agree_with_the_client() {
        let wire =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-a: 1\r\n\r\n";
        let r = parse_response(wire, &Method::GET, false).unwrap().unwrap();
        assert_eq!(
            (r.status.as_u16(), &r.body[..], r.reusable),
            (200, &b"ok"[..], true)
        );
        assert_eq!(r.trailers.unwrap()["x-a"], "1");
        let body = &wire[wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        for step in 1..body.len() {
            assert_eq!(decode_chunked(body, step).unwrap(), (b"ok".to_vec(), true));
        }
        let mut h = HeaderMap::new();
        h.insert("content-length", "3".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        let uri = http::Uri::from_static("/");
        let head = encode_request(&Method::POST, &uri, http::Version::HTTP_11, &h, false).unwrap();
        let text = String::from_utf8(head).unwrap();
        assert_eq!(
            text,
            "POST / HTTP/1.1\r\nhost: backend.test\r\ncontent-length: 3\r\n\r\n"
        );
    }
}
