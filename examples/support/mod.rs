//! What the axum examples share: their command line (`--listen`,
//! `--key-file`, repeated `NAME=HOST:PORT` members, and `--name` for a
//! replica), the key file (sticky-gateway's format), and serving until
//! SIGTERM or Ctrl-C with each request's client address known (so that
//! `X-Forwarded-For` names it).

use std::net::SocketAddr;

use axum::Router;
use tower_sticky::token::KeyRing;

/// The command line's flags that the examples share.
pub struct Flags {
    /// `--listen HOST:PORT`.
    pub listen: SocketAddr,
    /// `--name NAME`, when the example asks for it.
    #[allow(dead_code)] // the gateway has no name
    pub name: String,
    /// The members, `(NAME, HOST:PORT)`, in the order given.
    pub members: Vec<(String, String)>,
    /// The keys read from `--key-file`.
    pub keys: KeyRing,
}

/// What an example's command line holds.
pub struct Spec {
    /// The program's name, for messages.
    pub program: &'static str,
    /// The flag naming a member, `--backend` or `--peer`.
    pub member: &'static str,
    /// Whether `--name` is required (and allowed).
    pub name: bool,
    /// Whether at least one member is required.
    pub members_required: bool,
}

/// The flags of this process's command line, or a message on stderr and
/// exit status 2.
pub fn flags(spec: Spec) -> Flags {
    let parsed =
        parse(&spec, std::env::args().skip(1)).and_then(|(listen, name, members, file)| {
            let keys = std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|t| KeyRing::from_lines(&t).map_err(|e| e.to_string()))
                .map_err(|e| format!("key file {file}: {e}"))?;
            Ok(Flags {
                listen,
                name,
                members,
                keys,
            })
        });
    parsed.unwrap_or_else(|e| {
        eprintln!("{}: {e}", spec.program);
        std::process::exit(2);
    })
}

type Parsed = (SocketAddr, String, Vec<(String, String)>, String);

fn parse(spec: &Spec, args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let (mut listen, mut name, mut members, mut key_file) = (None, None, Vec::new(), None);
    let mut it = args;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--name" if spec.name => name = Some(value()?),
            "--key-file" => key_file = Some(value()?),
            f if f == spec.member => {
                let v = value()?;
                let (n, a) = v
                    .split_once('=')
                    .ok_or(format!("{} is NAME=HOST:PORT", spec.member))?;
                members.push((n.to_string(), a.to_string()));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if spec.members_required && members.is_empty() {
        return Err(format!("at least one {} is required", spec.member));
    }
    let name = match (spec.name, name) {
        (true, None) => return Err("--name is required".into()),
        (_, n) => n.unwrap_or_default(),
    };
    Ok((
        listen.ok_or("--listen is required")?,
        name,
        members,
        key_file.ok_or("--key-file is required")?,
    ))
}

/// Listens on `addr`, prints `"{banner} listening on ADDR"` (the one line
/// the tools that drive the examples wait for), and serves `app` until
/// SIGTERM or Ctrl-C, with each connection's address in the requests'
/// extensions (`ConnectInfo<SocketAddr>`).
pub async fn serve(program: &str, banner: &str, addr: SocketAddr, app: Router) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{program}: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let bound = listener.local_addr().expect("a bound address");
    println!("{banner} listening on {bound}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(terminated())
    .await
    .expect("server");
}

/// SIGTERM or Ctrl-C.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
