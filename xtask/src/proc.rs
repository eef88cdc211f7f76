//! Process helpers: bounded runs, stopping exactly the processes we started, apt-get.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Runs `cmd` to completion, but no later than `deadline`.
///
/// On overrun the child and everything it started (found through `/proc` parent links)
/// get SIGTERM, then SIGKILL after `grace`. Returns the exit status, or an error that
/// says what timed out.
pub(crate) fn run_bounded(
    cmd: &mut Command,
    what: &str,
    deadline: Instant,
    grace: Duration,
) -> Result<ExitStatus, String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    wait_bounded(&mut child, what, deadline, grace)
}

/// Waits for `child` until `deadline`; on overrun stops its process tree (see [`run_bounded`]).
pub(crate) fn wait_bounded(
    child: &mut Child,
    what: &str,
    deadline: Instant,
    grace: Duration,
) -> Result<ExitStatus, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
        if Instant::now() >= deadline {
            eprintln!(
                "xtask: {what} ran past its time limit; stopping it (pid {})",
                child.id()
            );
            stop_tree(child, grace);
            return Err(format!("{what} timed out"));
        }
        sleep(Duration::from_millis(100));
    }
}

/// Stops `child` and its descendants: SIGTERM to the child first (so that a script's
/// exit trap can clean up what it started), then after `grace` SIGTERM to any remaining
/// descendant, then SIGKILL to whatever is still alive 5 s later. Only these pids are
/// signalled; nothing is matched by name.
pub(crate) fn stop_tree(child: &mut Child, grace: Duration) {
    let root = child.id();
    let mut tree = descendants(root);
    signal(root, "TERM");
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    // Whatever the child started after our first look is also ours.
    for p in descendants(root) {
        if !tree.contains(&p) {
            tree.push(p);
        }
    }
    let alive: Vec<u32> = tree.into_iter().filter(|p| is_alive(*p)).collect();
    for p in &alive {
        signal(*p, "TERM");
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && alive.iter().any(|p| is_alive(*p)) {
        sleep(Duration::from_millis(100));
    }
    for p in alive.iter().filter(|p| is_alive(**p)) {
        signal(*p, "KILL");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// All descendants of `pid` (children, grandchildren, ...) read from `/proc`.
pub(crate) fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = ppid(p) {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == cur && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// Parent pid of `pid` from `/proc/<pid>/stat` (the field after the `(comm)`).
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// True while `pid` exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_string));
            state.as_deref() != Some("Z")
        }
        Err(_) => false,
    }
}

/// Sends `SIG<sig>` to one pid with the shell's `kill` builtin (a minimal Debian has
/// no `/bin/kill`, which comes with procps).
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("sh")
        .args(["-c", "kill -s \"$1\" \"$2\"", "kill", sig])
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// True when the effective uid is 0 (read from `/proc/self/status`).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Finds an executable on `PATH`, then in the sbin directories (nginx and haproxy live
/// in `/usr/sbin`, which a non-root `PATH` may lack).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// True for a regular file with an execute bit.
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// apt-get front end: runs `apt-get update` at most once per xtask run.
#[derive(Default)]
pub(crate) struct Apt {
    /// Whether `apt-get update` already ran (successfully) in this process.
    updated: bool,
}

impl Apt {
    /// Installs Debian `packages` non-interactively. Fails (with a reason) when not root,
    /// when there is no apt-get, or when apt-get fails or takes longer than 15 minutes.
    ///
    /// While it runs, a temporary `/usr/sbin/policy-rc.d` (only if none exists) keeps
    /// package scripts from starting services such as nginx on port 80.
    pub(crate) fn install(&mut self, packages: &[&str], extra: &[&str]) -> Result<(), String> {
        if !is_root() {
            return Err("not root, cannot apt-get install".into());
        }
        let apt = which("apt-get").ok_or("no apt-get on this machine")?;
        let deadline = Instant::now() + Duration::from_secs(900);
        let apt_cmd = |args: &[&str]| {
            let mut c = Command::new(&apt);
            c.args(["-q", "-o", "DPkg::Lock::Timeout=120"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null());
            c
        };
        if !self.updated && std::env::var_os("XTASK_APT_UPDATED").is_some_and(|v| v == "1") {
            println!(
                "xtask: XTASK_APT_UPDATED=1 (apt-get update ran just before); not updating again"
            );
            self.updated = true;
        }
        if !self.updated {
            println!("xtask: apt-get update");
            let st = run_bounded(
                &mut apt_cmd(&["update"]),
                "apt-get update",
                deadline,
                Duration::from_secs(10),
            )?;
            if !st.success() {
                return Err(format!("apt-get update failed ({st})"));
            }
            self.updated = true;
        }
        let policy = Path::new("/usr/sbin/policy-rc.d");
        let own_policy = !policy.exists()
            && std::fs::write(
                policy,
                "#!/bin/sh\n# written by cargo xtask during apt-get install\nexit 101\n",
            )
            .is_ok();
        if own_policy {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755));
        }
        let mut args = vec!["install", "-y"];
        args.extend_from_slice(extra);
        args.extend_from_slice(packages);
        println!("xtask: apt-get {}", args.join(" "));
        let res = run_bounded(
            &mut apt_cmd(&args),
            "apt-get install",
            deadline,
            Duration::from_secs(10),
        );
        if own_policy {
            let _ = std::fs::remove_file(policy);
        }
        let st = res?;
        if st.success() {
            Ok(())
        } else {
            Err(format!(
                "apt-get install {} failed ({st})",
                packages.join(" ")
            ))
        }
    }
}
