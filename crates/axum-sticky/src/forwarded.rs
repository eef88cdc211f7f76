//! Forwarding fields on a proxied request. The gateway shape sets them as
//! sticky-gateway does: the client's address appended to `X-Forwarded-For`
//! (several fields are joined into one list first), `X-Forwarded-Proto`
//! and `X-Forwarded-Host` set. A peer hop only appends the client to
//! `X-Forwarded-For`. A `Forwarded` field the client sent goes on
//! unchanged (sticky-gateway does not write one either).
//!
//! The client's address is axum's `ConnectInfo<SocketAddr>` (serve the app
//! with `into_make_service_with_connect_info::<SocketAddr>()`) or
//! tower-sticky's [`PeerAddr`]; without either, `X-Forwarded-For` is left
//! as it came.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::header::{self, Entry, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use tower_sticky::PeerAddr;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Who the fields speak for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    /// The gateway shape: this server is the edge, so `-Proto` and `-Host`
    /// are this hop's, whatever the client claimed.
    Edge,
    /// A peer-mode replica forwarding to the session's owner. The owner's
    /// app is to see the request as this replica's would have: the same
    /// `Host` (the client passes it on), the balancer's `-Proto` and
    /// `-Host` if it set them (a TLS-terminating one says `https`; this
    /// replica cannot know the client's scheme). Only the client's address
    /// is added, since the owner's connection comes from this replica.
    Peer,
}

/// The connecting client's IP address, when the server put it in the
/// request's extensions.
pub(crate) fn client_ip(parts: &Parts) -> Option<IpAddr> {
    if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        return Some(addr.ip());
    }
    parts.extensions.get::<PeerAddr>().map(|p| p.0.ip())
}

/// Sets the forwarding fields of a request about to leave for a backend
/// or a peer. The owner of a forwarded request adds nothing: its
/// connection comes from the forwarding replica, whose address is not the
/// client's.
///
/// `host` is the request's `Host` when the caller found it on a walk of
/// its own (`Some(None)`: there is none), which saves looking it up again;
/// `None` looks it up.
pub(crate) fn set(parts: &mut Parts, hop: Hop, host: Option<Option<HeaderValue>>) {
    if hop == Hop::Edge {
        // Up to three fields more: one growth of the map at most.
        parts.headers.reserve(3);
    }
    if let Some(ip) = client_ip(parts) {
        append_for(&mut parts.headers, ip);
    }
    if hop == Hop::Edge {
        let h = &mut parts.headers;
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        let host = host.unwrap_or_else(|| h.get(header::HOST).cloned());
        if let Some(host) = host {
            h.insert(&X_FORWARDED_HOST, host);
        }
    }
}

thread_local! {
    /// The last client address this thread wrote, and its text: the
    /// requests of one connection come one after another on one task, so
    /// the next request's address is most often the same, and its text a
    /// reference count instead of formatting and an allocation.
    static LAST_CLIENT: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// `ip` as header text.
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    let cached = LAST_CLIENT.with_borrow(|last| match last {
        Some((at, v)) if *at == ip => Some(v.clone()),
        _ => None,
    });
    if cached.is_some() {
        return cached;
    }
    // The longest IPv6 text is 45 bytes: written on the stack, no `String`.
    let mut buf = [0u8; 48];
    let len = {
        let mut w = &mut buf[..];
        write!(w, "{ip}").ok()?;
        48 - w.len()
    };
    let v = HeaderValue::from_bytes(&buf[..len]).ok()?;
    LAST_CLIENT.with_borrow_mut(|last| *last = Some((ip, v.clone())));
    Some(v)
}

/// Appends `ip` to `X-Forwarded-For`.
fn append_for(h: &mut HeaderMap, ip: IpAddr) {
    let Some(ip) = ip_value(ip) else { return };
    match h.entry(&X_FORWARDED_FOR) {
        Entry::Vacant(e) => {
            e.insert(ip);
        }
        Entry::Occupied(mut e) => {
            // Several fields are one list: joined, then the client appended.
            let mut joined: Vec<u8> = Vec::with_capacity(64);
            for v in e.iter() {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                e.insert(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)], from: Option<&str>) -> Parts {
        let mut b = http::Request::get("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut p = b.body(()).unwrap().into_parts().0;
        if let Some(a) = from {
            p.extensions
                .insert(ConnectInfo(a.parse::<SocketAddr>().unwrap()));
        }
        p
    }

    #[test]
    fn the_edge_appends_the_client_and_sets_proto_and_host() {
        let mut p = parts(
            &[
                ("host", "app.test"),
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-for", "198.51.100.2"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=198.51.100.1"),
            ],
            Some("[2001:db8::7]:5000"),
        );
        set(&mut p, Hop::Edge, None);
        assert_eq!(
            p.headers["x-forwarded-for"],
            "198.51.100.1, 198.51.100.2, 2001:db8::7"
        );
        assert_eq!(p.headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        assert_eq!(p.headers["x-forwarded-host"], "app.test");
        assert_eq!(p.headers["forwarded"], "for=198.51.100.1");
    }

    #[test]
    fn a_host_found_by_the_caller_is_the_one_copied() {
        let mut p = parts(&[("host", "app.test")], None);
        set(
            &mut p,
            Hop::Edge,
            Some(Some(HeaderValue::from_static("found.test"))),
        );
        assert_eq!(p.headers["x-forwarded-host"], "found.test");
        let mut p = parts(&[("host", "app.test")], None);
        set(&mut p, Hop::Edge, Some(None));
        assert!(p.headers.get("x-forwarded-host").is_none(), "none found");
    }

    #[test]
    fn a_peer_adds_the_client_only() {
        let mut p = parts(
            &[("host", "app.test"), ("x-forwarded-proto", "https")],
            Some("203.0.113.5:4000"),
        );
        set(&mut p, Hop::Peer, None);
        assert_eq!(p.headers["x-forwarded-for"], "203.0.113.5");
        assert_eq!(p.headers["x-forwarded-proto"], "https", "the balancer's");
        assert!(p.headers.get("x-forwarded-host").is_none());

        let mut p = parts(&[("host", "app.test")], None);
        set(&mut p, Hop::Peer, None);
        assert!(p.headers.get("x-forwarded-for").is_none());
        assert!(p.headers.get("x-forwarded-proto").is_none());
    }
}
