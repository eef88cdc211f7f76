//! A request counts as in flight on its backend until its response body has
//! streamed to the client, not only until the response head arrived: the
//! least-loaded placement and the drain view ("what still reaches it") both
//! read that count.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sticky_gateway::admin::AdminView;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_body_stays_in_flight_until_it_ends() {
    let b = Backend::start("b1").await;
    let running = in_process_gateway(&[&b], |_| {}).await;
    let view = sticky_gateway::admin_view::GatewayView(running.gateway.clone());
    let in_flight = || view.backends()[0].in_flight;

    // 64 MiB: far more than the socket buffers hold, so the backend cannot
    // finish sending until the client reads.
    let stream = TcpStream::connect(running.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/download?n=67108864")
        .header("host", "app.test")
        .body(TestBody::Full(Full::default()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert!(resp.status().is_success());

    // The head has arrived; the body has not been read.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(in_flight(), 1, "counted while the body streams");

    let n = resp.into_body().collect().await.unwrap().to_bytes().len();
    assert_eq!(n, 64 << 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight() != 0 {
        assert!(
            Instant::now() < deadline,
            "still counted after the body ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
