//! A real etcd for the etcd tests: started on free loopback ports with a
//! temporary data directory, stopped by pid on drop. The binary comes from
//! `STICKY_ETCD` or `/usr/bin/etcd`; without one the tests print a skip
//! note and pass, except under `CI`, where a missing etcd fails them.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, PutOptions};
use sticky_gateway::config::{EtcdConfig, GatewayConfig, RouteConfig};
use sticky_gateway::run::{self, Running};
use tower_sticky::token::{KeyRing, Token, TokenCodec};
use tower_sticky::StableId;

/// The etcd binary, or `None` (with a note) when there is none.
pub fn binary() -> Option<PathBuf> {
    let p = std::env::var_os("STICKY_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    if p.is_file() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "etcd not found at {} (set STICKY_ETCD): CI must run the etcd tests",
            p.display()
        );
    }
    eprintln!(
        "SKIPPED: etcd not found at {} (install etcd-server or set STICKY_ETCD)",
        p.display()
    );
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One etcd member on loopback.
pub struct Etcd {
    bin: PathBuf,
    child: Option<Child>,
    pub dir: PathBuf,
    pub client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts etcd with a fresh data directory; `None` when there is no
    /// binary (the test then returns).
    pub async fn start(name: &str) -> Option<Etcd> {
        let bin = binary()?;
        let dir = std::env::temp_dir().join(format!(
            "sticky-etcd-{}-{name}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut e = Etcd {
            bin,
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
        };
        e.spawn().await;
        Some(e)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    async fn spawn(&mut self) {
        let c = format!("http://127.0.0.1:{}", self.client_port);
        let p = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&self.bin)
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("t={p}")])
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .args(["--experimental-watch-progress-notify-interval", "1s"])
            .args([
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "error",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Ok(mut cl)) = tokio::time::timeout(
                Duration::from_millis(500),
                Client::connect([c.as_str()], None),
            )
            .await
            {
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(500), cl.status()).await
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Freezes etcd (a hung server: connections stay open, nothing answers).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused etcd run again.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills etcd (connections refused from now on).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same data directory and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A client for the test's own reads and writes.
    pub async fn client(&self) -> Client {
        Client::connect([self.url()], None).await.unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused process ignores SIGKILL only until continued.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `PREFIX/backends/NAME` = `{"address": ADDR, "weight": 1}`.
pub async fn put_backend(c: &mut Client, prefix: &str, name: &str, addr: &str) {
    c.put(
        format!("{prefix}/backends/{name}"),
        format!(r#"{{"address":"{addr}","weight":1}}"#),
        None::<PutOptions>,
    )
    .await
    .unwrap();
}

/// `PREFIX/intent/NAME` = `{"state": STATE}`.
pub async fn put_intent(c: &mut Client, prefix: &str, name: &str, state: &str) {
    c.put(
        format!("{prefix}/intent/{name}"),
        format!(r#"{{"state":"{state}"}}"#),
        None::<PutOptions>,
    )
    .await
    .unwrap();
}

/// The keys under `prefix/replicas/`.
pub async fn replica_keys(c: &mut Client, prefix: &str) -> Vec<String> {
    let r = c
        .get(
            format!("{prefix}/replicas/"),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    r.kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_string())
        .collect()
}

/// Test-speed etcd settings feeding the default route.
pub fn etcd_config(endpoints: Vec<String>, prefix: &str) -> EtcdConfig {
    let mut e = EtcdConfig::new(endpoints, prefix, "default");
    e.publish_interval = Duration::from_millis(200);
    e.lease_ttl = Duration::from_secs(2);
    e.request_timeout = Duration::from_secs(1);
    e
}

/// A gateway replica whose only route is fed by etcd (no static backends).
pub async fn replica(keys: &KeyRing, etcd: EtcdConfig) -> Running {
    let mut config = GatewayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![RouteConfig::catch_all(Vec::new())],
    );
    config.admin = Some("127.0.0.1:0".parse().unwrap());
    config.access_log = false;
    config.etcd = Some(etcd);
    run::start(config, keys.clone(), None)
        .await
        .expect("replica starts")
}

/// The backend names of the fed route and whether each takes new sessions.
pub fn backends(r: &Running) -> Vec<(String, bool)> {
    r.gateway.backend_names("default").unwrap()
}

/// A request head carrying a sealed token pinned to `backend`.
pub fn pinned(keys: &KeyRing, backend: &str, session: u64) -> http::request::Parts {
    let codec = TokenCodec::new(keys.clone(), "sticky");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let sealed = codec.seal(&Token::new(backend.stable_id(), session, now));
    http::Request::get("/")
        .header("cookie", format!("sticky={}", sealed.as_str()))
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// A request head with no token.
pub fn fresh() -> http::request::Parts {
    http::Request::get("/").body(()).unwrap().into_parts().0
}

/// Polls `check` every 10 ms until it holds; panics with `what` after
/// `limit`. Returns how long it took.
pub async fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if check() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A TCP forwarder in front of etcd that the test can cut (dropping every
/// connection and refusing new ones) and restore: a network partition
/// between one replica and the store.
pub struct Cut {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    gen: tokio::sync::watch::Sender<u64>,
}

impl Cut {
    pub async fn start(target: u16) -> Cut {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let (gen, _) = tokio::sync::watch::channel(0u64);
        let (o, g) = (open.clone(), gen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = l.accept().await else {
                    return;
                };
                if !o.load(Ordering::SeqCst) {
                    continue;
                }
                let mut killed = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = killed.changed() => {}
                    }
                });
            }
        });
        Cut { addr, open, gen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.gen.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
