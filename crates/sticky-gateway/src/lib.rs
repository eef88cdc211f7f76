//! sticky-gateway: a reverse proxy with session affinity, built on the
//! [`tower_sticky`] decision engine.
//!
//! The binary's pieces, one concern per module:
//! [`config`] (the TOML file and its validation), [`cli`], [`routes`] (host
//! and prefix routes, each with its own backend table and engine),
//! [`proxy`] (the request path, the HTTP/1.1 backend client and its
//! connection pools, header rewriting, upgrades), [`server`] (the client
//! side), [`health`] (active probes), [`reload`] (SIGHUP and upkeep),
//! [`shutdown`], [`keyfile`], [`demo`], [`access_log`], [`admin`] (the admin
//! API and its bearer-token authentication), [`admin_view`] and [`tls`]
//! (TLS listeners, SNI, certificate reloads, redirects to HTTPS).
//!
//! Tests and tools start a gateway in-process with [`run::start`].

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod admin_view;
pub mod cli;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod health;
pub mod keyfile;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod run;
pub mod server;
pub mod shutdown;
pub mod tls;

pub use config::GatewayConfig;
pub use gateway::Gateway;
