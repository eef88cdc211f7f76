//! The `sticky-gateway` binary. See `sticky-gateway --help`.

use std::process::ExitCode;

use clap::Parser;
use sticky_gateway::cli::{Action, Cli, CliError, DemoArgs};
use sticky_gateway::config::GatewayConfig;
use sticky_gateway::{access_log, demo, keyfile, run};

fn main() -> ExitCode {
    let action = match Cli::parse().action() {
        Ok(a) => a,
        Err(CliError::Usage(e)) => e.exit(),
        Err(CliError::Config(e)) => {
            eprintln!("sticky-gateway: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match action {
        Action::Keygen => {
            println!("{}", keyfile::keygen());
            ExitCode::SUCCESS
        }
        Action::Demo(d) => run_demo(d),
        Action::Run { config, path } => run_gateway(*config, path),
    }
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    // One thread: a current-thread runtime, no cross-thread wake-ups (measured
    // 15-25% less CPU per request than a one-worker multi-thread runtime).
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn run_gateway(config: GatewayConfig, path: Option<std::path::PathBuf>) -> ExitCode {
    access_log::init(config.log_format);
    let keys = match keyfile::load_or_generate(config.key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("sticky-gateway: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime(config.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sticky-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match run::start(config, keys, path).await {
            Ok(r) => {
                r.until_signal().await;
                ExitCode::SUCCESS
            }
            // A file or setting that cannot be used: a configuration error.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                eprintln!("sticky-gateway: invalid configuration: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("sticky-gateway: cannot start: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn run_demo(d: DemoArgs) -> ExitCode {
    access_log::init(d.log_format);
    let rt = match runtime(sticky_gateway::config::default_threads()) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sticky-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let tls = if d.tls {
            let dir = std::env::temp_dir().join(format!("sticky-demo-tls-{}", std::process::id()));
            match demo::throwaway_tls(d.tls_listen, &dir) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("sticky-gateway: cannot make the demo certificate: {e}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            None
        };
        let (tls_listener, tls_info) = match tls {
            Some((l, i)) => (Some(l), Some(i)),
            None => (None, None),
        };
        let started = demo::start_with(d.listen, d.admin, tls_listener).await;
        let demo::Demo { replicas, running } = match started {
            Ok(d) => d,
            Err(e) => {
                eprintln!("sticky-gateway: cannot start the demo: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("sticky-gateway demo");
        for (name, addr) in &replicas {
            println!("  backend {name:<10} http://{addr}/");
        }
        println!("  open the app:        http://{}/", running.addr);
        if let (Some(t), Some(addr)) = (&tls_info, running.tls_addrs.first()) {
            let ca = t.ca_file.display();
            println!("  or over TLS:         https://localhost:{}/", addr.port());
            println!("    the certificate is signed by a throwaway authority made for this run:");
            println!("    curl --cacert {ca} https://localhost:{}/", addr.port());
            println!("    browsers: import {ca} as a certificate authority");
            println!("    (or accept the warning); remove it again after the demo.");
        }
        if let Some(a) = running.admin_addr {
            println!("  open the dashboard:  http://{a}/");
        }
        println!("  log in, add items to the cart, reload: you stay on one replica.");
        println!(
            "  drain that replica on the dashboard: you keep it; a new browser goes elsewhere."
        );
        println!("Ctrl-C to stop.");
        running.until_signal().await;
        if let Some(dir) = tls_info.as_ref().and_then(|t| t.ca_file.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
        ExitCode::SUCCESS
    })
}
