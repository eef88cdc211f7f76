//! Which fields a trailer section may carry through the proxy.
//!
//! A trailer is read after the head has been acted on, so a field there that
//! frames, routes, authenticates or is hop-by-hop would either be ignored or,
//! worse, be merged into the head by a backend that does so (RFC 9110
//! §6.5.1, §6.5.2). Such fields are dropped from trailers in both
//! directions: a client's trailer must not carry `Host: evil.test` or a
//! forged `X-Forwarded-For` past the gateway.

use http::header::{self, HeaderName};

/// Whether `name` is dropped from a trailer section.
pub fn is_forbidden(name: &HeaderName) -> bool {
    const FORBIDDEN: [HeaderName; 22] = [
        // Framing and message control.
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TRAILER,
        header::TE,
        header::CONTENT_ENCODING,
        header::CONTENT_TYPE,
        header::CONTENT_RANGE,
        header::EXPECT,
        header::MAX_FORWARDS,
        header::RANGE,
        header::CACHE_CONTROL,
        // Routing.
        header::HOST,
        header::FORWARDED,
        header::VIA,
        // Authentication and state.
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::WWW_AUTHENTICATE,
        header::COOKIE,
        header::SET_COOKIE,
        // Hop-by-hop.
        header::CONNECTION,
        header::UPGRADE,
    ];
    if FORBIDDEN.contains(name) {
        return true;
    }
    let n = name.as_str();
    n == "keep-alive"
        || n == "proxy-connection"
        || n.starts_with("x-forwarded-")
        || n == "x-real-ip"
}

/// Removes the forbidden fields from a trailer map.
pub fn filter(trailers: &mut http::HeaderMap) {
    let drop: Vec<HeaderName> = trailers
        .keys()
        .filter(|n| is_forbidden(n))
        .cloned()
        .collect();
    for n in drop {
        trailers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_routing_auth_and_hop_by_hop_fields_are_forbidden() {
        for n in [
            "content-length",
            "transfer-encoding",
            "host",
            "x-forwarded-for",
            "authorization",
            "cookie",
            "connection",
            "keep-alive",
        ] {
            assert!(is_forbidden(&HeaderName::from_static(n)), "{n}");
        }
        for n in ["x-checksum", "grpc-status", "server-timing"] {
            assert!(!is_forbidden(&HeaderName::from_static(n)), "{n}");
        }
    }
}
