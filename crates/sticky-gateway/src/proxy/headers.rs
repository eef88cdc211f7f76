//! Header rewriting on the way through: hop-by-hop headers removed (RFC 9110
//! §7.6.1, the rules are `sticky-proxy`'s), forwarding headers set, and
//! HTTP/2 requests made HTTP/1.1: absolute-form targets turned into
//! origin-form with `:authority` as `Host` (RFC 9113 §8.3.1), cookie crumbs
//! joined into one `Cookie` (RFC 9113 §8.2.3).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Uri, Version};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub use sticky_proxy::hop::is_upgrade_request;
#[cfg(test)]
use sticky_proxy::hop::{is_upgrade, strip_hop_by_hop};
use sticky_proxy::{HopByHop, RequestError};

/// A client connection's `X-Forwarded-For` entry, made once per connection.
pub fn forwarded_for_value(peer: std::net::SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).expect("an IP address is valid header text")
}

/// Prepares the request head for an HTTP/1.1 backend: hop-by-hop headers
/// removed, `X-Forwarded-For` appended, `-Proto` and `-Host` set, and an
/// HTTP/2 request's absolute-form target turned into origin-form + `Host`
/// (the `:authority`, over any `host` field), its cookie crumbs joined.
/// Refuses a transfer coding other than chunked (501).
///
/// The walk that finds the hop-by-hop headers also picks up `Host`, which
/// saves a second hash lookup of it for `X-Forwarded-Host`.
pub fn prepare_request(
    parts: &mut Parts,
    forwarded_for: &HeaderValue,
    upgrade: bool,
) -> Result<(), RequestError> {
    let mut present = HopByHop::default();
    let mut host: Option<HeaderValue> = None;
    for (name, value) in parts.headers.iter() {
        if *name == header::HOST {
            // `get` would answer with the first value too.
            if host.is_none() {
                host = Some(value.clone());
            }
        } else {
            present.see(name);
        }
    }
    present.strip_request(&mut parts.headers, upgrade)?;
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
    if present.has_connection() {
        // `Connection` may have named `Host` (and so removed it).
        host = h.get(header::HOST).cloned();
    }
    if let Some(auth) = parts.uri.authority() {
        // The target's authority wins over a `host` field: `:authority` in
        // HTTP/2 (RFC 9113 §8.3.1), an absolute-form target in HTTP/1.1
        // (RFC 9112 §3.2.2). Routing reads the same ([`request_host`]), so
        // the backend sees the host its route was chosen for.
        if let Ok(v) = HeaderValue::from_str(without_userinfo(auth)) {
            h.insert(header::HOST, v.clone());
            host = Some(v);
        }
    }
    if parts.version != Version::HTTP_11 && parts.version != Version::HTTP_10 {
        join_cookie_crumbs(h);
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
    if let Some(host) = host {
        h.insert(&X_FORWARDED_HOST, host);
    }
    Ok(())
}

/// HTTP/2 may split `Cookie` into one field per pair; an HTTP/1.1 backend
/// expects one line, joined with "; " (RFC 9113 §8.2.3).
fn join_cookie_crumbs(h: &mut HeaderMap) {
    let mut crumbs = h.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (crumbs.next(), crumbs.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in h.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
    }
}

/// An authority as a `Host` value: `user@` dropped (RFC 9112 §3.2.2 forbids
/// it there).
fn without_userinfo(auth: &http::uri::Authority) -> &str {
    let s = auth.as_str();
    s.rsplit_once('@').map_or(s, |(_, host)| host)
}

/// The request's host, without port, for route matching: the target's
/// authority when it has one (absolute-form, HTTP/2 `:authority`), else
/// `Host`, as [`prepare_request`] forwards it.
pub fn request_host(parts: &Parts) -> Option<&str> {
    let raw = match parts.uri.authority() {
        Some(a) => without_userinfo(a),
        None => parts.headers.get(header::HOST)?.to_str().ok()?,
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
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false).unwrap();
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
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false).unwrap();
        assert_eq!(p.headers["x-forwarded-host"], "a.example");
        // A Host that `Connection` names is gone, and so is X-Forwarded-Host.
        let mut p = parts(&[("connection", "host"), ("host", "a.example")]);
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false).unwrap();
        assert!(!p.headers.contains_key("host"));
        assert!(!p.headers.contains_key("x-forwarded-host"));
        // No Host at all.
        let mut p = parts(&[]);
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false).unwrap();
        assert!(!p.headers.contains_key("x-forwarded-host"));
        // HTTP/2: the Host made from the absolute-form target.
        let mut p = http::Request::builder()
            .version(Version::HTTP_2)
            .uri("https://h2.example:8443/p?q")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false).unwrap();
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

    /// RFC 9112 §3.2.2: with an absolute-form target the `Host` field is
    /// ignored. Routing and the forwarded `Host` must both follow the
    /// target, or a request routed for one host reaches a backend naming
    /// another.
    #[test]
    fn an_absolute_form_target_wins_over_host_for_routing_and_forwarding() {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let mut p = http::Request::builder()
                .version(version)
                .uri("http://user:pw@a.example:8080/cart?x=1")
                .header("host", "b.example")
                .body(())
                .unwrap()
                .into_parts()
                .0;
            assert_eq!(request_host(&p), Some("a.example"), "{version:?}");
            prepare_request(&mut p, &HeaderValue::from_static("203.0.113.9"), false).unwrap();
            assert_eq!(p.headers["host"], "a.example:8080", "{version:?}");
            assert_eq!(p.headers.get_all("host").iter().count(), 1);
            assert_eq!(p.headers["x-forwarded-host"], "a.example:8080");
            assert_eq!(request_host(&p), Some("a.example"));
        }
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
        prepare_request(&mut p, &HeaderValue::from_static("3.3.3.3"), true).unwrap();
        assert_eq!(p.headers["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 3.3.3.3");
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["connection"], "upgrade");
    }
}
