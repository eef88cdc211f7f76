//! Configuration of a sticky layer. Names follow Gateway API
//! `sessionPersistence` (GEP-1619) where it has them.

use std::time::Duration;

use crate::failover::FailoverPolicy;
use crate::placement::Placement;
use crate::source::AffinitySource;
use crate::token::KeyRing;
use crate::Clock;

/// Passive health checking: eject a backend after consecutive failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ejection {
    threshold: Option<u32>,
    cool_down: Duration,
}

impl Ejection {
    /// Eject after `consecutive_failures` failed requests (service errors or
    /// 5xx responses) in a row, for `cool_down`, then re-admit.
    pub fn after(consecutive_failures: u32, cool_down: Duration) -> Self {
        Self {
            threshold: Some(consecutive_failures.max(1)),
            cool_down,
        }
    }

    /// Never eject.
    pub fn disabled() -> Self {
        Self {
            threshold: None,
            cool_down: Duration::ZERO,
        }
    }

    /// The failure streak that ejects, if enabled.
    pub fn threshold(&self) -> Option<u32> {
        self.threshold
    }

    /// How long an ejected backend stays out.
    pub fn cool_down(&self) -> Duration {
        self.cool_down
    }
}

impl Default for Ejection {
    /// 5 consecutive failures eject for 10 seconds.
    fn default() -> Self {
        Self::after(5, Duration::from_secs(10))
    }
}

/// Everything a sticky layer needs to know. Build with [`StickyConfig::new`]
/// and the builder methods.
///
/// ```
/// use std::time::Duration;
/// use tower_sticky::{StickyConfig, FailoverPolicy, CookieConfig, AffinitySource};
/// use tower_sticky::token::KeyRing;
///
/// let config = StickyConfig::new(KeyRing::generate())
///     .source(AffinitySource::cookie(CookieConfig::new("sticky").secure(true)))
///     .failover(FailoverPolicy::Temporary)
///     .idle_timeout(Duration::from_secs(30 * 60))
///     .absolute_timeout(Duration::from_secs(12 * 3600))
///     .slow_start(Duration::from_secs(30));
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct StickyConfig {
    pub(crate) keys: KeyRing,
    pub(crate) source: AffinitySource,
    pub(crate) placement: Placement,
    pub(crate) hash_balance_factor: f64,
    pub(crate) failover: FailoverPolicy,
    pub(crate) absolute_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) refresh_interval: Duration,
    pub(crate) slow_start: Option<Duration>,
    pub(crate) ejection: Ejection,
    pub(crate) removal_grace: Option<Duration>,
    pub(crate) strip_token: bool,
    pub(crate) reject_with_error: bool,
    pub(crate) clock: Clock,
}

impl StickyConfig {
    /// A configuration sealing with `keys`, with the defaults: our cookie
    /// `sticky`, least-loaded placement, `Redistribute` failover, no timeouts,
    /// ejection after 5 failures for 10 s, no removal grace, cookie stripped.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            source: AffinitySource::default(),
            placement: Placement::default(),
            hash_balance_factor: 1.25,
            failover: FailoverPolicy::default(),
            absolute_timeout: None,
            idle_timeout: None,
            refresh_interval: Duration::from_secs(60),
            slow_start: None,
            ejection: Ejection::default(),
            removal_grace: None,
            strip_token: true,
            reject_with_error: false,
            clock: Clock::system(),
        }
    }

    /// Where affinity comes from.
    pub fn source(mut self, source: AffinitySource) -> Self {
        self.source = source;
        self
    }

    /// How new sessions are placed.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Bounded-load factor for hashed affinity (client address, extractor):
    /// no backend gets more than this times the mean in-flight load. Default 1.25.
    pub fn hash_balance_factor(mut self, factor: f64) -> Self {
        self.hash_balance_factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.25
        };
        self
    }

    /// What to do when a pinned backend cannot take its request.
    pub fn failover(mut self, policy: FailoverPolicy) -> Self {
        self.failover = policy;
        self
    }

    /// A session older than this is over, whatever the cookie says
    /// (GEP-1619 `absoluteTimeout`).
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = Some(timeout);
        self
    }

    /// A session unused for this long is over (GEP-1619 `idleTimeout`). The
    /// token is re-issued to slide the window, at most once per
    /// [`refresh_interval`](Self::refresh_interval) and at least once per
    /// half idle timeout, so that a session in use never idle-expires.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Minimum time between two idle refreshes of one session's token.
    /// Default 60 s. Clamped to half the idle timeout: a longer interval
    /// would let a session used every second expire (a 10 s idle timeout
    /// with a 60 s interval would never refresh in time).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Ramp a newly inserted backend's share of new sessions up over this window.
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.slow_start = Some(window);
        self
    }

    /// Passive health checking.
    pub fn ejection(mut self, ejection: Ejection) -> Self {
        self.ejection = ejection;
        self
    }

    /// Keep a backend that discovery removed as draining for this long, so
    /// that its sessions can finish (a rolling deploy's old pod).
    pub fn removal_grace(mut self, grace: Duration) -> Self {
        self.removal_grace = Some(grace);
        self
    }

    /// Whether to remove our cookie (or header) from the request before the
    /// backend sees it. Default true.
    pub fn strip_token(mut self, strip: bool) -> Self {
        self.strip_token = strip;
        self
    }

    /// Return `tower_sticky::service::error::Rejected` from the
    /// service instead of answering `503` when the layer refuses a request
    /// (`Strict` failover, no backend). For stacks where an outer layer turns
    /// errors into responses.
    pub fn reject_with_error(mut self, as_error: bool) -> Self {
        self.reject_with_error = as_error;
        self
    }

    /// The clock (tests move a manual one).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The time between two idle refreshes of one token as the engine
    /// applies it: [`refresh_interval`](Self::refresh_interval), but at most
    /// half the idle timeout (whole seconds, as tokens count time).
    pub fn effective_refresh_interval(&self) -> Duration {
        match self.idle_timeout {
            Some(idle) => self
                .refresh_interval
                .min(Duration::from_secs(idle.as_secs() / 2)),
            None => self.refresh_interval,
        }
    }

    /// How long a session counts as active after its last request, for the
    /// per-backend session estimate (placement, "safe to stop"): the idle
    /// timeout, since a session idle for longer cannot come back with its
    /// token; else the absolute timeout; else
    /// [`DEFAULT_SESSION_WINDOW`](Self::DEFAULT_SESSION_WINDOW).
    pub fn session_window(&self) -> Duration {
        self.idle_timeout
            .or(self.absolute_timeout)
            .unwrap_or(Self::DEFAULT_SESSION_WINDOW)
    }

    /// The session window when tokens never expire: 30 minutes, a common
    /// idle timeout for web sessions. A token without expiry may come back
    /// later than that, so a route that drains backends should set an idle
    /// timeout, which makes "no session within the window" exact.
    pub const DEFAULT_SESSION_WINDOW: Duration = Duration::from_secs(30 * 60);

    /// The idle timeout, if any.
    pub fn idle_timeout_period(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The failover policy.
    pub fn failover_policy(&self) -> FailoverPolicy {
        self.failover
    }

    /// The removal grace period, if any.
    pub fn removal_grace_period(&self) -> Option<Duration> {
        self.removal_grace
    }

    /// The clock in use.
    pub fn clock_ref(&self) -> &Clock {
        &self.clock
    }
}
