//! Use story 2, a tower stack: requests carrying the same session reach the
//! same endpoint of a discovered set, while endpoints come and go.
//!
//! `cargo run -p sticky-examples --example tower_discover`
//!
//! Builds `ServiceBuilder::new().layer(StickyLayer::new(config)).service(discover)`
//! over a channel-fed `Discover`, sends requests as three users (each keeping
//! the cookie it was given, like a browser), inserts a backend, drains one,
//! removes one, and prints what the layer decided each time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use http::header::{COOKIE, SET_COOKIE};
use http::{Request, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower::discover::Change;
use tower::util::BoxService;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_sticky::service::InFlightBody;
use tower_sticky::token::KeyRing;
use tower_sticky::{Outcome, StickyConfig, StickyLayer};

type Backend = BoxService<Request<String>, Response<String>, Infallible>;

fn backend(name: &'static str) -> Backend {
    BoxService::new(service_fn(move |_req: Request<String>| async move {
        Ok::<_, Infallible>(Response::new(name.to_string()))
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (tx, rx) = mpsc::unbounded_channel::<Result<Change<&'static str, Backend>, Infallible>>();
    for name in ["alpha", "beta", "gamma"] {
        tx.send(Ok(Change::Insert(name, backend(name)))).unwrap();
    }
    let config = StickyConfig::new(KeyRing::generate())
        .slow_start(Duration::from_secs(30))
        .removal_grace(Duration::ZERO);
    let mut sticky = ServiceBuilder::new()
        .layer(StickyLayer::new(config))
        .service(UnboundedReceiverStream::new(rx));

    // Each user keeps the last cookie it was given, like a browser's jar.
    let mut jars: HashMap<&str, String> = HashMap::new();
    let users = ["ada", "bob", "cyd"];

    let round = |label: &str| println!("\n== {label}");
    round("three backends, three users, two requests each");
    for _ in 0..2 {
        for user in users {
            send(&mut sticky, &mut jars, user).await;
        }
    }

    round("insert backend delta: pinned users stay where they are");
    tx.send(Ok(Change::Insert("delta", backend("delta"))))
        .unwrap();
    for user in users {
        send(&mut sticky, &mut jars, user).await;
    }

    let victim = {
        let (served, _) = send(&mut sticky, &mut jars, "ada").await;
        served
    };
    round(&format!(
        "drain {victim}: ada keeps it, new users go elsewhere"
    ));
    sticky.drain(&victim);
    send(&mut sticky, &mut jars, "ada").await;
    for user in ["dee", "eve"] {
        send(&mut sticky, &mut jars, user).await;
    }

    round(&format!(
        "remove {victim}: ada is re-pinned, deterministically"
    ));
    tx.send(Ok(Change::Remove(victim))).unwrap();
    send(&mut sticky, &mut jars, "ada").await;
    send(&mut sticky, &mut jars, "ada").await;

    let stats = sticky.stats();
    round("stats");
    for b in stats.backends() {
        println!(
            "{:<6} {:<8} requests={} new_sessions={} pinned_hits={}",
            b.key(),
            b.state(),
            b.requests(),
            b.new_sessions(),
            b.pinned_hits()
        );
    }
    println!("pinned={} new={}", stats.pinned(), stats.new_sessions());
}

/// Sends one request as `user`, prints the decision, keeps the cookie.
async fn send<S>(
    svc: &mut S,
    jars: &mut HashMap<&str, String>,
    user: &'static str,
) -> (&'static str, Outcome)
where
    S: Service<Request<String>, Response = Response<InFlightBody<String>>>,
    S::Error: std::fmt::Debug,
{
    let mut req = Request::new(String::new());
    if let Some(cookie) = jars.get(user) {
        req.headers_mut().insert(COOKIE, cookie.parse().unwrap());
    }
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let outcome = *res.extensions().get::<Outcome>().unwrap();
    let issued = res.headers().get(SET_COOKIE).is_some();
    if let Some(set) = res.headers().get(SET_COOKIE) {
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
        jars.insert(user, pair);
    }
    let served: &'static str = match res.body().get_ref().as_str() {
        "alpha" => "alpha",
        "beta" => "beta",
        "gamma" => "gamma",
        _ => "delta",
    };
    println!(
        "{user:<4} -> {served:<6} {outcome}{}",
        if issued { " (cookie issued)" } else { "" }
    );
    (served, outcome)
}
