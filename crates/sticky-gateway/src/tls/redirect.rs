//! A plain listener that answers every request with a permanent redirect
//! to the same URL over HTTPS (`redirect_to_https = true`).

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::gateway::Gateway;
use crate::server::ServerSettings;

/// The `https://` URL for `req` on `https_port` (omitted when 443), or none
/// when the request names no host.
pub fn redirect_location<B>(req: &Request<B>, https_port: u16) -> Option<String> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())?;
    let host = match authority.rsplit_once(':') {
        // Not the `::` inside an IPv6 literal.
        Some((h, port)) if !port.contains(']') && !h.is_empty() => h,
        _ => authority,
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    Some(match https_port {
        443 => format!("https://{host}{path}"),
        p => format!("https://{host}:{p}{path}"),
    })
}

fn answer(req: &Request<Incoming>, https_port: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    match redirect_location(req, https_port).and_then(|l| HeaderValue::try_from(l).ok()) {
        Some(l) => {
            *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
            r.headers_mut().insert(header::LOCATION, l);
        }
        None => *r.status_mut() = StatusCode::BAD_REQUEST,
    }
    r
}

/// Redirects every request on `listener` to HTTPS on `https_port`, until
/// the gateway shuts down.
pub async fn serve_redirect(
    listener: TcpListener,
    https_port: u16,
    gw: Arc<Gateway>,
    settings: ServerSettings,
) {
    let stop = gw.shutdown.triggered();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let _work = gw.shutdown.enter();
            let svc = service_fn(move |req: Request<Incoming>| async move {
                Ok::<_, std::convert::Infallible>(answer(&req, https_port))
            });
            // One answer per connection: the client goes to HTTPS next, and
            // shutdown need not wait for idle keep-alive connections here.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(settings.header_read_timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(settings.idle_timeout, conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, target: &str) -> Request<()> {
        Request::get(target).header("host", host).body(()).unwrap()
    }

    #[test]
    fn locations_keep_host_path_and_query() {
        assert_eq!(
            redirect_location(&req("example.com:8080", "/a/b?c=1"), 443).as_deref(),
            Some("https://example.com/a/b?c=1")
        );
        assert_eq!(
            redirect_location(&req("[::1]:8080", "/"), 8443).as_deref(),
            Some("https://[::1]:8443/")
        );
        assert_eq!(
            redirect_location(&req("example.com", "/"), 8443).as_deref(),
            Some("https://example.com:8443/")
        );
        assert_eq!(redirect_location(&req("evil.com/x@", "/"), 443), None);
    }
}
