//! The `onebot-bridge` binary: flags, configuration, logging, then [`onebot_bridge::run`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use onebot_bridge::cli::{Cli, LogFormat};

/// mimalloc: the event path allocates and frees many small strings and maps per event, and the
/// system allocator spent over a third of the core's cycles on them (benches/core.rs uses it too,
/// so the core is measured as the binary runs it). Asked for plain blocks where it can be
/// ([`onebot_bridge::allocator::Allocator`]).
#[global_allocator]
static ALLOCATOR: onebot_bridge::allocator::Allocator = onebot_bridge::allocator::Allocator;

fn main() -> ExitCode {
    onebot_bridge::allocator::tune();
    let cli = Cli::parse();
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(error) => {
            eprintln!("onebot-bridge: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let log = cli.log.clone().or_else(|| config.log_level.clone()).unwrap_or_else(|| "info".to_owned());
    let filter = match tracing_subscriber::EnvFilter::try_new(&log) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("onebot-bridge: invalid configuration: --log {log:?}: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.probe {
        return probe(config.admin);
    }
    if cli.check {
        println!("configuration OK");
        for line in config.summary() {
            println!("  {line}");
        }
        for ignored in &config.ignored {
            println!("  ignored: {}: {}", ignored.keys.join(", "), ignored.why);
        }
        return ExitCode::SUCCESS;
    }
    init_logging(filter, cli.log_format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "onebot-bridge starting");
    for line in config.summary() {
        tracing::info!("{line}");
    }
    for ignored in &config.ignored {
        tracing::warn!(keys = %ignored.keys.join(", "), "configuration keys ignored: {}", ignored.why);
    }
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(config.worker_threads).enable_all().build() {
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

/// Logs go to stderr, as text (colours only on a terminal and without `NO_COLOR`) or as one JSON
/// object per line.
fn init_logging(filter: tracing_subscriber::EnvFilter, format: LogFormat) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init()
        }
    }
}

/// `--probe`: one `GET /health` to the admin listener, within 5 s.
fn probe(admin: Option<std::net::SocketAddr>) -> ExitCode {
    use std::io::{Read, Write};
    let Some(mut addr) = admin else {
        eprintln!("onebot-bridge: --probe needs the admin listener (--admin ADDR)");
        return ExitCode::from(2);
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let timeout = std::time::Duration::from_secs(5);
    let answer = std::net::TcpStream::connect_timeout(&addr, timeout).and_then(|mut stream| {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    });
    match answer {
        Ok(head) if head.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!("onebot-bridge: {addr}/health answered {:?}", head.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("onebot-bridge: {addr}/health: {error}");
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
