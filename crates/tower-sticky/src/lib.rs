#![doc = include_str!("../README.md")]
#![deny(unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod backend_id;
mod clock;
mod config;
pub mod cookie;
mod engine;
mod failover;
pub mod lifecycle;
mod outcome;
pub mod placement;
#[cfg(feature = "tower")]
pub mod service;
mod source;
mod stats;
pub mod table;
pub mod token;

pub use backend_id::{BackendId, StableId};
pub use clock::Clock;
pub use config::{Ejection, StickyConfig};
pub use cookie::{CookieConfig, CookieLifetime, SameSite};
pub use engine::{Engine, Readiness};
pub use failover::FailoverPolicy;
pub use lifecycle::{Decision, Routed};
pub use outcome::{Outcome, Reason};
pub use placement::Placement;
#[cfg(feature = "tower")]
pub use service::{Sticky, StickyLayer};
pub use source::{AffinityKey, AffinitySource, PeerAddr};
pub use stats::{BackendStats, Stats};
pub use table::{BackendState, BackendTable};
