#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod backend_id;
mod clock;
pub mod token;

pub use backend_id::{BackendId, StableId};
pub use clock::Clock;
