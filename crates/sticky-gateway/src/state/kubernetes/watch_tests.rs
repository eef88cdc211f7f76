//! The watcher against a mocked API server: `tower_test::mock::pair()`
//! behind `kube::Client::new` (kube's own mock-test pattern). The test plays
//! the API server request by request, asserting what the watcher asks for.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::client::Body;
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tower_test::mock;

use super::super::mapping::tests::{cond, pod, ready_pod, slice};
use super::*;
use crate::state::AdminState::{Active, Draining};

type ApiServer = mock::Handle<Request<Body>, Response<Body>>;
type Reply = mock::SendResponse<Response<Body>>;

const PATH: &str = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices";
const SELECTOR: &str = "labelSelector=kubernetes.io%2Fservice-name%3Dweb";

/// Retries after 10 ms, so the error paths take no seconds.
struct Quick;

impl Iterator for Quick {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(10))
    }
}

impl Backoff for Quick {
    fn reset(&mut self) {}
}

/// A source for Service `web` in `shop`, running on its own task, its
/// snapshots on a channel.
fn start() -> (
    ApiServer,
    mpsc::UnboundedReceiver<Snapshot>,
    tokio::task::JoinHandle<()>,
) {
    let (server, rx, task, _) = start_with_status();
    (server, rx, task)
}

/// [`start`], with the source's [`WatchStatus`].
fn start_with_status() -> (
    ApiServer,
    mpsc::UnboundedReceiver<Snapshot>,
    tokio::task::JoinHandle<()>,
    std::sync::Arc<WatchStatus>,
) {
    let (service, server) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let source = KubernetesSource::new(client, Some("shop"), "web", "http".parse().unwrap())
        .expect("a valid service name");
    let status = source.status();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(source.run_with_backoff(Quick, move |s| {
        let _ = tx.send(s);
    }));
    (server, rx, task, status)
}

async fn next_request(server: &mut ApiServer) -> (Request<Body>, Reply) {
    timeout(Duration::from_secs(5), server.next_request())
        .await
        .expect("the watcher sent no request within 5 s")
        .expect("the client was dropped")
}

async fn next_snapshot(rx: &mut mpsc::UnboundedReceiver<Snapshot>) -> Snapshot {
    timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no snapshot within 5 s")
        .expect("the source stopped")
}

fn versioned(mut s: EndpointSlice, rv: &str) -> EndpointSlice {
    s.metadata.resource_version = Some(rv.into());
    s
}

fn states(s: &Snapshot) -> Vec<(&str, crate::state::AdminState)> {
    s.backends
        .iter()
        .map(|(n, b)| (n.as_str(), b.state))
        .collect()
}

/// Asserts a list request (not a watch) for the Service's slices.
fn assert_list(req: &Request<Body>) {
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(req.uri().path(), PATH);
    let q = req.uri().query().unwrap_or_default();
    assert!(q.contains(SELECTOR), "{q}");
    assert!(!q.contains("watch=true"), "a list, not a watch: {q}");
}

/// Asserts a watch request from `rv`.
fn assert_watch(req: &Request<Body>, rv: &str) {
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(req.uri().path(), PATH);
    let q = req.uri().query().unwrap_or_default();
    assert!(q.contains(SELECTOR), "{q}");
    assert!(q.contains("watch=true"), "{q}");
    assert!(q.contains(&format!("resourceVersion={rv}")), "{q}");
}

fn list(reply: Reply, rv: &str, items: &[EndpointSlice]) {
    let body = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": { "resourceVersion": rv },
        "items": items,
    });
    reply.send_response(Response::new(Body::from(
        serde_json::to_vec(&body).unwrap(),
    )));
}

/// Answers a watch with these events, then ends the stream (as the API
/// server does at its timeout), so the watcher watches again.
fn events(reply: Reply, events: &[serde_json::Value]) {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    reply.send_response(Response::new(Body::from(body)));
}

fn event(kind: &str, s: &EndpointSlice) -> serde_json::Value {
    json!({ "type": kind, "object": s })
}

fn status(code: u16, reason: &str, message: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

#[tokio::test]
async fn list_watch_drain_delete_and_a_410_relist() {
    let (mut server, mut rx, task) = start();

    // The initial list: two slices, three ready pods.
    let web_1 = versioned(
        slice(
            "web-1",
            vec![
                ready_pod("web-a", "10.0.0.1"),
                ready_pod("web-b", "10.0.0.2"),
            ],
        ),
        "5",
    );
    let web_2 = versioned(slice("web-2", vec![ready_pod("web-c", "10.0.0.3")]), "6");
    let (req, reply) = next_request(&mut server).await;
    assert_list(&req);
    list(reply, "10", &[web_1.clone(), web_2.clone()]);
    let s = next_snapshot(&mut rx).await;
    assert_eq!(
        states(&s),
        vec![("web-a", Active), ("web-b", Active), ("web-c", Active)]
    );
    assert_eq!(s.backends["web-b"].address, "10.0.0.2:8080");

    // MODIFIED: web-b is terminating and still serving, so it drains.
    let (req, reply) = next_request(&mut server).await;
    assert_watch(&req, "10");
    let draining = versioned(
        slice(
            "web-1",
            vec![
                ready_pod("web-a", "10.0.0.1"),
                pod(
                    "web-b",
                    "10.0.0.2",
                    cond(Some(false), Some(true), Some(true)),
                ),
            ],
        ),
        "11",
    );
    events(reply, &[event("MODIFIED", &draining)]);
    let s = next_snapshot(&mut rx).await;
    assert_eq!(
        states(&s),
        vec![("web-a", Active), ("web-b", Draining), ("web-c", Active)]
    );

    // DELETED: the second slice goes, and its pod with it.
    let (req, reply) = next_request(&mut server).await;
    assert_watch(&req, "11");
    events(reply, &[event("DELETED", &versioned(web_2, "12"))]);
    let s = next_snapshot(&mut rx).await;
    assert_eq!(states(&s), vec![("web-a", Active), ("web-b", Draining)]);
    let before_gone = s;

    // 410 Gone: the watcher relists; until the list is in, the last set
    // stands (nothing is published).
    let (req, reply) = next_request(&mut server).await;
    assert_watch(&req, "12");
    events(
        reply,
        &[json!({
            "type": "ERROR",
            "object": status(410, "Expired", "too old resource version: 12 (40)"),
        })],
    );
    let (req, reply) = next_request(&mut server).await;
    assert_list(&req);
    assert!(
        rx.try_recv().is_err(),
        "no snapshot between the 410 and the relist"
    );
    // Meanwhile web-b finished terminating and web-d started.
    let relisted = versioned(
        slice(
            "web-1",
            vec![
                ready_pod("web-a", "10.0.0.1"),
                ready_pod("web-d", "10.0.0.4"),
            ],
        ),
        "38",
    );
    list(reply, "40", &[relisted]);
    let s = next_snapshot(&mut rx).await;
    assert_eq!(states(&s), vec![("web-a", Active), ("web-d", Active)]);
    assert_ne!(s.revision, before_gone.revision);

    // And it watches on from the relist's version.
    let (req, _held) = next_request(&mut server).await;
    assert_watch(&req, "40");
    task.abort();
}

#[tokio::test]
async fn a_failed_list_is_retried_and_nothing_is_published_meanwhile() {
    let (mut server, mut rx, task, watch) = start_with_status();
    assert!(!watch.is_connected());
    assert!(watch.last_sync_age().is_none());
    let (req, reply) = next_request(&mut server).await;
    assert_list(&req);
    let refusal = status(403, "Forbidden", "endpointslices is forbidden");
    let mut resp = Response::new(Body::from(serde_json::to_vec(&refusal).unwrap()));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    reply.send_response(resp);

    let (req, reply) = next_request(&mut server).await;
    assert_list(&req);
    assert!(rx.try_recv().is_err(), "an error publishes nothing");
    assert!(!watch.is_connected(), "a refusal is not connected");
    assert_eq!(watch.snapshots(), 0);
    let web_1 = versioned(slice("web-1", vec![ready_pod("web-a", "10.0.0.1")]), "3");
    list(reply, "7", &[web_1]);
    let s = next_snapshot(&mut rx).await;
    assert_eq!(states(&s), vec![("web-a", Active)]);
    assert!(watch.is_connected());
    assert!(watch.last_sync_age().is_some());
    assert_eq!(watch.revision(), s.revision);
    assert!(watch.wait_for_snapshot(Duration::from_secs(1)).await);
    task.abort();
}

#[tokio::test]
async fn a_change_that_leaves_the_set_alone_publishes_nothing() {
    let (mut server, mut rx, task) = start();
    let web_1 = versioned(slice("web-1", vec![ready_pod("web-a", "10.0.0.1")]), "3");
    let (_, reply) = next_request(&mut server).await;
    list(reply, "7", std::slice::from_ref(&web_1));
    let first = next_snapshot(&mut rx).await;

    // A zone hint changes: same backends, no snapshot. Then a real change.
    let (req, reply) = next_request(&mut server).await;
    assert_watch(&req, "7");
    let mut hinted = versioned(web_1, "8");
    hinted.endpoints[0].zone = Some("zone-b".into());
    let grown = versioned(
        slice(
            "web-1",
            vec![
                ready_pod("web-a", "10.0.0.1"),
                ready_pod("web-b", "10.0.0.2"),
            ],
        ),
        "9",
    );
    events(
        reply,
        &[event("MODIFIED", &hinted), event("MODIFIED", &grown)],
    );
    let next = next_snapshot(&mut rx).await;
    assert_ne!(next.revision, first.revision);
    assert_eq!(states(&next), vec![("web-a", Active), ("web-b", Active)]);
    let (req, _held) = next_request(&mut server).await;
    assert_watch(&req, "9");
    assert!(rx.try_recv().is_err(), "one snapshot for the two events");
    task.abort();
}

#[test]
fn a_relist_replaces_the_set_whole() {
    let mut set = SliceSet::default();
    // Nothing to publish before the first complete list.
    assert!(!set.apply(Event::Init));
    assert!(!set.apply(Event::InitApply(slice("web-1", vec![]))));
    assert!(!set.apply(Event::InitApply(slice("web-2", vec![]))));
    assert!(set.apply(Event::InitDone));
    assert_eq!(set.current().count(), 2);
    // A relist in progress leaves the current set untouched...
    assert!(!set.apply(Event::Init));
    assert!(!set.apply(Event::InitApply(slice("web-3", vec![]))));
    let names = |s: &SliceSet| -> Vec<String> {
        s.current()
            .filter_map(|x| x.metadata.name.clone())
            .collect()
    };
    assert_eq!(names(&set), vec!["web-1", "web-2"]);
    // ...and its end swaps it whole: slices not relisted are gone.
    assert!(set.apply(Event::InitDone));
    assert_eq!(names(&set), vec!["web-3"]);
    // An unnamed slice is ignored rather than stored under "".
    let mut unnamed = slice("x", vec![]);
    unnamed.metadata.name = None;
    set.apply(Event::Apply(unnamed));
    assert_eq!(names(&set), vec!["web-3"]);
}

#[test]
fn service_names_must_be_labels() {
    for good in ["web", "web-1", "a"] {
        assert!(check_service_name(good).is_ok(), "{good}");
    }
    let long = "a".repeat(64);
    for bad in [
        "",
        "Web",
        "web,app=x",
        "web=x",
        "-web",
        "web-",
        "1web",
        long.as_str(),
    ] {
        assert!(check_service_name(bad).is_err(), "{bad}");
    }
}
