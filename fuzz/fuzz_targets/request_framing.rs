//! Request framing from arbitrary header maps: whatever head and trailers
//! a client's request arrives with (hyper has parsed it, so names and values
//! are valid `http` types, but anything else goes: duplicates, hop-by-hop
//! fields, odd Content-Length lists, any version and target), the request
//! the gateway writes to its backend (its `prepare_request`, then
//! `sticky_proxy`'s `RequestFraming`, `encode_request_head` and chunk
//! encoders; or the client alone, as other fronts use it) must read back, by a strict
//! RFC 9112 reader, as exactly one message: one head, one framing (never
//! Content-Length beside Transfer-Encoding), the body the gateway meant to
//! send, and nothing after it that a backend would take for a second request.
//!
//! Input: byte 0: method (low 3 bits), version (next 2), body ended (bit 5),
//! upgrade (bit 6), client alone (bit 7); then `\n`-separated lines: the request target, then
//! `name:value` header fields; a line `--` switches to trailer fields.
#![no_main]

mod known;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use sticky_gateway::fuzzing::prepare_request;
use sticky_proxy::codec::request::{
    encode_chunk, encode_last_chunk, encode_request_head, RequestFraming,
};

const BODY: &[u8] = b"hello world";

fn method_of(b: u8) -> Method {
    match b & 7 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::HEAD,
        3 => Method::CONNECT,
        4 => Method::PUT,
        5 => Method::OPTIONS,
        6 => Method::from_bytes(b"PATCH").unwrap(),
        _ => Method::TRACE,
    }
}

fn version_of(b: u8) -> Version {
    match (b >> 3) & 3 {
        0 => Version::HTTP_10,
        1 | 3 => Version::HTTP_11,
        _ => Version::HTTP_2,
    }
}

fn field(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = HeaderName::from_bytes(&line[..colon]).ok()?;
    let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
    Some((name, value))
}

/// A message as a strict HTTP/1.1 server reads it: the head, the body's
/// framing decided per RFC 9112 §6.3, and what is left after it.
struct Read {
    method: String,
    target: String,
    fields: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
    rest: usize,
}

fn read_message(wire: &[u8]) -> Result<Read, String> {
    // As many slots as the message has lines: the reader must take any
    // field count the writer sends (the client alone forwards what its
    // caller built, and an input can hold hundreds of fields).
    let lines = wire.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut slots = vec![httparse::EMPTY_HEADER; lines];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(wire) {
        Ok(httparse::Status::Complete(len)) => len,
        other => return Err(format!("head does not parse: {other:?}")),
    };
    let fields: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let values = |n: &str| -> Vec<&[u8]> {
        fields
            .iter()
            .filter(|(f, _)| f == n)
            .map(|(_, v)| &v[..])
            .collect()
    };
    let te = values("transfer-encoding");
    let cl = values("content-length");
    if !te.is_empty() && !cl.is_empty() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    let mut at = len;
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    if !te.is_empty() {
        if te.len() != 1 || !te[0].eq_ignore_ascii_case(b"chunked") {
            return Err(format!("Transfer-Encoding other than one chunked: {te:?}"));
        }
        loop {
            let (used, size) = match httparse::parse_chunk_size(&wire[at..]) {
                Ok(httparse::Status::Complete(x)) => x,
                other => return Err(format!("bad chunk size at {at}: {other:?}")),
            };
            at += used;
            if size == 0 {
                let mut slots = vec![httparse::EMPTY_HEADER; lines];
                match httparse::parse_headers(&wire[at..], &mut slots) {
                    Ok(httparse::Status::Complete((used, fs))) => {
                        at += used;
                        trailers = fs
                            .iter()
                            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                            .collect();
                    }
                    other => return Err(format!("bad trailers: {other:?}")),
                }
                break;
            }
            let size = size as usize;
            if wire.len() < at + size + 2 || &wire[at + size..at + size + 2] != b"\r\n" {
                return Err("chunk data not followed by CRLF".into());
            }
            body.extend_from_slice(&wire[at..at + size]);
            at += size + 2;
        }
    } else if !cl.is_empty() {
        let mut n: Option<usize> = None;
        for v in &cl {
            for t in v.split(|&b| b == b',') {
                let t = std::str::from_utf8(t.trim_ascii()).map_err(|e| e.to_string())?;
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("Content-Length {t:?}"));
                }
                let v: usize = t.parse().map_err(|e| format!("{e}"))?;
                if n.is_some_and(|n| n != v) {
                    return Err("differing Content-Lengths".into());
                }
                n = Some(v);
            }
        }
        let n = n.unwrap();
        if wire.len() < at + n {
            return Err(format!("body shorter than Content-Length {n}"));
        }
        body.extend_from_slice(&wire[at..at + n]);
        at += n;
    }
    Ok(Read {
        method: req.method.unwrap().to_owned(),
        target: req.path.unwrap().to_owned(),
        fields,
        body,
        trailers,
        rest: wire.len() - at,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let method = method_of(flags);
    let body_ended = flags & 0x20 != 0;
    let upgrade = flags & 0x40 != 0;
    // The gateway's path (its `prepare_request`, then the client), or the
    // client alone, as the axum front and the health prober call it.
    let through_gateway = flags & 0x80 == 0;
    let mut lines = rest.split(|&b| b == b'\n');
    let uri = lines
        .next()
        .and_then(|t| Uri::try_from(t).ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    let mut trailers = HeaderMap::new();
    let mut in_trailers = false;
    for line in lines {
        if line == b"--" {
            in_trailers = true;
        } else if let Some((n, v)) = field(line) {
            if in_trailers {
                trailers.append(n, v);
            } else {
                headers.append(n, v);
            }
        }
    }
    let version = version_of(flags);
    let mut req = http::Request::new(());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    let (mut parts, ()) = req.into_parts();
    if through_gateway
        && prepare_request(&mut parts, &HeaderValue::from_static("127.0.0.1"), upgrade).is_err()
    {
        // Refused (501 or 400) before anything is sent: safe.
        return;
    }
    let mut wire = Vec::new();
    let encoded = encode_request_head(
        &mut wire,
        &parts.method,
        &parts.uri,
        parts.version,
        &parts.headers,
        body_ended,
        "10.0.0.1:80",
    );
    let Ok(encoded) = encoded else {
        // Refused before anything is sent: safe.
        return;
    };
    let framing = encoded.framing;
    // The head writer picks the framing in its own walk over the fields;
    // it must pick what `RequestFraming::of` says.
    assert_eq!(
        RequestFraming::of(&parts.headers, body_ended).ok(),
        Some(framing),
        "framing chosen while writing differs from RequestFraming::of"
    );
    let mut sent = Vec::new();
    match framing {
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => {
            // The client sends exactly the declared length (a body that
            // yields more or less ends the exchange with an error).
            if n > 1 << 16 {
                return;
            }
            sent = vec![b'x'; n as usize];
            wire.extend_from_slice(&sent);
        }
        RequestFraming::Chunked => {
            let (a, b) = BODY.split_at(5);
            encode_chunk(&mut wire, a);
            encode_chunk(&mut wire, &[]);
            encode_chunk(&mut wire, b);
            encode_last_chunk(&mut wire, (!trailers.is_empty()).then_some(&trailers));
            sent = BODY.to_vec();
        }
    }
    let read = match read_message(&wire) {
        Ok(r) => r,
        Err(e) => panic!(
            "the backend cannot read the request ({e}):\n{}",
            String::from_utf8_lossy(&wire)
        ),
    };
    assert_eq!(read.rest, 0, "bytes after the request: a second request");
    assert_eq!(read.method, parts.method.as_str());
    assert_eq!(read.body, sent, "body as sent");
    if parts.method != Method::CONNECT && read.target != "*" {
        assert!(read.target.starts_with('/'), "origin-form target");
    }
    let hosts = read.fields.iter().filter(|(n, _)| n == "host").count();
    assert_eq!(hosts, 1, "exactly one Host field (issue 8, defect 9)");
    if through_gateway {
        for (n, _) in &read.fields {
            assert!(
                !matches!(
                    n.as_str(),
                    "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer"
                ) || upgrade,
                "hop-by-hop field {n} forwarded"
            );
        }
    }
    if version == Version::HTTP_2 && known::check(5) {
        // Issue 8 defect 5 (RFC 9113 §8.2.3): HTTP/2 cookie crumbs are
        // joined into one field for an HTTP/1.1 backend.
        let cookies = read.fields.iter().filter(|(n, _)| n == "cookie").count();
        assert!(
            cookies <= 1,
            "{cookies} Cookie fields sent to an HTTP/1.1 backend"
        );
    }
    if known::check(8) {
        // Issue 8 defect 8 (RFC 9110 §6.5.1): trailers carry no framing,
        // routing, authentication or hop-by-hop fields.
        for (n, _) in &read.trailers {
            assert!(
                !matches!(
                    n.as_str(),
                    "content-length"
                        | "transfer-encoding"
                        | "host"
                        | "trailer"
                        | "connection"
                        | "te"
                        | "authorization"
                        | "proxy-authorization"
                ),
                "trailer field {n} forwarded"
            );
        }
    }
});
