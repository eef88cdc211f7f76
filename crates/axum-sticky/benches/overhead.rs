//! The gateway shape's overhead on a hit: an axum `Router` whose fallback
//! is `StickyProxy` (a request carrying a valid token for a live backend)
//! against the same `Router` with the bare backend service as fallback.
//! Backends answer at once, so each request completes in one poll and the
//! difference is the sticky layer's own CPU: decide (open the token), strip
//! our cookie and hop-by-hop fields, the `Affinity` extensions, the boxed
//! exchange future.
//!
//! `cargo bench -p axum-sticky --bench overhead`
//!
//! For an instruction count (repeatable on a busy machine), the bench
//! binary runs one side `N` times and exits when `STICKY_ITERS=SIDE:N`
//! (`bare` or `sticky`) is set: under `valgrind --tool=callgrind`, two
//! runs with different `N` give the instructions per request by
//! difference (set-up cancels out).
#![allow(missing_docs)]

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use axum_sticky::{Backends, StickyProxy};
use criterion::{black_box, criterion_group, Criterion};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::ServiceExt;
use tower_sticky::token::{KeyRing, Token, TokenCodec};
use tower_sticky::{StableId, StickyConfig};

fn backend() -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    })
}

/// A request as `axum::serve` hands it over with connection info (which
/// the proxy appends to `X-Forwarded-For`).
fn request(cookie: &str) -> Request<Body> {
    let mut r = Request::get("/cart")
        .header("host", "app.test")
        .header("user-agent", "bench")
        .header("accept", "*/*")
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    let client = std::net::SocketAddr::from(([203, 0, 113, 7], 40000));
    r.extensions_mut().insert(ConnectInfo(client));
    r
}

struct Sides {
    bare: Router,
    sticky: Router,
    cookie: String,
}

fn sides() -> Sides {
    let keys = KeyRing::generate();
    let names = ["app-1", "app-2", "app-3"];
    let backends = Backends::new(names.map(|n| (n, backend())));
    let proxy = StickyProxy::new(StickyConfig::new(keys.clone()), backends);
    let sticky = Router::new().fallback_service(proxy);
    let bare = Router::new().fallback_service(backend());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let token =
        TokenCodec::new(keys, "sticky").seal(&Token::new("app-2".to_string().stable_id(), 7, now));
    let cookie = format!("theme=dark; sticky={}", token.as_str());

    // Check once that the hit is a hit (200, no Set-Cookie).
    let res = sticky
        .clone()
        .oneshot(request(&cookie))
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_none());

    Sides {
        bare,
        sticky,
        cookie,
    }
}

fn one(app: &Router, cookie: &str) -> Response<Body> {
    app.clone()
        .oneshot(request(cookie))
        .now_or_never()
        .unwrap()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let Sides {
        bare,
        sticky,
        cookie,
    } = sides();
    let mut g = c.benchmark_group("gateway_shape");
    g.bench_function("bare_router", |b| b.iter(|| black_box(one(&bare, &cookie))));
    g.bench_function("sticky_proxy_hit", |b| {
        b.iter(|| black_box(one(&sticky, &cookie)))
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("STICKY_ITERS") {
        let (side, n) = spec.split_once(':').expect("STICKY_ITERS=SIDE:N");
        let n: u64 = n.parse().expect("a count");
        let s = sides();
        let app = if side == "bare" { &s.bare } else { &s.sticky };
        for _ in 0..n {
            black_box(one(app, &s.cookie));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
