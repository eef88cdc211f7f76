//! The one place this crate talks to the core's decision engine.
//!
//! Everything the hooks need from tower-sticky goes through [`Engine`]: decide,
//! count in flight, and the request and response header edits as values, so
//! that pingora can write them through `RequestHeader` / `ResponseHeader`
//! methods (which keep its header-case map in step with the `HeaderMap`).
//! Written against `tower_sticky::Router`; the core's per-request lifecycle
//! value replaces the body of this module without touching the hooks.

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};
use tower_sticky::table::InFlight;
use tower_sticky::{BackendTable, Decision, Readiness, Router, StickyConfig};

/// A header after an edit: every value it must carry, in order. An empty
/// list removes the header.
#[derive(Debug)]
pub(crate) struct HeaderEdit {
    pub(crate) name: HeaderName,
    pub(crate) values: Vec<HeaderValue>,
}

/// The core's engine, seen through the calls the pingora hooks make.
#[derive(Clone, Debug)]
pub(crate) struct Engine {
    router: Router,
}

impl Engine {
    pub(crate) fn new(config: StickyConfig) -> Self {
        Self {
            router: Router::new(config),
        }
    }

    pub(crate) fn config(&self) -> &StickyConfig {
        self.router.config()
    }

    /// Decides where the request goes (one counted outcome per call).
    pub(crate) fn decide<K, T>(
        &self,
        table: &BackendTable<K, T>,
        parts: &Parts,
        ready: impl Readiness,
    ) -> Decision {
        self.router.decide(table, parts, ready)
    }

    /// Counts the request in flight on its backend until the guard drops.
    pub(crate) fn begin<K, T>(
        &self,
        table: &BackendTable<K, T>,
        decision: &Decision,
    ) -> Option<InFlight> {
        self.router.begin(table, decision)
    }

    /// The request headers to rewrite for the backend (our token stripped).
    pub(crate) fn request_edits(
        &self,
        decision: &Decision,
        headers: &HeaderMap,
    ) -> Vec<HeaderEdit> {
        edits(headers, |h| self.router.prepare_request(decision, h))
    }

    /// The response headers to rewrite for the client (`Set-Cookie` appended
    /// and `Cache-Control` made private when a token is issued or refreshed).
    pub(crate) fn response_edits(
        &self,
        decision: &Decision,
        headers: &HeaderMap,
    ) -> Vec<HeaderEdit> {
        if decision.issued_token().is_none() {
            return Vec::new();
        }
        edits(headers, |h| self.router.tag_response(decision, h))
    }
}

/// Runs `edit` on a copy of `headers` and returns the headers whose values
/// changed, with their new values.
fn edits(headers: &HeaderMap, edit: impl FnOnce(&mut HeaderMap)) -> Vec<HeaderEdit> {
    let mut copy = headers.clone();
    edit(&mut copy);
    let mut out: Vec<HeaderEdit> = Vec::new();
    for name in headers.keys().chain(copy.keys()) {
        if out.iter().any(|e| e.name == *name) {
            continue;
        }
        if !headers.get_all(name).iter().eq(copy.get_all(name).iter()) {
            out.push(HeaderEdit {
                name: name.clone(),
                values: copy.get_all(name).iter().cloned().collect(),
            });
        }
    }
    out
}
