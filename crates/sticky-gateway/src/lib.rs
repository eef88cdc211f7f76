//! sticky-gateway: a sticky-session reverse proxy with an admin API and dashboard.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
