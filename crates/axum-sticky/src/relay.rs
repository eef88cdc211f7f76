//! The steps both shapes share around one request: decide it, ready its
//! head to leave (for a backend or a peer), and turn the answer, or the
//! failure, into the client's response with the request's accounting
//! done once.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONNECTION, HOST, UPGRADE};
use http::request::Parts;
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use sticky_proxy::hop::is_upgrade;
use sticky_proxy::{HopByHop, RequestError};
use tower_sticky::table::BackendTable;
use tower_sticky::{Engine, Routed};

use crate::answer::{bad_gateway, plain, rejected};
use crate::error::{classify, Failure};
use crate::forwarded::{self, Hop};
use crate::{body, tunnel, Affinity};

/// Decides `parts` over `table`, removes our token from its head (unless
/// configured to keep it: [`Routed::prepare_request`]) in the same scan of
/// its `Cookie` header ([`Engine::decide_prepared`]), and counts the request
/// in flight on the chosen member, of which `pick` takes what the exchange
/// needs (its client and name) while the table is held; a rejection is the
/// 503 answer.
// The answer is returned once and at once; boxing it would allocate.
#[allow(clippy::result_large_err)]
pub(crate) fn decide_prepared<K, T, R>(
    engine: &Engine,
    table: &BackendTable<K, T>,
    parts: &mut Parts,
    pick: impl FnOnce(&T) -> R,
) -> Result<(Routed, R), Response<Body>> {
    let mut routed = engine.decide_prepared(table, parts, |_| true);
    let Some(member) = routed.target().and_then(|i| table.get(i)) else {
        return Err(rejected(&routed));
    };
    let picked = pick(member.value());
    routed.begin(engine, table);
    Ok((routed, picked))
}

/// Readies a request head to leave for a backend or a peer: the client's
/// upgrade taken out of its extensions (tunnelled if the answer is `101`),
/// hop-by-hop fields stripped, forwarding fields set. An error says the
/// request is not fit to forward: see [`not_fit`].
///
/// One walk over the fields finds the hop-by-hop ones, whether `Upgrade`
/// is there and the `Host` the edge copies to `X-Forwarded-Host`: each
/// lookup by name instead hashes the name and probes the map, some 150
/// instructions, and a request without `Upgrade` (nearly all) needs none
/// to know it is no upgrade.
pub(crate) fn prepare(parts: &mut Parts, hop: Hop) -> Result<Option<OnUpgrade>, RequestError> {
    let mut fields = HopByHop::default();
    let mut upgrade_field = false;
    // `Connection` may name any field, `Host` too, to be stripped: the
    // walk's `Host` stands when every `Connection` names none (none at
    // all, or the usual lone `keep-alive` or `close`).
    let mut names_fields = false;
    let mut host = None;
    for (name, value) in &parts.headers {
        fields.see(name);
        if *name == UPGRADE {
            upgrade_field = true;
        } else if *name == CONNECTION {
            names_fields |= !names_no_field(value.as_bytes());
        } else if hop == Hop::Edge && *name == HOST && host.is_none() {
            host = Some(value.clone());
        }
    }
    // An upgrade needs both `Upgrade` and `Connection`: only then is it
    // worth looking into `Connection`'s tokens.
    let upgrade = upgrade_field && fields.has_connection() && is_upgrade(parts);
    fields.strip_request(&mut parts.headers, upgrade)?;
    let host = (!names_fields).then_some(host);
    forwarded::set(parts, hop, host);
    Ok(if upgrade {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    })
}

/// Whether a `Connection` value names no field: a lone `keep-alive` or
/// `close` option, as nginx and most clients send.
fn names_no_field(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
}

/// Where an answer comes from.
pub(crate) enum Origin {
    /// A backend or peer, over a client: hop-by-hop fields are stripped
    /// and a `101` is tunnelled to the client's upgrade, if it asked.
    Remote(Option<OnUpgrade>),
    /// This replica's own app, which answers its client directly (hyper
    /// serves its upgrades): the response goes as it is.
    Local,
}

/// The client's response from an answer: the result recorded (a 5xx is a
/// failure), the response tagged with `Set-Cookie` when due and carrying
/// the [`Affinity`], and the request kept in flight until its body ends.
pub(crate) fn respond<B>(
    engine: &Engine,
    mut routed: Routed,
    res: Response<B>,
    name: Arc<str>,
    from: Origin,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    routed.record(!res.status().is_server_error());
    let (mut head, body) = res.into_parts();
    routed.tag_response(engine, &mut head.headers);
    let in_flight = routed.take_in_flight();
    let decision = *routed.decision();
    let body = match from {
        Origin::Local => body::counted(body, in_flight),
        Origin::Remote(client_upgrade) => {
            let switching = head.status == StatusCode::SWITCHING_PROTOCOLS;
            sticky_proxy::hop::strip_response(&mut head.headers, switching);
            match (switching, client_upgrade) {
                (true, Some(client)) => {
                    // The connection is the tunnel's now; the tunnel is
                    // not counted in flight (as in sticky-gateway).
                    if let Some(backend) = tunnel::backend_side(&mut head, body) {
                        tunnel::spawn(client, backend, name.clone());
                    }
                    Body::empty()
                }
                _ => body::counted(body, in_flight),
            }
        }
    };
    head.extensions.insert(Affinity::new(decision, Some(name)));
    Response::from_parts(head, body)
}

/// The answer to an exchange that failed, counted once: an unreachable
/// backend (nothing sent) is a failure that ejects it, a request that may
/// have been sent is a failure, and a request not fit to forward is the
/// client's fault, counted neither way (as sticky-gateway does) so that
/// malformed requests can neither eject a backend nor hide its failures.
pub(crate) fn failed<K, T>(
    engine: &Engine,
    table: &BackendTable<K, T>,
    mut routed: Routed,
    name: Arc<str>,
    e: &(dyn std::error::Error + 'static),
) -> Response<Body> {
    match classify(e) {
        Failure::Unreachable => {
            routed.unreachable(engine, table);
            tracing::warn!(backend = %name, error = %e, "unreachable, ejected");
            let affinity = Affinity::new(*routed.decision(), Some(name));
            bad_gateway("the backend could not be reached\n", affinity)
        }
        Failure::Refused(status) => not_fit(routed, status),
        Failure::MaybeSent => {
            routed.finish(false);
            tracing::warn!(backend = %name, error = %e, "request failed");
            let affinity = Affinity::new(*routed.decision(), Some(name));
            bad_gateway("the backend failed to answer\n", affinity)
        }
    }
}

/// A request not fit to forward (400, or 501 for an unknown transfer
/// coding): nothing reached a backend, so the request stops being counted
/// in flight with no result.
pub(crate) fn not_fit(routed: Routed, status: StatusCode) -> Response<Body> {
    let mut r = plain(status, "request not fit to forward\n");
    r.extensions_mut()
        .insert(Affinity::new(*routed.decision(), None));
    drop(routed);
    r
}

/// After an attempt on `name` found it unreachable (nothing sent): one
/// failure counted on it and it ejected, then the request decided again
/// from its kept token and counted in flight on the new member, of which
/// `pick` takes what the next attempt needs. The answer instead when every
/// member was tried (`502`, `none_left` the text) or the failover policy
/// refuses (`503`).
#[allow(clippy::result_large_err)]
pub(crate) fn reroute<K, T, R>(
    engine: &Engine,
    table: &BackendTable<K, T>,
    routed: &mut Routed,
    name: &Arc<str>,
    error: &dyn std::fmt::Display,
    none_left: &'static str,
    pick: impl FnOnce(&T) -> R,
) -> Result<R, Response<Body>> {
    routed.unreachable(engine, table);
    tracing::warn!(backend = %name, %error, "unreachable, ejected");
    if routed.unreachable_count() as usize >= table.len() {
        let affinity = Affinity::new(*routed.decision(), Some(name.clone()));
        return Err(bad_gateway(none_left, affinity));
    }
    routed.reroute(engine, table, |_| true);
    let Some(member) = routed.target().and_then(|i| table.get(i)) else {
        return Err(rejected(routed));
    };
    let picked = pick(member.value());
    routed.begin(engine, table);
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::get("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_edge_copies_the_host_the_request_still_has() {
        let mut p = head(&[("host", "app.test"), ("connection", "Keep-Alive")]);
        assert!(prepare(&mut p, Hop::Edge).unwrap().is_none());
        assert_eq!(p.headers["x-forwarded-host"], "app.test");
        assert!(p.headers.get("connection").is_none());

        // `Connection` may name `Host`, which is then stripped: none copied.
        let mut p = head(&[("host", "app.test"), ("connection", "host")]);
        prepare(&mut p, Hop::Edge).unwrap();
        assert!(p.headers.get("host").is_none());
        assert!(p.headers.get("x-forwarded-host").is_none());

        let mut p = head(&[("host", "app.test")]);
        prepare(&mut p, Hop::Peer).unwrap();
        assert!(
            p.headers.get("x-forwarded-host").is_none(),
            "a peer adds no host"
        );
    }

    #[test]
    fn an_upgrade_needs_both_fields() {
        let mut p = head(&[("upgrade", "websocket"), ("connection", "upgrade")]);
        prepare(&mut p, Hop::Edge).unwrap();
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["connection"], "upgrade");

        let mut p = head(&[("upgrade", "websocket")]);
        prepare(&mut p, Hop::Edge).unwrap();
        assert!(
            p.headers.get("upgrade").is_none(),
            "no Connection: stripped"
        );
    }
}
