//! `cargo xtask test`: the project's single test gate (what CI runs).

use crate::proc::{is_executable, run_bounded, which, Apt};
use crate::{banner, cargo_bin, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Default overall time limit in seconds (CI has 30 minutes; rustup work comes first).
const DEFAULT_TIMEOUT_SECS: u64 = 27 * 60;

/// Where Debian's chromium package puts the browser.
const DEBIAN_CHROMIUM: &str = "/usr/bin/chromium";

/// One cargo invocation: its arguments and extra environment variables.
type Step<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// Options of `cargo xtask test`.
struct Opts {
    /// Pass `--release` to the `cargo test` steps.
    release: bool,
    /// Never call apt-get.
    no_install: bool,
    /// Skip the fuzz step.
    no_fuzz: bool,
}

/// Seconds each fuzz target runs in the gate: five targets two at a time
/// take about a minute, after a build of two to three minutes on two cores.
const FUZZ_SECONDS: u64 = 20;

/// Entry point of `cargo xtask test`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut opts = Opts {
        release: false,
        no_install: false,
        no_fuzz: false,
    };
    for a in args {
        match a.as_str() {
            "--release" => opts.release = true,
            "--no-install" => opts.no_install = true,
            "--no-fuzz" => opts.no_fuzz = true,
            other => {
                return Err(format!(
                    "unknown option `{other}` (test [--release] [--no-install] [--no-fuzz])"
                ))
            }
        }
    }
    let started = Instant::now();
    let limit = std::env::var("XTASK_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    let deadline = started + Duration::from_secs(limit);
    let root = workspace_root();
    let cargo = cargo_bin();

    banner("toolchain");
    for args in [
        &["--version"][..],
        &["clippy", "--version"],
        &["fmt", "--version"],
    ] {
        let out = Command::new(&cargo)
            .args(args)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
            _ => ensure_component(args[0])?,
        }
    }

    banner("system packages for building");
    // One apt front end, so `apt-get update` runs at most once.
    let mut apt = Apt::default();
    ensure_system_needs(&mut apt, opts.no_install)?;

    banner("system packages for the tests");
    let chromium = find_or_install_chromium(&mut apt, opts.no_install);

    let test_mode: &[&str] = if opts.release { &["--release"] } else { &[] };
    let steps: Vec<Step> = vec![
        (vec!["fmt", "--all", "--", "--check"], vec![]),
        (
            vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
            vec![],
        ),
        // The engine and its request lifecycle build without tower (what
        // the pingora adapter depends on), and lint clean that way.
        (
            vec!["build", "-p", "tower-sticky", "--no-default-features"],
            vec![],
        ),
        (
            vec![
                "clippy",
                "-p",
                "tower-sticky",
                "--no-default-features",
                "--",
                "-D",
                "warnings",
            ],
            vec![],
        ),
        (
            [
                &["test", "--workspace", "--all-targets", "--all-features"][..],
                test_mode,
            ]
            .concat(),
            vec![],
        ),
        (
            [
                &["test", "--workspace", "--doc", "--all-features"][..],
                test_mode,
            ]
            .concat(),
            vec![],
        ),
        (
            vec!["doc", "--workspace", "--no-deps", "--all-features"],
            vec![("RUSTDOCFLAGS", "-D warnings")],
        ),
        (
            vec!["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
            vec![],
        ),
    ];
    let n = steps.len();
    for (i, (args, env)) in steps.iter().enumerate() {
        let env_text: String = env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
        banner(&format!(
            "[{}/{n}] {env_text}cargo {}",
            i + 1,
            args.join(" ")
        ));
        let t = Instant::now();
        let mut cmd = Command::new(&cargo);
        cmd.args(args).current_dir(&root).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(c) = &chromium {
            cmd.env("STICKY_CHROMIUM", c);
        }
        cmd.env("STICKY_ETCD", ETCD);
        let what = format!("cargo {}", args.join(" "));
        let status = run_bounded(&mut cmd, &what, deadline, Duration::from_secs(10))?;
        println!("    ({what}: {:.0} s)", t.elapsed().as_secs_f64());
        if !status.success() {
            return Err(format!("step {}/{n} `{what}` failed ({status})", i + 1));
        }
    }
    if opts.no_fuzz {
        println!("(fuzz step skipped: --no-fuzz)");
    } else {
        banner(&format!(
            "fuzz: every target for {FUZZ_SECONDS} s (cargo xtask fuzz --seconds {FUZZ_SECONDS} --jobs 2)"
        ));
        let t = Instant::now();
        let fuzz = crate::fuzz::FuzzOpts {
            seconds: FUZZ_SECONDS,
            jobs: 2,
            no_install: opts.no_install,
            ..Default::default()
        };
        crate::fuzz::run_with(&fuzz, deadline).map_err(|e| format!("fuzz step: {e}"))?;
        println!("    (fuzz step: {:.0} s)", t.elapsed().as_secs_f64());
    }
    banner(&format!(
        "all {} steps passed in {:.0} s",
        n + usize::from(!opts.no_fuzz),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Adds a missing rustup component (`clippy` or `rustfmt`), if rustup is there.
fn ensure_component(sub: &str) -> Result<(), String> {
    let component = match sub {
        "clippy" => "clippy",
        "fmt" => "rustfmt",
        _ => return Err("cargo itself does not run".into()),
    };
    let rustup = which("rustup").ok_or(format!(
        "`cargo {sub}` is missing and there is no rustup to add {component}"
    ))?;
    println!("xtask: rustup component add {component}");
    let st = Command::new(rustup)
        .args(["component", "add", component])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("rustup: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("rustup component add {component} failed"))
    }
}

/// A system file the build or the tests need, and the Debian package that brings it.
struct SystemNeed {
    /// A program looked up on PATH, or an absolute path that must exist.
    file: &'static str,
    /// The Debian package that installs it.
    package: &'static str,
    /// Who needs it, for the log.
    why: &'static str,
}

/// What a cold machine lacks for building every feature and running every test.
const SYSTEM_NEEDS: &[SystemNeed] = &[
    SystemNeed {
        file: "cmake",
        package: "cmake",
        why: "pingora's zlib-ng (pingora-sticky, the pingora example)",
    },
    SystemNeed {
        file: "protoc",
        package: "protobuf-compiler",
        why: "etcd-client's build script (the gateway's `etcd` feature)",
    },
    SystemNeed {
        file: "/usr/include/google/protobuf/descriptor.proto",
        package: "libprotobuf-dev",
        why: "the protobuf files etcd-client's protos import",
    },
    SystemNeed {
        file: ETCD,
        package: "etcd-server",
        why: "the gateway's etcd tests (a real server on loopback)",
    },
];

/// Where Debian's etcd-server package puts the server.
const ETCD: &str = "/usr/bin/etcd";

/// Finds each of [`SYSTEM_NEEDS`], installing the missing ones' packages in
/// one apt-get call (a package's own service is not started: see [`Apt`]).
fn ensure_system_needs(apt: &mut Apt, no_install: bool) -> Result<(), String> {
    let found = |n: &SystemNeed| {
        if n.file.starts_with('/') {
            Path::new(n.file).exists().then(|| PathBuf::from(n.file))
        } else {
            which(n.file)
        }
    };
    let missing: Vec<&SystemNeed> = SYSTEM_NEEDS.iter().filter(|n| found(n).is_none()).collect();
    for n in SYSTEM_NEEDS.iter().filter(|n| found(n).is_some()) {
        println!("{}: present (for {})", n.file, n.why);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    for n in &missing {
        println!("{}: missing (for {}); package {}", n.file, n.why, n.package);
    }
    if no_install {
        return Err(format!(
            "missing system packages and --no-install was given: apt-get install {}",
            packages.join(" ")
        ));
    }
    apt.install(&packages, &["--no-install-recommends"])
        .map_err(|e| format!("{e}; install {} by hand", packages.join(" ")))?;
    match missing.iter().find(|n| found(n).is_none()) {
        Some(n) => Err(format!(
            "apt-get installed {} but {} is still missing",
            n.package, n.file
        )),
        None => Ok(()),
    }
}

/// Finds chromium for the dashboard browser test, installing Debian's package when
/// possible. Never fails: without a browser that test is expected to skip itself.
fn find_or_install_chromium(apt: &mut Apt, no_install: bool) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STICKY_CHROMIUM").map(PathBuf::from) {
        if is_executable(&p) {
            println!("chromium: {} (from STICKY_CHROMIUM)", p.display());
            return Some(p);
        }
        println!(
            "note: STICKY_CHROMIUM={} is not an executable; looking elsewhere",
            p.display()
        );
    }
    let debian = Path::new(DEBIAN_CHROMIUM);
    if is_executable(debian) {
        println!("chromium: {DEBIAN_CHROMIUM}");
        return Some(debian.into());
    }
    if !no_install {
        println!("chromium: {DEBIAN_CHROMIUM} is missing; installing Debian's chromium");
        match apt.install(&["chromium"], &[]) {
            Ok(()) if is_executable(debian) => {
                println!("chromium: {DEBIAN_CHROMIUM} (installed)");
                return Some(debian.into());
            }
            Ok(()) => {
                println!("note: apt-get installed chromium but {DEBIAN_CHROMIUM} is not there")
            }
            Err(e) => println!("note: could not install chromium: {e}"),
        }
    }
    if let Some(p) = which("chromium").or_else(|| which("chromium-browser")) {
        println!("chromium: {} (from PATH)", p.display());
        return Some(p);
    }
    println!(
        "note: no chromium found; the dashboard browser test will be skipped \
         (install Debian's `chromium` or set STICKY_CHROMIUM)"
    );
    None
}
