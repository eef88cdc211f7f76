//! `cargo xtask`: project automation for the sticky workspace (std only).
//!
//! The alias in `.cargo/config.toml` makes `cargo xtask ...` run this crate.
//!
//! # `cargo xtask test [--release] [--no-install]`
//! The one test command of the project: `.ci/run` and the README call exactly it.
//! 1. Finds `cmake` (pingora's zlib-ng is built with it), installing Debian's `cmake`
//!    with apt-get when missing (`--no-install` makes that an error instead).
//!    Finds Debian's `chromium` for the dashboard browser test; when
//!    `/usr/bin/chromium` is missing and we are root it runs `apt-get update` once and
//!    `apt-get install -y chromium` (`--no-install` skips that). When found, the test
//!    processes get `STICKY_CHROMIUM=/usr/bin/chromium`; otherwise a note is printed and
//!    the browser test is expected to skip itself.
//! 2. Runs, each under a banner, stopping at the first failure (non-zero exit):
//!    `cargo fmt --all -- --check`,
//!    `cargo clippy --workspace --all-targets -- -D warnings`,
//!    `cargo build -p tower-sticky --no-default-features` and
//!    `cargo clippy -p tower-sticky --no-default-features -- -D warnings` (the engine
//!    without tower, as the pingora adapter uses it),
//!    `cargo test --workspace --all-targets`, `cargo test --workspace --doc`,
//!    `RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps`,
//!    `cargo fmt --manifest-path fuzz/Cargo.toml -- --check` (the fuzz crate is not a
//!    workspace member), then every fuzz target for 20 s, two at a time
//!    (`cargo xtask fuzz --seconds 20 --jobs 2`; `--no-fuzz` skips it).
//!
//! `--release` is passed to the two `cargo test` steps (for integration tests that move
//! a lot of data); CI runs the default. The whole command is bounded: it gives up after
//! `XTASK_TIMEOUT_SECS` (default 1620 s = 27 min) and then stops the processes it started.
//!
//! # `cargo xtask fuzz [--seconds N] [--jobs J] [--targets a,b] [--sanitizer none|address] [--all-checks] [--no-install]`
//! Builds the coverage-guided fuzz targets in `fuzz/` (cargo-fuzz and libFuzzer on the
//! stable toolchain through `RUSTC_BOOTSTRAP=1`; `cargo install --locked cargo-fuzz`
//! when it is missing, Debian's `g++` for libFuzzer when there is no `c++`) and runs
//! each for N seconds (default 60), J at a time (default 1), from its checked-in seeds
//! (`fuzz/seeds/<target>/`, which hold every input that once crashed) and local corpus
//! (`fuzz/corpus/<target>/`). Fails if any target crashes; the input is left in
//! `fuzz/artifacts/<target>/`. Logs and a markdown summary go to `target/fuzz-logs/`.
//! `--all-checks` also checks the issue-8 defects `fuzz/fuzz_targets/known.rs` lists
//! as open. `cargo xtask test` runs every target for 20 s, two at a time.
//!
//! # `cargo xtask bench-peers [--rounds N] [--pin 0|1] [--dur S] [--scenarios "a b"] [--gateway-bin PATH] [--no-install]`
//! Throughput/CPU comparison of `sticky-gateway` and the pingora-sticky example
//! (`pingora_gateway`, `pingora-*` scenarios) with HAProxy (cookie insert) and nginx OSS
//! (cookie hash) on loopback, with the kit in `xtask/bench-peers/` (see its README.md).
//! The pingora example is built with `cargo build --release -p sticky-examples --example
//! pingora_gateway` and seals with the gateway's key file.
//! Installs `nginx-light haproxy wrk curl` with apt-get when missing, builds
//! `sticky-gateway` in release mode, makes a key file with `sticky-gateway keygen`, runs
//! `xtask/bench-peers/run.sh` and prints a markdown summary plus the gateway's ratios to the
//! peers. Flags override the environment variables `ROUNDS` (3), `PIN` (1), `DUR` (10) and
//! `SCENARIOS` (all); `WARM`, `CONNS`, `THREADS`, `SUT_CPU`, `LOAD_CPU` pass through to the
//! script. Results go to `target/bench-peers/<stamp>/` (raw wrk output, `summary.tsv`,
//! `summary.md`). With the defaults (10 scenarios x 3 rounds x 12 s) it takes about 6.5
//! minutes plus the release build (the 7 peer scenarios alone: 4.3 min).
//! `--gateway-bin PATH` (or `GATEWAY_BIN`) measures a prebuilt gateway instead of building.
//! If the gateway does not build or start, its scenarios are skipped with a message.
//!
//! # `cargo xtask bench-summary <summary.tsv>...`
//! Prints the markdown summary of one or more earlier `summary.tsv` files (rounds of
//! several runs are pooled; ratios are always taken within one round of one run).

mod bench;
mod fuzz;
mod proc;
mod summary;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

/// Usage text printed by `cargo xtask help` and on bad arguments.
const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test [--release] [--no-install] [--no-fuzz]
        fmt check, clippy -D warnings, tests (all targets + doc tests), rustdoc -D warnings,
        each fuzz target for 20 s;
        installs Debian chromium for the browser test when missing and root
  bench-peers [--rounds N] [--pin 0|1] [--dur SECS] [--scenarios \"a b ...\"]
              [--gateway-bin PATH] [--no-install]
        sticky-gateway and pingora-sticky vs HAProxy vs nginx on loopback
        (env ROUNDS, PIN, DUR, SCENARIOS too)
  bench-summary <summary.tsv>...
        markdown summary of earlier bench-peers results
  fuzz [--seconds N] [--jobs J] [--targets a,b] [--sanitizer none|address]
       [--all-checks] [--no-install]
        builds the fuzz targets in fuzz/ with cargo-fuzz (installed when missing) and
        runs each for N seconds (default 60); crashes land in fuzz/artifacts/
  help  this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        "test" => test::run(rest),
        "bench-peers" => bench::run(rest),
        "bench-summary" => summary::run_cli(rest),
        "fuzz" => fuzz::run(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {cmd}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the nearest directory at or above the current one whose
/// `Cargo.toml` has a `[workspace]` table (cargo runs us from where it was invoked),
/// else the parent of this crate's directory as it was at build time.
pub(crate) fn workspace_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            let is_workspace = std::fs::read_to_string(dir.join("Cargo.toml"))
                .map(|t| t.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false);
            if is_workspace && dir.join("xtask").is_dir() {
                return dir.to_path_buf();
            }
        }
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The cargo binary that runs us (so `+toolchain` overrides carry over).
pub(crate) fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// The target directory cargo uses for this workspace.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Prints a step banner that stands out in CI logs.
pub(crate) fn banner(text: &str) {
    println!("\n==> {text}");
}
