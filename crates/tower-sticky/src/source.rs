//! Affinity sources: where a request's affinity comes from.
//!
//! - [`AffinitySource::cookie`] (default): our own sealed cookie, inserted by
//!   the layer. The browser case.
//! - [`AffinitySource::header`]: the same sealed token in a request header,
//!   returned in a response header (GEP-1619 type `Header`). For APIs and
//!   service-to-service calls, where clients keep a header but no cookie jar.
//! - [`AffinitySource::client_addr`]: the client's address, hashed onto the
//!   backend set with bounded loads. No token at all.
//! - [`AffinitySource::extractor`]: a key of your own from the request (a
//!   tenant header, a path segment), hashed like the client address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::HeaderName;
use http::request::Parts;

use crate::backend_id::mix64;
use crate::cookie::CookieConfig;

/// A request key for hashed affinity, made from any bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AffinityKey(u64);

impl AffinityKey {
    /// The key of some bytes (a header value, a user id).
    pub fn of(bytes: impl AsRef<[u8]>) -> Self {
        Self(crate::BackendId::from_bytes(bytes.as_ref()).as_u64())
    }

    /// A key from a number you already have.
    pub fn from_u64(n: u64) -> Self {
        Self(mix64(n))
    }

    pub(crate) fn hash(self) -> u64 {
        self.0
    }
}

/// The connecting peer's address, put in the request extensions by the server
/// (the gateway does; with axum, copy it from `ConnectInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

type Extractor = dyn Fn(&Parts) -> Option<AffinityKey> + Send + Sync;

#[derive(Clone)]
pub(crate) enum Source {
    Cookie(CookieConfig),
    Header(HeaderName),
    ClientAddr(Arc<[IpAddr]>),
    Extractor(Arc<Extractor>),
}

/// Where affinity comes from.
///
/// - [`AffinitySource::cookie`] (default): our own sealed cookie, inserted by
///   the layer. The browser case.
/// - [`AffinitySource::header`]: the same sealed token in a request header,
///   returned in a response header (GEP-1619 type `Header`). For APIs and
///   service-to-service calls, where clients keep a header but no cookie jar.
/// - [`AffinitySource::client_addr`]: the client's address, hashed onto the
///   backend set with bounded loads. No token at all.
/// - [`AffinitySource::extractor`]: a key of your own from the request (a
///   tenant header, a path segment), hashed like the client address.
#[derive(Clone)]
pub struct AffinitySource(pub(crate) Source);

impl AffinitySource {
    /// Our sealed cookie, with these attributes.
    pub fn cookie(cookie: CookieConfig) -> Self {
        Self(Source::Cookie(cookie))
    }

    /// Our sealed token in the request header `name`, echoed back in the
    /// response header of the same name whenever it is issued or refreshed.
    pub fn header(name: HeaderName) -> Self {
        Self(Source::Header(name))
    }

    /// The client address: the connection's peer ([`PeerAddr`]) or, when the
    /// peer is one of `trusted_proxies`, the nearest untrusted address in
    /// `Forwarded` / `X-Forwarded-For`.
    pub fn client_addr(trusted_proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        Self(Source::ClientAddr(trusted_proxies.into_iter().collect()))
    }

    /// A key of your own, hashed onto the backend set with bounded loads.
    /// Requests for which it returns `None` are placed like new sessions.
    ///
    /// ```
    /// use tower_sticky::{AffinityKey, AffinitySource};
    /// let by_tenant = AffinitySource::extractor(|parts| {
    ///     parts.headers.get("x-tenant").map(|v| AffinityKey::of(v.as_bytes()))
    /// });
    /// # let _ = by_tenant;
    /// ```
    pub fn extractor(f: impl Fn(&Parts) -> Option<AffinityKey> + Send + Sync + 'static) -> Self {
        Self(Source::Extractor(Arc::new(f)))
    }

    /// The name tokens are bound to (cookie or header name), if this source carries tokens.
    pub fn token_name(&self) -> Option<&str> {
        match &self.0 {
            Source::Cookie(c) => Some(c.name()),
            Source::Header(h) => Some(h.as_str()),
            _ => None,
        }
    }
}

impl Default for AffinitySource {
    fn default() -> Self {
        Self::cookie(CookieConfig::default())
    }
}

impl fmt::Debug for AffinitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Cookie(c) => f.debug_tuple("Cookie").field(c).finish(),
            Source::Header(h) => f.debug_tuple("Header").field(h).finish(),
            Source::ClientAddr(t) => f.debug_tuple("ClientAddr").field(t).finish(),
            Source::Extractor(_) => f.write_str("Extractor"),
        }
    }
}

/// The client address of a request: the peer, unless the peer is a trusted
/// proxy, in which case the right-most address in `X-Forwarded-For` (or
/// `Forwarded: for=`) that is not itself a trusted proxy.
pub(crate) fn client_ip(parts: &Parts, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = parts.extensions.get::<PeerAddr>()?.0.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let mut chain: Option<IpAddr> = None;
    // Forwarded (RFC 7239) first, then X-Forwarded-For; right-most untrusted wins.
    for v in parts.headers.get_all("forwarded").iter().rev() {
        let Ok(v) = v.to_str() else { continue };
        for elem in v.rsplit(',') {
            let ip = elem.split(';').find_map(|kv| {
                let (k, val) = kv.trim().split_once('=')?;
                k.eq_ignore_ascii_case("for").then(|| parse_node(val))?
            });
            match ip {
                Some(ip) if !trusted.contains(&ip) => return Some(ip),
                Some(ip) => chain = Some(ip),
                None => {}
            }
        }
    }
    for v in parts.headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(v) = v.to_str() else { continue };
        for ip in v.rsplit(',').filter_map(|s| parse_node(s.trim())) {
            if !trusted.contains(&ip) {
                return Some(ip);
            }
            chain = Some(ip);
        }
    }
    chain.or(Some(peer))
}

/// `1.2.3.4`, `"[2001:db8::1]:4711"`, `1.2.3.4:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .and_then(|ip| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (mut p, _) = b.body(()).unwrap().into_parts();
        p.extensions.insert(PeerAddr(peer.parse().unwrap()));
        p
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let spoof = parts("203.0.113.9:5000", &[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            client_ip(&spoof, &[proxy]),
            Some("203.0.113.9".parse().unwrap())
        );
        let via = parts(
            "10.0.0.1:5000",
            &[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.1")],
        );
        assert_eq!(
            client_ip(&via, &[proxy]),
            Some("198.51.100.7".parse().unwrap())
        );
        let fwd = parts(
            "10.0.0.1:5000",
            &[(
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
            )],
        );
        assert_eq!(
            client_ip(&fwd, &[proxy]),
            Some("2001:db8:cafe::17".parse().unwrap())
        );
        let none = parts("10.0.0.1:5000", &[]);
        assert_eq!(client_ip(&none, &[proxy]), Some(proxy));
    }
}
