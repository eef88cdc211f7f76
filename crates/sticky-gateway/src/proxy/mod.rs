//! The reverse proxy: the request path ([`service`]), backend connection
//! pools ([`pool`]) of lean HTTP/1.1 connections ([`conn`], [`codec`]),
//! header rewriting ([`headers`]), response bodies ([`body`]) and upgraded
//! tunnels ([`upgrade`]).

pub mod body;
pub mod codec;
pub mod conn;
pub mod headers;
pub mod pool;
pub mod service;
pub mod upgrade;

#[cfg(test)]
mod retry_tests;
