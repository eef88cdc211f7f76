#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod backend_id;
mod clock;
mod config;
pub mod cookie;
mod failover;
mod outcome;
pub mod placement;
mod router;
pub mod service;
mod source;
mod stats;
pub mod table;
pub mod token;

pub use backend_id::{BackendId, StableId};
pub use clock::Clock;
pub use config::{Ejection, StickyConfig};
pub use cookie::{CookieConfig, CookieLifetime, SameSite};
pub use failover::FailoverPolicy;
pub use outcome::{Outcome, Reason};
pub use placement::Placement;
pub use router::{Decision, Readiness, Router};
pub use service::{Sticky, StickyLayer};
pub use source::{AffinityKey, AffinitySource, PeerAddr};
pub use stats::{BackendStats, Stats};
pub use table::{BackendState, BackendTable};
