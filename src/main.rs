//! The `onebot-bridge` binary: flags, configuration, logging, then [`onebot_bridge::run`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use onebot_bridge::cli::Cli;

/// mimalloc: the event path allocates and frees many small strings and maps per event, and the
/// system allocator spent over a third of the core's cycles on them (benches/core.rs uses it too,
/// so the core is measured as the binary runs it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let config = match cli.load_config() {
        Ok(c) => c,
        Err(error) => {
            eprintln!("onebot-bridge: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!(
            "configuration OK: {} backend link(s), {} v11 WebSocket endpoint(s)",
            config.backends.len(),
            config.ws_servers.len()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("onebot-bridge: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(onebot_bridge::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("onebot-bridge: {error}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
