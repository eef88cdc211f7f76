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

/// [`is_upgrade_request`] for a request head (the tests' form).
#[cfg(test)]
fn is_upgrade(parts: &Parts) -> bool {
    is_upgrade_head(parts.version, &parts.headers)
}

/// Whether the request asks to switch protocols (WebSocket and the like):
/// HTTP/1.1, `Connection: upgrade` and an `Upgrade` header.
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

/// The hop-by-hop headers removed whatever `Connection` names, one bit each
/// in the mask [`hop_by_hop_present`] returns.
const HOP_CONNECTION: u16 = 1 << 0;
const HOP_KEEP_ALIVE: u16 = 1 << 1;
const HOP_PROXY_CONNECTION: u16 = 1 << 2;
const HOP_PROXY_AUTHENTICATE: u16 = 1 << 3;
const HOP_PROXY_AUTHORIZATION: u16 = 1 << 4;
const HOP_TE: u16 = 1 << 5;
const HOP_TRAILER: u16 = 1 << 6;
const HOP_TRANSFER_ENCODING: u16 = 1 << 7;
const HOP_UPGRADE: u16 = 1 << 8;
/// Not a header: `Connection` came more than once.
const HOP_CONNECTION_REPEATED: u16 = 1 << 9;
/// The headers removed by name whatever `Connection` says.
const HOP_FIXED: u16 = HOP_KEEP_ALIVE
    | HOP_PROXY_CONNECTION
    | HOP_PROXY_AUTHENTICATE
    | HOP_PROXY_AUTHORIZATION
    | HOP_TE
    | HOP_TRAILER
    | HOP_TRANSFER_ENCODING;

/// Which of the fixed hop-by-hop headers are present, as `HOP_*` bits.
///
/// One walk over the (few) headers: comparing a `HeaderName` with a
/// standard constant is a tag comparison, while each `HeaderMap::remove`
/// hashes the name and probes, about 115 instructions even when the header
/// is absent. Removing only what is present took `strip_hop_by_hop` (request
/// and response together) from ~2,800 to ~400 instructions per proxied
/// request (callgrind).
fn hop_by_hop_present(headers: &HeaderMap) -> u16 {
    let mut mask = 0;
    // Every value, not just every name: a second `Connection` value is
    // noticed here, so a lone one is removed without looking it up first.
    for name in headers.iter().map(|(n, _)| n) {
        mask = with_hop_bit(mask, name);
    }
    mask
}

/// `mask` plus the bit of one more header (a name repeats once per value).
#[inline(always)]
fn with_hop_bit(mask: u16, name: &HeaderName) -> u16 {
    let bit = hop_bit(name);
    if bit & mask & HOP_CONNECTION != 0 {
        mask | HOP_CONNECTION_REPEATED
    } else {
        mask | bit
    }
}

/// The `HOP_*` bit of one header name, 0 for an end-to-end header.
/// Inlined into each walk: called per header, the call cost more than the
/// comparisons.
#[inline(always)]
fn hop_bit(name: &HeaderName) -> u16 {
    if *name == header::CONNECTION {
        HOP_CONNECTION
    } else if *name == header::TE {
        HOP_TE
    } else if *name == header::TRAILER {
        HOP_TRAILER
    } else if *name == header::TRANSFER_ENCODING {
        HOP_TRANSFER_ENCODING
    } else if *name == header::UPGRADE {
        HOP_UPGRADE
    } else if *name == header::PROXY_AUTHENTICATE {
        HOP_PROXY_AUTHENTICATE
    } else if *name == header::PROXY_AUTHORIZATION {
        HOP_PROXY_AUTHORIZATION
    } else if *name == KEEP_ALIVE {
        HOP_KEEP_ALIVE
    } else if *name == PROXY_CONNECTION {
        HOP_PROXY_CONNECTION
    } else {
        0
    }
}

/// Removes the headers one `Connection` value names, except the `keep-alive`
/// and `close` options (and `upgrade` when the upgrade is forwarded).
fn remove_connection_named(headers: &mut HeaderMap, v: &HeaderValue, upgrade: bool) {
    // A lone option, `Connection: keep-alive` from nginx and most backends,
    // names nothing: settled without validating, splitting and trimming.
    // The exact lowercase bytes first: a plain compare, where ignoring case
    // folds every byte.
    let b = v.as_bytes();
    if b == b"keep-alive"
        || b == b"close"
        || b.eq_ignore_ascii_case(b"keep-alive")
        || b.eq_ignore_ascii_case(b"close")
    {
        return;
    }
    let Ok(s) = v.to_str() else { return };
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

/// Removes hop-by-hop headers: `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding` and
/// `Upgrade`. With `upgrade`, `Upgrade` and `Connection: upgrade` stay, as
/// the upgrade is forwarded.
///
/// Only the headers found present are removed (see `hop_by_hop_present`):
/// a request with none, the usual case, costs one walk over its names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let present = hop_by_hop_present(headers);
    strip_present(headers, present, upgrade);
}

/// [`strip_hop_by_hop`] once the walk has found the `present` headers.
fn strip_present(headers: &mut HeaderMap, present: u16, upgrade: bool) {
    if present & HOP_CONNECTION != 0 {
        // A single value (the usual case) is taken out by `remove` itself and
        // needs no list. Not `entry`: it reserves room for an insert, and
        // would grow (reallocate) a map that hyper sized exactly.
        if present & HOP_CONNECTION_REPEATED == 0 {
            if let Some(first) = headers.remove(header::CONNECTION) {
                remove_connection_named(headers, &first, upgrade);
            }
        } else {
            let all: Vec<HeaderValue> = headers
                .get_all(header::CONNECTION)
                .iter()
                .cloned()
                .collect();
            headers.remove(header::CONNECTION);
            for v in &all {
                remove_connection_named(headers, v, upgrade);
            }
        }
    }
    // A header the walk did not see cannot have appeared since: removing it
    // again would only hash its name for nothing. Usually none was seen.
    if present & HOP_FIXED != 0 {
        remove_fixed(headers, present);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & HOP_UPGRADE != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// Removes the fixed hop-by-hop headers whose bits are set in `present`.
fn remove_fixed(headers: &mut HeaderMap, present: u16) {
    let fixed: [(u16, &HeaderName); 7] = [
        (HOP_KEEP_ALIVE, &KEEP_ALIVE),
        (HOP_PROXY_CONNECTION, &PROXY_CONNECTION),
        (HOP_PROXY_AUTHENTICATE, &header::PROXY_AUTHENTICATE),
        (HOP_PROXY_AUTHORIZATION, &header::PROXY_AUTHORIZATION),
        (HOP_TE, &header::TE),
        (HOP_TRAILER, &header::TRAILER),
        (HOP_TRANSFER_ENCODING, &header::TRANSFER_ENCODING),
    ];
    for (bit, name) in fixed {
        if present & bit != 0 {
            headers.remove(name);
        }
    }
}

/// A client connection's `X-Forwarded-For` entry, made once per connection.
pub fn forwarded_for_value(peer: std::net::SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).expect("an IP address is valid header text")
}

/// Prepares the request head for an HTTP/1.1 backend: hop-by-hop headers
/// removed, `X-Forwarded-For` appended, `-Proto` and `-Host` set, and an
/// HTTP/2 request's absolute-form target turned into origin-form + `Host`.
///
/// The walk that finds the hop-by-hop headers also picks up `Host`, which
/// saves a second hash lookup of it for `X-Forwarded-Host`.
pub fn prepare_request(parts: &mut Parts, forwarded_for: &HeaderValue, upgrade: bool) {
    let mut present = 0;
    let mut host: Option<HeaderValue> = None;
    for (name, value) in parts.headers.iter() {
        if *name == header::HOST {
            // `get` would answer with the first value too.
            if host.is_none() {
                host = Some(value.clone());
            }
        } else {
            present = with_hop_bit(present, name);
        }
    }
    strip_present(&mut parts.headers, present, upgrade);
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
        // `Host` may just have been added from the target.
        host = h.get(header::HOST).cloned();
    } else if present & HOP_CONNECTION != 0 {
        // `Connection` may have named `Host` (and so removed it).
        host = h.get(header::HOST).cloned();
    }
    if let Some(host) = host {
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
    // The last ':' by a byte loop from the end (the port is a few bytes):
    // `rsplit_once` went through the generic pattern searcher (~60
    // instructions more per request, callgrind).
    Some(match raw.as_bytes().iter().rposition(|&b| b == b':') {
        Some(i) => &raw[..i],
        None => raw,
    })
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

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut n: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_stripped() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "Keep-Alive",
            "Proxy-Connection",
        ] {
            let mut h = parts(&[(name, "x"), ("x-app", "kept"), ("host", "h")]).headers;
            strip_hop_by_hop(&mut h, false);
            assert_eq!(names(&h), ["host", "x-app"], "{name} kept");
        }
    }

    #[test]
    fn nothing_hop_by_hop_is_untouched() {
        let mut h = parts(&[
            ("host", "h"),
            ("cookie", "a=1"),
            ("x-app", "1"),
            ("x-app", "2"),
            ("proxy-other", "kept: not a hop-by-hop name"),
        ])
        .headers;
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        // An upgrade still gets its `Connection: upgrade`.
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h.len(), before.len() + 1);
    }

    #[test]
    fn every_connection_header_names_headers() {
        let mut h = parts(&[
            ("connection", "close"),
            ("connection", "X-One , x-two"),
            ("connection", "keep-alive, upgrade"),
            ("x-one", "1"),
            ("x-two", "2"),
            ("x-three", "3"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
        ])
        .headers;
        let mut upgraded = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["x-three"]);
        strip_hop_by_hop(&mut upgraded, true);
        assert_eq!(names(&upgraded), ["connection", "upgrade", "x-three"]);
        assert_eq!(upgraded["connection"], "upgrade");
        assert_eq!(upgraded["upgrade"], "websocket");
    }

    #[test]
    fn keep_alive_connection_only_drops_connection() {
        // nginx's usual answer: the connection option names no header.
        let mut h = parts(&[
            ("connection", "keep-alive"),
            ("content-length", "6"),
            ("server", "nginx"),
        ])
        .headers;
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["content-length", "server"]);
    }

    #[test]
    fn forwarded_host_follows_the_host_the_backend_gets() {
        // The first Host, as `get` would give.
        let mut p = parts(&[("host", "a.example"), ("host", "b.example")]);
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false);
        assert_eq!(p.headers["x-forwarded-host"], "a.example");
        // A Host that `Connection` names is gone, and so is X-Forwarded-Host.
        let mut p = parts(&[("connection", "host"), ("host", "a.example")]);
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false);
        assert!(!p.headers.contains_key("host"));
        assert!(!p.headers.contains_key("x-forwarded-host"));
        // No Host at all.
        let mut p = parts(&[]);
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false);
        assert!(!p.headers.contains_key("x-forwarded-host"));
        // HTTP/2: the Host made from the absolute-form target.
        let mut p = http::Request::builder()
            .version(Version::HTTP_2)
            .uri("https://h2.example:8443/p?q")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false);
        assert_eq!(p.headers["host"], "h2.example:8443");
        assert_eq!(p.headers["x-forwarded-host"], "h2.example:8443");
        assert_eq!(p.uri, "/p?q");
        assert_eq!(p.version, Version::HTTP_11);
    }

    #[test]
    fn request_host_strips_the_port() {
        for (host, want) in [
            ("example.com", Some("example.com")),
            ("example.com:8080", Some("example.com")),
            ("127.0.0.1:8098", Some("127.0.0.1")),
            ("[::1]:80", Some("::1")),
            ("[::1]", Some("::1")),
            ("a:b:c", Some("a:b")),
            (":80", Some("")),
            ("", Some("")),
            ("h\u{e9}:1", None),
        ] {
            let mut p = parts(&[]);
            p.headers.insert(
                header::HOST,
                HeaderValue::from_bytes(host.as_bytes()).unwrap(),
            );
            assert_eq!(request_host(&p), want, "{host}");
        }
        let p = http::Request::builder()
            .uri("http://from-uri.example:81/")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(request_host(&p), Some("from-uri.example"));
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
