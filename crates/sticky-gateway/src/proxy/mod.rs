//! The reverse proxy: the request path ([`service`]), backend connection
//! pools ([`pool`]), header rewriting ([`headers`]), response bodies
//! ([`body`]) and upgraded tunnels ([`upgrade`]).

pub mod body;
pub mod headers;
pub mod pool;
pub mod service;
pub mod upgrade;
