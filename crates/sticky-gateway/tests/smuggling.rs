//! Request smuggling and desync, tried against the running gateway over
//! loopback as an attacker would: a raw TCP client sends each hostile
//! request byte for byte, and a raw-socket backend records the exact bytes
//! it receives and reads them as a strict HTTP/1.1 server would (RFC 9112:
//! Content-Length beside Transfer-Encoding, a coding other than a final
//! `chunked`, a malformed head: each is a desync, answered 400 and closed;
//! a 2xx to CONNECT turns the connection into a tunnel).
//!
//! After each attack a second user sends an ordinary request on a fresh
//! connection. Every case asserts that
//! - the backend saw no more requests than the attacker sent (no request
//!   smuggled inside another), and
//! - the second user's request reached the backend exactly once, as itself,
//!   and was never written onto a backend connection left out of step (or
//!   tunnelled) by the attack, and the second user got its own answer.
//!
//! Each case prints one markdown row (case | client got | backend received |
//! verdict) for RELIABILITY.md:
//! `cargo test -p sticky-gateway --test smuggling -- --nocapture --test-threads=1 | grep '^| '`

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

/// The second user's request, sent after each attack.
const USER_B: &[u8] = b"GET /b HTTP/1.1\r\nHost: app.test\r\nx-user: B\r\n\r\n";

/// How long a client waits for answers before it takes what it has.
const CLIENT_WAIT: Duration = Duration::from_secs(3);

/// A request as the strict backend read it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    fields: Vec<(String, Vec<u8>)>,
    /// Shown when a case fails (`{:?}`); no check needs it yet.
    #[allow(dead_code)]
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
    }
}

/// One backend connection: every byte received, the requests read from
/// them, and why reading stopped (a desync) or whether it became a tunnel.
#[derive(Clone, Debug, Default)]
struct ConnLog {
    bytes: Vec<u8>,
    requests: Vec<Seen>,
    /// Where in `bytes` reading stopped, and why.
    desync: Option<(usize, String)>,
    /// Where in `bytes` a CONNECT tunnel began.
    tunnel: Option<usize>,
}

type Log = Arc<Mutex<Vec<Arc<Mutex<ConnLog>>>>>;

/// A backend that records what it receives and answers each request it can
/// read with `200` naming the request and its `x-user`.
async fn recording_backend() -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let all = log.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let conn = Arc::new(Mutex::new(ConnLog::default()));
            all.lock().unwrap().push(conn.clone());
            tokio::spawn(record(s, conn));
        }
    });
    (addr, log)
}

enum Step {
    Request(Seen, usize, bool),
    NeedMore,
    Desync(String),
}

async fn record(mut s: TcpStream, conn: Arc<Mutex<ConnLog>>) {
    // Offset in the connection's bytes where the next request starts.
    let mut at = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut answers = Vec::new();
        let mut close = false;
        {
            let mut c = conn.lock().unwrap();
            c.bytes.extend_from_slice(&chunk[..n]);
            if c.tunnel.is_some() || c.desync.is_some() {
                continue;
            }
            loop {
                match read_request(&c.bytes[at..]) {
                    Step::NeedMore => break,
                    Step::Desync(why) => {
                        c.desync = Some((at, why));
                        answers.extend_from_slice(
                            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                        );
                        close = true;
                        break;
                    }
                    Step::Request(seen, used, wants_close) => {
                        at += used;
                        if seen.method == "CONNECT" {
                            // RFC 9110 §9.3.6: after a 2xx the connection
                            // is a tunnel; what follows is not HTTP.
                            answers.extend_from_slice(
                                b"HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n",
                            );
                            c.tunnel = Some(at);
                            c.requests.push(seen);
                            break;
                        }
                        let user = seen.field("x-user").unwrap_or(b"-").to_vec();
                        let text = format!(
                            "seen {} {} user={}",
                            seen.method,
                            seen.target,
                            String::from_utf8_lossy(&user)
                        );
                        answers.extend_from_slice(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{text}",
                                text.len(),
                                if wants_close {
                                    "Connection: close\r\n"
                                } else {
                                    ""
                                }
                            )
                            .as_bytes(),
                        );
                        c.requests.push(seen);
                        if wants_close {
                            close = true;
                            break;
                        }
                    }
                }
            }
        }
        if !answers.is_empty() && s.write_all(&answers).await.is_err() {
            return;
        }
        if close {
            let _ = s.shutdown().await;
            // Keep reading (and recording) what else arrives.
        }
    }
}

/// Reads one request from the start of `b` as a strict HTTP/1.1 server.
fn read_request(b: &[u8]) -> Step {
    if b.is_empty() {
        return Step::NeedMore;
    }
    let mut slots = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(b) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Step::NeedMore,
        Err(e) => return Step::Desync(format!("head: {e}")),
    };
    let fields: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let values = |n: &str| -> Vec<Vec<u8>> {
        fields
            .iter()
            .filter(|(f, _)| f == n)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let (te, cl) = (values("transfer-encoding"), values("content-length"));
    let http10 = req.version == Some(0);
    let connection: Vec<u8> = values("connection").concat().to_ascii_lowercase();
    let wants_close = if http10 {
        !connection.windows(10).any(|w| w == b"keep-alive")
    } else {
        connection.windows(5).any(|w| w == b"close")
    };
    let mut at = len;
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    if !te.is_empty() {
        if !cl.is_empty() {
            return Step::Desync("Content-Length beside Transfer-Encoding".into());
        }
        if te.len() != 1 || !te[0].eq_ignore_ascii_case(b"chunked") {
            return Step::Desync(format!(
                "Transfer-Encoding {:?}",
                te.iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect::<Vec<_>>()
            ));
        }
        loop {
            let (used, size) = match httparse::parse_chunk_size(&b[at..]) {
                Ok(httparse::Status::Complete(x)) => x,
                Ok(httparse::Status::Partial) => return Step::NeedMore,
                Err(_) => return Step::Desync("chunk size".into()),
            };
            at += used;
            if size == 0 {
                let mut slots = [httparse::EMPTY_HEADER; 256];
                match httparse::parse_headers(&b[at..], &mut slots) {
                    Ok(httparse::Status::Complete((used, fs))) => {
                        at += used;
                        trailers = fs
                            .iter()
                            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                            .collect();
                    }
                    Ok(httparse::Status::Partial) => return Step::NeedMore,
                    Err(e) => return Step::Desync(format!("trailers: {e}")),
                }
                break;
            }
            let size = size as usize;
            if b.len() < at + size + 2 {
                return Step::NeedMore;
            }
            if &b[at + size..at + size + 2] != b"\r\n" {
                return Step::Desync("chunk not ended by CRLF".into());
            }
            body.extend_from_slice(&b[at..at + size]);
            at += size + 2;
        }
    } else if !cl.is_empty() {
        let mut n: Option<usize> = None;
        for v in &cl {
            for t in v.split(|&c| c == b',') {
                let t = t.trim_ascii();
                let ok = !t.is_empty() && t.iter().all(u8::is_ascii_digit);
                let v = std::str::from_utf8(t).ok().and_then(|t| t.parse().ok());
                match (ok, v) {
                    (true, Some(v)) if n.is_none_or(|n| n == v) => n = Some(v),
                    _ => {
                        return Step::Desync(format!(
                            "Content-Length {:?}",
                            String::from_utf8_lossy(t)
                        ))
                    }
                }
            }
        }
        let n = n.unwrap_or(0);
        if b.len() < at + n {
            return Step::NeedMore;
        }
        body.extend_from_slice(&b[at..at + n]);
        at += n;
    }
    Step::Request(
        Seen {
            method: req.method.unwrap_or("").to_owned(),
            target: req.path.unwrap_or("").to_owned(),
            fields,
            body,
            trailers,
        },
        at,
        wants_close,
    )
}

/// Sends `bytes` on a fresh connection and reads what comes back: until
/// `expect` complete answers arrived (then briefly for any more), the
/// gateway closed, or [`CLIENT_WAIT`] passed.
async fn client(gw: SocketAddr, bytes: &[u8], expect: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(gw).await.unwrap();
    // A gateway may answer and close before reading all of a large head.
    let _ = s.write_all(bytes).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + CLIENT_WAIT;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let wait = if answers(&got).len() >= expect {
            Duration::from_millis(100)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match timeout(wait, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            _ => return got,
        }
    }
}

/// The complete answers in `b`: (status line, body).
fn answers(mut b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = res.parse(b) else {
            return out;
        };
        let line = format!("{} {}", res.code.unwrap_or(0), res.reason.unwrap_or(""));
        let mut n = 0usize;
        let mut chunked = false;
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            }
        }
        let code = res.code.unwrap_or(0);
        if (100..200).contains(&code) {
            b = &b[len..];
            continue;
        }
        b = &b[len..];
        if chunked {
            let mut body = Vec::new();
            loop {
                let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(b)
                else {
                    return out;
                };
                let size = size as usize;
                if size == 0 {
                    // Skip the (empty) trailer section.
                    let Some(end) = b[used..].windows(2).position(|w| w == b"\r\n") else {
                        return out;
                    };
                    b = &b[used + end + 2..];
                    break;
                }
                if b.len() < used + size + 2 {
                    return out;
                }
                body.extend_from_slice(&b[used..used + size]);
                b = &b[used + size + 2..];
            }
            out.push((line, body));
        } else {
            if b.len() < n {
                return out;
            }
            out.push((line, b[..n].to_vec()));
            b = &b[n..];
        }
    }
}

/// Bytes as text for a table cell: CR, LF, tabs and other controls escaped,
/// long runs of one byte shortened, at most `max` characters.
fn shown(b: &[u8], max: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..].iter().take_while(|&&c| c == b[i]).count();
        if run > 16 {
            s.push_str(&format!("{}×{run}", shown(&b[i..i + 1], 8)));
            i += run;
            continue;
        }
        match b[i] {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'|' => s.push_str("\\|"),
            b'`' => s.push('\''),
            c if c.is_ascii_graphic() || c == b' ' => s.push(c as char),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
        i += 1;
    }
    if s.chars().count() > max {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}… ({} bytes)", b.len())
    } else {
        s
    }
}

/// One attack.
struct Case {
    name: &'static str,
    /// What the attacker sends, on one connection.
    bytes: Vec<u8>,
    /// How many requests the attacker's bytes hold (pipelining: two).
    sent: usize,
}

async fn gateway(backend: SocketAddr) -> sticky_gateway::run::Running {
    common::gateway_over(&[("recorder", backend)], |_| {}).await
}

/// Runs one case: prints its row, then asserts.
async fn run(case: Case) {
    let (backend, log) = recording_backend().await;
    let gw = gateway(backend).await;

    let got = client(gw.addr, &case.bytes, case.sent).await;
    // What the backend had from the attack alone (before user B).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let attack: Vec<ConnLog> = snapshot(&log);
    let got_b = client(gw.addr, USER_B, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let conns: Vec<ConnLog> = snapshot(&log);

    let answered = answers(&got);
    let client_got = if answered.is_empty() {
        if got.is_empty() {
            "nothing (closed or no answer)".to_string()
        } else {
            format!("partial: {}", shown(&got, 60))
        }
    } else {
        answered
            .iter()
            .map(|(line, _)| line.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let received: Vec<u8> = attack
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let mut v = if attack.len() > 1 {
                format!("[conn {}] ", i + 1).into_bytes()
            } else {
                Vec::new()
            };
            v.extend_from_slice(&c.bytes);
            v
        })
        .collect();
    let received = if received.is_empty() {
        "nothing".to_string()
    } else {
        format!("`{}`", shown(&received, 400))
    };

    let mut problems = Vec::new();
    let is_b = |r: &Seen| r.field("x-user") == Some(b"B");
    let attack_requests: usize = conns
        .iter()
        .map(|c| c.requests.iter().filter(|r| !is_b(r)).count())
        .sum();
    if attack_requests > case.sent {
        problems.push(format!(
            "the backend saw {attack_requests} requests where the client sent {}",
            case.sent
        ));
    }
    let b_seen: Vec<&Seen> = conns
        .iter()
        .flat_map(|c| c.requests.iter().filter(|r| is_b(r)))
        .collect();
    match b_seen.as_slice() {
        [r] if r.method == "GET" && r.target == "/b" => {}
        [] => problems.push("user B's request never reached the backend as a request".into()),
        other => problems.push(format!(
            "user B's request seen as {:?}",
            other
                .iter()
                .map(|r| format!("{} {}", r.method, r.target))
                .collect::<Vec<_>>()
        )),
    }
    for (i, c) in conns.iter().enumerate() {
        let stop = match (c.desync.as_ref().map(|d| d.0), c.tunnel) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(stop) = stop {
            let after = &c.bytes[stop..];
            if after.windows(9).any(|w| w == b"x-user: B") {
                problems.push(format!(
                    "user B's request was written onto backend connection {} after it was {}",
                    i + 1,
                    match &c.desync {
                        Some((_, why)) => format!("out of step ({why})"),
                        None => "made a tunnel".into(),
                    }
                ));
            }
        }
    }
    match answers(&got_b).first() {
        Some((line, body)) if line.starts_with("200") => {
            if !body.ends_with(b"GET /b user=B") {
                problems.push(format!(
                    "user B got someone else's answer: {}",
                    shown(body, 80)
                ));
            }
        }
        other => problems.push(format!("user B got {other:?}, not its 200")),
    }
    let absolute = absolute_target(&case.bytes);
    for r in conns.iter().flat_map(|c| &c.requests) {
        // The backend's origin-form target: the path, `/` when it had none.
        let same_target = |path: &[u8]| {
            let t = r.target.as_bytes();
            t == path || (t.first() == Some(&b'/') && &t[1..] == path && !path.starts_with(b"/"))
        };
        if let Some((authority, _)) = absolute.filter(|(_, path)| same_target(path)) {
            // RFC 9112 §3.2.2: an absolute-form target's authority is the
            // request's host, and a Host field is replaced by it, so that
            // the gateway (which routes by it) and the backend agree.
            let hosts: Vec<&[u8]> = r
                .fields
                .iter()
                .filter(|(n, _)| n == "host" || n == "x-forwarded-host")
                .map(|(_, v)| &v[..])
                .collect();
            if hosts.len() != 2 || hosts.iter().any(|h| *h != authority) {
                problems.push(format!(
                    "absolute-form authority {:?} not the forwarded Host and X-Forwarded-Host: {hosts:?}",
                    String::from_utf8_lossy(authority)
                ));
            }
        }
        let origin_form = r.target.starts_with('/');
        if !(origin_form || r.method == "CONNECT" || (r.method == "OPTIONS" && r.target == "*")) {
            // RFC 9112 §3.2.1: to a server, origin-form (or the CONNECT and
            // OPTIONS forms); anything else a backend may read its own way.
            problems.push(format!("request target {:?} is not origin-form", r.target));
        }
        let hosts = r.fields.iter().filter(|(n, _)| n == "host").count();
        if hosts > 1 {
            // RFC 9112 §3.2: a request with more than one Host is answered 400.
            problems.push(format!("{hosts} Host fields forwarded"));
        }
        // RFC 9110 §6.5.1: framing, routing, authentication and hop-by-hop
        // fields are not taken from trailers (issue 8, defect 8).
        let forbidden: Vec<&str> = r
            .trailers
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| FORBIDDEN_TRAILERS.contains(n))
            .collect();
        if !forbidden.is_empty() {
            problems.push(format!("trailers forwarded with {forbidden:?}"));
        }
    }
    let notes: Vec<String> = conns
        .iter()
        .filter_map(|c| {
            c.desync
                .as_ref()
                .map(|(_, why)| format!("backend refused: {why}"))
        })
        .collect();
    let verdict = if problems.is_empty() {
        if notes.is_empty() {
            "ok".to_string()
        } else {
            format!("ok ({})", notes.join("; "))
        }
    } else {
        format!("**FAIL**: {}", problems.join("; "))
    };
    // On a line of its own even after libtest's "test name ... ".
    println!(
        "\n| {} | {} | {} | {} | `cargo test -p sticky-gateway --test smuggling {} -- --exact` |",
        case.name, client_got, received, verdict, case.name
    );
    gw.shutdown().await;
    assert!(
        problems.is_empty(),
        "{}: {}",
        case.name,
        problems.join("; ")
    );
}

fn snapshot(log: &Log) -> Vec<ConnLog> {
    log.lock()
        .unwrap()
        .iter()
        .map(|c| c.lock().unwrap().clone())
        .collect()
}

/// A request head (CRLF line ends added) and body.
fn req(lines: &[&str], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(body);
    v
}

/// Trailer fields a proxy must not forward (RFC 9110 §6.5.1; issue 8).
const FORBIDDEN_TRAILERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "trailer",
    "host",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "authorization",
    "proxy-authorization",
    "x-forwarded-for",
];

/// The authority and the path of a case's absolute-form `http://` request
/// target, if its first request line has one.
fn absolute_target(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = bytes.split(|&b| b == b'\r' || b == b'\n').next()?;
    let target = line.split(|&b| b == b' ').nth(1)?;
    let rest = target.strip_prefix(b"http://")?;
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    Some((&rest[..end], &rest[end..]))
}

/// A smuggled second request, hidden in a body.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\nx-user: attacker\r\n\r\n";

macro_rules! cases {
    ($($name:ident: $sent:expr, $bytes:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run(Case { name: stringify!($name), bytes: $bytes, sent: $sent }).await;
            }
        )*
    };
}

fn te_cl_body() -> Vec<u8> {
    // Chunked says: one chunk holding the smuggled request, then the end;
    // Content-Length 4 says: the body is "5c\r\n", the rest a new request.
    format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len()).into_bytes()
}

cases! {
    cl_te: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 6", "Transfer-Encoding: chunked"],
        format!("0\r\n\r\n{SMUGGLED}").as_bytes(),
    );
    te_cl: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 4", "Transfer-Encoding: chunked"],
        &te_cl_body(),
    );
    te_xchunked: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 4", "Transfer-Encoding: xchunked"],
        &te_cl_body(),
    );
    te_vertical_tab: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 4", "Transfer-Encoding:\x0bchunked"],
        &te_cl_body(),
    );
    te_leading_space_line: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 4", " Transfer-Encoding: chunked"],
        &te_cl_body(),
    );
    te_space_before_colon: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 4", "Transfer-Encoding : chunked"],
        &te_cl_body(),
    );
    te_duplicated: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
        &te_cl_body(),
    );
    te_chunked_twice: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Transfer-Encoding: chunked, chunked"],
        &te_cl_body(),
    );
    cl_plus_sign: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: +5"],
        b"hello",
    );
    cl_minus_sign: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: -1"],
        SMUGGLED.as_bytes(),
    );
    cl_inner_space: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 1 0"],
        SMUGGLED.as_bytes(),
    );
    cl_space_before_colon: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length : 5"],
        format!("hello{SMUGGLED}").as_bytes(),
    );
    cl_duplicates_differ: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 5", "Content-Length: 61"],
        format!("hello{SMUGGLED}").as_bytes(),
    );
    cl_list_differs: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 5, 61"],
        format!("hello{SMUGGLED}").as_bytes(),
    );
    cl_duplicates_equal: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 5", "Content-Length: 5"],
        b"hello",
    );
    obs_fold_te: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Content-Length: 4", "Transfer-Encoding:", " chunked"],
        &te_cl_body(),
    );
    obs_fold_value: 1, req(
        &["GET / HTTP/1.1", "Host: app.test", "X-Folded: a", " b"],
        b"",
    );
    bare_lf: 1, format!(
        "POST / HTTP/1.1\nHost: app.test\nContent-Length: 4\nTransfer-Encoding: chunked\n\n{}",
        String::from_utf8(te_cl_body()).unwrap()
    ).into_bytes();
    nul_in_value: 1, req(&["GET / HTTP/1.1", "Host: app.test", "X-A: a\0b"], b"");
    cr_in_value: 1, req(
        &["GET / HTTP/1.1", "Host: app.test", "X-A: a\rContent-Length: 61"],
        SMUGGLED.as_bytes(),
    );
    absolute_uri_vs_host: 1, req(
        &["GET http://evil.test/abs HTTP/1.1", "Host: app.test"],
        b"",
    );
    absolute_uri_query_no_path: 1, req(
        &["GET http://app.test?x=1 HTTP/1.1", "Host: app.test"],
        b"",
    );
    oversized_request_line: 1, req(
        &[&format!("GET /{} HTTP/1.1", "a".repeat(70 * 1024)), "Host: app.test"],
        b"",
    );
    oversized_header: 1, req(
        &["GET / HTTP/1.1", "Host: app.test", &format!("X-Big: {}", "b".repeat(70 * 1024))],
        b"",
    );
    header_count: 1, {
        let many: Vec<String> = (0..150).map(|i| format!("X-H{i}: {i}")).collect();
        let mut lines = vec!["GET / HTTP/1.1".to_string(), "Host: app.test".to_string()];
        lines.extend(many);
        req(&lines.iter().map(String::as_str).collect::<Vec<_>>(), b"")
    };
    http10_with_te: 1, req(
        &["POST / HTTP/1.0", "Host: app.test", "Connection: keep-alive", "Content-Length: 4", "Transfer-Encoding: chunked"],
        &te_cl_body(),
    );
    pipelined: 2, [
        req(&["GET /one HTTP/1.1", "Host: app.test"], b""),
        req(&["GET /two HTTP/1.1", "Host: app.test"], b""),
    ].concat();
    connect: 1, req(
        &["CONNECT attacker.test:443 HTTP/1.1", "Host: attacker.test:443"],
        b"",
    );
    two_hosts: 1, req(
        &["GET / HTTP/1.1", "Host: app.test", "Host: evil.test"],
        b"",
    );
    trailers_forbidden_fields: 1, req(
        &["POST / HTTP/1.1", "Host: app.test", "Transfer-Encoding: chunked"],
        b"5\r\nhello\r\n0\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\nHost: evil.test\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n",
    );
}
