//! The reverse proxy: the request path ([`service`]), header rewriting
//! ([`headers`]), response bodies ([`body`]) and upgraded tunnels
//! ([`upgrade`]). The backend HTTP/1.1 client itself (pool, framing,
//! connections) is the `sticky-proxy` crate.

pub mod body;
pub mod headers;
pub mod service;
pub mod upgrade;

pub use sticky_proxy::pool;
