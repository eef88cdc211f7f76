//! Prometheus text exposition and the request latency histogram.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::model::{AdminView, BackendView, RouteView};

/// Upper bounds (`le`) of the latency buckets, in seconds.
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The same bounds in nanoseconds, for the comparison on the record path.
const BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A lock-free latency histogram with Prometheus-style cumulative `le`
/// buckets from 100 µs to 10 s (see [`LATENCY_BOUNDS`]) and `+Inf`.
///
/// [`record`](Self::record) is a few relaxed atomic adds, cheap enough for
/// every proxied request; the admin listener reads it with
/// [`snapshot`](Self::snapshot).
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Per-bucket counts (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; 17],
    /// Sum of recorded durations in nanoseconds.
    sum_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one request's duration.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// A consistent-enough read: cumulative bucket counts, whose last
    /// (`+Inf`) count is the snapshot's `count`.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(LATENCY_BOUNDS.len());
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            if i < LATENCY_BOUNDS.len() {
                buckets.push((LATENCY_BOUNDS[i], cumulative));
            }
        }
        HistogramSnapshot {
            buckets,
            count: cumulative,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A read of a [`LatencyHistogram`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HistogramSnapshot {
    /// `(le, cumulative count)` for every finite bound, in ascending order.
    pub buckets: Vec<(f64, u64)>,
    /// Every recorded request (the `+Inf` bucket).
    pub count: u64,
    /// Sum of recorded durations, in seconds.
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// An estimate of the `q` quantile (0..=1) in seconds, interpolated
    /// linearly inside its bucket as Prometheus' `histogram_quantile` does;
    /// `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut prev_le = 0.0;
        let mut prev_count = 0u64;
        for &(le, c) in &self.buckets {
            if c as f64 >= rank {
                let in_bucket = (c - prev_count) as f64;
                if in_bucket == 0.0 {
                    return Some(le);
                }
                return Some(prev_le + (le - prev_le) * (rank - prev_count as f64) / in_bucket);
            }
            prev_le = le;
            prev_count = c;
        }
        // Beyond the last finite bound: report that bound, as Prometheus does.
        Some(prev_le)
    }
}

/// Escapes a label value for the text exposition format: backslash, double
/// quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample line.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Formats a float the way Prometheus reads it.
fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// The states a backend can be in, for the one-hot `sticky_backend_state`.
const STATES: [&str; 4] = ["active", "draining", "ejected", "removed"];
/// The health values, for the one-hot `sticky_backend_health`.
const HEALTHS: [&str; 3] = ["healthy", "unhealthy", "unknown"];

/// Renders the whole exposition from the view and the latency histogram.
pub fn render(view: &dyn AdminView, latency: &LatencyHistogram) -> String {
    render_parts(&view.backends(), &view.routes(), &latency.snapshot())
}

/// Renders the exposition from already-taken snapshots.
pub fn render_parts(
    backends: &[BackendView],
    routes: &[RouteView],
    latency: &HistogramSnapshot,
) -> String {
    let mut out = String::with_capacity(4096 + backends.len() * 1024);

    type Field = fn(&BackendView) -> u64;
    let per_backend: [(&str, &str, &str, Field); 4] = [
        (
            "sticky_requests_total",
            "counter",
            "Requests routed to a backend.",
            |b| b.requests,
        ),
        (
            "sticky_new_sessions_total",
            "counter",
            "New sessions placed on a backend.",
            |b| b.new_sessions,
        ),
        (
            "sticky_pinned_hits_total",
            "counter",
            "Requests that arrived pinned to a backend and were served by it.",
            |b| b.pinned_hits,
        ),
        (
            "sticky_backend_failures_total",
            "counter",
            "Failed requests to a backend (connect errors, 5xx).",
            |b| b.failures,
        ),
    ];
    for (name, kind, help, field) in per_backend {
        header(&mut out, name, kind, help);
        for b in backends {
            sample(
                &mut out,
                name,
                &[("route", &b.route), ("backend", &b.id)],
                field(b),
            );
        }
    }

    header(
        &mut out,
        "sticky_backend_in_flight",
        "gauge",
        "Requests in flight to a backend now.",
    );
    for b in backends {
        sample(
            &mut out,
            "sticky_backend_in_flight",
            &[("route", &b.route), ("backend", &b.id)],
            b.in_flight,
        );
    }

    header(
        &mut out,
        "sticky_backend_active_sessions",
        "gauge",
        "Estimated distinct sessions that reached a backend within the route's idle timeout (HyperLogLog).",
    );
    for b in backends {
        sample(
            &mut out,
            "sticky_backend_active_sessions",
            &[("route", &b.route), ("backend", &b.id)],
            b.active_sessions,
        );
    }

    header(
        &mut out,
        "sticky_backend_drained",
        "gauge",
        "1 when a backend is safe to stop: draining, nothing in flight, no session within the idle timeout.",
    );
    for b in backends {
        sample(
            &mut out,
            "sticky_backend_drained",
            &[("route", &b.route), ("backend", &b.id)],
            u8::from(b.drained),
        );
    }

    header(
        &mut out,
        "sticky_backend_state",
        "gauge",
        "A backend's state: 1 for the current state, 0 for the others.",
    );
    for b in backends {
        for s in STATES {
            let v = u8::from(b.state == s);
            sample(
                &mut out,
                "sticky_backend_state",
                &[("route", &b.route), ("backend", &b.id), ("state", s)],
                v,
            );
        }
    }

    header(
        &mut out,
        "sticky_backend_health",
        "gauge",
        "A backend's active health: 1 for the current value, 0 for the others.",
    );
    for b in backends {
        for h in HEALTHS {
            let v = u8::from(b.health == h);
            sample(
                &mut out,
                "sticky_backend_health",
                &[("route", &b.route), ("backend", &b.id), ("health", h)],
                v,
            );
        }
    }

    header(
        &mut out,
        "sticky_outcomes_total",
        "counter",
        "Affinity decisions by outcome (pinned, new, repinned, temporary, rejected) and reason.",
    );
    for r in routes {
        sample(
            &mut out,
            "sticky_outcomes_total",
            &[("route", &r.name), ("outcome", "pinned"), ("reason", "")],
            r.pinned,
        );
        sample(
            &mut out,
            "sticky_outcomes_total",
            &[("route", &r.name), ("outcome", "new"), ("reason", "")],
            r.new,
        );
        for (outcome, reasons) in [
            ("repinned", &r.repinned),
            ("temporary", &r.temporary),
            ("rejected", &r.rejected),
        ] {
            for (reason, n) in reasons {
                sample(
                    &mut out,
                    "sticky_outcomes_total",
                    &[("route", &r.name), ("outcome", outcome), ("reason", reason)],
                    n,
                );
            }
        }
    }

    header(
        &mut out,
        "sticky_invalid_tokens_total",
        "counter",
        "Presented affinity tokens that were not trusted, by reason.",
    );
    for r in routes {
        for (reason, n) in &r.invalid_tokens {
            sample(
                &mut out,
                "sticky_invalid_tokens_total",
                &[("route", &r.name), ("reason", reason)],
                n,
            );
        }
    }

    let h = "sticky_request_duration_seconds";
    header(
        &mut out,
        h,
        "histogram",
        "Time from a request's arrival to its response head, in seconds.",
    );
    let bucket = format!("{h}_bucket");
    for &(le, c) in &latency.buckets {
        sample(&mut out, &bucket, &[("le", &float(le))], c);
    }
    sample(&mut out, &bucket, &[("le", "+Inf")], latency.count);
    sample(
        &mut out,
        &format!("{h}_sum"),
        &[],
        float(latency.sum_seconds),
    );
    sample(&mut out, &format!("{h}_count"), &[], latency.count);

    out
}

/// Appends the shared store's gauges: `sticky_store_connected`,
/// `sticky_store_revision`, `sticky_store_last_sync_age_seconds`,
/// `sticky_store_stale`, `sticky_store_replicas` and, per backend of the
/// fed route, `sticky_fleet_active_sessions`.
pub fn render_store(out: &mut String, s: &super::StoreView) {
    let labels = [("engine", s.engine.as_str()), ("route", s.route.as_str())];
    header(
        out,
        "sticky_store_connected",
        "gauge",
        "Whether this replica's watch on the shared store is up (1) or not (0).",
    );
    sample(
        out,
        "sticky_store_connected",
        &labels,
        u8::from(s.connected),
    );
    header(
        out,
        "sticky_store_stale",
        "gauge",
        "Serving a cached snapshot the store has not confirmed since start.",
    );
    sample(out, "sticky_store_stale", &labels, u8::from(s.stale));
    header(
        out,
        "sticky_store_revision",
        "gauge",
        "The store revision this replica has applied.",
    );
    sample(out, "sticky_store_revision", &labels, s.revision);
    header(
        out,
        "sticky_store_last_sync_age_seconds",
        "gauge",
        "Seconds since the store last answered this replica (absent: never).",
    );
    if let Some(age) = s.last_sync_age_seconds {
        sample(
            out,
            "sticky_store_last_sync_age_seconds",
            &labels,
            float(age),
        );
    }
    header(
        out,
        "sticky_store_replicas",
        "gauge",
        "Live replicas registered in the store.",
    );
    sample(out, "sticky_store_replicas", &labels, s.replicas.len());
    header(
        out,
        "sticky_fleet_active_sessions",
        "gauge",
        "Distinct sessions seen within the session window by any live replica (merged estimate).",
    );
    for (b, n) in &s.fleet_sessions {
        sample(
            out,
            "sticky_fleet_active_sessions",
            &[("route", s.route.as_str()), ("backend", b.as_str())],
            n,
        );
    }
}
