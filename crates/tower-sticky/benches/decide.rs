//! Cost of the decision engine alone, without any I/O.
//!
//! `cargo bench -p tower-sticky --bench decide`
//!
//! - `hit/N`: a request carrying a valid cookie among N backends: read every
//!   Cookie header, open the token (the same text each time: from the
//!   engine's cache of opened tokens), look the backend up by id, decide,
//!   count.
//! - `hit_uncached/N`: the same over 16,384 sessions in turn, so that the
//!   token is opened for real (and stored) nearly every time.
//! - `new/N`: a request without a cookie: place (least-loaded of two), seal a
//!   token, format the Set-Cookie header, mark the response private.
//! - `token/open`, `token/seal`: the AEAD alone.

// criterion_group! defines a public function without docs.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue, Request};
use tower_sticky::token::{KeyRing, Token, TokenCodec};
use tower_sticky::{BackendId, BackendTable, Engine, StickyConfig};

fn table(n: usize) -> BackendTable<String> {
    let mut t = BackendTable::new();
    for i in 0..n {
        t.insert(format!("backend-{i}"), (), 0).unwrap();
    }
    t
}

fn pinned_parts(router: &Engine, table: &BackendTable<String>) -> http::request::Parts {
    let id = table.get(table.len() / 2).unwrap().id();
    let now = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()) as u32;
    let sealed = router.codec().unwrap().seal(&Token::new(id, 42, now));
    let cookie = format!("theme=dark; sticky={}; lang=en", sealed.as_str());
    let (parts, ()) = Request::builder()
        .uri("/cart")
        .header(COOKIE, cookie)
        .body(())
        .unwrap()
        .into_parts();
    parts
}

fn bench_decide(c: &mut Criterion) {
    let router = Engine::new(StickyConfig::new(KeyRing::generate()));
    let mut hit = c.benchmark_group("hit");
    for n in [3usize, 100, 1_000, 10_000] {
        let t = table(n);
        let parts = pinned_parts(&router, &t);
        hit.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let d = router.decide(&t, black_box(&parts), |_| true);
                assert!(d.issued_token().is_none());
                black_box(d)
            })
        });
    }
    hit.finish();

    // The same request path when the token's text is not in the engine's
    // cache of opened tokens: 16,384 sessions (four per cache slot) taken in
    // turn, so that almost every open is a real one (base64, AES-GCM-SIV)
    // and a cache store.
    let mut cold = c.benchmark_group("hit_uncached");
    for n in [3usize, 10_000] {
        let t = table(n);
        let many: Vec<_> = (0..16_384).map(|_| pinned_parts(&router, &t)).collect();
        let mut at = 0;
        cold.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                at = (at + 1) % many.len();
                let d = router.decide(&t, black_box(&many[at]), |_| true);
                assert!(d.issued_token().is_none());
                black_box(d)
            })
        });
    }
    cold.finish();

    let mut new = c.benchmark_group("new");
    for n in [3usize, 100, 1_000, 10_000] {
        let t = table(n);
        let (parts, ()) = Request::builder().uri("/").body(()).unwrap().into_parts();
        new.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_batched_ref(
                HeaderMap::new,
                |headers| {
                    let d = router.decide(&t, black_box(&parts), |_| true);
                    d.tag_response(&router, headers);
                },
                BatchSize::SmallInput,
            )
        });
    }
    new.finish();
}

fn bench_token(c: &mut Criterion) {
    let codec = TokenCodec::new(KeyRing::generate(), "sticky");
    let token = Token::new(BackendId::from_u64(7), 42, 1_800_000_000);
    let sealed = codec.seal(&token);
    let mut g = c.benchmark_group("token");
    g.bench_function("open", |b| {
        b.iter(|| codec.open(black_box(sealed.as_str().as_bytes())))
    });
    g.bench_function("seal", |b| b.iter(|| codec.seal(black_box(&token))));
    g.bench_function("set_cookie", |b| {
        let cfg = tower_sticky::CookieConfig::new("sticky").secure(true);
        b.iter(|| black_box(cfg.set_cookie(black_box(sealed.as_str()))))
    });
    let _ = HeaderValue::from_static("x");
    g.finish();
}

criterion_group!(benches, bench_decide, bench_token);
criterion_main!(benches);
