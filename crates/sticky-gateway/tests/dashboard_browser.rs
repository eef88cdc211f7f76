//! The dashboard in real headless Chromium: it renders every backend with
//! its state and live bars, and its Drain / Activate buttons reach the
//! gateway; behind an admin token it asks for the token once and keeps it
//! for the tab. Skips, saying so, where Debian's `chromium` is not
//! installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sticky_gateway::admin::auth::{AdminAuth, AdminAuthConfig};
use sticky_gateway::admin::{
    serve, serve_with_auth, AdminView, BackendView, LatencyHistogram, RouteView, StoreView,
};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tower_sticky::token::InvalidToken;
use tower_sticky::{Outcome, Reason, Stats};

// ---------------------------------------------------------------- fake gateway

/// A gateway stand-in with live-looking traffic: a ticker adds requests to
/// every backend (new sessions only to active ones) ten times a second.
struct FakeView {
    backends: Mutex<Vec<BackendView>>,
    calls: Mutex<Vec<String>>,
    ticks: AtomicU64,
    /// The state source shown, if any.
    store: Mutex<Option<StoreView>>,
}

impl FakeView {
    fn new() -> Self {
        let b = |route: &str, id: &str, port: u16, state: &str, health: &str| BackendView {
            route: route.into(),
            id: id.into(),
            address: format!("127.0.0.1:{port}"),
            state: state.into(),
            removal_deadline_ms: None,
            health: health.into(),
            in_flight: 0,
            requests: 0,
            new_sessions: 0,
            pinned_hits: 0,
            failures: 0,
            active_sessions: 0,
            session_window_seconds: 1800,
            drained: false,
        };
        Self {
            backends: Mutex::new(vec![
                b("app", "app-1", 9101, "active", "healthy"),
                b("app", "app-2", 9102, "active", "healthy"),
                BackendView {
                    active_sessions: 37,
                    ..b("app", "app-3", 9103, "active", "healthy")
                },
                b("api", "api-1", 9201, "active", "unknown"),
                b("api", "api-2", 9202, "ejected", "unhealthy"),
            ]),
            calls: Mutex::new(Vec::new()),
            ticks: AtomicU64::new(0),
            store: Mutex::new(None),
        }
    }

    fn tick(&self) {
        let t = self.ticks.fetch_add(1, Ordering::Relaxed);
        let mut all = self.backends.lock().unwrap();
        for (i, b) in all.iter_mut().enumerate() {
            let weight = [9, 6, 4, 5, 0][i % 5];
            let new = match b.state.as_str() {
                "active" => 1 + (t + i as u64) % 3,
                _ => 0,
            };
            b.requests += weight + new;
            b.new_sessions += new;
            b.pinned_hits += weight;
            b.in_flight = ((t as usize + i) % 4) * usize::from(weight > 0);
            if i == 1 && t % 7 == 0 {
                b.failures += 1;
            }
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
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

impl AdminView for FakeView {
    fn backends(&self) -> Vec<BackendView> {
        self.backends.lock().unwrap().clone()
    }

    fn routes(&self) -> Vec<RouteView> {
        let t = self.ticks.load(Ordering::Relaxed);
        // Both routes see the same failovers; the api route has pinned and
        // new counts of its own, one rejection and no invalid token.
        let failovers = Stats::<()>::empty()
            .add(Outcome::Repinned(Reason::Unhealthy), 12 + t / 10)
            .add(Outcome::Repinned(Reason::Removed), 3)
            .add(Outcome::Temporary(Reason::NotReady), 4);
        let app = failovers
            .clone()
            .add(Outcome::Pinned, 19 * t)
            .add(Outcome::New, 5 * t)
            .add_invalid(InvalidToken::Forged, 2)
            .add_invalid(InvalidToken::IdleExpired, 31 + t / 20);
        let api = failovers
            .add(Outcome::Pinned, 5 * t)
            .add(Outcome::New, t)
            .add(Outcome::Rejected(Reason::NoBackend), 1);
        vec![
            RouteView::from_stats("app", "/", &app),
            RouteView::from_stats("api", "/api/", &api),
        ]
    }

    fn drain(&self, id: &str) -> bool {
        self.set_state(id, "draining")
    }

    fn activate(&self, id: &str) -> bool {
        self.set_state(id, "active")
    }

    fn store(&self) -> Option<StoreView> {
        self.store.lock().unwrap().clone()
    }
}

struct Admin {
    addr: std::net::SocketAddr,
    view: Arc<FakeView>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves the fake gateway; `draining` backends are drained before any
/// traffic (without counting as a drain() call).
async fn start_admin(draining: &[&str]) -> Admin {
    start_admin_with(draining, None).await
}

/// [`start_admin`], requiring a token from `auth` when given.
async fn start_admin_with(draining: &[&str], auth: Option<Arc<AdminAuth>>) -> Admin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let view = Arc::new(FakeView::new());
    for b in view.backends.lock().unwrap().iter_mut() {
        if draining.contains(&b.id.as_str()) {
            b.state = "draining".into();
        }
    }
    for _ in 0..30 {
        view.tick();
    }
    let latency = Arc::new(LatencyHistogram::new());
    for i in 0..2000u64 {
        latency.record(Duration::from_micros(
            180 + (i * 7919) % 900 + (i % 97) * (i % 13) * 40,
        ));
    }
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tick_tx, mut stop_tick) = tokio::sync::watch::channel(());
    let ticker = view.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = every.tick() => ticker.tick(),
                _ = stop_tick.changed() => return,
            }
        }
    });
    let stop = async move {
        let _ = (&mut rx).await;
        drop(stop_tick_tx);
    };
    match auth {
        None => {
            tokio::spawn(serve(listener, view.clone(), latency, stop));
        }
        Some(auth) => {
            tokio::spawn(serve_with_auth(listener, view.clone(), latency, auth, stop));
        }
    }
    Admin {
        addr,
        view,
        stop: Some(tx),
    }
}

// ---------------------------------------------------------------- chromium

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STICKY_CHROMIUM") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

macro_rules! chromium_or_skip {
    () => {
        match chromium() {
            Some(p) => p,
            None => {
                eprintln!("skipping: chromium not found (install Debian's chromium)");
                return;
            }
        }
    };
}

/// A fresh user-data-dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "chromium-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Chromium's helper processes may still write for a moment after the
        // browser process is gone: retry briefly.
        for _ in 0..10 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The Chromium process this test spawned: killed (by its own pid, through
/// `Child::kill`) and reaped on drop.
struct Browser {
    child: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium_command(bin: &Path, profile: &TempDir) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--metrics-recording-only",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ])
    .arg(format!("--user-data-dir={}", profile.0.display()))
    .stdin(Stdio::null());
    c
}

/// Runs a one-shot Chromium command (dump-dom, screenshot) to completion,
/// bounded; returns its stdout.
async fn run_bounded(mut cmd: Command, limit: Duration) -> String {
    let errfile = tempfile_path("stderr");
    cmd.stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errfile).unwrap());
    tokio::task::spawn_blocking(move || {
        let child = cmd.spawn().expect("spawn chromium");
        let mut browser = Browser { child };
        let mut stdout = browser.child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).ok();
            s
        });
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = browser.child.try_wait().unwrap() {
                let out = reader.join().unwrap();
                let err = std::fs::read_to_string(&errfile).unwrap_or_default();
                let _ = std::fs::remove_file(&errfile);
                assert!(status.success(), "chromium failed: {status}\n{err}");
                return out;
            }
            if Instant::now() > deadline {
                drop(browser); // kills it, which closes stdout for the reader
                let _ = reader.join();
                let err = std::fs::read_to_string(&errfile).unwrap_or_default();
                panic!("chromium did not finish within {limit:?}\n{err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap()
}

fn tempfile_path(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The DevTools Protocol over the browser's websocket, with one page
/// attached in flat mode.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let ws = &mut self.ws;
        tokio::time::timeout(Duration::from_secs(15), async move {
            ws.send(Message::text(msg.to_string())).await.unwrap();
            while let Some(m) = ws.next().await {
                let Message::Text(t) = m.expect("devtools websocket") else {
                    continue;
                };
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == json!(id) {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
            panic!("devtools websocket closed during {method}");
        })
        .await
        .unwrap_or_else(|_| panic!("devtools {method} timed out"))
    }

    /// Evaluates an expression in the page and returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` until it returns `want`, for at most `limit`.
    async fn wait_for(&mut self, expr: &str, want: Value, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(expr).await;
            if v == want {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{expr} is {v}, waited {limit:?} for {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn open_devtools(bin: &Path, profile: &TempDir, url: &str) -> (Browser, Cdp) {
    let mut cmd = chromium_command(bin, profile);
    cmd.args([
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "--window-size=1280,900",
        "about:blank",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let browser = Browser {
        child: cmd.spawn().expect("spawn chromium"),
    };
    let port_file = profile.0.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (port, path) = loop {
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            let mut lines = s.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                break (port.trim().to_owned(), path.trim().to_owned());
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromium wrote no DevToolsActivePort within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ws_url = format!("ws://127.0.0.1:{port}{path}");
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(ws_url.as_str()),
    )
    .await
    .expect("devtools connect timed out")
    .expect("devtools connect");
    let mut cdp = Cdp {
        ws,
        next_id: 0,
        session: None,
    };
    let target = cdp.call("Target.createTarget", json!({ "url": url })).await;
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await;
    cdp.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
    (browser, cdp)
}

// ---------------------------------------------------------------- tests

/// Every `style="width: N%"` on elements whose class list includes `class`.
fn widths(dom: &str, class: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let needle = format!("class=\"{class}");
    let mut rest = dom;
    while let Some(i) = rest.find(&needle) {
        let tag_end = rest[i..].find('>').map_or(rest.len(), |e| i + e);
        let tag = &rest[i..tag_end];
        if let Some(w) = tag.find("width: ") {
            let num: String = tag[w + 7..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            out.push(num.parse().unwrap());
        }
        rest = &rest[tag_end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_backends_states_and_bars() {
    let bin = chromium_or_skip!();
    let admin = start_admin(&["app-3"]).await;
    let profile = TempDir::new("dom");
    let mut cmd = chromium_command(&bin, &profile);
    cmd.args([
        "--virtual-time-budget=5000",
        "--dump-dom",
        &format!("http://{}/", admin.addr),
    ]);
    let dom = run_bounded(cmd, Duration::from_secs(60)).await;

    for (id, state) in [
        ("app-1", "active"),
        ("app-2", "active"),
        ("app-3", "draining"),
        ("api-1", "active"),
        ("api-2", "ejected"),
    ] {
        let at = dom
            .find(&format!("data-backend=\"{id}\""))
            .unwrap_or_else(|| panic!("no card for {id} in the rendered page:\n{dom}"));
        let card = &dom[at..];
        let card = &card[..card.find("</article>").unwrap()];
        assert!(
            card.contains(&format!("data-state=\"{state}\"")),
            "{id} is not shown {state}: {card}"
        );
        assert!(
            card.contains(&format!("badge state s-{state}\">{state}</span>")),
            "{id} has no {state} badge: {card}"
        );
        assert!(card.contains("badge health h-"), "{id} has no health badge");
        assert!(
            card.contains("data-action=\"drain\""),
            "{id} has no drain button"
        );
    }
    assert!(dom.contains("safe to stop") || dom.contains("Draining:"));
    // The draining backend shows the sessions it still holds, in its
    // "Sessions" figure and in its note.
    let app3 = &dom[dom.find("data-backend=\"app-3\"").unwrap()..];
    let app3 = &app3[..app3.find("</article>").unwrap()];
    assert!(
        app3.contains(">Sessions<") && app3.contains(">37<"),
        "{app3}"
    );
    assert!(
        app3.contains("Draining: 37 sessions in the last 30 min"),
        "{app3}"
    );

    let traffic = widths(&dom, "bar-fill traffic");
    let sessions = widths(&dom, "bar-fill sessions");
    assert_eq!(traffic.len(), 5, "one traffic bar per backend");
    assert_eq!(sessions.len(), 5, "one new-sessions bar per backend");
    assert!(traffic.iter().all(|w| (0.0..=100.0).contains(w)));
    // Shares are per route: the app route's three bars add up to 100 %.
    let app: f64 = traffic[..3].iter().sum();
    assert!((app - 100.0).abs() < 0.5, "app traffic shares {traffic:?}");
    assert!(
        traffic[0] > traffic[2],
        "app-1 takes more than app-3: {traffic:?}"
    );
    // The draining backend gets no new sessions.
    assert_eq!(sessions[2], 0.0, "{sessions:?}");
    assert!(dom.contains("idle expired"), "invalid-token reasons shown");
    assert!(dom.contains("repinned · unhealthy"), "re-pin reasons shown");
    assert!(dom.contains("class=\"live\" id=\"live\" data-status=\"ok\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_activate_buttons_reach_the_gateway() {
    let bin = chromium_or_skip!();
    let admin = start_admin(&[]).await;
    let profile = TempDir::new("cdp");
    let url = format!("http://{}/", admin.addr);
    let (_browser, mut cdp) = open_devtools(&bin, &profile, &url).await;

    let badge =
        r#"document.querySelector('[data-backend="app-2"] .badge.state')?.textContent ?? null"#;
    let limit = Duration::from_secs(20);
    cdp.wait_for(badge, json!("active"), limit).await;
    assert_eq!(
        cdp.eval(
            r#"document.querySelector('button[data-action="drain"][data-id="app-2"]').disabled"#
        )
        .await,
        json!(false)
    );
    assert_eq!(
        cdp.eval(
            r#"document.querySelector('button[data-action="activate"][data-id="app-2"]').disabled"#
        )
        .await,
        json!(true),
        "activating an active backend is offered as a no-op"
    );
    // Live bars: after a second poll the app route's traffic shares add up to 100 %.
    cdp.wait_for(
        r#"(() => { const w = [...document.querySelectorAll('[data-route="app"] .bar-fill.traffic')].map(e => parseFloat(e.style.width)); return w.length === 3 && Math.abs(w.reduce((a, b) => a + b, 0) - 100) < 0.5 && !document.querySelector('[data-backend="app-1"] .bar-fill.traffic').classList.contains('historic'); })()"#,
        json!(true),
        limit,
    )
    .await;
    assert!(admin.view.calls().is_empty());

    cdp.eval(
        r#"document.querySelector('button[data-action="drain"][data-id="app-2"]').click(); true"#,
    )
    .await;
    cdp.wait_for(badge, json!("draining"), limit).await;
    assert_eq!(
        admin.view.calls(),
        ["draining:app-2"],
        "drain() was called once"
    );
    cdp.wait_for(
        r#"document.querySelector('[data-backend="app-2"]').dataset.state"#,
        json!("draining"),
        limit,
    )
    .await;
    assert_eq!(
        cdp.eval(
            r#"document.querySelector('button[data-action="drain"][data-id="app-2"]').disabled"#
        )
        .await,
        json!(true)
    );
    // A draining backend's new-session share falls to zero once the next interval is seen.
    cdp.wait_for(
        r#"parseFloat(document.querySelector('[data-backend="app-2"] .bar-fill.sessions').style.width)"#,
        json!(0),
        limit,
    )
    .await;

    cdp.eval(r#"document.querySelector('button[data-action="activate"][data-id="app-2"]').click(); true"#)
        .await;
    cdp.wait_for(badge, json!("active"), limit).await;
    assert_eq!(admin.view.calls(), ["draining:app-2", "active:app-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_fed_route_offers_no_drain_button_and_says_why() {
    let bin = chromium_or_skip!();
    let admin = start_admin(&[]).await;
    const WHY: &str = "drain and activate follow the pods of Service shop/web: `kubectl -n shop delete pod NAME` drains one on every replica";
    *admin.view.store.lock().unwrap() = Some(StoreView {
        engine: "kubernetes".into(),
        route: "app".into(),
        connected: true,
        revision: 42,
        snapshot_revision: 42,
        last_sync_age_seconds: Some(3.0),
        intent_refused: Some(WHY.into()),
        ..Default::default()
    });
    let profile = TempDir::new("kube");
    let url = format!("http://{}/", admin.addr);
    let (_browser, mut cdp) = open_devtools(&bin, &profile, &url).await;
    let limit = Duration::from_secs(20);
    cdp.wait_for(
        r#"document.getElementById('store-state')?.textContent ?? null"#,
        json!("kubernetes connected"),
        limit,
    )
    .await;
    assert_eq!(
        cdp.eval(r#"document.getElementById('store-ack').textContent"#)
            .await,
        json!(WHY)
    );
    cdp.wait_for(
        r#"document.querySelector('button[data-action="drain"][data-id="app-2"]')?.disabled ?? null"#,
        json!(true),
        limit,
    )
    .await;
    assert_eq!(
        cdp.eval(r#"document.querySelector('button[data-action="drain"][data-id="app-2"]').title"#)
            .await,
        json!(WHY),
        "the button says why"
    );
    // Another route's backends drain locally as ever.
    assert_eq!(
        cdp.eval(
            r#"document.querySelector('button[data-action="drain"][data-id="api-1"]').disabled"#
        )
        .await,
        json!(false)
    );
    assert!(admin.view.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_token_the_dashboard_signs_in_once_per_tab_and_drains() {
    let bin = chromium_or_skip!();
    const TOKEN: &str = "dashboard-admin-token-0123456789";
    let dir = TempDir::new("tokens");
    let file = dir.0.join("admin-tokens");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let auth = AdminAuth::from_config(&AdminAuthConfig {
        token_file: Some(file),
        ..Default::default()
    })
    .unwrap();
    let auth = Arc::new(auth);
    let admin = start_admin_with(&[], Some(auth.clone())).await;
    let profile = TempDir::new("cdp-auth");
    let url = format!("http://{}/", admin.addr);
    let (_browser, mut cdp) = open_devtools(&bin, &profile, &url).await;
    let limit = Duration::from_secs(20);

    // Refused without a token: the sign-in form, no data.
    let form_shown =
        "document.getElementById('login') !== null && !document.getElementById('login').hidden";
    cdp.wait_for(form_shown, json!(true), limit).await;
    assert_eq!(
        cdp.eval("document.querySelectorAll('[data-backend]').length")
            .await,
        json!(0)
    );
    let sign_in = |t: &str| {
        format!(
            "document.getElementById('login-token').value = {}; \
             document.getElementById('login-submit').click(); true",
            json!(t)
        )
    };
    // A wrong token is refused and forgotten.
    cdp.eval(&sign_in("not-the-token-0123456789")).await;
    cdp.wait_for(
        "document.getElementById('login-error').textContent",
        json!("That token was refused."),
        limit,
    )
    .await;
    cdp.wait_for(form_shown, json!(true), limit).await;
    assert_eq!(
        cdp.eval("sessionStorage.getItem('sticky-admin-token')")
            .await,
        Value::Null
    );

    // The right one: the dashboard shows, and Drain reaches the gateway.
    cdp.eval(&sign_in(TOKEN)).await;
    let badge =
        r#"document.querySelector('[data-backend="app-2"] .badge.state')?.textContent ?? null"#;
    cdp.wait_for(badge, json!("active"), limit).await;
    assert_eq!(
        cdp.eval("sessionStorage.getItem('sticky-admin-token')")
            .await,
        json!(TOKEN),
        "kept for the tab"
    );
    cdp.eval(
        r#"document.querySelector('button[data-action="drain"][data-id="app-2"]').click(); true"#,
    )
    .await;
    cdp.wait_for(badge, json!("draining"), limit).await;
    assert_eq!(admin.view.calls(), ["draining:app-2"]);

    // Reloading the tab asks for nothing: the token is kept.
    let failures = auth.failures();
    cdp.eval("location.reload(); true").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cdp.wait_for(badge, json!("draining"), limit).await;
    assert_eq!(cdp.eval(form_shown).await, json!(false));
    assert_eq!(
        auth.failures(),
        failures,
        "no refused call after the reload"
    );
}

/// Takes the dashboard's picture once live bars show (real time, so the
/// page has seen a traffic interval), for a person to judge the design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_screenshot() {
    let bin = chromium_or_skip!();
    let admin = start_admin(&["app-3"]).await;
    let profile = TempDir::new("shot");
    let url = format!("http://{}/", admin.addr);
    let (_browser, mut cdp) = open_devtools(&bin, &profile, &url).await;
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;
    cdp.wait_for(
        r#"!!document.querySelector('[data-backend="app-1"] .bar-fill.traffic:not(.historic)')"#,
        json!(true),
        Duration::from_secs(20),
    )
    .await;
    // Let the bar transitions settle.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let shot = cdp
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 10_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    let path = std::env::var_os("STICKY_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"));
    std::fs::write(&path, &png).unwrap();
    eprintln!("dashboard screenshot: {}", path.display());

    // The whole page too, below the fold.
    let height = cdp
        .eval("Math.ceil(document.documentElement.scrollHeight)")
        .await
        .as_f64()
        .unwrap();
    let full = cdp
        .call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": 1280, "height": height, "scale": 1 } }),
        )
        .await;
    let full_path = path.with_file_name("dashboard-full.png");
    std::fs::write(&full_path, base64_decode(full["data"].as_str().unwrap())).unwrap();
    eprintln!("full-page screenshot: {}", full_path.display());
}

/// Standard base64 (the DevTools screenshot payload), no padding checks.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &v)| n | u32::from(v) << (18 - 6 * i));
        let take = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    out
}
