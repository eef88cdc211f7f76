//! Peer mode behind a plain round-robin balancer, over real sockets on
//! 127.0.0.1: three replicas of a stateful axum app, each with one
//! `PeerLayer`, behind a round-robin TCP forwarder written here.
//!
//! - 300 requests from cookie-jar clients all find their session;
//! - no request is forwarded more than once;
//! - a WebSocket opened through a replica that does not own the session
//!   reaches the owner and carries frames both ways;
//! - after the owner of a session is killed (its server task and every
//!   connection it had aborted), every surviving replica sends that
//!   session to the same new owner.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_sticky::{PeerLayer, HOP_HEADER};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tower_sticky::token::KeyRing;
use tower_sticky::StickyConfig;

/// What each replica saw: (test request id, carried a hop marker).
type Seen = Arc<Mutex<Vec<(u64, bool)>>>;

#[derive(Clone)]
struct App {
    name: Arc<str>,
    sessions: Arc<Mutex<HashSet<String>>>,
}

fn app_sid(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("app_sid="))
}

async fn login(State(app): State<App>) -> Response {
    let sid = format!("{:032x}", rand::random::<u128>());
    app.sessions.lock().unwrap().insert(sid.clone());
    (
        [(header::SET_COOKIE, format!("app_sid={sid}; Path=/"))],
        "in",
    )
        .into_response()
}

async fn cart(State(app): State<App>, headers: HeaderMap) -> StatusCode {
    let here = app_sid(&headers).is_some_and(|s| app.sessions.lock().unwrap().contains(s));
    if here {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn ws(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |mut socket: WebSocket| async move {
        while let Some(Ok(Message::Text(t))) = socket.recv().await {
            let reply = format!("{}:{}", app.name, t.as_str());
            if socket.send(Message::Text(reply.into())).await.is_err() {
                return;
            }
        }
    })
}

/// Records each request's test id and whether it came as a hop.
async fn record(State(seen): State<Seen>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-test-id")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    if let Some(id) = id {
        let hop = req.headers().contains_key(&HOP_HEADER);
        seen.lock().unwrap().push((id, hop));
    }
    next.run(req).await
}

fn replica_app(name: &str, peers: Vec<(String, String)>, keys: &KeyRing, seen: Seen) -> Router {
    let state = App {
        name: name.into(),
        sessions: Arc::default(),
    };
    let replica = HeaderValue::from_str(name).unwrap();
    Router::new()
        .route("/login", post(login))
        .route("/cart", get(cart))
        .route("/ws", get(ws))
        .with_state(state)
        .layer(middleware::map_response(move |mut r: Response| {
            let v = replica.clone();
            async move {
                r.headers_mut().insert("x-replica", v);
                r
            }
        }))
        .layer(PeerLayer::new(StickyConfig::new(keys.clone()), name, peers))
        .layer(middleware::from_fn_with_state(seen, record))
}

/// Serves `app` on `listener`; aborting the task drops the listener and
/// every connection (they live in the task's JoinSet): a killed replica.
fn serve(listener: TcpListener, app: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = TowerToHyperService::new(app.clone());
            conns.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
            while conns.try_join_next().is_some() {}
        }
    })
}

/// A round-robin TCP forwarder: each connection goes to the next replica.
async fn round_robin(replicas: Vec<SocketAddr>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let next = AtomicUsize::new(0);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = l.accept().await {
            let to = replicas[next.fetch_add(1, Ordering::Relaxed) % replicas.len()];
            tokio::spawn(async move {
                if let Ok(mut backend) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                }
            });
        }
    });
    addr
}

/// A client's cookies.
#[derive(Clone, Default)]
struct Jar(HashMap<String, String>);

impl Jar {
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn take(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.0.insert(k.to_string(), v.to_string());
        }
    }
}

/// One request on a fresh connection: (status, X-Replica).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    jar: &mut Jar,
    id: u64,
) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.test")
        .header("x-test-id", id.to_string());
    if !jar.0.is_empty() {
        req = req.header(header::COOKIE, jar.header());
    }
    let res = send
        .send_request(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    jar.take(res.headers());
    let status = res.status();
    let replica = res
        .headers()
        .get("x-replica")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    res.into_body().collect().await.unwrap();
    (status, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_round_robin_keep_every_session() {
    tokio::time::timeout(Duration::from_secs(60), scenario())
        .await
        .expect("the scenario finishes in time");
}

async fn scenario() {
    let keys = KeyRing::generate();
    let names = ["app-1", "app-2", "app-3"];
    let mut listeners = Vec::new();
    for _ in names {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut tasks = Vec::new();
    let mut seen = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let peers = names
            .iter()
            .zip(&addrs)
            .filter(|(n, _)| **n != names[i])
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect();
        let s: Seen = Arc::default();
        seen.push(s.clone());
        tasks.push(serve(listener, replica_app(names[i], peers, &keys, s)));
    }
    let lb = round_robin(addrs.clone()).await;

    // 25 users log in and read their cart 11 times each: 300 requests (25
    // is no multiple of 3, so round robin moves each user every round).
    let mut ids = 0u64;
    let mut users = Vec::new();
    for _ in 0..25 {
        let mut jar = Jar::default();
        ids += 1;
        let (status, owner) = request(lb, "POST", "/login", &mut jar, ids).await;
        assert_eq!(status, StatusCode::OK);
        assert!(jar.0.contains_key("app_sid") && jar.0.contains_key("sticky"));
        users.push((jar, owner));
    }
    for round in 0..11 {
        for (u, (jar, owner)) in users.iter_mut().enumerate() {
            ids += 1;
            let (status, replica) = request(lb, "GET", "/cart", jar, ids).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "user {u} round {round} lost its session"
            );
            assert_eq!(&replica, owner, "served by the session's owner");
        }
    }
    assert_eq!(ids, 300);

    // Each request ran on one replica's app at most once after at most one hop.
    let mut per_id: HashMap<u64, (usize, usize)> = HashMap::new();
    for s in &seen {
        for &(id, hop) in s.lock().unwrap().iter() {
            let e = per_id.entry(id).or_default();
            e.0 += 1;
            e.1 += usize::from(hop);
        }
    }
    assert_eq!(per_id.len(), 300, "every request was seen");
    let mut hops = 0;
    for (id, (arrivals, hop)) in &per_id {
        assert!(*hop <= 1, "request {id} forwarded {hop} times");
        assert_eq!(*arrivals, 1 + hop, "request {id}: one arrival plus its hop");
        hops += hop;
    }
    eprintln!("{hops} of 300 requests took one hop");
    // Behind round robin over 3, about 2/3 of the cart reads take a hop.
    assert!(
        hops > 100,
        "only {hops} hops: the balancer did not spread requests"
    );

    // A WebSocket opened through a replica that does not own the session.
    let (jar, owner) = &users[0];
    let owner_i = names.iter().position(|n| n == owner).unwrap();
    let other = addrs[(owner_i + 1) % 3];
    let stream = TcpStream::connect(other).await.unwrap();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{other}/ws"),
    )
    .unwrap();
    req.headers_mut()
        .insert(header::COOKIE, jar.header().parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    for msg in ["hello", "again"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(msg))
            .await
            .unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(
            reply.into_text().unwrap().as_str(),
            format!("{owner}:{msg}")
        );
    }
    ws.close(None).await.unwrap();

    // Kill user 0's owner; every survivor sends the session to one new owner.
    tasks[owner_i].abort();
    let _ = (&mut tasks[owner_i]).await;
    let mut new_owners = HashSet::new();
    for (i, addr) in addrs.iter().enumerate() {
        if i == owner_i {
            continue;
        }
        for _ in 0..3 {
            let mut jar = users[0].0.clone();
            ids += 1;
            let (status, replica) = request(*addr, "GET", "/cart", &mut jar, ids).await;
            assert_ne!(status, StatusCode::SERVICE_UNAVAILABLE);
            new_owners.insert(replica);
        }
    }
    assert_eq!(new_owners.len(), 1, "survivors disagree: {new_owners:?}");
    assert!(
        !new_owners.contains(owner.as_str()),
        "the dead owner cannot serve"
    );
    for t in tasks {
        t.abort();
    }
}
