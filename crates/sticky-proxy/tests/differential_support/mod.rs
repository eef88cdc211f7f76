//! The two clients, what each made of a byte stream, and the comparison.

mod cases;

pub use cases::{case, soup};

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proptest::test_runner::TestCaseError;
use sticky_proxy::{Connection, Error, ProtocolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Longer than any step takes; time is paused, so waiting costs nothing.
const WAIT: Duration = Duration::from_secs(5);

/// What one client made of the stream.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// No final head (an error, or still waiting for bytes).
    NoHead { waiting: bool },
    /// A final head, and what followed.
    Answer {
        status: StatusCode,
        headers: Vec<(String, String)>,
        body: Body,
        trailers: Vec<(String, String)>,
        reusable: bool,
    },
}

/// How the body ended.
#[derive(Debug, PartialEq)]
pub enum Body {
    Complete(Vec<u8>),
    Failed,
    Waiting,
}

/// Fields compared: end-to-end ones. `Connection`, `Keep-Alive`,
/// `Transfer-Encoding` are hop-by-hop (this client consumes them, hyper
/// leaves them), and `Content-Length` is checked through the body bytes
/// (this client drops it when a transfer coding frames the body, and an
/// unparsable one on HEAD/204/304).
fn end_to_end(h: &HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = h
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "connection" | "keep-alive" | "transfer-encoding" | "content-length"
            )
        })
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    v.sort();
    v
}

fn trailer_list(h: Option<HeaderMap>) -> Vec<(String, String)> {
    let mut h = h.unwrap_or_default();
    sticky_proxy::trailers::filter(&mut h);
    end_to_end(&h)
}

/// Writes `wire` in pieces cut at `splits`, letting the client run between
/// them; then closes (if `close_after`) or keeps the pipe open.
async fn backend(mut io: DuplexStream, wire: Vec<u8>, splits: Vec<usize>, close_after: bool) {
    // The request first: hyper treats bytes that arrive before it sent a
    // request as a broken connection.
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut b).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    let mut cuts: Vec<usize> = splits.into_iter().map(|s| s.min(wire.len())).collect();
    cuts.sort_unstable();
    let mut at = 0;
    for cut in cuts.into_iter().chain([wire.len()]) {
        if cut > at {
            if io.write_all(&wire[at..cut]).await.is_err() {
                return;
            }
            at = cut;
        }
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }
    // Drain what the client writes, so it never blocks on a full pipe.
    let mut sink = [0u8; 4096];
    if close_after {
        let _ = io.shutdown().await;
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    } else {
        loop {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        std::future::pending::<()>().await;
    }
}

fn request(method: &str, upgrade: bool) -> Request<Empty<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri("/")
        .header("host", "b");
    if upgrade {
        b = b
            .header("connection", "upgrade")
            .header("upgrade", "websocket");
    }
    b.body(Empty::new()).unwrap()
}

/// Whether an idle stream is still open with nothing unread (as the pool's
/// check before reuse).
async fn idle_open<T: tokio::io::AsyncRead + Unpin>(io: &mut T) -> bool {
    let mut b = [0u8; 1];
    tokio::time::timeout(WAIT, io.read(&mut b)).await.is_err()
}

async fn ours(
    wire: &[u8],
    method: &str,
    upgrade: bool,
    close_after: bool,
    splits: &[usize],
) -> (Seen, Option<Error>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let srv = tokio::spawn(backend(server, wire.to_vec(), splits.to_vec(), close_after));
    let (parts, body) = request(method, upgrade).into_parts();
    let sent = tokio::time::timeout(
        WAIT,
        sticky_proxy::send_over(Connection::new(client), &parts, body, "b"),
    )
    .await;
    let resp = match sent {
        Err(_) => return (Seen::NoHead { waiting: true }, None),
        Ok(Err(e)) => return (Seen::NoHead { waiting: false }, Some(e)),
        Ok(Ok(r)) => r,
    };
    let (head, mut body) = resp.into_parts();
    let (body_seen, trailers) = drain(&mut body).await;
    let reusable = match body.into_reusable() {
        Some(conn) if body_seen != Body::Waiting => {
            let (mut io, _) = conn.into_parts();
            idle_open(&mut io).await
        }
        _ => false,
    };
    srv.abort();
    let seen = Seen::Answer {
        status: head.status,
        headers: end_to_end(&head.headers),
        body: body_seen,
        trailers: trailer_list(trailers),
        reusable,
    };
    (seen, None)
}

async fn drain<B>(body: &mut B) -> (Body, Option<HeaderMap>)
where
    B: http_body::Body + Unpin,
    B::Data: bytes::Buf,
{
    let mut data = Vec::new();
    let mut trailers = None;
    loop {
        match tokio::time::timeout(WAIT, body.frame()).await {
            Err(_) => return (Body::Waiting, trailers),
            Ok(None) => return (Body::Complete(data), trailers),
            Ok(Some(Err(_))) => return (Body::Failed, trailers),
            Ok(Some(Ok(f))) => match f.into_data() {
                Ok(mut d) => {
                    while bytes::Buf::has_remaining(&d) {
                        let c = bytes::Buf::chunk(&d);
                        data.extend_from_slice(c);
                        let n = c.len();
                        bytes::Buf::advance(&mut d, n);
                    }
                }
                Err(f) => trailers = f.into_trailers().ok(),
            },
        }
    }
}

async fn hyper(
    wire: &[u8],
    method: &str,
    upgrade: bool,
    close_after: bool,
    splits: &[usize],
) -> Seen {
    let (client, server) = tokio::io::duplex(1 << 20);
    let srv = tokio::spawn(backend(server, wire.to_vec(), splits.to_vec(), close_after));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .expect("handshake over a pipe");
    let mut conn = tokio::spawn(conn.with_upgrades());
    let sent = tokio::time::timeout(WAIT, sender.send_request(request(method, upgrade))).await;
    let resp = match sent {
        Err(_) => return Seen::NoHead { waiting: true },
        Ok(Err(_)) => return Seen::NoHead { waiting: false },
        Ok(Ok(r)) => r,
    };
    let (head, mut body) = resp.into_parts();
    let (body_seen, trailers) = drain(&mut body).await;
    let reusable = body_seen != Body::Waiting
        && head.status != StatusCode::SWITCHING_PROTOCOLS
        && tokio::time::timeout(WAIT, &mut conn).await.is_err()
        && !sender.is_closed();
    srv.abort();
    conn.abort();
    Seen::Answer {
        status: head.status,
        headers: end_to_end(&head.headers),
        body: body_seen,
        trailers: trailer_list(trailers),
        reusable,
    }
}

/// Runs both clients on `wire` and compares.
pub fn check(
    wire: &[u8],
    method: &str,
    upgrade: bool,
    close_after: bool,
    splits: &[usize],
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let ((ours, error), theirs) = rt.block_on(async {
        let o = ours(wire, method, upgrade, close_after, splits).await;
        let t = hyper(wire, method, upgrade, close_after, splits).await;
        (o, t)
    });
    if ours == theirs || allowed_divergence(wire, &ours, error.as_ref(), &theirs) {
        return Ok(());
    }
    Err(TestCaseError::fail(format!(
        "{method} {:?} (close_after {close_after}, splits {splits:?})\n ours: {ours:?} ({error:?})\nhyper: {theirs:?}",
        String::from_utf8_lossy(wire)
    )))
}

/// The divergences the crate docs list and justify.
pub fn allowed_divergence(wire: &[u8], ours: &Seen, error: Option<&Error>, theirs: &Seen) -> bool {
    let text = String::from_utf8_lossy(wire).to_ascii_lowercase();
    // The final head: the first that is not an interim 1xx.
    let final_head = text
        .split("\r\n\r\n")
        .find(|h| {
            let code = h.get(9..12).unwrap_or("");
            !code.starts_with('1') || code == "101"
        })
        .unwrap_or("");
    let has_te = final_head.contains("\ntransfer-encoding:");
    let has_cl = final_head.contains("\ncontent-length:");
    // 1. A transfer coding other than chunked: an error here.
    if matches!(error, Some(Error::Protocol(ProtocolError::TransferCoding))) {
        return true;
    }
    match (ours, theirs) {
        // 2. HTTP/1.0 with Transfer-Encoding: read here and not reused,
        //    refused by hyper.
        (
            Seen::Answer {
                reusable: false, ..
            },
            Seen::NoHead { waiting: false },
        ) if final_head.starts_with("http/1.0") && has_te => true,
        // 3. Both framings: the connection is closed here after the answer.
        (
            Seen::Answer {
                status: s1,
                headers: h1,
                body: b1,
                trailers: t1,
                reusable: false,
            },
            Seen::Answer {
                status: s2,
                headers: h2,
                body: b2,
                trailers: t2,
                reusable: true,
            },
        ) if has_te && (has_cl || final_head.starts_with("http/1.0")) => {
            s1 == s2 && h1 == h2 && b1 == b2 && t1 == t2
        }
        // 4. No final head: one side reports the broken head at once, the
        //    other waits for bytes that would not mend it; neither answers.
        (Seen::NoHead { .. }, Seen::NoHead { .. }) => true,
        _ => false,
    }
}
