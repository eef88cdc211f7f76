//! Where a route's backend set comes from when replicas must agree: a
//! *state source* yields whole [`Snapshot`]s (membership, weights and
//! operator intent at one revision), and the gateway applies each one to a
//! route's table as a unit.
//!
//! The TOML file (reloaded on SIGHUP) is the default source and needs no
//! store. Engine-backed sources live in submodules behind cargo features, so
//! the default build carries none of their dependencies.

#[cfg(feature = "kubernetes")]
pub mod kubernetes;
mod snapshot;

pub use snapshot::{AdminState, BackendEntry, Snapshot};
