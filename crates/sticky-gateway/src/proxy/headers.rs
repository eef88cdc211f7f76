//! Header rewriting on the way through: hop-by-hop headers removed (RFC 9110
//! §7.6.1), forwarding headers set, and absolute-form (HTTP/2) targets turned
//! into origin-form with a `Host` for the HTTP/1.1 backend.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Uri, Version};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether the request asks to switch protocols (WebSocket and the like):
/// HTTP/1.1, `Connection: upgrade` and an `Upgrade` header.
pub fn is_upgrade(parts: &Parts) -> bool {
    is_upgrade_head(parts.version, &parts.headers)
}

/// [`is_upgrade`] for a whole request.
pub fn is_upgrade_request<B>(req: &http::Request<B>) -> bool {
    is_upgrade_head(req.version(), req.headers())
}

fn is_upgrade_head(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// Removes hop-by-hop headers: `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding` and
/// `Upgrade`. With `upgrade`, `Upgrade` and `Connection: upgrade` stay, as
/// the upgrade is forwarded.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Cloning a header value is a reference-count bump: the headers that
    // `Connection` names are removed without allocating a list of them.
    let named: Option<HeaderValue> = headers.get(header::CONNECTION).cloned();
    if let Some(first) = named {
        let extra: Vec<HeaderValue> = headers
            .get_all(header::CONNECTION)
            .iter()
            .skip(1)
            .cloned()
            .collect();
        headers.remove(header::CONNECTION);
        for v in std::iter::once(&first).chain(extra.iter()) {
            let Ok(s) = v.to_str() else { continue };
            for t in s.split(',').map(str::trim) {
                if t.eq_ignore_ascii_case("keep-alive") || t.eq_ignore_ascii_case("close") {
                    continue;
                }
                if upgrade && t.eq_ignore_ascii_case("upgrade") {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                    headers.remove(n);
                }
            }
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::PROXY_AUTHENTICATE);
    headers.remove(header::PROXY_AUTHORIZATION);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// A client connection's `X-Forwarded-For` entry, made once per connection.
pub fn forwarded_for_value(peer: std::net::SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).expect("an IP address is valid header text")
}

/// Prepares the request head for an HTTP/1.1 backend: hop-by-hop headers
/// removed, `X-Forwarded-For` appended, `-Proto` and `-Host` set, and an
/// HTTP/2 request's absolute-form target turned into origin-form + `Host`.
pub fn prepare_request(parts: &mut Parts, forwarded_for: &HeaderValue, upgrade: bool) {
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let h = &mut parts.headers;
    match h.entry(&X_FORWARDED_FOR) {
        header::Entry::Vacant(e) => {
            e.insert(forwarded_for.clone());
        }
        header::Entry::Occupied(mut e) => {
            // Several headers are one list: join them, then append the peer.
            let mut joined: Vec<u8> = Vec::with_capacity(64);
            for v in e.iter() {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v.as_bytes());
            }
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(forwarded_for.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                e.insert(v);
            }
        }
    }
    h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if parts.version != Version::HTTP_11 && parts.version != Version::HTTP_10 {
        if let Some(auth) = parts.uri.authority() {
            if !h.contains_key(header::HOST) {
                if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
                    h.insert(header::HOST, v);
                }
            }
        }
        if parts.uri.scheme().is_some() {
            let pq = parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
            parts.uri = Uri::from(pq);
        }
        parts.version = Version::HTTP_11;
    }
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert(&X_FORWARDED_HOST, host);
    }
}

/// The request's host, without port, for route matching.
pub fn request_host(parts: &Parts) -> Option<&str> {
    let raw = match parts.headers.get(header::HOST) {
        Some(v) => v.to_str().ok()?,
        None => parts.uri.authority()?.as_str(),
    };
    // Strip a port, minding IPv6 literals ("[::1]:80").
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split(']').next();
    }
    Some(raw.rsplit_once(':').map_or(raw, |(h, _)| h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut p = parts(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("x-app", "kept"),
            ("host", "example.com:8080"),
        ]);
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "te",
            "transfer-encoding",
            "proxy-authorization",
        ] {
            assert!(!p.headers.contains_key(gone), "{gone} kept");
        }
        assert_eq!(p.headers["x-app"], "kept");
        assert_eq!(p.headers["x-forwarded-for"], "203.0.113.9");
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        assert_eq!(p.headers["x-forwarded-host"], "example.com:8080");
        assert_eq!(request_host(&p), Some("example.com"));
    }

    #[test]
    fn forwarded_for_appends_and_upgrade_kept() {
        let mut p = parts(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(is_upgrade(&p));
        prepare_request(&mut p, &HeaderValue::from_static("3.3.3.3"), true);
        assert_eq!(p.headers["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 3.3.3.3");
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["connection"], "upgrade");
    }
}
