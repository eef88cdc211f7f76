//! The admin API over a real loopback socket, with a fake gateway behind it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use serde_json::Value;
use sticky_gateway::admin::{
    serve, AdminView, BackendView, LatencyHistogram, RouteView, LATENCY_BOUNDS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_sticky::token::InvalidToken;
use tower_sticky::token::{KeyRing, Token};
use tower_sticky::{
    BackendState, BackendStats, BackendTable, Clock, Engine, Outcome, Reason, StableId, Stats,
    StickyConfig,
};

/// A gateway stand-in: two routes, three backends, drain/activate flip state.
struct FakeView {
    backends: Mutex<Vec<BackendView>>,
    calls: Mutex<Vec<String>>,
}

fn backend(route: &str, id: &str, port: u16, requests: u64, pinned: u64) -> BackendView {
    BackendView {
        route: route.into(),
        id: id.into(),
        address: format!("127.0.0.1:{port}"),
        state: "active".into(),
        removal_deadline_ms: None,
        health: "healthy".into(),
        in_flight: 2,
        requests,
        new_sessions: requests - pinned,
        pinned_hits: pinned,
        failures: 1,
        active_sessions: 40,
        session_window_seconds: 1800,
        drained: false,
    }
}

impl FakeView {
    fn new() -> Self {
        Self {
            backends: Mutex::new(vec![
                backend("app", "app-1", 9001, 100, 75),
                backend("app", "app-2", 9002, 0, 0),
                // A name that needs escaping in Prometheus label values.
                backend("api \"v2\"", "api\\1", 9003, 10, 5),
            ]),
            calls: Mutex::new(Vec::new()),
        }
    }

    fn set_state(&self, id: &str, state: &str) -> bool {
        self.calls.lock().unwrap().push(format!("{state}:{id}"));
        let mut all = self.backends.lock().unwrap();
        match all.iter_mut().find(|b| b.id == id) {
            Some(b) => {
                b.state = state.into();
                true
            }
            None => false,
        }
    }
}

/// A core snapshot with some counts in every family.
fn core_stats() -> Stats<&'static str> {
    let mut s = Stats::empty()
        .add(Outcome::Pinned, 75)
        .add(Outcome::New, 25)
        .add(Outcome::Repinned(Reason::Unhealthy), 3)
        .add_invalid(InvalidToken::Forged, 7);
    for r in Reason::ALL {
        s = s.add(Outcome::Rejected(r), 1);
    }
    assert_eq!(s.repinned()[1], (Reason::Unhealthy, 3));
    assert_eq!(s.invalid_tokens()[5], (InvalidToken::Forged, 7));
    s
}

impl AdminView for FakeView {
    fn backends(&self) -> Vec<BackendView> {
        self.backends.lock().unwrap().clone()
    }
    fn routes(&self) -> Vec<RouteView> {
        vec![
            RouteView::from_stats("app", "/", &core_stats()),
            RouteView::from_stats("api \"v2\"".to_string(), "/api\n", &core_stats()),
        ]
    }
    fn drain(&self, id: &str) -> bool {
        self.set_state(id, "draining")
    }
    fn activate(&self, id: &str) -> bool {
        self.set_state(id, "active")
    }
}

struct Admin {
    addr: std::net::SocketAddr,
    view: Arc<FakeView>,
    latency: Arc<LatencyHistogram>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Admin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let view = Arc::new(FakeView::new());
    let latency = Arc::new(LatencyHistogram::new());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, view.clone(), latency.clone(), async {
        let _ = rx.await;
    }));
    Admin {
        addr,
        view,
        latency,
        stop: Some(tx),
        task,
    }
}

impl Admin {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("admin listener stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    extra: &str,
) -> (u16, String, String) {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        String::from_utf8(buf).unwrap()
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("admin answers within 10 s");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
    let status = head[9..12].parse().unwrap();
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> Value {
    let (status, head, body) = request(addr, "GET", path, "").await;
    assert_eq!(status, 200, "{path}: {body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn backends_json_has_every_field() {
    let admin = start().await;
    let v = get_json(admin.addr, "/backends").await;
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    let b = &arr[0];
    for field in [
        "id",
        "route",
        "address",
        "state",
        "health",
        "in_flight",
        "requests",
        "new_sessions",
        "pinned_hits",
        "pinned_hit_rate",
        "failures",
    ] {
        assert!(b.get(field).is_some(), "missing {field} in {b}");
    }
    assert_eq!(b["id"], "app-1");
    assert_eq!(b["route"], "app");
    assert_eq!(b["address"], "127.0.0.1:9001");
    assert_eq!(b["state"], "active");
    assert_eq!(b["health"], "healthy");
    assert_eq!(b["in_flight"], 2);
    assert_eq!(b["requests"], 100);
    assert_eq!(b["new_sessions"], 25);
    assert_eq!(b["pinned_hits"], 75);
    assert_eq!(b["failures"], 1);
    assert!((b["pinned_hit_rate"].as_f64().unwrap() - 0.75).abs() < 1e-9);
    // No requests: the rate is 0, not NaN (which JSON cannot carry).
    assert_eq!(arr[1]["pinned_hit_rate"].as_f64(), Some(0.0));
    admin.shutdown().await;
}

#[tokio::test]
async fn drain_and_activate_change_state_and_unknown_is_404() {
    let admin = start().await;
    let (status, _, body) = request(admin.addr, "POST", "/backends/app-2/drain", "").await;
    assert_eq!(status, 200, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["id"], "app-2");
    assert_eq!(b["state"], "draining");
    assert!(b.get("pinned_hit_rate").is_some());

    let v = get_json(admin.addr, "/backends").await;
    assert_eq!(v[1]["state"], "draining");
    assert_eq!(v[0]["state"], "active", "only the named backend changed");

    let (status, _, body) = request(admin.addr, "POST", "/backends/app-2/activate", "").await;
    assert_eq!(status, 200, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["state"], "active");

    // Ids are percent-decoded path segments.
    let (status, _, body) = request(admin.addr, "POST", "/backends/api%5C1/drain", "").await;
    assert_eq!(status, 200, "{body}");

    for path in ["/backends/nope/drain", "/backends/nope/activate"] {
        let (status, head, body) = request(admin.addr, "POST", path, "").await;
        assert_eq!(status, 404, "{path}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert!(e["error"].as_str().unwrap().contains("nope"), "{e}");
    }

    // GET is not an action.
    let (status, _, _) = request(admin.addr, "GET", "/backends/app-1/drain", "").await;
    assert_eq!(status, 405);

    assert_eq!(
        *admin.view.calls.lock().unwrap(),
        [
            "draining:app-2",
            "active:app-2",
            "draining:api\\1",
            "draining:nope",
            "active:nope"
        ]
    );
    admin.shutdown().await;
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let admin = start().await;
    let (status, _, _) = request(
        admin.addr,
        "POST",
        "/backends/app-1/drain",
        "Origin: http://evil.example\r\n",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = request(
        admin.addr,
        "POST",
        "/backends/app-1/drain",
        "Sec-Fetch-Site: cross-site\r\n",
    )
    .await;
    assert_eq!(status, 403);
    assert!(admin.view.calls.lock().unwrap().is_empty());
    // The dashboard's own origin passes.
    let origin = format!("Origin: http://{}\r\n", admin.addr);
    let (status, _, _) = request(admin.addr, "POST", "/backends/app-1/drain", &origin).await;
    assert_eq!(status, 200);
    admin.shutdown().await;
}

#[tokio::test]
async fn stats_json_lists_routes_with_reasons() {
    let admin = start().await;
    for _ in 0..10 {
        admin.latency.record(Duration::from_millis(3));
    }
    let v = get_json(admin.addr, "/stats").await;
    let r = &v["routes"][0];
    assert_eq!(r["name"], "app");
    assert_eq!(r["prefix"], "/");
    assert_eq!(r["pinned"], 75);
    assert_eq!(r["new"], 25);
    assert_eq!(r["repinned"][1], serde_json::json!(["unhealthy", 3]));
    assert_eq!(r["repinned"].as_array().unwrap().len(), Reason::ALL.len());
    assert_eq!(r["invalid_tokens"][5], serde_json::json!(["forged", 7]));
    assert_eq!(v["latency"]["count"], 10);
    let p50 = v["latency"]["p50_seconds"].as_f64().unwrap();
    assert!((0.0025..=0.005).contains(&p50), "{p50}");
    admin.shutdown().await;
}

#[test]
fn route_view_names_every_reason_in_core_order() {
    let r = RouteView::from_stats("app", "/", &core_stats());
    let names: Vec<&str> = r.repinned.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, want);
    let names: Vec<&str> = r.invalid_tokens.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = InvalidToken::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, want);
}

#[test]
fn backend_view_from_core_stats() {
    // Stats as the engine takes them: 2 new sessions and 8 pinned requests,
    // 4 of them still in flight, then the backend drained.
    let engine = Engine::new(StickyConfig::new(KeyRing::generate()));
    let mut table = BackendTable::<&'static str>::new();
    table.insert("k", (), 0).unwrap();
    let fresh = || Request::new(()).into_parts().0;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let r = engine.decide(&table, &fresh(), |_| true);
        tokens.push(*r.issued_token().unwrap());
    }
    let sealed = engine.codec().unwrap().seal(&tokens[0]);
    let mut held = Vec::new();
    for i in 0..8 {
        let mut parts = fresh();
        let cookie = format!("sticky={}", sealed.as_str());
        parts.headers.insert("cookie", cookie.parse().unwrap());
        let mut r = engine.decide(&table, &parts, |_| true);
        assert_eq!(r.outcome(), Outcome::Pinned);
        assert!(r.begin(&engine, &table));
        if i < 4 {
            held.push(r);
        }
    }
    table.get(0).unwrap().status().drain();
    let stats = engine.stats(&table);
    let s: &BackendStats<&str> = &stats.backends()[0];
    assert_eq!(s.state(), BackendState::Draining);
    let v = BackendView::from_stats("app", "app-1", "10.0.0.1:80", "unknown", s);
    assert_eq!(v.state, "draining");
    assert_eq!(v.in_flight, 4);
    assert!((v.pinned_hit_rate() - 0.8).abs() < 1e-9);
}

/// Parses one exposition line `name{k="v",...} value` (the label values
/// unescaped), or panics with the line.
fn parse_sample(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (name_end, has_labels) = match line.find(['{', ' ']) {
        Some(i) => (i, line.as_bytes()[i] == b'{'),
        None => panic!("no value: {line}"),
    };
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line:?}"
    );
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if has_labels {
        let mut chars = rest[1..].char_indices();
        let mut key = String::new();
        let mut val = String::new();
        let mut in_val = false;
        let end;
        loop {
            let (i, c) = chars
                .next()
                .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
            if in_val {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => val.push('\\'),
                        Some('"') => val.push('"'),
                        Some('n') => val.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    '"' => {
                        labels.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                        in_val = false;
                    }
                    '\n' => panic!("raw newline in {line:?}"),
                    c => val.push(c),
                }
            } else {
                match c {
                    '}' => {
                        end = i + 2;
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                        in_val = true;
                    }
                    c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                    c => panic!("bad label name char {c:?} in {line:?}"),
                }
            }
        }
        rest = &rest[end..];
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before value: {line:?}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    (name.to_owned(), labels, value)
}

fn label<'a>(labels: &'a [(String, String)], k: &str) -> Option<&'a str> {
    labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn metrics_text_parses_and_histogram_is_consistent() {
    let admin = start().await;
    let durations = [
        Duration::from_micros(50),
        Duration::from_micros(100), // exactly on the first bound: le is inclusive
        Duration::from_micros(700),
        Duration::from_millis(3),
        Duration::from_millis(3),
        Duration::from_millis(80),
        Duration::from_secs(2),
        Duration::from_secs(30), // past the last bound: only +Inf
    ];
    for d in durations {
        admin.latency.record(d);
    }
    admin.view.drain("app-2");

    let (status, head, text) = request(admin.addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );

    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split_once(' ').unwrap().0.to_owned());
        } else {
            assert!(!line.starts_with('#'), "{line}");
            samples.push(parse_sample(line));
        }
    }
    for family in [
        "sticky_requests_total",
        "sticky_outcomes_total",
        "sticky_invalid_tokens_total",
        "sticky_backend_in_flight",
        "sticky_backend_state",
        "sticky_new_sessions_total",
        "sticky_request_duration_seconds",
    ] {
        assert!(typed.contains(family), "no # TYPE for {family}");
        assert!(helped.contains(family), "no # HELP for {family}");
    }
    // Every sample belongs to a declared family.
    for (name, _, _) in &samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(typed.contains(family), "undeclared {name}");
    }

    let find = |name: &str, want: &[(&str, &str)]| -> f64 {
        let hits: Vec<f64> = samples
            .iter()
            .filter(|(n, l, _)| n == name && want.iter().all(|(k, v)| label(l, k) == Some(v)))
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(hits.len(), 1, "{name} {want:?}: {hits:?}");
        hits[0]
    };
    assert_eq!(
        find(
            "sticky_requests_total",
            &[("route", "app"), ("backend", "app-1")]
        ),
        100.0
    );
    assert_eq!(
        find(
            "sticky_new_sessions_total",
            &[("route", "app"), ("backend", "app-1")]
        ),
        25.0
    );
    assert_eq!(
        find("sticky_backend_in_flight", &[("backend", "app-1")]),
        2.0
    );
    // Escaped label values come back intact.
    assert_eq!(
        find(
            "sticky_requests_total",
            &[("route", "api \"v2\""), ("backend", "api\\1")]
        ),
        10.0
    );
    // One-hot state.
    assert_eq!(
        find(
            "sticky_backend_state",
            &[("backend", "app-2"), ("state", "draining")]
        ),
        1.0
    );
    assert_eq!(
        find(
            "sticky_backend_state",
            &[("backend", "app-2"), ("state", "active")]
        ),
        0.0
    );
    let ones = samples
        .iter()
        .filter(|(n, l, v)| {
            n == "sticky_backend_state" && label(l, "backend") == Some("app-1") && *v == 1.0
        })
        .count();
    assert_eq!(ones, 1);
    assert_eq!(
        find(
            "sticky_outcomes_total",
            &[("route", "app"), ("outcome", "pinned")]
        ),
        75.0
    );
    assert_eq!(
        find(
            "sticky_outcomes_total",
            &[
                ("route", "app"),
                ("outcome", "repinned"),
                ("reason", "unhealthy")
            ]
        ),
        3.0
    );
    assert_eq!(
        find(
            "sticky_outcomes_total",
            &[
                ("route", "app"),
                ("outcome", "rejected"),
                ("reason", "no_backend")
            ]
        ),
        1.0
    );
    assert_eq!(
        find(
            "sticky_invalid_tokens_total",
            &[("route", "app"), ("reason", "forged")]
        ),
        7.0
    );

    // The histogram: buckets in ascending le, counts monotonic, +Inf == count.
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(n, _, _)| n == "sticky_request_duration_seconds_bucket")
        .map(|(_, l, v)| {
            let le = label(l, "le").unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, *v)
        })
        .collect();
    assert_eq!(buckets.len(), LATENCY_BOUNDS.len() + 1);
    assert!(buckets.last().unwrap().0.is_infinite());
    for w in buckets.windows(2) {
        assert!(w[0].0 < w[1].0, "le ascending: {w:?}");
        assert!(w[0].1 <= w[1].1, "cumulative counts monotonic: {w:?}");
    }
    let count = find("sticky_request_duration_seconds_count", &[]);
    assert_eq!(count, durations.len() as f64);
    assert_eq!(buckets.last().unwrap().1, count);
    let at = |le: f64| buckets.iter().find(|(b, _)| *b == le).unwrap().1;
    assert_eq!(at(0.0001), 2.0, "le is inclusive");
    assert_eq!(at(0.001), 3.0);
    assert_eq!(at(0.005), 5.0);
    assert_eq!(at(10.0), 7.0);
    let sum = find("sticky_request_duration_seconds_sum", &[]);
    let want: f64 = durations.iter().map(Duration::as_secs_f64).sum();
    assert!((sum - want).abs() < 1e-6, "{sum} vs {want}");
    admin.shutdown().await;
}

#[test]
fn histogram_counts_every_record_across_threads() {
    let h = Arc::new(LatencyHistogram::new());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u64 {
                    h.record(Duration::from_micros((i * 37 + t) % 20_000));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = h.snapshot();
    assert_eq!(s.count, 40_000);
    assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(s.quantile(0.5).unwrap() > 0.0);
    assert_eq!(LatencyHistogram::new().snapshot().quantile(0.5), None);
}

#[tokio::test]
async fn unknown_paths_are_json_404() {
    let admin = start().await;
    let (status, head, _) = request(admin.addr, "GET", "/nope", "").await;
    assert_eq!(status, 404);
    assert!(head.contains("application/json"));
    let (status, head, body) = request(admin.addr, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/html"));
    assert!(body.contains("<html"));
    admin.shutdown().await;
}

/// The gateway's view over a real engine and table, on a manual clock: what
/// `GET /backends/NAME/drained` answers as time passes, with no sleeping.
struct EngineView {
    engine: Engine,
    table: BackendTable<&'static str>,
}

impl AdminView for EngineView {
    fn backends(&self) -> Vec<BackendView> {
        let stats = self.engine.stats(&self.table);
        stats
            .backends()
            .iter()
            .map(|b| BackendView::from_stats("app", *b.key(), "127.0.0.1:1", "unknown", b))
            .collect()
    }
    fn routes(&self) -> Vec<RouteView> {
        Vec::new()
    }
    fn drain(&self, id: &str) -> bool {
        self.table
            .iter()
            .find(|b| *b.key() == id)
            .map(|b| b.status().drain())
            .is_some()
    }
    fn activate(&self, id: &str) -> bool {
        self.table
            .iter()
            .find(|b| *b.key() == id)
            .map(|b| b.status().activate())
            .is_some()
    }
}

#[tokio::test]
async fn drained_answers_200_only_once_the_window_passes_with_no_session() {
    const T0: u64 = 1_700_000_000_000;
    let idle = Duration::from_secs(600);
    let clock = Clock::manual(T0);
    let keys = KeyRing::generate();
    let engine = Engine::new(
        StickyConfig::new(keys.clone())
            .idle_timeout(idle)
            .clock(clock.clone()),
    );
    let mut table = BackendTable::new();
    table.insert("a", (), T0).unwrap();
    table.insert("b", (), T0).unwrap();
    // Ten sessions on each backend, each with a request now; one request
    // on `a` stays in flight. The session ids are fixed, not drawn: the
    // estimate is a HyperLogLog, and ten random ids share one of its
    // 4,096 registers about once in a hundred runs (the estimate then
    // reads 9). These twenty fall in twenty registers, every run.
    let codec = tower_sticky::token::TokenCodec::new(keys, "sticky");
    let mut slow = None;
    for (i, backend) in ["a", "b"].iter().enumerate() {
        for session in 1..=10u64 {
            let id = backend.to_string().stable_id();
            let token = Token::new(id, session + 100 * i as u64, (T0 / 1000) as u32);
            let head = Request::get("/")
                .header("cookie", format!("sticky={}", codec.seal(&token).as_str()))
                .body(())
                .unwrap()
                .into_parts()
                .0;
            let mut r = engine.decide(&table, &head, |_: usize| true);
            assert_eq!(r.outcome(), Outcome::Pinned);
            if slow.is_none() && r.target() == Some(0) {
                assert!(r.begin(&engine, &table));
                slow = Some(r);
            }
        }
    }
    assert!(slow.is_some());
    let view = Arc::new(EngineView { engine, table });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        view.clone(),
        Arc::new(LatencyHistogram::new()),
        async {
            let _ = rx.await;
        },
    ));
    let drained = |path: &'static str| async move {
        let (status, _, body) = request(addr, "GET", path, "").await;
        (status, serde_json::from_str::<Value>(&body).unwrap())
    };

    // Active: never drained, whatever its sessions.
    let (status, v) = drained("/backends/a/drained").await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["drained"], false);
    let r = &v["routes"][0];
    assert_eq!(r["state"], "active");
    assert_eq!(r["active_sessions"], 10, "{v}");
    assert_eq!(r["in_flight"], 1);
    assert_eq!(r["session_window_seconds"], 600);
    // The estimate is in /backends and /metrics too.
    let all = get_json(addr, "/backends").await;
    assert_eq!(all[0]["active_sessions"], 10, "{all}");
    assert_eq!(all[0]["drained"], false);
    let (_, _, metrics) = request(addr, "GET", "/metrics", "").await;
    assert!(
        metrics.contains("sticky_backend_active_sessions{route=\"app\",backend=\"a\"} 10"),
        "{metrics}"
    );

    // Draining, its ten sessions seen just now: not yet.
    let (status, _, _) = request(addr, "POST", "/backends/a/drain", "").await;
    assert_eq!(status, 200);
    let (status, v) = drained("/backends/a/drained").await;
    assert_eq!(
        (status, &v["routes"][0]["state"]),
        (503, &Value::from("draining"))
    );
    // Almost a whole window later: still not (a session may come back).
    clock.advance(idle - Duration::from_secs(1));
    let (status, v) = drained("/backends/a/drained").await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["routes"][0]["active_sessions"], 10);
    // Past the window: the sessions are gone, but a request that began
    // at the start is still in flight (a slow download), which holds it.
    clock.advance(idle / 3 + Duration::from_secs(1));
    let (status, v) = drained("/backends/a/drained").await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["routes"][0]["active_sessions"], 0, "{v}");
    assert_eq!(v["routes"][0]["in_flight"], 1, "{v}");
    drop(slow);
    let (status, v) = drained("/backends/a/drained").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["drained"], true);
    assert_eq!(v["routes"][0]["active_sessions"], 0);
    assert!(
        metrics_has(
            addr,
            "sticky_backend_drained{route=\"app\",backend=\"a\"} 1"
        )
        .await
    );
    // `b` is active: 503. Unknown: 404.
    assert_eq!(drained("/backends/b/drained").await.0, 503);
    assert_eq!(
        request(addr, "GET", "/backends/zz/drained", "").await.0,
        404
    );
    // Back to active: 503 again.
    let (status, _, _) = request(addr, "POST", "/backends/a/activate", "").await;
    assert_eq!(status, 200);
    assert_eq!(drained("/backends/a/drained").await.0, 503);

    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

async fn metrics_has(addr: std::net::SocketAddr, line: &str) -> bool {
    request(addr, "GET", "/metrics", "").await.2.contains(line)
}
