//! The admin HTTP API: routes, handlers and JSON shapes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::auth::{self, AdminAuth};
use super::metrics::{self, HistogramSnapshot, LatencyHistogram};
use super::model::{AdminView, BackendView, RouteView, StoreView};

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    view: Arc<dyn AdminView>,
    latency: Arc<LatencyHistogram>,
    auth: Arc<AdminAuth>,
}

/// A backend in `GET /backends`: the view plus its pinned-hit rate.
#[derive(Serialize)]
struct BackendJson<'a> {
    #[serde(flatten)]
    view: &'a BackendView,
    /// `pinned_hits / requests`, 0 when there were no requests.
    pinned_hit_rate: f64,
    /// On a route fed by a shared store: every live replica's session
    /// estimate merged (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet_active_sessions: Option<u64>,
}

impl<'a> From<&'a BackendView> for BackendJson<'a> {
    fn from(view: &'a BackendView) -> Self {
        Self {
            view,
            pinned_hit_rate: view.pinned_hit_rate(),
            fleet_active_sessions: None,
        }
    }
}

impl<'a> BackendJson<'a> {
    fn with_store(view: &'a BackendView, store: Option<&StoreView>) -> Self {
        let fleet = store
            .filter(|s| s.route == view.route)
            .and_then(|s| s.fleet_sessions.get(&view.id).copied());
        Self {
            fleet_active_sessions: fleet,
            ..Self::from(view)
        }
    }
}

/// `GET /stats`: routes, a latency summary and the shared store's state.
#[derive(Serialize)]
struct StatsJson {
    routes: Vec<RouteView>,
    latency: LatencyJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<StoreView>,
}

/// The latency summary in `GET /stats`.
#[derive(Serialize)]
struct LatencyJson {
    count: u64,
    sum_seconds: f64,
    p50_seconds: Option<f64>,
    p90_seconds: Option<f64>,
    p99_seconds: Option<f64>,
}

impl From<&HistogramSnapshot> for LatencyJson {
    fn from(h: &HistogramSnapshot) -> Self {
        Self {
            count: h.count,
            sum_seconds: h.sum_seconds,
            p50_seconds: h.quantile(0.5),
            p90_seconds: h.quantile(0.9),
            p99_seconds: h.quantile(0.99),
        }
    }
}

/// The admin router: `GET /`, `GET /backends`, `GET /backends/{id}/drained`,
/// `POST /backends/{id}/drain`, `POST /backends/{id}/activate`, `GET /stats`
/// and `GET /metrics`, open to every caller.
pub fn router(view: Arc<dyn AdminView>, latency: Arc<LatencyHistogram>) -> Router {
    router_with_auth(view, latency, Arc::new(AdminAuth::open()))
}

/// The admin router, each call checked by `auth` first.
pub fn router_with_auth(
    view: Arc<dyn AdminView>,
    latency: Arc<LatencyHistogram>,
    auth: Arc<AdminAuth>,
) -> Router {
    Router::new()
        .route("/", get(super::dashboard::page))
        .route("/backends", get(backends))
        .route("/backends/{id}/drained", get(drained))
        .route("/backends/{id}/drain", post(drain))
        .route("/backends/{id}/activate", post(activate))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            auth::require,
        ))
        .with_state(AppState {
            view,
            latency,
            auth,
        })
}

/// Marks a JSON answer as never cacheable: it is a live reading.
fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON error body with a status.
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    no_store((status, Json(serde_json::json!({ "error": msg.into() }))).into_response())
}

async fn backends(State(s): State<AppState>) -> Response {
    let all = s.view.backends();
    let store = s.view.store();
    let body: Vec<BackendJson<'_>> = all
        .iter()
        .map(|b| BackendJson::with_store(b, store.as_ref()))
        .collect();
    no_store(Json(body).into_response())
}

/// `GET /backends/{id}/drained`: whether the backend is safe to stop.
#[derive(Serialize)]
struct DrainedJson {
    id: String,
    /// 200 exactly when true.
    drained: bool,
    /// Every route the backend serves, with its figures: drained only when
    /// drained in each.
    routes: Vec<DrainedRoute>,
}

/// One route's figures in [`DrainedJson`].
#[derive(Serialize)]
struct DrainedRoute {
    route: String,
    state: String,
    in_flight: usize,
    active_sessions: u64,
    session_window_seconds: u64,
    /// On a route fed by a shared store: the sessions every live replica
    /// saw (merged); drained then also needs this at 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet_active_sessions: Option<u64>,
    drained: bool,
}

/// A read, for a deploy script or a preStop hook to poll: 200 when the
/// backend is draining, has nothing in flight and saw no session within the
/// session window (the idle timeout) on every route it serves; 503 (with
/// the same figures) while it is not, so that `curl --fail` loops until
/// stopping it loses no user; 404 for an unknown name. On a route fed by a
/// shared store, the sessions every live replica saw count too, so one
/// replica answers for the fleet.
async fn drained(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let store = s.view.store();
    let routes: Vec<DrainedRoute> = s
        .view
        .backends()
        .into_iter()
        .filter(|b| b.id == id)
        .map(|b| {
            let fleet = store
                .as_ref()
                .filter(|st| st.route == b.route)
                .and_then(|st| st.fleet_sessions.get(&b.id).copied());
            DrainedRoute {
                drained: b.drained && fleet.unwrap_or(0) == 0,
                route: b.route,
                state: b.state,
                in_flight: b.in_flight,
                active_sessions: b.active_sessions,
                session_window_seconds: b.session_window_seconds,
                fleet_active_sessions: fleet,
            }
        })
        .collect();
    if routes.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("unknown backend id: {id}"));
    }
    let drained = routes.iter().all(|r| r.drained);
    let status = if drained {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store(
        (
            status,
            Json(DrainedJson {
                id,
                drained,
                routes,
            }),
        )
            .into_response(),
    )
}

async fn stats(State(s): State<AppState>) -> Response {
    let latency = s.latency.snapshot();
    no_store(
        Json(StatsJson {
            routes: s.view.routes(),
            latency: LatencyJson::from(&latency),
            store: s.view.store(),
        })
        .into_response(),
    )
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let mut body = metrics::render(s.view.as_ref(), &s.latency);
    if s.auth.has_file() {
        use std::fmt::Write as _;
        let _ = write!(
            body,
            "# HELP sticky_admin_auth_failures_total Admin calls refused for a missing or wrong token.\n\
             # TYPE sticky_admin_auth_failures_total counter\n\
             sticky_admin_auth_failures_total {}\n",
            s.auth.failures()
        );
    }
    if let Some(store) = s.view.store() {
        metrics::render_store(&mut body, &store);
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// Which operator action a POST asks for.
#[derive(Clone, Copy)]
enum Action {
    Drain,
    Activate,
}

async fn drain(s: State<AppState>, h: HeaderMap, id: Path<String>) -> Response {
    act(s, h, id, Action::Drain).await
}

async fn activate(s: State<AppState>, h: HeaderMap, id: Path<String>) -> Response {
    act(s, h, id, Action::Activate).await
}

async fn act(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    a: Action,
) -> Response {
    if !same_origin(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "cross-origin request refused: POST from the dashboard's own origin or without an Origin header",
        );
    }
    let intent = match a {
        Action::Drain => crate::state::AdminState::Draining,
        Action::Activate => crate::state::AdminState::Active,
    };
    // A store shared by replicas owns this backend: the intent goes there,
    // and the answer waits until this replica has applied it.
    let mut revision = None;
    if let Some(stored) = s.view.set_intent(&id, intent) {
        use crate::state::IntentError;
        match stored.await {
            Ok(rev) => revision = Some(rev),
            Err(IntentError::UnknownBackend) => {
                return error(StatusCode::NOT_FOUND, format!("unknown backend id: {id}"))
            }
            Err(e @ (IntentError::Conflict | IntentError::External(_))) => {
                return error(StatusCode::CONFLICT, e.to_string())
            }
            Err(e @ IntentError::Unavailable(_)) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            Err(e @ IntentError::NotApplied(_)) => {
                return error(StatusCode::GATEWAY_TIMEOUT, e.to_string())
            }
        }
    } else {
        let known = match a {
            Action::Drain => s.view.drain(&id),
            Action::Activate => s.view.activate(&id),
        };
        if !known {
            return error(StatusCode::NOT_FOUND, format!("unknown backend id: {id}"));
        }
    }
    match s.view.backends().iter().find(|b| b.id == id) {
        Some(b) => {
            let mut r = no_store(Json(BackendJson::from(b)).into_response());
            if let Some(rev) = revision {
                r.headers_mut()
                    .insert("sticky-store-revision", HeaderValue::from(rev));
            }
            r
        }
        // Known a moment ago, gone now (removed by a reload in between).
        None => error(StatusCode::NOT_FOUND, format!("backend {id} is gone")),
    }
}

/// Refuses state-changing requests that a browser sends on behalf of another
/// site (a form or fetch from any page the operator has open): such requests
/// carry an `Origin` whose host is not ours, or `Sec-Fetch-Site: cross-site`.
/// Tools such as curl send neither and pass.
fn same_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST) else {
        return false;
    };
    let origin = origin.as_bytes();
    let authority = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    authority == Some(host.as_bytes())
}
