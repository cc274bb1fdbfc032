//! The `wsgate` command: wiring only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wsgate::config::Settings;
use wsgate::daemon::Daemon;
use wsgate::{control, signals, systemd};

/// The config file used when `-c` is not given, if it exists.
const DEFAULT_CONFIG: &str = "etc/wsgate.toml";

/// Control commands waiting for the control loop (signals, file changes,
/// admin requests); senders wait when it is full.
const CONTROL_QUEUE: usize = 64;

#[derive(Parser)]
#[command(
    name = "wsgate",
    version,
    about = "A WebSocket daemon with hard resource limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// The config file (default: etc/wsgate.toml if present, else the
        /// built-in defaults).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the effective config (secrets
    /// redacted), or every error with file:line:column.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config } => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(path: &Path) -> ExitCode {
    match Settings::load(path) {
        Ok(settings) => {
            for w in &settings.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", settings.redacted_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The config file to use: `-c`, else `etc/wsgate.toml` if present.
fn config_path(config: Option<PathBuf>) -> Option<PathBuf> {
    config.or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.exists().then_some(default)
    })
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WSGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let path = config_path(config);
    let settings = match &path {
        Some(p) => Settings::load(p),
        None => Settings::builtin(),
    }
    .map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(settings, path))
}

async fn run(settings: Settings, path: Option<PathBuf>) -> anyhow::Result<()> {
    let server = &settings.config.server;
    let listen = server.listen;
    let (watch_config, debounce) = (server.watch_config, server.reload_debounce);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().context("listener address")?;
    tracing::info!(file = %settings.file, routes = settings.routes.len(), "config loaded");

    let daemon = Daemon::new(settings, path.clone());
    let (control, commands) = tokio::sync::mpsc::channel(CONTROL_QUEUE);
    signals::forward(control.clone()).context("cannot install signal handlers")?;
    let _watcher = match (&path, watch_config) {
        (Some(p), true) => Some(
            wsgate::watch::watch(p, debounce, control.clone())
                .with_context(|| format!("cannot watch {}", p.display()))?,
        ),
        _ => None,
    };

    let server = tokio::spawn(wsgate::server::serve(listener, Arc::clone(&daemon)));
    tracing::info!("listening on {local}");
    systemd::ready();
    systemd::status(&daemon);
    systemd::spawn_watchdog(Arc::clone(&daemon));

    control::run(Arc::clone(&daemon), commands).await;
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}
