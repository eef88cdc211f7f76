//! TLS termination on rustls: listeners with several certificates chosen
//! by SNI, ALPN `h2` and `http/1.1`, session resumption, certificates
//! reloaded on SIGHUP and when their files change, and an optional plain
//! listener that redirects to HTTPS.
//!
//! ```text
//! sticky-gateway --tls-listen 0.0.0.0:443 \
//!     --tls-cert example.com.pem --tls-key example.com.key \
//!     --tls-cert api.example.net.pem --tls-key api.example.net.key \
//!     --backend app-1=10.0.0.1:8080 --backend app-2=10.0.0.2:8080
//! ```
//!
//! The first certificate is the default: it is served to clients that ask
//! for no name or a name no other certificate covers. Each further one is
//! served to the names its certificate covers (its DNS subject alternative
//! names; `*.example.com` covers one label). The config file form,
//! `[[tls_listeners]]`, allows several listeners (see [`config`]).
//!
//! Protocol versions and cipher suites are rustls' safe defaults (TLS 1.2
//! and 1.3, forward-secret AEAD suites only). Sessions resume by stateless
//! tickets (keys rotated every 6 hours) and, for TLS 1.2 clients without
//! ticket support, by session id from a bounded in-memory cache.
//!
//! A bad certificate or key at start is an error naming the file (the
//! binary exits with status 2). On reload the new files are loaded whole
//! first; if any is bad the running certificates stay and the error is
//! logged. Handshakes read the certificates through an [`arc_swap`], so a
//! reload takes no lock on their path and connections already established
//! are untouched.
//!
//! On a TLS listener the affinity cookie is `Secure` unless the route sets
//! `cookie_config.secure = false`, and backends see
//! `X-Forwarded-Proto: https`.

pub mod certs;
pub mod config;
mod listener;
mod redirect;
pub mod reload;
pub mod sni;
pub mod throwaway;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub use certs::LoadError;
pub use config::{CertificateFiles, TlsListenerConfig};
pub use listener::{bind, serve, server_config, TlsListener};
pub use redirect::{redirect_location, serve_redirect};
pub use sni::{CertStore, SniCerts};

use crate::config::{Persistence, RouteConfig};

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Tells the backend the client spoke HTTPS.
pub(crate) fn mark_forwarded_https(headers: &mut HeaderMap) {
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
}

/// Adds `Secure` to the route's own affinity cookie in a response sent
/// over TLS, unless the route's cookie settings turned it off (or it is
/// `Secure` everywhere already). Only responses that set our cookie (a new
/// or changed pin, an idle refresh) pay for it.
pub(crate) fn secure_cookie(route: &RouteConfig, headers: &mut HeaderMap) {
    let Persistence::Cookie(c) = &route.persistence else {
        return;
    };
    if c.secure || !c.secure_on_tls {
        return;
    }
    let header::Entry::Occupied(mut e) = headers.entry(header::SET_COOKIE) else {
        return;
    };
    for v in e.iter_mut() {
        let b = v.as_bytes();
        let ours =
            b.len() > c.name.len() && b.starts_with(c.name.as_bytes()) && b[c.name.len()] == b'=';
        if !ours || has_secure(b) {
            continue;
        }
        let mut s = Vec::with_capacity(b.len() + 8);
        s.extend_from_slice(b);
        s.extend_from_slice(b"; Secure");
        if let Ok(nv) = HeaderValue::from_bytes(&s) {
            *v = nv;
        }
    }
}

fn has_secure(cookie: &[u8]) -> bool {
    cookie
        .split(|&b| b == b';')
        .skip(1)
        .any(|a| a.trim_ascii().eq_ignore_ascii_case(b"secure"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, CookieSettings};

    fn route(secure: bool, secure_on_tls: bool) -> RouteConfig {
        let mut r = RouteConfig::catch_all(vec![BackendConfig {
            name: "a".into(),
            address: "127.0.0.1:1".into(),
            weight: 1,
        }]);
        let mut c = CookieSettings::named("sticky");
        c.secure = secure;
        c.secure_on_tls = secure_on_tls;
        r.persistence = Persistence::Cookie(c);
        r
    }

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("app=1; Path=/"),
        );
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("sticky=tok; HttpOnly; SameSite=Lax; Path=/"),
        );
        h
    }

    fn cookies(h: &HeaderMap) -> Vec<&str> {
        h.get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn only_our_cookie_becomes_secure_and_only_once() {
        let mut h = headers();
        secure_cookie(&route(false, true), &mut h);
        assert_eq!(
            cookies(&h),
            [
                "app=1; Path=/",
                "sticky=tok; HttpOnly; SameSite=Lax; Path=/; Secure"
            ]
        );
        secure_cookie(&route(false, true), &mut h);
        assert_eq!(cookies(&h)[1].matches("Secure").count(), 1);
    }

    #[test]
    fn secure_false_keeps_the_cookie_as_it_is() {
        let mut h = headers();
        secure_cookie(&route(false, false), &mut h);
        assert_eq!(cookies(&h), cookies(&headers()));
    }
}
