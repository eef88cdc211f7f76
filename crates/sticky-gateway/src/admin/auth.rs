//! Admin authentication: bearer tokens from a file, compared in constant
//! time.
//!
//! With a token file (`--admin-token-file FILE`, one token per line, blank
//! lines and `#` comments ignored) every admin call needs
//! `Authorization: Bearer TOKEN`, except the dashboard page itself (static,
//! no data: it asks for the token) and what the configuration opens:
//! `admin_open_reads` (every `GET`) and `admin_open_metrics` (`GET
//! /metrics`, for scrapers). A refused call answers 401 and changes
//! nothing; it is logged with the peer's address and counted
//! (`sticky_admin_auth_failures_total`).
//!
//! Without a token file the admin listener is open, so it may only bind a
//! loopback address ([`check_bind`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::config::ConfigError;

/// Shortest token accepted: 16 characters (a `keygen` key is 44).
pub const MIN_TOKEN_LEN: usize = 16;

/// Who may call the admin API.
#[derive(Debug)]
pub struct AdminAuth {
    file: Option<PathBuf>,
    tokens: ArcSwap<Vec<Box<[u8]>>>,
    seen: Mutex<Option<(SystemTime, u64)>>,
    /// Every `GET` is open.
    pub open_reads: bool,
    /// `GET /metrics` is open.
    pub open_metrics: bool,
    failures: AtomicU64,
}

/// What the admin configuration says about authentication.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminAuthConfig {
    /// The token file: one token per line.
    pub token_file: Option<PathBuf>,
    /// Reads (`GET`) need no token.
    pub open_reads: bool,
    /// `GET /metrics` needs no token.
    pub open_metrics: bool,
}

/// Refuses an admin address that is not loopback when no token file is
/// set: anyone who can reach it could drain every backend.
pub fn check_bind(admin: Option<SocketAddr>, auth: &AdminAuthConfig) -> Result<(), ConfigError> {
    match admin {
        Some(a) if !a.ip().is_loopback() && auth.token_file.is_none() => Err(ConfigError::new(
            "admin",
            format!(
                "{a} is not a loopback address: the admin API can drain every backend, so \
                 binding it beyond this host needs --admin-token-file FILE (admin_token_file) \
                 to require a bearer token"
            ),
        )),
        _ => Ok(()),
    }
}

fn stat(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reads a token file: one token per line, `#` comments and blank lines
/// ignored; at least one token, each at least [`MIN_TOKEN_LEN`] long and
/// without spaces.
pub fn read_tokens(path: &Path) -> Result<Vec<Box<[u8]>>, ConfigError> {
    let field = format!("admin_token_file {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&field, format!("cannot read: {e}")))?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.len() < MIN_TOKEN_LEN || t.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                &field,
                format!(
                    "line {}: a token is one word of at least {MIN_TOKEN_LEN} characters \
                     (`sticky-gateway keygen` makes one)",
                    i + 1
                ),
            ));
        }
        tokens.push(t.as_bytes().into());
    }
    if tokens.is_empty() {
        return Err(ConfigError::new(&field, "no token in the file"));
    }
    Ok(tokens)
}

impl AdminAuth {
    /// No authentication: every call is allowed (a loopback admin).
    pub fn open() -> Self {
        Self {
            file: None,
            tokens: ArcSwap::from_pointee(Vec::new()),
            seen: Mutex::new(None),
            open_reads: true,
            open_metrics: true,
            failures: AtomicU64::new(0),
        }
    }

    /// Authentication as `config` says; the token file is read now.
    pub fn from_config(config: &AdminAuthConfig) -> Result<Self, ConfigError> {
        let Some(path) = &config.token_file else {
            return Ok(Self::open());
        };
        let seen = stat(path);
        let tokens = read_tokens(path)?;
        Ok(Self {
            file: Some(path.clone()),
            tokens: ArcSwap::from_pointee(tokens),
            seen: Mutex::new(seen),
            open_reads: config.open_reads,
            open_metrics: config.open_metrics,
            failures: AtomicU64::new(0),
        })
    }

    /// Whether tokens come from a file (and calls need one).
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// Whether the token file changed since it was last read.
    pub fn changed_on_disk(&self) -> bool {
        self.file
            .as_deref()
            .is_some_and(|p| *self.seen.lock().unwrap() != stat(p))
    }

    /// Reads the token file again; on error the tokens in use stay. Returns
    /// how many tokens there are now.
    pub fn reload(&self) -> Result<usize, ConfigError> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        *self.seen.lock().unwrap() = stat(path);
        let tokens = read_tokens(path)?;
        let n = tokens.len();
        self.tokens.store(Arc::new(tokens));
        Ok(n)
    }

    /// Whether `presented` is one of the tokens. Every token is compared,
    /// each in constant time, so timing reveals neither which token nor how
    /// much of one matched.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let tokens = self.tokens.load();
        let mut ok = subtle::Choice::from(0);
        for t in tokens.iter() {
            ok |= t.as_ref().ct_eq(presented);
        }
        bool::from(ok)
    }

    /// Whether a call needs a token.
    pub fn required(&self, method: &Method, path: &str) -> bool {
        if self.file.is_none() {
            return false;
        }
        let read = method == Method::GET || method == Method::HEAD;
        // The page is static and holds no data: it asks for the token.
        let open =
            read && (path == "/" || self.open_reads || (path == "/metrics" && self.open_metrics));
        !open
    }

    /// Refused calls so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Decides a call: `None` to let it through, or the 401 to answer.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&HeaderValue>,
        peer: Option<SocketAddr>,
    ) -> Option<Response> {
        if !self.required(method, path) {
            return None;
        }
        let presented = authorization.map(|v| v.as_bytes()).and_then(|v| {
            let (scheme, rest) = v.split_at(v.iter().position(|&b| b == b' ')?);
            scheme
                .eq_ignore_ascii_case(b"bearer")
                .then(|| rest.trim_ascii())
        });
        let why = match presented {
            Some(t) if self.accepts(t) => return None,
            Some(_) => "wrong token",
            None => "no bearer token",
        };
        self.failures.fetch_add(1, Relaxed);
        let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        tracing::warn!(%peer, %method, path, reason = why, "admin call refused");
        let mut r = (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "error": format!("{why}: send Authorization: Bearer TOKEN with a token from the admin token file")
            })),
        )
            .into_response();
        let h = r.headers_mut();
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"sticky-gateway admin\""),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Some(r)
    }
}

/// The axum middleware that applies an [`AdminAuth`].
pub(crate) async fn require(
    State(auth): State<Arc<AdminAuth>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Some(refused) = auth.check(
        req.method(),
        req.uri().path(),
        req.headers().get(header::AUTHORIZATION),
        peer,
    ) {
        return refused;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(open_reads: bool, open_metrics: bool) -> AdminAuth {
        let a = AdminAuth::open();
        AdminAuth {
            file: Some("tokens".into()),
            tokens: ArcSwap::from_pointee(vec![
                b"first-token-0123456789".to_vec().into_boxed_slice(),
                b"second-token-0123456789".to_vec().into_boxed_slice(),
            ]),
            open_reads,
            open_metrics,
            ..a
        }
    }

    fn bearer(t: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    #[test]
    fn any_listed_token_passes_and_nothing_else() {
        let a = auth(false, false);
        assert!(a.accepts(b"second-token-0123456789"));
        assert!(!a.accepts(b"second-token-012345678"));
        assert!(!a.accepts(b""));
        let post = Method::POST;
        let path = "/backends/a/drain";
        assert!(a
            .check(&post, path, Some(&bearer("first-token-0123456789")), None)
            .is_none());
        let r = a
            .check(&post, path, Some(&bearer("nope-nope-nope-nope")), None)
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(a.check(&post, path, None, None).is_some());
        let basic = HeaderValue::from_static("Basic Zmlyc3QtdG9rZW4tMDEyMzQ1Njc4OQ==");
        assert!(a.check(&post, path, Some(&basic), None).is_some());
        assert_eq!(a.failures(), 3);
    }

    #[test]
    fn what_is_open() {
        let closed = auth(false, false);
        assert!(!closed.required(&Method::GET, "/"));
        assert!(closed.required(&Method::GET, "/backends"));
        assert!(closed.required(&Method::GET, "/metrics"));
        let metrics = auth(false, true);
        assert!(!metrics.required(&Method::GET, "/metrics"));
        assert!(metrics.required(&Method::GET, "/stats"));
        let reads = auth(true, false);
        assert!(!reads.required(&Method::GET, "/stats"));
        // "Safe to stop?" is a read: a preStop hook with only read access
        // may poll it; closed reads need the token.
        assert!(!reads.required(&Method::GET, "/backends/a/drained"));
        assert!(closed.required(&Method::GET, "/backends/a/drained"));
        assert!(reads.required(&Method::POST, "/backends/a/drain"));
        assert!(!AdminAuth::open().required(&Method::POST, "/backends/a/drain"));
    }

    #[test]
    fn non_loopback_needs_a_token_file() {
        let none = AdminAuthConfig::default();
        assert!(check_bind(Some("127.0.0.1:9900".parse().unwrap()), &none).is_ok());
        assert!(check_bind(Some("[::1]:9900".parse().unwrap()), &none).is_ok());
        let e = check_bind(Some("0.0.0.0:9900".parse().unwrap()), &none).unwrap_err();
        assert_eq!(e.field, "admin");
        let with = AdminAuthConfig {
            token_file: Some("t".into()),
            ..Default::default()
        };
        assert!(check_bind(Some("0.0.0.0:9900".parse().unwrap()), &with).is_ok());
    }
}
