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

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use axum_sticky::{Backends, StickyProxy};
use tower_sticky::token::KeyRing;
use tower_sticky::StickyConfig;

struct Args {
    listen: SocketAddr,
    backends: Vec<(String, String)>,
    key_file: String,
}

fn args() -> Result<Args, String> {
    let (mut listen, mut backends, mut key_file) = (None, Vec::new(), None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--backend" => {
                let v = value()?;
                let (n, a) = v.split_once('=').ok_or("--backend is NAME=HOST:PORT")?;
                backends.push((n.to_string(), a.to_string()));
            }
            "--key-file" => key_file = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if backends.is_empty() {
        return Err("at least one --backend is required".into());
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        backends,
        key_file: key_file.ok_or("--key-file is required")?,
    })
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("axum_gateway: {e}");
            std::process::exit(2);
        }
    };
    let keys = std::fs::read_to_string(&args.key_file)
        .map_err(|e| e.to_string())
        .and_then(|t| KeyRing::from_lines(&t).map_err(|e| e.to_string()));
    let keys = match keys {
        Ok(k) => k,
        Err(e) => {
            eprintln!("axum_gateway: key file {}: {e}", args.key_file);
            std::process::exit(2);
        }
    };
    let proxy = StickyProxy::new(StickyConfig::new(keys), Backends::http(args.backends));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback_service(proxy);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("axum_gateway: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!(
        "axum_gateway listening on {}",
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(terminated())
        .await
        .expect("server");
}

/// SIGTERM or Ctrl-C.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
