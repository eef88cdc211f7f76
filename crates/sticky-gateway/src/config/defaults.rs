//! Every default of the configuration, in one place: the file's validation,
//! the command line and the in-process constructors
//! ([`GatewayConfig::new`](super::GatewayConfig::new),
//! [`RouteConfig::catch_all`](super::RouteConfig::catch_all)) all read them
//! here, so they cannot drift apart. `gateway.example.toml` states the same.

use std::time::Duration;

/// Where the proxy listens.
pub const LISTEN: &str = "127.0.0.1:8080";
/// How often backend host names are resolved again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// Dialling a backend.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Receiving a client's request head, from its first byte.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A client connection without traffic.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for requests and tunnels in progress.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a pooled backend connection may sit idle before it is closed
/// instead of reused: below common backends' keep-alive timeouts (Node.js
/// and Apache 5 s), so the backend is not closing it as a request arrives.
pub const BACKEND_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// How often certificate and admin-token files are checked for changes
/// (`file_watch_interval`): a few `stat` calls, and a renamed-over file is
/// seen as soon as one edited in place.
pub const FILE_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Largest request head in bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header fields in a request.
pub const MAX_HEADERS: usize = 100;
/// Idle connections kept per backend.
pub const MAX_IDLE_PER_BACKEND: usize = 1024;

/// The command line's route name.
pub const ROUTE_NAME: &str = "default";
/// A route's path prefix.
pub const PREFIX: &str = "/";
/// Bounded-load factor for hashed affinity.
pub const HASH_BALANCE_FACTOR: f64 = 1.25;
/// Other backends tried after a connect failure.
pub const RETRIES: u32 = 2;

/// Our cookie's name.
pub const COOKIE_NAME: &str = "sticky";
/// Our header's name, for header persistence.
pub const HEADER_NAME: &str = "x-sticky";
/// Our cookie's `Path`.
pub const COOKIE_PATH: &str = "/";

/// The path active health checks probe.
pub const HEALTH_PATH: &str = "/";
/// Time between two probes.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Time a probe may take.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes passed in a row that mark a backend up.
pub const HEALTHY_THRESHOLD: u32 = 2;
/// Probes failed in a row that mark a backend down.
pub const UNHEALTHY_THRESHOLD: u32 = 3;

/// Failed requests in a row that eject a backend.
pub const EJECTION_FAILURES: u32 = 5;
/// How long an ejected backend stays out.
pub const EJECTION_COOL_DOWN: Duration = Duration::from_secs(10);
