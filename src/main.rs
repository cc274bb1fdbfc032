//! The `wsgate` command: wiring only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wsgate::config::Settings;
use wsgate::daemon::Daemon;

/// The config file used when `-c` is not given, if it exists.
const DEFAULT_CONFIG: &str = "etc/wsgate.toml";

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

fn load(config: Option<PathBuf>) -> anyhow::Result<Settings> {
    let path = config.or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.exists().then_some(default)
    });
    let settings = match &path {
        Some(p) => Settings::load(p),
        None => Settings::builtin(),
    };
    settings.map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))
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
    let settings = load(config)?;
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listen = settings.config.server.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr().context("listener address")?;
        tracing::info!(file = %settings.file, routes = settings.routes.len(), "config loaded");
        let daemon = Daemon::new(settings);
        tracing::info!("listening on {local}");
        let server = tokio::spawn(wsgate::server::serve(listener, Arc::clone(&daemon)));
        wsgate::shutdown::run(Arc::clone(&daemon)).await;
        let _ = server.await;
        Ok(())
    })
}
