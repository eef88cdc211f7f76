//! `cargo xtask bench-peers`: sticky-gateway and the pingora-sticky example vs HAProxy vs
//! nginx on loopback.
//!
//! The measuring is done by `xtask/bench-peers/run.sh` (the project's peer kit); this
//! module prepares the machine (tools, free ports, gateway binary and key), runs the
//! script within a time bound and summarizes its `summary.tsv`.

use crate::proc::{run_bounded, wait_bounded, which, Apt};
use crate::{banner, cargo_bin, summary, target_dir, workspace_root};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Scenarios run when `SCENARIOS` is not given (the `*-rr` ones exist but are opt-in),
/// peers on the same workload next to each other (run.sh alternates the order by round).
const DEFAULT_SCENARIOS: &str = "direct haproxy-cookie-new sticky-new pingora-new \
nginx-hash-new haproxy-cookie-sticky sticky-sticky pingora-sticky nginx-hash-sticky \
haproxy-cookie-sticky-long sticky-sticky-long pingora-sticky-long nginx-hash-sticky-long \
haproxy-tls-sticky sticky-tls-sticky haproxy-tls-resume sticky-tls-resume \
haproxy-tls-handshake sticky-tls-handshake";

/// Every scenario the script knows.
const ALL_SCENARIOS: &str = "direct haproxy-rr haproxy-cookie-new haproxy-cookie-sticky \
haproxy-cookie-sticky-long nginx-rr nginx-hash-new nginx-hash-sticky nginx-hash-sticky-long \
sticky-new sticky-sticky sticky-sticky-long haproxy-tls-sticky sticky-tls-sticky \
haproxy-tls-resume sticky-tls-resume haproxy-tls-handshake sticky-tls-handshake \
pingora-rr pingora-new pingora-sticky pingora-sticky-long";

/// Loopback ports the kit listens on (backends, peers, gateway, TLS listeners,
/// pingora example, its `--plain` twin for pingora-rr).
const PORTS: [u16; 14] = [
    9001, 9002, 9003, 8081, 8082, 8083, 8084, 8085, 8086, 8087, 8088, 8089, 8090, 8091,
];

/// Settings of one bench-peers run.
struct Opts {
    /// Interleaved passes over the scenarios.
    rounds: u32,
    /// Pin the system under test alone on CPU 1 (1) or let the scheduler decide (0).
    pin: u32,
    /// Measured seconds per wrk run.
    dur: u32,
    /// Discarded warm-up seconds per wrk run.
    warm: u32,
    /// Scenario names, in run order.
    scenarios: Vec<String>,
    /// Never call apt-get.
    no_install: bool,
    /// A prebuilt gateway to measure instead of building `sticky-gateway` here.
    gateway_bin: Option<PathBuf>,
}

/// Reads a numeric environment variable, falling back to `default`.
fn env_num(name: &str, default: u32) -> Result<u32, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v} is not a number")),
        _ => Ok(default),
    }
}

/// Parses flags over the environment defaults.
fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        rounds: env_num("ROUNDS", 3)?,
        pin: env_num("PIN", 1)?,
        dur: env_num("DUR", 10)?,
        warm: env_num("WARM", 2)?,
        scenarios: std::env::var("SCENARIOS")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_SCENARIOS.to_string())
            .split_whitespace()
            .map(String::from)
            .collect(),
        no_install: false,
        gateway_bin: std::env::var_os("GATEWAY_BIN")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{flag} needs a value"))
        };
        let num = |v: String| {
            v.parse::<u32>()
                .map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match flag {
            "--rounds" => o.rounds = num(value()?)?,
            "--pin" => o.pin = num(value()?)?,
            "--dur" => o.dur = num(value()?)?,
            "--scenarios" => o.scenarios = value()?.split_whitespace().map(String::from).collect(),
            "--no-install" => o.no_install = true,
            "--gateway-bin" => o.gateway_bin = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let known: Vec<&str> = ALL_SCENARIOS.split_whitespace().collect();
    if let Some(bad) = o.scenarios.iter().find(|s| !known.contains(&s.as_str())) {
        return Err(format!("unknown scenario `{bad}` (known: {ALL_SCENARIOS})"));
    }
    if o.scenarios.is_empty() || o.rounds == 0 || o.dur == 0 {
        return Err("nothing to run (need scenarios, ROUNDS >= 1, DUR >= 1)".into());
    }
    if o.pin > 1 {
        return Err("PIN must be 0 or 1".into());
    }
    Ok(o)
}

/// Entry point of `cargo xtask bench-peers`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let mut o = parse(args)?;
    let root = workspace_root();
    let kit = root.join("xtask/bench-peers");

    banner("bench-peers: tools and ports");
    if o.pin == 1 && cpu_count() < 2 {
        println!(
            "note: PIN=1 needs 2 CPUs, this machine has {}; running unpinned",
            cpu_count()
        );
        o.pin = 0;
    }
    ensure_tools(o.no_install)?;
    for port in PORTS {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(format!(
                "127.0.0.1:{port} is already in use; the kit needs ports {PORTS:?} free"
            ));
        }
    }
    println!("ports {PORTS:?} on 127.0.0.1 are free");

    let stamp = utc_stamp();
    let outdir = target_dir().join("bench-peers").join(&stamp);
    std::fs::create_dir_all(&outdir).map_err(|e| format!("{}: {e}", outdir.display()))?;
    let scratch_dir = ScratchDir::new()?;
    let scratch = scratch_dir.0.as_path();

    let wants_pingora = o.scenarios.iter().any(|s| s.starts_with("pingora-"));
    // The pingora example seals with the gateway's key file: the gateway is built
    // for its `keygen` even when only pingora-* scenarios run.
    let wants_gateway = wants_pingora || o.scenarios.iter().any(|s| s.starts_with("sticky-"));
    let gateway = if wants_gateway {
        let built = match &o.gateway_bin {
            Some(bin) => {
                banner(&format!("bench-peers: prebuilt gateway {}", bin.display()));
                // run.sh works in another directory: pass an absolute path.
                std::fs::canonicalize(bin).map_err(|e| format!("{}: {e}", bin.display()))
            }
            None => {
                banner("bench-peers: cargo build --release -p sticky-gateway");
                build_gateway(&root)
            }
        };
        match built.and_then(|bin| make_key(bin, scratch)) {
            Ok(g) => Some(g),
            Err(e) => {
                println!("SKIP sticky-* scenarios: {e}");
                None
            }
        }
    } else {
        None
    };

    if gateway.is_none() && wants_gateway {
        o.scenarios
            .retain(|s| !s.starts_with("sticky-") && !s.starts_with("pingora-"));
        if o.scenarios.is_empty() {
            return Err(
                "only sticky-* / pingora-* scenarios were asked for and the gateway (its key) is unavailable".into(),
            );
        }
    }
    let pingora = if wants_pingora && gateway.is_some() {
        banner("bench-peers: cargo build --release -p sticky-examples --example pingora_gateway");
        match build_pingora_example(&root) {
            Ok(bin) => Some(bin),
            Err(e) => {
                println!("SKIP pingora-* scenarios: {e}");
                o.scenarios.retain(|s| !s.starts_with("pingora-"));
                None
            }
        }
    } else {
        None
    };
    // About 0.3 s per wrk run on top of warm-up + measurement, plus ~5 s of start-up
    // and checks; the bound below is generous on top of that.
    let runs = u64::from(o.rounds) * o.scenarios.len() as u64;
    let expected = runs * (u64::from(o.warm + o.dur) * 10 + 3) / 10 + 5;
    banner(&format!(
        "bench-peers: {} round(s) x {} scenario(s), {} s each, PIN={} (about {} s) -> {}",
        o.rounds,
        o.scenarios.len(),
        o.warm + o.dur,
        o.pin,
        expected,
        outdir.display()
    ));
    let mut cmd = Command::new("bash");
    cmd.arg(kit.join("run.sh"))
        .current_dir(&kit)
        .stdin(Stdio::null())
        .env("ROUNDS", o.rounds.to_string())
        .env("PIN", o.pin.to_string())
        .env("DUR", o.dur.to_string())
        .env("WARM", o.warm.to_string())
        .env("SCENARIOS", o.scenarios.join(" "))
        .env("OUTDIR", &outdir)
        .env("PATH", path_with_sbin());
    cmd.env_remove("GATEWAY_BIN")
        .env_remove("GATEWAY_KEY")
        .env_remove("PINGORA_BIN");
    if let Some((bin, key)) = &gateway {
        cmd.env("GATEWAY_BIN", bin).env("GATEWAY_KEY", key);
    }
    if let Some(bin) = &pingora {
        cmd.env("PINGORA_BIN", bin);
    }
    // Generous bound: sanity checks and start-up add well under a minute.
    let deadline = Instant::now() + Duration::from_secs(expected * 3 / 2 + runs * 20 + 120);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start run.sh: {e}"))?;
    let status = wait_bounded(
        &mut child,
        "bench-peers/run.sh",
        deadline,
        Duration::from_secs(15),
    );
    let tsv = outdir.join("summary.tsv");
    let ok = matches!(&status, Ok(st) if st.success());
    let md = summary::render(std::slice::from_ref(&tsv));
    if let Ok(md) = &md {
        std::fs::write(outdir.join("summary.md"), md)
            .map_err(|e| format!("writing summary.md: {e}"))?;
        let partial = if ok { "" } else { "partial " };
        banner(&format!("bench-peers {partial}summary ({})", tsv.display()));
        println!("{md}");
    }
    let status = status?;
    if !status.success() {
        return Err(format!(
            "bench-peers/run.sh failed ({status}); output so far in {}",
            outdir.display()
        ));
    }
    md?;
    println!(
        "bench-peers took {:.1} min; results in {}",
        started.elapsed().as_secs_f64() / 60.0,
        outdir.display()
    );
    Ok(())
}

/// A private temporary directory (for the gateway key), removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `$TMPDIR/sticky-bench-<pid>` with mode 0700.
    fn new() -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("sticky-bench-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Installs (or finds) nginx, haproxy, wrk, curl and openssl (the TLS scenarios'
/// certificate).
fn ensure_tools(no_install: bool) -> Result<(), String> {
    let wanted = [
        ("nginx", "nginx-light"),
        ("haproxy", "haproxy"),
        ("wrk", "wrk"),
        ("curl", "curl"),
        ("openssl", "openssl"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| which(bin).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    for helper in ["taskset", "timeout", "awk", "getconf", "bash"] {
        if which(helper).is_none() {
            return Err(format!(
                "`{helper}` is missing (util-linux / coreutils / mawk / libc-bin)"
            ));
        }
    }
    if missing.is_empty() {
        println!("nginx, haproxy, wrk, curl, openssl: found");
        return Ok(());
    }
    if no_install {
        return Err(format!(
            "missing packages {missing:?} and --no-install given"
        ));
    }
    println!("installing {missing:?}");
    Apt::default()
        .install(&missing, &["--no-install-recommends"])
        .map_err(|e| format!("{e}; install {} by hand", missing.join(" ")))?;
    match wanted.iter().find(|(bin, _)| which(bin).is_none()) {
        Some((bin, _)) => Err(format!("`{bin}` still missing after apt-get install")),
        None => Ok(()),
    }
}

/// Builds the gateway in release mode; returns the binary or why it cannot run.
fn build_gateway(root: &Path) -> Result<PathBuf, String> {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(30 * 60);
    let st = run_bounded(
        Command::new(cargo_bin())
            .args(["build", "--release", "-p", "sticky-gateway"])
            .current_dir(root)
            .stdin(Stdio::null()),
        "cargo build --release -p sticky-gateway",
        deadline,
        Duration::from_secs(10),
    )?;
    if !st.success() {
        return Err(format!("sticky-gateway did not build ({st})"));
    }
    println!("built in {:.0} s", t.elapsed().as_secs_f64());
    let bin = target_dir().join("release/sticky-gateway");
    if !bin.exists() {
        return Err(format!("{} not found after the build", bin.display()));
    }
    Ok(bin)
}

/// Builds the pingora-sticky example in release mode; returns the binary.
fn build_pingora_example(root: &Path) -> Result<PathBuf, String> {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(30 * 60);
    let what = "cargo build --release -p sticky-examples --example pingora_gateway";
    let st = run_bounded(
        Command::new(cargo_bin())
            .args([
                "build",
                "--release",
                "-p",
                "sticky-examples",
                "--example",
                "pingora_gateway",
            ])
            .current_dir(root)
            .stdin(Stdio::null()),
        what,
        deadline,
        Duration::from_secs(10),
    )?;
    if !st.success() {
        return Err(format!("pingora_gateway did not build ({st})"));
    }
    println!("built in {:.0} s", t.elapsed().as_secs_f64());
    let bin = target_dir().join("release/examples/pingora_gateway");
    if !bin.exists() {
        return Err(format!("{} not found after the build", bin.display()));
    }
    Ok(bin)
}

/// Writes a key file with `<bin> keygen`; returns (binary, key file).
fn make_key(bin: PathBuf, scratch: &Path) -> Result<(PathBuf, PathBuf), String> {
    let key = scratch.join("gateway.key");
    let file = std::fs::File::create(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    let st = run_bounded(
        Command::new(&bin)
            .arg("keygen")
            .stdin(Stdio::null())
            .stdout(file),
        "sticky-gateway keygen",
        Instant::now() + Duration::from_secs(10),
        Duration::from_secs(1),
    )?;
    let len = std::fs::metadata(&key).map(|m| m.len()).unwrap_or(0);
    if !st.success() || len == 0 {
        return Err(format!(
            "`sticky-gateway keygen` failed ({st}, {len} bytes)"
        ));
    }
    println!("key file: {} ({len} bytes)", key.display());
    Ok((bin, key))
}

/// Number of online CPUs.
fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `PATH` with the sbin directories appended (nginx and haproxy live there).
fn path_with_sbin() -> String {
    let mut p = std::env::var("PATH").unwrap_or_default();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !p.split(':').any(|x| x == d) {
            if !p.is_empty() {
                p.push(':');
            }
            p.push_str(d);
        }
    }
    p
}

/// UTC time stamp `YYYYmmddTHHMMSSZ` for the results directory (no date crate needed).
fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}{mo:02}{d:02}T{h:02}{m:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_has_the_expected_shape() {
        let s = utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(s.starts_with("20"), "{s}");
        assert_eq!(&s[8..9], "T");
        assert!(s.ends_with('Z'));
    }

    #[test]
    fn flags_override_and_validate() {
        let args: Vec<String> = [
            "--rounds",
            "1",
            "--dur=3",
            "--scenarios",
            "direct sticky-new",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = parse(&args).unwrap();
        assert_eq!((o.rounds, o.dur), (1, 3));
        assert_eq!(o.scenarios, ["direct", "sticky-new"]);
        assert!(parse(&["--scenarios".into(), "nope".into()]).is_err());
        assert!(parse(&["--pin".into(), "2".into()]).is_err());
    }
}
