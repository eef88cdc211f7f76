//! The dashboard page: one self-contained HTML document, its stylesheet and
//! script inlined from the files beside this one.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const HTML: &str = include_str!("dashboard.html");
const CSS: &str = include_str!("dashboard.css");
const JS: &str = include_str!("dashboard.js");

/// The page with its CSS and script inlined (no external assets).
pub(crate) fn html() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        HTML.replace("/*__STYLE__*/", CSS)
            .replace("/*__SCRIPT__*/", JS)
    })
}

pub(crate) async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::HeaderName::from_static("content-security-policy"),
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                ),
            ),
        ],
        html(),
    )
        .into_response()
}
