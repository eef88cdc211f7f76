//! `cargo xtask fuzz`: builds the coverage-guided fuzz targets in `fuzz/`
//! with cargo-fuzz (libFuzzer) and runs each for a bounded time.
//!
//! The stable toolchain runs them: cargo-fuzz needs nightly-only flags, which
//! `RUSTC_BOOTSTRAP=1` unlocks for this build only. Each target starts from
//! its checked-in seeds (`fuzz/seeds/<target>/`, which also hold every input
//! that once crashed, so each run re-checks them first) plus its growing
//! local corpus (`fuzz/corpus/<target>/`, not checked in).

use crate::proc::{stop_tree, wait_bounded, which, Apt};
use crate::{banner, cargo_bin, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The targets, in the order they run (`fuzz/Cargo.toml` lists the same).
pub(crate) const TARGETS: &[&str] = &[
    "token_open",
    "cookie_header",
    "gateway_config",
    "response_parse",
    "request_framing",
];

/// The cargo-fuzz installed when it is missing: pinned, so that a newer
/// release needing a newer toolchain cannot break CI overnight (0.13.2
/// builds with the stable 1.95 here).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Options of one fuzz session.
pub(crate) struct FuzzOpts {
    /// Seconds each target runs (libFuzzer's `-max_total_time`).
    pub(crate) seconds: u64,
    /// How many targets run at once.
    pub(crate) jobs: usize,
    /// Which targets.
    pub(crate) targets: Vec<String>,
    /// cargo-fuzz's `--sanitizer` (`none` or `address`).
    pub(crate) sanitizer: String,
    /// Never `cargo install` cargo-fuzz.
    pub(crate) no_install: bool,
    /// Also check the defects `fuzz/fuzz_targets/known.rs` lists as open.
    pub(crate) all_checks: bool,
}

impl Default for FuzzOpts {
    fn default() -> Self {
        Self {
            seconds: 60,
            jobs: 1,
            targets: TARGETS.iter().map(|t| t.to_string()).collect(),
            sanitizer: "none".into(),
            no_install: false,
            all_checks: false,
        }
    }
}

/// Entry point of `cargo xtask fuzz`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut opts = FuzzOpts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--seconds" => {
                opts.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--jobs" => {
                opts.jobs = value("--jobs")?
                    .parse()
                    .map_err(|e| format!("--jobs: {e}"))?
            }
            "--targets" => {
                opts.targets = value("--targets")?
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect();
                if let Some(bad) = opts.targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
                    return Err(format!(
                        "no fuzz target `{bad}` (have {})",
                        TARGETS.join(", ")
                    ));
                }
            }
            "--sanitizer" => opts.sanitizer = value("--sanitizer")?,
            "--no-install" => opts.no_install = true,
            "--all-checks" => opts.all_checks = true,
            other => {
                return Err(format!(
                    "unknown option `{other}` (fuzz [--seconds N] [--jobs J] [--targets a,b] \
                     [--sanitizer none|address] [--all-checks] [--no-install])"
                ))
            }
        }
    }
    // Building takes minutes; the runs take what was asked, plus slack.
    let deadline = Instant::now()
        + Duration::from_secs(40 * 60)
        + Duration::from_secs(opts.seconds * opts.targets.len() as u64 * 2);
    run_with(&opts, deadline)
}

/// What one target's run gave.
struct Outcome {
    target: String,
    ok: bool,
    executions: Option<u64>,
    seconds: f64,
    note: String,
}

/// Installs cargo-fuzz if needed, builds every target once, runs them.
pub(crate) fn run_with(opts: &FuzzOpts, deadline: Instant) -> Result<(), String> {
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    let cargo = cargo_bin();
    ensure_cxx(opts.no_install)?;
    ensure_cargo_fuzz(&cargo, opts.no_install, deadline)?;

    banner(&format!(
        "fuzz: building {} target(s) (sanitizer {})",
        opts.targets.len(),
        opts.sanitizer
    ));
    let t = Instant::now();
    let mut build = fuzz_cmd(&cargo, &fuzz_dir, opts);
    build.args(["build", "-O", "--sanitizer", &opts.sanitizer]);
    let st = wait_bounded(
        &mut build
            .spawn()
            .map_err(|e| format!("cannot start cargo fuzz build: {e}"))?,
        "cargo fuzz build",
        deadline,
        Duration::from_secs(10),
    )?;
    if !st.success() {
        return Err(format!("cargo fuzz build failed ({st})"));
    }
    println!("    (cargo fuzz build: {:.0} s)", t.elapsed().as_secs_f64());

    let logs = root.join("target").join("fuzz-logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    banner(&format!(
        "fuzz: {} target(s), {} s each, {} at a time",
        opts.targets.len(),
        opts.seconds,
        opts.jobs.max(1)
    ));
    let mut queue: Vec<&String> = opts.targets.iter().rev().collect();
    let mut running: Vec<(String, Child, Instant, PathBuf)> = Vec::new();
    let mut done: Vec<Outcome> = Vec::new();
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < opts.jobs.max(1) {
            let Some(target) = queue.pop() else { break };
            let (child, log) = start_target(&cargo, &fuzz_dir, &logs, target, opts)?;
            println!("fuzz: {target} started (log {})", log.display());
            running.push((target.clone(), child, Instant::now(), log));
        }
        let mut i = 0;
        while i < running.len() {
            let finished = match running[i].1.try_wait() {
                Ok(Some(st)) => Some(st.success()),
                Ok(None) if Instant::now() >= deadline => {
                    stop_tree(&mut running[i].1, Duration::from_secs(5));
                    Some(false)
                }
                Ok(None) => None,
                Err(e) => return Err(format!("waiting for fuzz target: {e}")),
            };
            match finished {
                Some(ok) => {
                    let (target, _, started, log) = running.remove(i);
                    let o = outcome(target, ok, started.elapsed().as_secs_f64(), &log);
                    println!(
                        "fuzz: {} {} after {:.0} s, {} executions{}",
                        o.target,
                        if o.ok { "passed" } else { "FAILED" },
                        o.seconds,
                        o.executions.map_or("?".into(), |n| n.to_string()),
                        if o.note.is_empty() {
                            String::new()
                        } else {
                            format!("\n{}", o.note)
                        }
                    );
                    done.push(o);
                }
                None => i += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut table = String::from(
        "| target | seconds | executions | result | reproduce |\n|---|---:|---:|---|---|\n",
    );
    for o in &done {
        table.push_str(&format!(
            "| `{}` | {:.0} | {} | {} | `cargo xtask fuzz --targets {} --seconds {}` |\n",
            o.target,
            o.seconds,
            o.executions.map_or("?".into(), |n| n.to_string()),
            if o.ok { "no crash" } else { "CRASH" },
            o.target,
            opts.seconds
        ));
    }
    banner("fuzz summary");
    print!("{table}");
    let _ = std::fs::write(logs.join("summary.md"), &table);
    let failed: Vec<&str> = done
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.target.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz target(s) failed: {} (inputs in fuzz/artifacts/<target>/; \
             rerun one with `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> <file>`)",
            failed.join(", ")
        ))
    }
}

/// `cargo fuzz ...` in `fuzz/`, with nightly flags unlocked on stable.
fn fuzz_cmd(cargo: &str, fuzz_dir: &Path, opts: &FuzzOpts) -> Command {
    let mut c = Command::new(cargo);
    c.arg("fuzz")
        .current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        // The workspace's target-cpu flags (.cargo/config.toml) would be
        // dropped by cargo-fuzz's RUSTFLAGS anyway; say so by clearing them.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null());
    if opts.all_checks {
        c.env("STICKY_FUZZ_ALL", "1");
    }
    c
}

fn start_target(
    cargo: &str,
    fuzz_dir: &Path,
    logs: &Path,
    target: &str,
    opts: &FuzzOpts,
) -> Result<(Child, PathBuf), String> {
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let log = logs.join(format!("{target}.log"));
    let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut c = fuzz_cmd(cargo, fuzz_dir, opts);
    c.args(["run", "-O", "--sanitizer", &opts.sanitizer, target])
        .arg(&corpus)
        .arg(fuzz_dir.join("seeds").join(target))
        .arg("--")
        .arg(format!("-max_total_time={}", opts.seconds))
        .arg("-print_final_stats=1")
        // A slow input is a finding too, but not a hang of the gate.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=1024")
        .stdout(Stdio::null())
        .stderr(file);
    let child = c
        .spawn()
        .map_err(|e| format!("cannot start cargo fuzz run {target}: {e}"))?;
    Ok((child, log))
}

fn outcome(target: String, ok: bool, seconds: f64, log: &Path) -> Outcome {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let executions = text.lines().find_map(|l| {
        l.strip_prefix("stat::number_of_executed_units:")
            .and_then(|n| n.trim().parse().ok())
    });
    let note = if ok {
        String::new()
    } else {
        // The panic and its message (up to the backtrace), and libFuzzer's
        // verdict: not the whole log.
        let mut keep = Vec::new();
        let mut in_panic = false;
        for l in text.lines() {
            if l.contains("panicked at") {
                in_panic = true;
            } else if l.starts_with("stack backtrace") || l.starts_with("note: ") {
                in_panic = false;
            }
            if in_panic || l.contains("ERROR:") || l.contains("Test unit written") {
                keep.push(format!("    {l}"));
            }
        }
        keep.truncate(24);
        keep.join("\n")
    };
    Outcome {
        target,
        ok,
        executions,
        seconds,
        note,
    }
}

/// libFuzzer (built by `libfuzzer-sys`) is C++: Debian's `g++` when `c++`
/// is missing (a base image has only gcc).
fn ensure_cxx(no_install: bool) -> Result<(), String> {
    if which("c++").is_some() {
        return Ok(());
    }
    if !no_install {
        println!("fuzz: no C++ compiler; installing Debian's g++");
        match Apt::default().install(&["g++"], &["--no-install-recommends"]) {
            Ok(()) if which("c++").is_some() => return Ok(()),
            Ok(()) => {}
            Err(e) => println!("note: could not install g++: {e}"),
        }
    }
    Err("libFuzzer needs a C++ compiler (c++): install Debian's g++ and rerun".into())
}

/// Makes `cargo fuzz` available: already installed, or `cargo install
/// --locked cargo-fuzz` at [`CARGO_FUZZ_VERSION`] (about a minute of
/// compiling).
fn ensure_cargo_fuzz(cargo: &str, no_install: bool, deadline: Instant) -> Result<(), String> {
    let works = Command::new(cargo)
        .args(["fuzz", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Ok(());
    }
    if no_install {
        return Err("cargo-fuzz is not installed (and --no-install was given)".into());
    }
    banner(&format!(
        "fuzz: cargo install --locked cargo-fuzz --version {CARGO_FUZZ_VERSION}"
    ));
    let t = Instant::now();
    let st = wait_bounded(
        &mut Command::new(cargo)
            .args(["install", "--locked", "cargo-fuzz", "--version"])
            .arg(CARGO_FUZZ_VERSION)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start cargo install: {e}"))?,
        "cargo install cargo-fuzz",
        deadline,
        Duration::from_secs(10),
    )?;
    if !st.success() {
        return Err(format!("cargo install cargo-fuzz failed ({st})"));
    }
    println!(
        "    (cargo install cargo-fuzz: {:.0} s)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
