//! A small stateful app in peer mode: sessions live in this replica's
//! memory, and `PeerLayer` forwards each request to the replica that holds
//! its session, so a plain round-robin balancer in front is enough.
//!
//! ```text
//! cargo run --release -p sticky-examples --example axum_peer_mode -- \
//!     --listen 127.0.0.1:3001 --name app-1 \
//!     --peer app-2=127.0.0.1:3002 --peer app-3=127.0.0.1:3003 --key-file keys
//! ```
//! `POST /login` creates a session here and sets `app_sid`; `GET /cart` is
//! 200 if the session is in this replica's memory, else 401; `GET /ws` is a
//! WebSocket answering each text message with `NAME:message`. Every HTTP
//! answer carries `X-Replica: NAME`. The key file is sticky-gateway's
//! (`sticky-gateway keygen > keys`), the same on every replica.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_sticky::PeerLayer;
use tower_sticky::StickyConfig;

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
    let cookie = format!("app_sid={sid}; Path=/; HttpOnly");
    (
        [(header::SET_COOKIE, cookie)],
        format!("{}: logged in\n", app.name),
    )
        .into_response()
}

async fn cart(State(app): State<App>, headers: HeaderMap) -> Response {
    let here = app_sid(&headers).is_some_and(|s| app.sessions.lock().unwrap().contains(s));
    if here {
        format!("{}: your cart\n", app.name).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            format!("{}: no session here\n", app.name),
        )
            .into_response()
    }
}

async fn ws(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| echo(socket, app.name))
}

async fn echo(mut socket: WebSocket, name: Arc<str>) {
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Text(t) => {
                let reply = format!("{name}:{}", t.as_str());
                if socket.send(Message::Text(reply.into())).await.is_err() {
                    return;
                }
            }
            Message::Close(_) => return,
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() {
    let flags = support::flags(support::Spec {
        program: "axum_peer_mode",
        member: "--peer",
        name: true,
        members_required: false,
    });
    let name: Arc<str> = flags.name.as_str().into();
    let replica = HeaderValue::from_str(&flags.name).expect("a replica name is header text");
    let state = App {
        name: name.clone(),
        sessions: Arc::default(),
    };
    let (r1, r2) = (replica.clone(), replica);
    let app = Router::new()
        .route("/login", post(login))
        .route("/cart", get(cart))
        .route("/ws", get(ws))
        .with_state(state)
        // Inside the peer layer: the replica that served the request.
        .layer(axum::middleware::map_response(move |mut r: Response| {
            let v = r1.clone();
            async move {
                r.headers_mut().insert("x-replica", v);
                r
            }
        }))
        .layer(PeerLayer::new(
            StickyConfig::new(flags.keys),
            flags.name.clone(),
            flags.members,
        ))
        // Outside: the layer's own answers (403, 502, 503) say who gave them.
        .layer(axum::middleware::map_response(move |mut r: Response| {
            let v = r2.clone();
            async move {
                r.headers_mut().entry("x-replica").or_insert(v);
                r
            }
        }));
    let banner = format!("axum_peer_mode {name}");
    support::serve("axum_peer_mode", &banner, flags.listen, app).await;
}
