//! One request's lifecycle, shared by every front end.
//!
//! [`Engine::decide`](crate::Engine::decide) turns a request head into a
//! [`Routed`] value; the front end then only adapts I/O: it applies the
//! header edits the value returns, counts the request in flight, reports the
//! result, and on "backend unreachable, nothing sent" asks the value to
//! decide again ([`Routed::reroute`]). Failover policy, counting (exactly
//! one outcome per request) and the deterministic fallback are decided here,
//! once, for the tower layer, the gateway, axum and pingora alike. Nothing
//! here needs tower or tokio.
//!
//! An adapter's whole loop, with a connect step of its own:
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower_sticky::{BackendTable, Engine, StickyConfig, token::KeyRing};
//!
//! let engine = Engine::new(StickyConfig::new(KeyRing::generate()));
//! let mut table = BackendTable::<&'static str>::new();
//! table.insert("a", (), 0).unwrap();
//! table.insert("b", (), 0).unwrap();
//!
//! let (mut parts, _body) = Request::new(()).into_parts();
//! let mut routed = engine.decide(&table, &parts, |_| true);
//! routed.prepare_request(&engine, &mut parts.headers);
//! let response = loop {
//!     let Some(slot) = routed.target() else {
//!         // Strict failover, or no backend at all: nothing was sent.
//!         break Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(()).unwrap();
//!     };
//!     routed.begin(&engine, &table);
//!     let backend = table.get(slot).unwrap().key();
//!     let connected = *backend != "a"; // pretend "a" refuses connections
//!     if !connected {
//!         routed.reroute(&engine, &table, |_| true);
//!         continue;
//!     }
//!     let mut res = Response::new(());
//!     routed.record(res.status().is_success());
//!     routed.tag_response(&engine, res.headers_mut());
//!     break res;
//! };
//! assert!(response.headers().contains_key("set-cookie"));
//! assert_eq!(engine.stats(&table).new_sessions(), 1, "one request, one outcome");
//! ```

mod decision;
mod edits;
mod routed;

pub use decision::Decision;
pub use edits::{EditOp, HeaderEdit, HeaderEdits};
pub use routed::Routed;

pub(crate) use routed::{Basis, MAX_TRIED};

#[cfg(test)]
mod tests;
