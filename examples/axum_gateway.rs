//! An axum proxy with session affinity over HTTP backends: local routes
//! (`/healthz`) are served here with no cookie, everything else goes to
//! the session's backend through `StickyProxy`.
//!
//! ```text
//! cargo run --release -p sticky-examples --example axum_gateway -- \
//!     --listen 127.0.0.1:8080 --backend app-1=127.0.0.1:3001 \
//!     --backend app-2=127.0.0.1:3002 --key-file keys
//! ```
//! The key file is sticky-gateway's (`sticky-gateway keygen > keys`).

mod support;

use axum::routing::get;
use axum::Router;
use axum_sticky::{Backends, StickyProxy};
use tower_sticky::StickyConfig;

#[tokio::main]
async fn main() {
    let flags = support::flags(support::Spec {
        program: "axum_gateway",
        member: "--backend",
        name: false,
        members_required: true,
    });
    let proxy = StickyProxy::new(StickyConfig::new(flags.keys), Backends::http(flags.members));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback_service(proxy);
    support::serve("axum_gateway", "axum_gateway", flags.listen, app).await;
}
