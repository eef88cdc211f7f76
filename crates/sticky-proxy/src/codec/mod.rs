//! HTTP/1.1 on the backend side, as plain functions over buffers: the
//! request head written ([`request`]), the response head parsed
//! ([`response`]) and chunked bodies decoded ([`chunked`]).
//!
//! The client speaks to backends itself rather than through hyper's client:
//! hyper's `SendRequest` hands each request to a separate connection task
//! over channels, and the response body back over another, which cost more
//! proxy CPU per request than everything the gateway does on top
//! (BENCHMARKS.md). Here the request's own task writes the head, reads the
//! answer and streams the body, with no task or channel in between; the
//! framing rules follow hyper's, and where they differ the crate docs say
//! why (the differential harness in `tests/differential.rs` checks them).

pub mod chunked;
pub mod request;
pub mod response;

#[cfg(test)]
mod tests;
