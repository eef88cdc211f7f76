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
//! `cookie_config.secure = false` (the engine writes it so, told that the
//! request arrived over TLS: nothing rewrites the header afterwards), and
//! backends see `X-Forwarded-Proto: https`.
//!
//! TLS to backends (`https://` backend addresses) is in [`backends`].

pub mod backends;
pub mod certs;
pub mod config;
mod listener;
mod redirect;
pub mod reload;
pub mod sni;
pub mod throwaway;

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub use certs::LoadError;
pub use config::{CertificateFiles, TlsListenerConfig};
pub use listener::{bind, serve, server_config, TlsListener};
pub use redirect::{redirect_location, serve_redirect};
pub use sni::{CertStore, SniCerts};

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Tells the backend the client spoke HTTPS.
pub(crate) fn mark_forwarded_https(headers: &mut HeaderMap) {
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
}

#[cfg(test)]
mod tests {
    use http::header::{self, HeaderMap, HeaderValue};
    use tower_sticky::token::KeyRing;
    use tower_sticky::{BackendTable, Engine};

    use crate::config::{BackendConfig, CookieSettings, Persistence, RouteConfig};

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

    /// The Set-Cookie values of a new session's response, over TLS or not,
    /// beside the application's own cookie.
    fn issued(route: &RouteConfig, over_tls: bool) -> Vec<String> {
        let engine = Engine::new(crate::routes::sticky_config(route, KeyRing::generate()));
        let mut table = BackendTable::<&str>::new();
        table.insert("a", (), 1).unwrap();
        let (parts, ()) = http::Request::new(()).into_parts();
        let mut routed = engine.decide(&table, &parts, |_| true);
        if over_tls {
            routed.arrived_over_tls();
        }
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("app=1; Path=/"),
        );
        routed.tag_response(&engine, &mut h);
        h.get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn only_our_cookie_becomes_secure_and_only_once() {
        let set = issued(&route(false, true), true);
        assert_eq!(set[0], "app=1; Path=/");
        assert!(set[1].starts_with("sticky="), "{set:?}");
        assert_eq!(set[1].matches("Secure").count(), 1, "{set:?}");
        assert!(!issued(&route(false, true), false)[1].contains("Secure"));
        let everywhere = issued(&route(true, true), true);
        assert_eq!(everywhere[1].matches("Secure").count(), 1, "{everywhere:?}");
    }

    #[test]
    fn secure_false_keeps_the_cookie_as_it_is() {
        let set = issued(&route(false, false), true);
        assert_eq!(set[0], "app=1; Path=/");
        assert!(!set[1].contains("Secure"), "{set:?}");
    }
}
