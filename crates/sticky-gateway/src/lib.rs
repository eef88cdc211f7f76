//! sticky-gateway: a reverse proxy with session affinity, built on the
//! [`tower_sticky`] decision engine and its per-request lifecycle.
//!
//! The binary's pieces, one concern per module. Public, for the binary, the
//! tests and tools: [`config`] (the TOML file and its validation), [`cli`],
//! [`run`] (start a whole gateway in-process with [`run::start`]),
//! [`admin`] (the admin API) and [`admin_view`], [`keyfile`], [`demo`],
//! [`access_log`], [`tls`] (TLS listeners, SNI, certificate reloads,
//! redirects to HTTPS). Internal: `routes` (host and prefix routes, each with its
//! own backend table and engine), `proxy` (the request path, the HTTP/1.1
//! backend client and its connection pools, header rewriting, upgrades),
//! `server` (the client side), `health` (active probes), `reload` (SIGHUP
//! and upkeep), `shutdown` and `gateway` (the shared state).

pub mod access_log;
pub mod admin;
pub mod admin_view;
pub mod cli;
pub mod config;
pub mod demo;
pub(crate) mod gateway;
pub(crate) mod health;
pub mod keyfile;
pub(crate) mod proxy;
pub(crate) mod reload;
pub(crate) mod routes;
pub mod run;
pub(crate) mod server;
pub(crate) mod shutdown;
pub mod state;
pub mod tls;

/// Entry points for the fuzz targets under `fuzz/`, not a stable API: the
/// request head the gateway writes to a backend, from any header map.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::proxy::headers::prepare_request;
}

pub use config::GatewayConfig;
pub use gateway::Gateway;
