//! Logging: tracing-subscriber set up for text or JSON lines, and the access
//! log, one line per request with the affinity outcome.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode, Uri};
use tower_sticky::Decision;

use crate::config::LogFormat;

/// The tracing target of access-log lines (filter with `RUST_LOG=access=off`).
pub const TARGET: &str = "access";

/// Installs the global subscriber: `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// What one request came to, as the access log tells it. Plain values, so
/// that the log depends on nothing of the proxy path.
pub(crate) struct Entry<'a> {
    pub(crate) status: StatusCode,
    pub(crate) backend: Option<&'a str>,
    /// What the engine decided (none when no route matched).
    pub(crate) decision: Option<&'a Decision>,
}

/// Writes one access-log line.
pub(crate) fn line(
    peer: &SocketAddr,
    method: &Method,
    uri: &Uri,
    served: Entry<'_>,
    elapsed: Duration,
) {
    let decided = served.decision;
    let outcome = decided.map(|d| d.outcome().kind()).unwrap_or("none");
    // Why a presented token was not trusted (forged, expired, unknown key...).
    let invalid_token = decided
        .and_then(|d| d.invalid_token())
        .map(|r| r.as_str())
        .unwrap_or("");
    let reason = decided
        .and_then(|d| d.outcome().reason())
        .map(|r| r.as_str())
        .unwrap_or("");
    tracing::info!(
        target: TARGET,
        client = %peer.ip(),
        method = %method,
        path = uri.path(),
        status = served.status.as_u16(),
        backend = served.backend.unwrap_or("-"),
        outcome,
        reason,
        invalid_token,
        duration_us = elapsed.as_micros() as u64,
    );
}
